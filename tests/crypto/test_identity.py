"""Party identities: RFC 8032 keys, pinned fingerprints, context-bound signatures, key files."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from crypto.errors import KeyFileError, SignatureError
from crypto.identity import Identity, PublicIdentity

# RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte, 0x72).
RFC_SECRET_1 = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC_1 = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIG_1 = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
    "1cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
RFC_SECRET_2 = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
RFC_PUBLIC_2 = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
RFC_SIG_2 = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
    "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)
# "ed25519:" + SHA-256 of RFC_PUBLIC_1, computed outside fedtune (sha256sum of the raw key).
RFC_FINGERPRINT_1 = "ed25519:21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"


def rfc_identity(secret: bytes = RFC_SECRET_1) -> Identity:
    return Identity(Ed25519PrivateKey.from_private_bytes(secret))


@pytest.mark.parametrize(
    ("secret", "public", "message", "signature"),
    [
        (RFC_SECRET_1, RFC_PUBLIC_1, b"", RFC_SIG_1),
        (RFC_SECRET_2, RFC_PUBLIC_2, b"\x72", RFC_SIG_2),
    ],
    ids=["rfc8032-test1", "rfc8032-test2"],
)
def test_rfc8032_keys_and_raw_signatures(
    secret: bytes, public: bytes, message: bytes, signature: bytes
) -> None:
    identity = rfc_identity(secret)
    assert identity.public.raw == public
    # The raw key (for formats with their own signing rules) signs exactly as RFC 8032 says.
    assert identity.private_key.sign(message) == signature


def test_fingerprint_is_pinned_to_a_known_answer() -> None:
    identity = rfc_identity()
    assert identity.fingerprint == RFC_FINGERPRINT_1
    assert identity.public.fingerprint == "ed25519:" + hashlib.sha256(RFC_PUBLIC_1).hexdigest()
    assert identity.public.short_fingerprint == "21fe31dfa154a261"
    assert PublicIdentity.from_bytes(RFC_PUBLIC_1).fingerprint == RFC_FINGERPRINT_1


def test_context_signature_is_domain_separated() -> None:
    identity = rfc_identity()
    signature = identity.sign(b"doc", context="manifest")
    identity.public.verify(signature, b"doc", context="manifest")
    # Not a bare Ed25519 signature over the message: it covers the domain and the context.
    assert signature != identity.private_key.sign(b"doc")
    expected = identity.private_key.sign(b"fedtune/v1 signature\x00manifest\x00doc")
    assert signature == expected


def test_wrong_context_is_refused() -> None:
    identity = rfc_identity()
    signature = identity.sign(b"doc", context="manifest")
    with pytest.raises(SignatureError) as info:
        identity.public.verify(signature, b"doc", context="release-policy")
    assert "release-policy" in str(info.value)


def test_modified_message_or_signature_or_signer_is_refused() -> None:
    identity = rfc_identity()
    signature = identity.sign(b"doc", context="manifest")
    with pytest.raises(SignatureError):
        identity.public.verify(signature, b"doc!", context="manifest")
    flipped = bytearray(signature)
    flipped[10] ^= 1
    with pytest.raises(SignatureError):
        identity.public.verify(bytes(flipped), b"doc", context="manifest")
    with pytest.raises(SignatureError):
        rfc_identity(RFC_SECRET_2).public.verify(signature, b"doc", context="manifest")


@pytest.mark.parametrize("context", ["", "mani\x00fest"])
def test_bad_contexts_are_rejected(context: str) -> None:
    with pytest.raises(ValueError):
        rfc_identity().sign(b"doc", context=context)


def test_save_is_0600_and_load_round_trips(tmp_path) -> None:
    identity = Identity.generate()
    path = tmp_path / "identity.pem"
    identity.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Identity.load(path)
    assert loaded.fingerprint == identity.fingerprint
    assert loaded.public == identity.public


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_a_key_others_can_read(tmp_path, mode: int) -> None:
    path = tmp_path / "identity.pem"
    Identity.generate().save(path)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        Identity.load(path)
    assert f"{mode:04o}" in str(info.value)
    assert "chmod 600" in str(info.value)


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(KeyFileError) as info:
        Identity.load(tmp_path / "absent.pem")
    assert "does not exist" in str(info.value)


def test_password_protected_key(tmp_path) -> None:
    path = tmp_path / "identity.pem"
    identity = Identity.generate()
    identity.save(path, password=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert Identity.load(path, password=b"correct horse").public == identity.public
    with pytest.raises(KeyFileError):
        Identity.load(path, password=b"wrong")
    with pytest.raises(KeyFileError):
        Identity.load(path)


def test_non_ed25519_and_garbage_pem_are_refused(tmp_path) -> None:
    x_pem = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFileError) as info:
        Identity.from_pem(x_pem)
    assert "Ed25519" in str(info.value)
    with pytest.raises(KeyFileError):
        Identity.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError):
        PublicIdentity.from_pem(b"not pem")
    x_pub = (
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError):
        PublicIdentity.from_pem(x_pub)


def test_public_identity_files_and_bytes(tmp_path) -> None:
    identity = rfc_identity()
    path = tmp_path / "provider.pub.pem"
    identity.public.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    loaded = PublicIdentity.load(path)
    assert loaded == identity.public and hash(loaded) == hash(identity.public)
    assert PublicIdentity.from_pem(identity.public.to_pem()).raw == RFC_PUBLIC_1
    with pytest.raises(KeyFileError):
        PublicIdentity.load(tmp_path / "absent.pem")
    with pytest.raises(ValueError):
        PublicIdentity.from_bytes(RFC_PUBLIC_1[:31])
    with pytest.raises(TypeError):
        PublicIdentity.from_bytes("d75a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Identity("key")  # type: ignore[arg-type]


def test_reprs_name_the_fingerprint_not_the_key() -> None:
    identity = rfc_identity()
    assert "21fe31dfa154a261" in repr(identity)
    assert RFC_SECRET_1.hex() not in repr(identity)
