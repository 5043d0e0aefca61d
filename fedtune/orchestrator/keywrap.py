"""Wrapping broker secrets at rest: the KeyWrapper interface and the 0600-file master key.

A KMS or HSM adapter implements the same two calls; the broker never sees the master key
itself then. The embedded default keeps a 32-byte AES-256-GCM master key in a file readable by
its owner only, and binds each wrapped secret to its object id as associated data, so a
wrapped key copied to another row does not open.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.atomicfile import atomic_write_bytes
from fedtune.orchestrator.errors import ConfigurationError

MASTER_KEY_SIZE = 32
_MAGIC = b"FTMW\x01"
_NONCE_SIZE = 12


class KeyWrapper(Protocol):
    """Wraps and unwraps secrets under a key the broker holds (or a KMS/HSM holds for it)."""

    def wrap(self, secret: bytes, *, aad: bytes) -> bytes:
        """Encrypt ``secret``, bound to ``aad``."""
        ...

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        """Decrypt what ``wrap`` produced for the same ``aad``."""
        ...


class WrappedSecretCorrupt(ConfigurationError):
    """A wrapped secret does not open under the master key (wrong key, wrong row, or altered)."""


class FileKeyWrapper:
    """AES-256-GCM under a master key kept in a 0600 file."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError("key must be bytes")
        if len(key) != MASTER_KEY_SIZE:
            raise ValueError(f"the master key must be {MASTER_KEY_SIZE} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> FileKeyWrapper:
        """Generate a master key file (mode 0600); refuse to overwrite an existing one."""
        target = Path(path)
        if target.exists():
            raise ConfigurationError(f"{target} exists already; refusing to replace a master key")
        key = secrets.token_bytes(MASTER_KEY_SIZE)
        atomic_write_bytes(target, key, mode=0o600)
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FileKeyWrapper:
        """Read the master key file, refusing one that group or others can read."""
        target = Path(path)
        try:
            st = target.stat()
        except FileNotFoundError:
            raise ConfigurationError(f"master key file {target} does not exist") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"master key file {target} has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"run 'chmod 600 {target}'"
            )
        key = target.read_bytes()
        if len(key) != MASTER_KEY_SIZE:
            raise ConfigurationError(f"master key file {target} is not {MASTER_KEY_SIZE} bytes")
        return cls(key)

    def wrap(self, secret: bytes, *, aad: bytes) -> bytes:
        """Encrypt ``secret`` under the master key, bound to ``aad``."""
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return _MAGIC + nonce + self._aead.encrypt(nonce, secret, _MAGIC + aad)

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        """Decrypt a wrapped secret for the same ``aad``."""
        if not wrapped.startswith(_MAGIC) or len(wrapped) < len(_MAGIC) + _NONCE_SIZE + 16:
            raise WrappedSecretCorrupt("a stored secret is not in the master-key wrapping format")
        nonce = wrapped[len(_MAGIC) : len(_MAGIC) + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, wrapped[len(_MAGIC) + _NONCE_SIZE :], _MAGIC + aad)
        except InvalidTag:
            raise WrappedSecretCorrupt(
                "a stored secret does not open under the master key (wrong key file or altered row)"
            ) from None
