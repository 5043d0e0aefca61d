"""Key wrapping with HPKE (RFC 9180): a data key sealed to one recipient, model and session."""

from __future__ import annotations

import enum
import hashlib
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from crypto.canonical import canonical_json
from crypto.errors import KemMismatchError, KeyEncodingError, KeyUnwrapError


class Kem(enum.IntEnum):
    """The KEMs keys can be wrapped with; values are the IANA HPKE KEM identifiers."""

    X25519 = 0x0020
    """DHKEM(X25519, HKDF-SHA256), RFC 9180 section 7.1."""
    MLKEM768_X25519 = 0x647A
    """Hybrid ML-KEM-768 + X25519 (X-Wing): stays secret even against a later quantum computer."""


# The KDF and AEAD are fixed; their IANA ids are still written so a wrapped key names its suite.
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002
WRAPPED_KEY_SIZE = 32
KEY_RELEASE_PURPOSE = "fedtune/key-release/v1"

_FORMAT_VERSION = 1
_PUBLIC_MAGIC = b"FTPK"
_PRIVATE_MAGIC = b"FTSK"
_WRAPPED_MAGIC = b"FTWK"
_PREFIX = struct.Struct(">4sBH")  # magic, version, KEM id
_SUITE_IDS = struct.Struct(">HH")  # KDF id, AEAD id (wrapped keys only)

_X25519_SIZE = 32
_MLKEM768_PUBLIC_SIZE = 1184
_MLKEM768_SEED_SIZE = 64

_HPKE_KEM = {Kem.X25519: hpke.KEM.X25519, Kem.MLKEM768_X25519: hpke.KEM.MLKEM768_X25519}
_AEAD_TAG = 16


