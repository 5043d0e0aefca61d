"""Provider-signed manifests as the registry receives them: verify, parse, check a blob header."""

from __future__ import annotations

import io

from crypto.errors import SealedStreamError
from crypto.hazmat.stream import HEADER_SIZE
from crypto.identity import PublicIdentity
from crypto.manifest import SIGNING_CONTEXT, Manifest, SignedManifest, verify_manifest
from crypto.seal import read_header
from fedtune.orchestrator.documents import parse_canonical
from fedtune.orchestrator.errors import BlobDigestMismatch, InvalidRequest

__all__ = ["HEADER_SIZE", "SIGNING_CONTEXT", "check_blob_header", "verify_uploaded_manifest"]


def verify_uploaded_manifest(
    canonical: bytes, signature: bytes, uploader: PublicIdentity
) -> Manifest:
    """The manifest, if ``uploader`` signed exactly these canonical bytes and it is consistent."""
    manifest = parse_canonical(Manifest, canonical, field="manifest")
    if manifest.provider != uploader.fingerprint:
        raise InvalidRequest(
            "manifest.provider",
            f"the manifest names provider {manifest.provider}, but you are {uploader.fingerprint}",
        )
    # Checks the signature under the caller's enrolled key and the manifest's derived sums.
    verify_manifest(SignedManifest(manifest=manifest, signature=signature), trusted=uploader)
    return manifest


def check_blob_header(manifest: Manifest, header: bytes) -> None:
    """The blob starts with a sealed-stream header agreeing with the manifest (it is ciphertext)."""
    try:
        parsed = read_header(io.BytesIO(header))
    except SealedStreamError as exc:
        # Not a sealed stream at all: the registry stores ciphertext only.
        raise BlobDigestMismatch("header", "a fedtune sealed-stream header", str(exc)) from None
    for field, expected, got in (
        ("data_key_id", manifest.data_key_id, parsed.key_id.hex()),
        ("sealed_format_version", manifest.sealed_format_version, parsed.version),
        ("segment_size", manifest.segment_size, parsed.segment_size),
        ("plaintext_size", manifest.plaintext_size, parsed.plaintext_size),
    ):
        if expected != got:
            raise BlobDigestMismatch(f"header {field}", str(expected), str(got))
