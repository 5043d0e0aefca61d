"""Mask streams: RFC 8439 keystream, a slow pure-Python ChaCha20 and HKDF as references, uniformity.

The references below are written from RFC 8439 section 2.3 (ChaCha20 block function) and
RFC 5869 (HKDF), independent of ``crypto.hazmat.masks`` and of OpenSSL; each is first
validated on its RFC's own test vector.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import pathlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from crypto.hazmat.masks import (
    BLOCK_WORDS,
    MASK_DTYPE,
    MaskPurpose,
    MaskStreams,
    apply_masks,
    derive_mask_key,
    mask_stream,
    pairwise_mask_key,
    self_mask_key,
)

# --- references -------------------------------------------------------------------------------


def _rotl(v: int, c: int) -> int:
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 7)


def ref_chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 section 2.3, literally."""
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += [*struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce)]
    working = list(state)
    for _ in range(10):
        _quarter(working, 0, 4, 8, 12)
        _quarter(working, 1, 5, 9, 13)
        _quarter(working, 2, 6, 10, 14)
        _quarter(working, 3, 7, 11, 15)
        _quarter(working, 0, 5, 10, 15)
        _quarter(working, 1, 6, 11, 12)
        _quarter(working, 2, 7, 8, 13)
        _quarter(working, 3, 4, 9, 14)
    return struct.pack("<16I", *((w + s) & 0xFFFFFFFF for w, s in zip(working, state, strict=True)))


def ref_keystream(key: bytes, blocks: int) -> bytes:
    return b"".join(ref_chacha20_block(key, i, bytes(12)) for i in range(blocks))


def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def test_reference_chacha20_matches_rfc8439_section_2_3_2() -> None:
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a00000000")
    expected = bytes.fromhex(
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )
    assert ref_chacha20_block(key, 1, nonce) == expected


