"""Party identities: Ed25519 key pairs, their files, fingerprints and context-bound signatures."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.atomicfile import atomic_write_bytes
from crypto.errors import KeyFileError, SignatureError

# Every signature covers this prefix, the context name and a separator before the message,
# so a signature made for one kind of document can never be replayed as another kind.
_SIGNING_DOMAIN = b"fedtune/v1 signature\x00"

FINGERPRINT_PREFIX = "ed25519:"


def _signed_bytes(context: str, message: bytes) -> bytes:
    if not context or "\x00" in context:
        raise ValueError("context must be a non-empty string without NUL characters")
    return _SIGNING_DOMAIN + context.encode("utf-8") + b"\x00" + message


class PublicIdentity:
    """The public half of a party's identity: verifies its signatures, names it by fingerprint."""

    __slots__ = ("_key", "_raw")

    def __init__(self, key: Ed25519PublicKey) -> None:
        if not isinstance(key, Ed25519PublicKey):
            raise TypeError("key must be an Ed25519PublicKey")
        self._key = key
        self._raw = key.public_bytes_raw()

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicIdentity:
        """Build from the 32-byte raw Ed25519 public key."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise TypeError("raw must be bytes")
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
        return cls(Ed25519PublicKey.from_public_bytes(bytes(raw)))

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicIdentity:
        """Build from a PEM SubjectPublicKeyInfo."""
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise KeyFileError("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"expected an Ed25519 public key, got {type(key).__name__}")
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicIdentity:
        """Read a PEM public key file."""
        try:
            return cls.from_pem(Path(path).read_bytes())
        except FileNotFoundError as exc:
            raise KeyFileError(f"public key file {path} does not exist") from exc

    @property
    def raw(self) -> bytes:
        """The 32-byte raw public key."""
        return self._raw

    @property
    def key(self) -> Ed25519PublicKey:
        """The underlying cryptography key object."""
        return self._key

    @property
    def fingerprint(self) -> str:
        """Stable name of this identity: ``ed25519:`` + hex SHA-256 of the raw public key."""
        return FINGERPRINT_PREFIX + hashlib.sha256(self._raw).hexdigest()

    @property
    def short_fingerprint(self) -> str:
        """The first 16 hex digits of the fingerprint, for display."""
        return self.fingerprint[len(FINGERPRINT_PREFIX) : len(FINGERPRINT_PREFIX) + 16]

    def to_pem(self) -> bytes:
        """Encode as PEM SubjectPublicKeyInfo."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the PEM public key atomically (mode 0644)."""
        atomic_write_bytes(path, self.to_pem(), mode=0o644)

    def verify(self, signature: bytes, message: bytes, *, context: str) -> None:
        """Raise SignatureError unless ``signature`` is ours over ``message`` in ``context``."""
        try:
            self._key.verify(bytes(signature), _signed_bytes(context, bytes(message)))
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify for {self.short_fingerprint} in context {context!r}"
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicIdentity) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"PublicIdentity({self.short_fingerprint})"


class Identity:
    """A party's Ed25519 signing identity (private key) with safe file handling."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("key must be an Ed25519PrivateKey")
        self._key = key
        self._public = PublicIdentity(key.public_key())

    @classmethod
    def generate(cls) -> Identity:
        """Create a fresh identity from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, *, password: bytes | None = None) -> Identity:
        """Build from a PEM PKCS#8 private key."""
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(
                "not a readable PEM private key (wrong format, or wrong/missing password)"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"expected an Ed25519 private key, got {type(key).__name__}")
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, password: bytes | None = None) -> Identity:
        """Read a private key file, refusing one that group or others can read."""
        target = Path(path)
        try:
            st = target.stat()
        except FileNotFoundError as exc:
            raise KeyFileError(f"identity file {target} does not exist") from exc
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"identity file {target} has mode {stat.S_IMODE(st.st_mode):04o}; a private key "
                f"must be readable by its owner only: run 'chmod 600 {target}'"
            )
        return cls.from_pem(target.read_bytes(), password=password)

    def save(self, path: str | os.PathLike[str], *, password: bytes | None = None) -> None:
        """Write the PEM private key atomically with mode 0600 (optionally password-encrypted)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        atomic_write_bytes(path, pem, mode=0o600)

    @property
    def public(self) -> PublicIdentity:
        """The public half."""
        return self._public

    @property
    def fingerprint(self) -> str:
        """The public identity's fingerprint."""
        return self._public.fingerprint

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The raw key, for formats with their own signing rules (e.g. C2SP signed notes)."""
        return self._key

    def sign(self, message: bytes, *, context: str) -> bytes:
        """Sign ``message`` for use in ``context`` (a document kind such as ``"manifest"``)."""
        return self._key.sign(_signed_bytes(context, bytes(message)))

    def __repr__(self) -> str:
        return f"Identity({self._public.short_fingerprint})"