def _suite(kem: Kem) -> hpke.Suite:
    return hpke.Suite(_HPKE_KEM[kem], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def _split_prefix(data: bytes, magic: bytes, what: str) -> tuple[Kem, bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise KeyEncodingError(what, "too short")
    got_magic, version, kem_id = _PREFIX.unpack_from(data)
    if got_magic != magic:
        raise KeyEncodingError(what, f"expected magic {magic!r}, got {got_magic!r}")
    if version != _FORMAT_VERSION:
        raise KeyEncodingError(what, f"unsupported encoding version {version}")
    try:
        kem = Kem(kem_id)
    except ValueError:
        raise KeyEncodingError(what, f"unknown KEM id {kem_id:#06x}") from None
    return kem, data[_PREFIX.size :]


class RecipientPublicKey:
    """A recipient's public key for one KEM: what a key is wrapped to."""

    __slots__ = ("_encoded", "_hpke_key", "kem")

    def __init__(
        self,
        kem: Kem,
        x25519_key: x25519.X25519PublicKey,
        mlkem_key: mlkem.MLKEM768PublicKey | None = None,
    ) -> None:
        if not isinstance(kem, Kem):
            raise TypeError("kem must be a Kem")
        if not isinstance(x25519_key, x25519.X25519PublicKey):
            raise TypeError("x25519_key must be an X25519PublicKey")
        if (kem is Kem.MLKEM768_X25519) != isinstance(mlkem_key, mlkem.MLKEM768PublicKey):
            raise TypeError("an ML-KEM-768 public key is needed exactly for the hybrid KEM")
        self.kem = kem
        body = x25519_key.public_bytes_raw()
        if mlkem_key is not None:
            body = mlkem_key.public_bytes_raw() + body
            self._hpke_key: object = hpke.MLKEM768X25519PublicKey(mlkem_key, x25519_key)
        else:
            self._hpke_key = x25519_key
        self._encoded = _PREFIX.pack(_PUBLIC_MAGIC, _FORMAT_VERSION, kem) + body

    def to_bytes(self) -> bytes:
        """Self-describing encoding: ``FTPK``, version, KEM id, raw public key(s)."""
        return self._encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> RecipientPublicKey:
        """Parse ``to_bytes`` output; raise KeyEncodingError if malformed."""
        kem, body = _split_prefix(data, _PUBLIC_MAGIC, "recipient public key")
        size = _X25519_SIZE + (_MLKEM768_PUBLIC_SIZE if kem is Kem.MLKEM768_X25519 else 0)
        if len(body) != size:
            raise KeyEncodingError(
                "recipient public key", f"{kem.name} key body is {len(body)} bytes, want {size}"
            )
        try:
            x_key = x25519.X25519PublicKey.from_public_bytes(body[-_X25519_SIZE:])
            m_key = (
                mlkem.MLKEM768PublicKey.from_public_bytes(body[:_MLKEM768_PUBLIC_SIZE])
                if kem is Kem.MLKEM768_X25519
                else None
            )
        except ValueError as exc:
            raise KeyEncodingError("recipient public key", str(exc)) from None
        return cls(kem, x_key, m_key)

    @property
    def fingerprint(self) -> str:
        """``sha256:`` + hex SHA-256 of the encoding, for display and pinning."""
        return "sha256:" + hashlib.sha256(self._encoded).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecipientPublicKey) and other._encoded == self._encoded

    def __hash__(self) -> int:
        return hash(self._encoded)

    def __repr__(self) -> str:
        return f"RecipientPublicKey({self.kem.name}, {self.fingerprint[7:23]})"


class RecipientPrivateKey:
    """A recipient's private key for one KEM: what unwraps keys wrapped to its public half."""

    __slots__ = ("_hpke_key", "_mlkem", "_public", "_x25519", "kem")

    def __init__(
        self,
        kem: Kem,
        x25519_key: x25519.X25519PrivateKey,
        mlkem_key: mlkem.MLKEM768PrivateKey | None = None,
    ) -> None:
        if not isinstance(kem, Kem):
            raise TypeError("kem must be a Kem")
        if not isinstance(x25519_key, x25519.X25519PrivateKey):
            raise TypeError("x25519_key must be an X25519PrivateKey")
        if (kem is Kem.MLKEM768_X25519) != isinstance(mlkem_key, mlkem.MLKEM768PrivateKey):
            raise TypeError("an ML-KEM-768 private key is needed exactly for the hybrid KEM")
        self.kem = kem
        self._x25519 = x25519_key
        self._mlkem = mlkem_key
        self._hpke_key: object = (
            hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)
            if mlkem_key is not None
            else x25519_key
        )
        self._public = RecipientPublicKey(
            kem,
            x25519_key.public_key(),
            mlkem_key.public_key() if mlkem_key is not None else None,
        )

    @classmethod
    def generate(cls, kem: Kem = Kem.MLKEM768_X25519) -> RecipientPrivateKey:
        """A fresh key pair; the default hybrid KEM resists a recorded-now, broken-later attack."""
        if not isinstance(kem, Kem):
            raise TypeError("kem must be a Kem")
        m_key = mlkem.MLKEM768PrivateKey.generate() if kem is Kem.MLKEM768_X25519 else None
        return cls(kem, x25519.X25519PrivateKey.generate(), m_key)

    def public_key(self) -> RecipientPublicKey:
        """The public half, to hand to whoever wraps keys for this recipient."""
        return self._public

    def to_bytes(self) -> bytes:
        """Secret encoding: ``FTSK``, version, KEM id, [ML-KEM-768 seed], X25519 private key."""
        body = self._x25519.private_bytes_raw()
        if self._mlkem is not None:
            body = self._mlkem.private_bytes_raw() + body
        return _PREFIX.pack(_PRIVATE_MAGIC, _FORMAT_VERSION, self.kem) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> RecipientPrivateKey:
        """Parse ``to_bytes`` output; raise KeyEncodingError if malformed."""
        kem, body = _split_prefix(data, _PRIVATE_MAGIC, "recipient private key")
        size = _X25519_SIZE + (_MLKEM768_SEED_SIZE if kem is Kem.MLKEM768_X25519 else 0)
        if len(body) != size:
            raise KeyEncodingError(
                "recipient private key", f"{kem.name} key body is {len(body)} bytes, want {size}"
            )
        x_key = x25519.X25519PrivateKey.from_private_bytes(body[-_X25519_SIZE:])
        m_key = (
            mlkem.MLKEM768PrivateKey.from_seed_bytes(body[:_MLKEM768_SEED_SIZE])
            if kem is Kem.MLKEM768_X25519
            else None
        )
        return cls(kem, x_key, m_key)

    def __repr__(self) -> str:
        return f"RecipientPrivateKey({self.kem.name}, {self._public.fingerprint[7:23]})"


