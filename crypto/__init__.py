"""fedtune's cryptographic recipes; sharp tools live in ``crypto.hazmat``."""

from crypto.canonical import CanonicalModel, canonical_json
from crypto.datakey import DataKey
from crypto.errors import (
    CryptoError,
    KeyFileError,
    KeyWrapError,
    ManifestError,
    SealedStreamError,
    SignatureError,
)
from crypto.hpke import Kem, RecipientPrivateKey, RecipientPublicKey, unwrap_key, wrap_key
from crypto.identity import Identity, PublicIdentity
from crypto.manifest import (
    FileInfo,
    Manifest,
    SignedManifest,
    TensorInfo,
    VerifiedManifest,
    sign_manifest,
    verify_blob,
    verify_manifest,
    verify_payload,
)
from crypto.payload import PayloadFile, PayloadReader, unpack_payload
from crypto.seal import (
    SealResult,
    UnsealResult,
    read_header,
    seal,
    seal_file,
    unseal,
    unseal_file,
    unseal_to_memory,
)

__all__ = [
    "CanonicalModel",
    "CryptoError",
    "DataKey",
    "FileInfo",
    "Identity",
    "Kem",
    "KeyFileError",
    "KeyWrapError",
    "Manifest",
    "ManifestError",
    "PayloadFile",
    "PayloadReader",
    "PublicIdentity",
    "RecipientPrivateKey",
    "RecipientPublicKey",
    "SealResult",
    "SealedStreamError",
    "SignatureError",
    "SignedManifest",
    "TensorInfo",
    "UnsealResult",
    "VerifiedManifest",
    "canonical_json",
    "read_header",
    "seal",
    "seal_file",
    "sign_manifest",
    "unpack_payload",
    "unseal",
    "unseal_file",
    "unseal_to_memory",
    "unwrap_key",
    "verify_blob",
    "verify_manifest",
    "verify_payload",
    "wrap_key",
]