def test_reference_hkdf_matches_rfc5869_case_1() -> None:
    okm = ref_hkdf(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("000102030405060708090a0b0c"),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


# --- mask streams -----------------------------------------------------------------------------


def test_mask_stream_is_the_rfc8439_a1_keystream() -> None:
    # RFC 8439 appendix A.1, test vector #1: all-zero key and nonce, block counter 0.
    expected = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    words = mask_stream(bytes(32), 16)
    assert words.dtype == MASK_DTYPE
    assert words.tobytes() == expected
    assert int(words[0]) == 0xADE0B876  # little-endian words


def test_mask_stream_matches_the_reference_for_a_random_key() -> None:
    key = os.urandom(32)
    assert mask_stream(key, 64 * 16).tobytes() == ref_keystream(key, 64)


def test_self_mask_key_is_hkdf_over_the_documented_info() -> None:
    seed = bytes(range(32))
    info = b"".join(
        struct.pack(">H", len(f)) + f
        for f in [
            b"self-mask",
            b"session-7",
            struct.pack(">Q", 3),
            struct.pack(">Q", 42),
            b"",
        ]
    )
    expected = ref_hkdf(seed, b"fedtune secagg v1 mask key", info)
    assert self_mask_key(seed, session_id=b"session-7", round_number=3, owner=42) == expected


def test_pairwise_mask_key_binds_ordered_ids_and_public_keys() -> None:
    secret = hashlib.sha256(b"shared").digest()
    pa, pb = b"\x01" * 32, b"\x02" * 32
    key = pairwise_mask_key(secret, session_id=b"s", round_number=1, a=(9, pb), b=(4, pa))
    assert key == pairwise_mask_key(secret, session_id=b"s", round_number=1, a=(4, pa), b=(9, pb))
    info = b"".join(
        struct.pack(">H", len(f)) + f
        for f in [
            b"pairwise-mask",
            b"s",
            struct.pack(">Q", 1),
            struct.pack(">Q", 4),
            struct.pack(">Q", 9),
            pa + pb,
        ]
    )
    assert key == ref_hkdf(secret, b"fedtune secagg v1 mask key", info)


def test_every_domain_field_changes_the_key() -> None:
    ikm = os.urandom(32)
    base = {"purpose": MaskPurpose.SELF, "session_id": b"s", "round_number": 1, "ids": (1,)}
    variants = [
        base,
        {**base, "purpose": MaskPurpose.PAIRWISE},
        {**base, "session_id": b"t"},
        {**base, "round_number": 2},
        {**base, "ids": (2,)},
        {**base, "ids": (1, 2)},
        {**base, "context": b"x"},
    ]
    keys = {derive_mask_key(ikm, **v) for v in variants}  # type: ignore[arg-type]
    assert len(keys) == len(variants)
    # Length prefixes keep field boundaries: ("ab", "") and ("a", "b") differ.
    k1 = derive_mask_key(ikm, purpose=MaskPurpose.SELF, session_id=b"ab", round_number=0, ids=())
    k2 = derive_mask_key(
        ikm, purpose=MaskPurpose.SELF, session_id=b"a", round_number=0, ids=(), context=b"b"
    )
    assert k1 != k2


def test_key_derivation_validates() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        self_mask_key(bytes(16), session_id=b"s", round_number=0, owner=1)
    with pytest.raises(ValueError, match="64 bits"):
        self_mask_key(bytes(32), session_id=b"s", round_number=2**64, owner=1)
    with pytest.raises(TypeError):
        derive_mask_key(bytes(32), purpose="self-mask", session_id=b"s", round_number=0, ids=())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        pairwise_mask_key(
            bytes(32), session_id=b"s", round_number=0, a=(1, bytes(32)), b=(1, bytes(32))
        )
    with pytest.raises(ValueError, match="32 bytes"):
        mask_stream(bytes(31), 4)


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3 * BLOCK_WORDS + 7), max_size=4))
def test_block_by_block_equals_one_shot(cuts: list[int]) -> None:
    length = 3 * BLOCK_WORDS + 7
    keys = [os.urandom(32) for _ in range(3)]
    expected = (
        mask_stream(keys[0], length) + mask_stream(keys[1], length) - mask_stream(keys[2], length)
    )
    target = np.zeros(length, dtype=MASK_DTYPE)
    streams = MaskStreams(add=keys[:2], subtract=keys[2:])
    bounds = [0, *sorted(cuts), length]
    for lo, hi in itertools.pairwise(bounds):
        streams.apply(target[lo:hi])
    assert streams.position == length
    assert np.array_equal(target, expected)


def test_add_then_subtract_restores_modulo_2_32() -> None:
    vector = np.array([0, 1, 2**31, 2**32 - 1] * 1000, dtype=MASK_DTYPE)
    original = vector.copy()
    key = os.urandom(32)
    apply_masks(vector, add=[key])
    assert not np.array_equal(vector, original)
    apply_masks(vector, subtract=[key])
    assert np.array_equal(vector, original)


def test_apply_refuses_wrong_arrays() -> None:
    streams = MaskStreams(add=[bytes(32)])
    with pytest.raises(TypeError):
        streams.apply(np.zeros(4, dtype=np.int64))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        streams.apply(np.zeros((2, 2), dtype=MASK_DTYPE))
    frozen = np.zeros(4, dtype=MASK_DTYPE)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        streams.apply(frozen)


def test_mask_bytes_are_uniform() -> None:
    # Chi-square on the 256 byte values of 4 MiB of stream, alpha = 1e-9: a correct
    # stream fails with probability 1e-9; a stream with a stuck bit or byte bias fails surely.
    data = np.frombuffer(mask_stream(os.urandom(32), 1 << 20).tobytes(), dtype=np.uint8)
    counts = np.bincount(data, minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-9


def test_no_numpy_random_in_mask_or_noise_code() -> None:
    root = pathlib.Path(__file__).resolve().parents[2] / "crypto"
    for path in [root / "hazmat" / "masks.py", root / "dp.py", *(root / "secagg").glob("*.py")]:
        assert "np.random" not in path.read_text(), path
        assert "numpy.random" not in path.read_text().replace("``numpy.random", ""), path
