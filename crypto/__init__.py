"""fedtune's cryptographic recipes; sharp tools live in ``crypto.hazmat``."""

from crypto.canonical import CanonicalModel, canonical_json
from crypto.errors import CryptoError, KeyFileError, SignatureError
from crypto.identity import Identity, PublicIdentity

__all__ = [
    "CanonicalModel",
    "CryptoError",
    "Identity",
    "KeyFileError",
    "PublicIdentity",
    "SignatureError",
    "canonical_json",
]
