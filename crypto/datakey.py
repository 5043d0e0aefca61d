"""Data keys: the 256-bit secrets sealed streams are encrypted under, their ids, their files."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import stat
from pathlib import Path

from crypto.atomicfile import atomic_write_bytes
from crypto.errors import KeyFileError
from crypto.hazmat.stream import DATA_KEY_SIZE, derive_key_id

_PEM_BEGIN = b"-----BEGIN FEDTUNE DATA KEY-----"
_PEM_END = b"-----END FEDTUNE DATA KEY-----"


class DataKey:
    """A 32-byte data key; its ``key_id`` is a public commitment that never reveals the key."""

    __slots__ = ("_key_id", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise TypeError("raw must be bytes")
        if len(raw) != DATA_KEY_SIZE:
            raise ValueError(f"a data key is {DATA_KEY_SIZE} bytes, got {len(raw)}")
        self._raw = bytes(raw)
        self._key_id = derive_key_id(self._raw).hex()

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(DATA_KEY_SIZE))

    @property
    def raw(self) -> bytes:
        """The secret key bytes (handle with care: never log, never write unprotected)."""
        return self._raw

    @property
    def key_id(self) -> str:
        """Lower-case hex of the 32-byte key id sealed headers and manifests carry."""
        return self._key_id

    @property
    def short_id(self) -> str:
        """The first 16 hex digits of the key id, for display."""
        return self._key_id[:16]

    def to_pem(self) -> bytes:
        """The key in a PEM-style armour (what ``save`` writes)."""
        return b"\n".join([_PEM_BEGIN, base64.b64encode(self._raw), _PEM_END, b""])

    @classmethod
    def from_pem(cls, pem: bytes) -> DataKey:
        """Parse the armour written by ``to_pem``."""
        lines = bytes(pem).strip().splitlines()
        if len(lines) != 3 or lines[0].strip() != _PEM_BEGIN or lines[2].strip() != _PEM_END:
            raise KeyFileError("not a fedtune data key file (expected the DATA KEY armour)")
        try:
            raw = base64.b64decode(lines[1].strip(), validate=True)
        except binascii.Error as exc:
            raise KeyFileError("data key file body is not base64") from exc
        if len(raw) != DATA_KEY_SIZE:
            raise KeyFileError(f"data key file holds {len(raw)} bytes, expected {DATA_KEY_SIZE}")
        return cls(raw)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key atomically with mode 0600."""
        atomic_write_bytes(path, self.to_pem(), mode=0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DataKey:
        """Read a key file, refusing one that group or others can read."""
        target = Path(path)
        try:
            st = target.stat()
        except FileNotFoundError as exc:
            raise KeyFileError(f"data key file {target} does not exist") from exc
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"data key file {target} has mode {stat.S_IMODE(st.st_mode):04o}; a key file "
                f"must be readable by its owner only: run 'chmod 600 {target}'"
            )
        return cls.from_pem(target.read_bytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataKey) and hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self._key_id)

    def __repr__(self) -> str:
        # Never the key itself: reprs end up in logs and tracebacks.
        return f"DataKey(id={self.short_id}...)"
