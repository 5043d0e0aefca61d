"""The report-data binding: SHA-512(nonce || public key) ties evidence to one challenge and key."""

from __future__ import annotations

import hashlib
import secrets

NONCE_SIZE = 32
BINDING_RULE = "sha512(nonce || public_key)"


def new_nonce() -> bytes:
    """A fresh 32-byte challenge nonce from the operating system's CSPRNG."""
    return secrets.token_bytes(NONCE_SIZE)


def report_data_for(nonce: bytes, public_key: bytes) -> bytes:
    """The 64 bytes of report data that bind evidence to ``nonce`` and ``public_key``."""
    if not isinstance(nonce, bytes | bytearray | memoryview):
        raise TypeError("nonce must be bytes")
    if not isinstance(public_key, bytes | bytearray | memoryview):
        raise TypeError("public_key must be bytes")
    # The nonce has a fixed size so that nonce || public_key splits one way only.
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    if not public_key:
        raise ValueError("public_key must not be empty")
    return hashlib.sha512(bytes(nonce) + bytes(public_key)).digest()