def key_release_info(*, model_id: str, session_id: str) -> bytes:
    """The HPKE ``info`` that binds a wrapped key to one purpose, model and session."""
    for name, value in (("model_id", model_id), ("session_id", session_id)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str")
        if not value:
            raise ValueError(f"{name} must not be empty")
    return canonical_json(
        {"purpose": KEY_RELEASE_PURPOSE, "model_id": model_id, "session_id": session_id}
    )


def wrap_key(key: bytes, recipient: RecipientPublicKey, *, model_id: str, session_id: str) -> bytes:
    """Encrypt a 32-byte key to ``recipient`` so it opens only for this model and session."""
    # model_id and session_id are keyword-only: two strings swapped would bind the wrong thing.
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError("key must be bytes")
    if len(key) != WRAPPED_KEY_SIZE:
        raise ValueError(f"key must be {WRAPPED_KEY_SIZE} bytes, got {len(key)}")
    if not isinstance(recipient, RecipientPublicKey):
        raise TypeError("recipient must be a RecipientPublicKey")
    info = key_release_info(model_id=model_id, session_id=session_id)
    sealed = _suite(recipient.kem).encrypt(bytes(key), recipient._hpke_key, info=info)
    return (
        _PREFIX.pack(_WRAPPED_MAGIC, _FORMAT_VERSION, recipient.kem)
        + _SUITE_IDS.pack(KDF_HKDF_SHA256, AEAD_AES_256_GCM)
        + sealed
    )


def wrapped_key_kem(wrapped: bytes) -> Kem:
    """The KEM a wrapped key was made with (which recipient key type opens it)."""
    return _split_prefix(wrapped, _WRAPPED_MAGIC, "wrapped key")[0]


def unwrap_key(
    wrapped: bytes, recipient: RecipientPrivateKey, *, model_id: str, session_id: str
) -> bytes:
    """Open a wrapped key with the recipient's private key, for the model and session it names."""
    if not isinstance(recipient, RecipientPrivateKey):
        raise TypeError("recipient must be a RecipientPrivateKey")
    info = key_release_info(model_id=model_id, session_id=session_id)
    kem, rest = _split_prefix(wrapped, _WRAPPED_MAGIC, "wrapped key")
    if len(rest) < _SUITE_IDS.size:
        raise KeyEncodingError("wrapped key", "too short")
    kdf_id, aead_id = _SUITE_IDS.unpack_from(rest)
    if (kdf_id, aead_id) != (KDF_HKDF_SHA256, AEAD_AES_256_GCM):
        raise KeyEncodingError(
            "wrapped key", f"unsupported KDF/AEAD ids {kdf_id:#06x}/{aead_id:#06x}"
        )
    if kem is not recipient.kem:
        raise KemMismatchError(kem.name, recipient.kem.name)
    sealed = rest[_SUITE_IDS.size :]
    want = _HPKE_KEM[kem].enc_length() + WRAPPED_KEY_SIZE + _AEAD_TAG
    if len(sealed) != want:
        raise KeyEncodingError("wrapped key", f"{len(sealed)} bytes of ciphertext, want {want}")
    try:
        return _suite(kem).decrypt(sealed, recipient._hpke_key, info=info)
    except (InvalidTag, ValueError):
        # ValueError: an encapsulated key X25519 refuses (low-order point); same verdict.
        raise KeyUnwrapError() from None
