"""The crypto package's exception hierarchy: one base, a subclass per actionable failure."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error the crypto package raises."""


class KeyFileError(CryptoError):
    """A key file is missing, malformed, or readable by others than its owner."""


class SignatureError(CryptoError):
    """A signature does not verify under the key it claims, in the context it was checked for."""
