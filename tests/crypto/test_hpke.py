"""HPKE key wrapping: both KEMs, binding to model and session, encodings, and every refusal.

RFC 9180's test vectors cannot be replayed here: cryptography's single-shot HPKE API draws a
fresh ephemeral key and takes no AAD, while the RFC vectors fix the ephemeral key and use
``Count-N`` AADs. What can be pinned is pinned: the X25519 key encoding against RFC 7748's
test keys, the exact encodings and sizes (KEM ids from the IANA HPKE registry), and the
``info`` bytes.
"""

from __future__ import annotations

import os

import pytest

from crypto.errors import KemMismatchError, KeyEncodingError, KeyUnwrapError
from crypto.hpke import (
    Kem,
    RecipientPrivateKey,
    RecipientPublicKey,
    key_release_info,
    unwrap_key,
    wrap_key,
    wrapped_key_kem,
)

BOTH = [Kem.X25519, Kem.MLKEM768_X25519]
DATA_KEY = bytes(range(100, 132))
BIND = {"model_id": "acme/base@1", "session_id": "session-7"}


@pytest.fixture(scope="module", params=BOTH, ids=lambda k: k.name)
def recipient(request: pytest.FixtureRequest) -> RecipientPrivateKey:
    return RecipientPrivateKey.generate(request.param)


def test_wrap_unwrap_round_trip(recipient: RecipientPrivateKey) -> None:
    wrapped = wrap_key(DATA_KEY, recipient.public_key(), **BIND)
    assert unwrap_key(wrapped, recipient, **BIND) == DATA_KEY
    assert wrapped_key_kem(wrapped) is recipient.kem
    assert DATA_KEY not in wrapped


def test_wrapping_is_randomised(recipient: RecipientPrivateKey) -> None:
    one = wrap_key(DATA_KEY, recipient.public_key(), **BIND)
    two = wrap_key(DATA_KEY, recipient.public_key(), **BIND)
    assert one != two


def test_wrong_private_key_of_the_same_kem(recipient: RecipientPrivateKey) -> None:
    wrapped = wrap_key(DATA_KEY, recipient.public_key(), **BIND)
    with pytest.raises(KeyUnwrapError):
        unwrap_key(wrapped, RecipientPrivateKey.generate(recipient.kem), **BIND)


@pytest.mark.parametrize(
    "changed",
    [
        {"model_id": "acme/other@1", "session_id": "session-7"},
        {"model_id": "acme/base@1", "session_id": "session-8"},
        # Swapping the two must not open either: the info names each field.
        {"model_id": "session-7", "session_id": "acme/base@1"},
    ],
)
def test_other_model_or_session_does_not_open(
    recipient: RecipientPrivateKey, changed: dict[str, str]
) -> None:
    wrapped = wrap_key(DATA_KEY, recipient.public_key(), **BIND)
    with pytest.raises(KeyUnwrapError):
        unwrap_key(wrapped, recipient, **changed)


def test_kem_mismatch_is_named() -> None:
    hybrid = RecipientPrivateKey.generate(Kem.MLKEM768_X25519)
    classic = RecipientPrivateKey.generate(Kem.X25519)
    wrapped = wrap_key(DATA_KEY, hybrid.public_key(), **BIND)
    with pytest.raises(KemMismatchError) as info:
        unwrap_key(wrapped, classic, **BIND)
    assert (info.value.wrapped_kem, info.value.key_kem) == ("MLKEM768_X25519", "X25519")


@pytest.mark.parametrize(
    "offset", [11, 12, 40, -17, -1], ids=["enc0", "enc1", "enc29", "ct", "tag"]
)
def test_modified_wrapped_key_does_not_open(recipient: RecipientPrivateKey, offset: int) -> None:
    wrapped = bytearray(wrap_key(DATA_KEY, recipient.public_key(), **BIND))
    wrapped[offset] ^= 0x04
    with pytest.raises(KeyUnwrapError):
        unwrap_key(bytes(wrapped), recipient, **BIND)


def test_modified_suite_ids_are_malformed(recipient: RecipientPrivateKey) -> None:
    wrapped = bytearray(wrap_key(DATA_KEY, recipient.public_key(), **BIND))
    wrapped[8] ^= 0x01  # KDF id
    with pytest.raises(KeyEncodingError):
        unwrap_key(bytes(wrapped), recipient, **BIND)


@pytest.mark.parametrize("cut", [0, 3, 7, 11, 20, -1])
def test_truncated_wrapped_key_is_malformed(recipient: RecipientPrivateKey, cut: int) -> None:
    wrapped = wrap_key(DATA_KEY, recipient.public_key(), **BIND)
    with pytest.raises(KeyEncodingError):
        unwrap_key(wrapped[:cut], recipient, **BIND)


# --- encodings --------------------------------------------------------------------------------


