"""CKKS aggregation: the aggregator cannot decrypt, sums match plaintext FedAvg, strict blobs."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from crypto import ckks
from crypto.errors import CkksContextError, CkksFormatError, ZeroTotalWeightError


@pytest.fixture(scope="module")
def contexts() -> tuple[bytes, bytes]:
    secret = ckks.generate_secret_context()
    return secret, ckks.public_context(secret)


def test_public_context_has_no_secret_key(contexts: tuple[bytes, bytes]) -> None:
    secret, public = contexts
    assert ckks.load_context(secret, secret=True).is_private()
    loaded = ckks.load_context(public, secret=False)
    assert not loaded.is_private() and loaded.is_public()
    assert not loaded.has_relin_keys() and not loaded.has_galois_keys()
    assert len(public) < len(secret)
    with pytest.raises(CkksContextError, match="secret key"):
        ckks.load_context(secret, secret=False)
    with pytest.raises(CkksContextError, match="public"):
        ckks.load_context(public, secret=True)
    with pytest.raises(CkksContextError, match="deserialise"):
        ckks.load_context(b"not a context", secret=False)


def test_aggregator_adds_but_cannot_decrypt(contexts: tuple[bytes, bytes]) -> None:
    secret, public = contexts
    rng = np.random.default_rng(3)
    m = 5000  # two ciphertexts, the second partly filled
    updates = [rng.normal(0, 1, m).astype(np.float32) for _ in range(4)]
    weights = [12.0, 300.0, 45.0, 2000.0]  # the last is clipped to max_weight
    blobs = [
        ckks.encrypt_update(public, u, w, max_weight=1000.0)
        for u, w in zip(updates, weights, strict=True)
    ]
    total = ckks.add_encrypted(public, blobs)
    with pytest.raises(CkksContextError):
        ckks.decrypt_vector(public, total)
    average, weight = ckks.decrypt_average(secret, total, max_weight=1000.0)
    clipped = [min(w, 1000.0) for w in weights]
    expected = sum(
        w * np.clip(u.astype(np.float64), -8, 8) for w, u in zip(clipped, updates, strict=True)
    )
    expected /= sum(clipped)
    assert np.abs(average - expected).max() < 4 * 1e-7
    assert weight == pytest.approx(sum(clipped), rel=1e-6)


def test_values_are_clipped_before_encryption(contexts: tuple[bytes, bytes]) -> None:
    secret, public = contexts
    blob = ckks.encrypt_update(
        public, np.array([100.0, -100.0, 1.0]), 1.0, max_weight=1.0, clip=2.0
    )
    average, _ = ckks.decrypt_average(secret, blob, max_weight=1.0)
    assert np.allclose(average, [2.0, -2.0, 1.0], atol=1e-6)


def test_zero_weight_sum_is_refused(contexts: tuple[bytes, bytes]) -> None:
    secret, public = contexts
    blob = ckks.encrypt_update(public, np.ones(3), 0.0, max_weight=10.0)
    with pytest.raises(ZeroTotalWeightError):
        ckks.decrypt_average(secret, blob, max_weight=10.0)


def test_packing_fills_slots_and_size_cost_is_as_documented(contexts: tuple[bytes, bytes]) -> None:
    _, public = contexts
    assert ckks.SLOTS == 4096
    assert [ckks.ciphertext_count(m) for m in (1, 4096, 4097, 10**6 + 1)] == [1, 1, 2, 245]
    m = 4 * ckks.SLOTS
    blob = ckks.encrypt_vector(public, np.zeros(m))
    per_value = len(blob) / m
    assert 32.0 <= per_value < 32.2  # 2 polynomials x 8 bytes x 8192 coefficients / 4096 slots


def test_headroom_is_enforced(contexts: tuple[bytes, bytes]) -> None:
    _, public = contexts
    with pytest.raises(ValueError, match="headroom"):
        ckks.encrypt_vector(public, np.array([2.0**19]))
    with pytest.raises(ValueError, match="NaN"):
        ckks.encrypt_vector(public, np.array([np.nan]))
    with pytest.raises(TypeError):
        ckks.encrypt_vector(public, np.array([1, 2]))  # type: ignore[arg-type]


def _blob(public: bytes, m: int = 10) -> bytes:
    return ckks.encrypt_vector(public, np.arange(m, dtype=np.float64))


def test_malformed_blobs_are_refused(contexts: tuple[bytes, bytes]) -> None:
    secret, public = contexts
    good = _blob(public)
    head = struct.calcsize(">4sBQI")
    cases = {
        "truncated": good[:-1],
        "trailing": good + b"\x00",
        "magic": b"XXXX" + good[4:],
        "version": good[:4] + b"\x02" + good[5:],
        "count": good[:13] + struct.pack(">I", 2) + good[head:],
        "garbage ciphertext": good[:head] + struct.pack(">I", 5) + b"\x00" * 5,
        "short": good[:5],
    }
    for blob in cases.values():
        with pytest.raises(CkksFormatError):
            ckks.decrypt_vector(secret, blob)
        with pytest.raises(CkksFormatError):
            ckks.add_encrypted(public, [blob])
        with pytest.raises(CkksFormatError):
            ckks.add_encrypted(public, [good, blob])
    with pytest.raises(CkksFormatError, match="length"):
        ckks.add_encrypted(public, [good, _blob(public, 11)])
    with pytest.raises(ValueError):
        ckks.add_encrypted(public, [])


def test_decryption_is_bound_to_the_session_key(contexts: tuple[bytes, bytes]) -> None:
    _, public = contexts
    other_secret = ckks.generate_secret_context()
    values = np.linspace(-1, 1, 100)
    decrypted = ckks.decrypt_vector(other_secret, ckks.encrypt_vector(public, values))
    assert not np.allclose(decrypted, values, atol=1e-3)
    assert math.isfinite(float(np.abs(decrypted).max()))