def test_encoding_sizes_and_prefixes() -> None:
    classic = RecipientPrivateKey.generate(Kem.X25519)
    hybrid = RecipientPrivateKey.generate(Kem.MLKEM768_X25519)
    # magic || version 1 || IANA KEM id (0x0020 DHKEM(X25519), 0x647a ML-KEM-768+X25519).
    assert classic.public_key().to_bytes()[:7] == b"FTPK\x01\x00\x20"
    assert hybrid.public_key().to_bytes()[:7] == b"FTPK\x01\x64\x7a"
    assert classic.to_bytes()[:7] == b"FTSK\x01\x00\x20"
    assert hybrid.to_bytes()[:7] == b"FTSK\x01\x64\x7a"
    assert len(classic.public_key().to_bytes()) == 7 + 32
    assert len(hybrid.public_key().to_bytes()) == 7 + 1184 + 32
    assert len(classic.to_bytes()) == 7 + 32
    assert len(hybrid.to_bytes()) == 7 + 64 + 32  # ML-KEM-768 seed (FIPS 203) + X25519
    # magic, version, KEM, KDF 0x0001 HKDF-SHA256, AEAD 0x0002 AES-256-GCM, enc, ct+tag.
    wrapped = wrap_key(DATA_KEY, classic.public_key(), **BIND)
    assert wrapped[:11] == b"FTWK\x01\x00\x20\x00\x01\x00\x02"
    assert len(wrapped) == 11 + 32 + 32 + 16
    wrapped = wrap_key(DATA_KEY, hybrid.public_key(), **BIND)
    assert wrapped[:11] == b"FTWK\x01\x64\x7a\x00\x01\x00\x02"
    assert len(wrapped) == 11 + 1120 + 32 + 16  # X-Wing ciphertext: 1088 + 32


def test_x25519_key_encoding_against_rfc7748_test_keys() -> None:
    # RFC 7748 section 6.1: Alice's private key and public key.
    alice_private = bytes.fromhex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    )
    alice_public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    key = RecipientPrivateKey.from_bytes(b"FTSK\x01\x00\x20" + alice_private)
    assert key.public_key().to_bytes() == b"FTPK\x01\x00\x20" + alice_public
    assert key.to_bytes() == b"FTSK\x01\x00\x20" + alice_private


def test_private_and_public_keys_survive_their_encodings(recipient: RecipientPrivateKey) -> None:
    restored = RecipientPrivateKey.from_bytes(recipient.to_bytes())
    assert restored.public_key() == recipient.public_key()
    public = RecipientPublicKey.from_bytes(recipient.public_key().to_bytes())
    assert public == recipient.public_key()
    wrapped = wrap_key(DATA_KEY, public, **BIND)
    assert unwrap_key(wrapped, restored, **BIND) == DATA_KEY


def test_hybrid_private_key_is_deterministic_from_its_seed() -> None:
    key = RecipientPrivateKey.generate(Kem.MLKEM768_X25519)
    twice = RecipientPrivateKey.from_bytes(key.to_bytes())
    assert twice.to_bytes() == key.to_bytes()
    assert twice.public_key().fingerprint == key.public_key().fingerprint


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"XXPK\x01\x00\x20" + bytes(32), "magic"),
        (b"FTPK\x02\x00\x20" + bytes(32), "version"),
        (b"FTPK\x01\x00\x21" + bytes(32), "unknown KEM"),
        (b"FTPK\x01\x00\x20" + bytes(31), "31 bytes"),
        (b"FTPK\x01\x64\x7a" + bytes(32), "32 bytes"),
        (b"FTSK\x01\x00\x20" + bytes(32), "magic"),
    ],
)
def test_malformed_public_keys(data: bytes, reason: str) -> None:
    with pytest.raises(KeyEncodingError) as info:
        RecipientPublicKey.from_bytes(data)
    assert reason in str(info.value)


def test_malformed_private_key_lengths() -> None:
    with pytest.raises(KeyEncodingError):
        RecipientPrivateKey.from_bytes(b"FTSK\x01\x64\x7a" + bytes(32))
    with pytest.raises(KeyEncodingError):
        RecipientPrivateKey.from_bytes(
            RecipientPrivateKey.generate(Kem.X25519).public_key().to_bytes()
        )


def test_info_is_canonical_json_naming_purpose_model_and_session() -> None:
    assert key_release_info(model_id="acme/base@1", session_id="s-1") == (
        b'{"model_id":"acme/base@1","purpose":"fedtune/key-release/v1","session_id":"s-1"}'
    )


def test_parameter_validation(recipient: RecipientPrivateKey) -> None:
    with pytest.raises(ValueError):
        wrap_key(os.urandom(16), recipient.public_key(), **BIND)
    with pytest.raises(TypeError):
        wrap_key("key", recipient.public_key(), **BIND)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wrap_key(DATA_KEY, recipient, **BIND)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wrap_key(DATA_KEY, recipient.public_key(), model_id="", session_id="s")
    with pytest.raises(TypeError):
        wrap_key(DATA_KEY, recipient.public_key(), model_id=1, session_id="s")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        unwrap_key(b"FTWK", recipient.public_key(), **BIND)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RecipientPrivateKey.generate("X25519")  # type: ignore[arg-type]


def test_repr_does_not_show_private_material(recipient: RecipientPrivateKey) -> None:
    assert recipient.to_bytes().hex()[14:] not in repr(recipient)
    assert recipient.kem.name in repr(recipient)
