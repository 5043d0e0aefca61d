"""LoadModel's work: verify the signed manifest, unseal the streamed blob into memory, check it.

Order of checks, each with its own error:

1. the manifest parses (``ManifestFormatError``) and is signed by the provider the owner
   trusts (``UntrustedManifest`` when someone else signed it, ``ManifestSignatureError`` when
   the signature does not verify: the manifest was altered);
2. it names the model the installed key was released for (``KeyMismatch``) and that key
   (``crypto.errors.WrongKeyError``);
3. the blob streams through ``crypto.seal.unseal_to_memory``: every segment authenticates at
   its position (``SegmentAuthError`` ... ``TruncatedError``), and the ciphertext's size and
   BLAKE3 digest equal the manifest's (``ManifestMismatchError``);
4. the unsealed archive holds exactly the files and tensors the manifest lists.

Plaintext exists only in one in-memory buffer; on any failure it is zeroed before the error leaves,
so a failed load leaves nothing behind and LoadModel can be retried.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from crypto.digest import BulkDigest
from crypto.errors import ManifestMismatchError, WrongKeyError
from crypto.identity import PublicIdentity
from crypto.manifest import Manifest, SignedManifest, verify_manifest, verify_payload
from crypto.payload import unpack_payload
from crypto.seal import unseal_to_memory
from enclave.sandbox.errors import KeyMismatch, ModelStreamError, UntrustedManifest
from enclave.sandbox.keys import InstalledKey

MAX_MANIFEST_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ModelSummary:
    """What LoadModel tells the outside about the model: counts and names, never weights."""

    model_name: str
    model_version: str
    model_type: str
    architecture: str
    parameter_count: int
    tensor_count: int
    sealed_size: int
    provider_fingerprint: str
    data_key_id: str
    files: tuple[str, ...]

    @property
    def model_id(self) -> str:
        """``name@version``, the id keys are released for."""
        return f"{self.model_name}@{self.model_version}"


class UnsealedModel:
    """The model directory in memory: views into one plaintext buffer, wiped on ``wipe()``."""

    def __init__(self, manifest: Manifest, buffer: memoryview, files: dict[str, memoryview],
                 summary: ModelSummary) -> None:
        self.manifest = manifest
        self.summary = summary
        self._buffer = buffer
        self._files = files
        self._wiped = False

    @property
    def files(self) -> dict[str, memoryview]:
        """``{relative path: read-only view}`` of the model directory."""
        if self._wiped:
            raise ValueError("the model files were wiped")
        return self._files

    def wipe(self) -> None:
        """Zero the plaintext buffer and drop every view into it."""
        if self._wiped:
            return
        for view in self._files.values():
            view.release()
        self._files = {}
        _zero(self._buffer)
        self._wiped = True

    def __repr__(self) -> str:
        return f"UnsealedModel({self.summary.model_id!r}, {len(self._files)} files)"


def _zero(buffer: memoryview) -> None:
    view = memoryview(buffer)
    step = 1 << 20
    zeros = bytes(min(step, len(buffer)))
    for start in range(0, len(buffer), step):
        chunk = view[start : start + step]
        chunk[:] = zeros[: len(chunk)]
    view.release()


class _ChunkReader(io.RawIOBase):
    """A readable stream over the LoadModel chunks that hashes and counts what it hands out."""

    def __init__(self, chunks: Iterator[bytes], algorithm: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._current = memoryview(b"")
        self.hasher = BulkDigest(algorithm=algorithm)
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        out = memoryview(b).cast("B")
        filled = 0
        while filled < len(out):
            if not self._current:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._current = memoryview(chunk)
                continue
            n = min(len(out) - filled, len(self._current))
            piece = self._current[:n]
            out[filled : filled + n] = piece
            self.hasher.update(piece)
            self._current = self._current[n:]
            filled += n
        self.total += filled
        return filled


def parse_manifest(data: bytes) -> SignedManifest:
    """Parse manifest.json bytes (ManifestFormatError when malformed)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("the manifest must be bytes")
    if not data:
        raise ModelStreamError("the header carries no signed manifest")
    if len(data) > MAX_MANIFEST_SIZE:
        raise ModelStreamError(f"the signed manifest is larger than {MAX_MANIFEST_SIZE} bytes")
    return SignedManifest.from_json(bytes(data))


def check_manifest(
    signed: SignedManifest, trusted: PublicIdentity | str, key: InstalledKey
) -> Manifest:
    """Steps 1 and 2 of the module doc: the signer, the signature, the model and the key."""
    if isinstance(trusted, PublicIdentity):
        trusted_fingerprint = trusted.fingerprint
    elif isinstance(trusted, str):
        trusted_fingerprint = trusted
    else:
        raise TypeError("trusted must be a PublicIdentity or a fingerprint string")
    embedded = signed.manifest.provider_identity
    if embedded.fingerprint != trusted_fingerprint:
        raise UntrustedManifest(trusted=trusted_fingerprint, signer=embedded.fingerprint)
    # The embedded key is the trusted one (same fingerprint), so pin it for the signature.
    manifest = verify_manifest(signed, trusted=embedded).manifest
    model_id = f"{manifest.model_name}@{manifest.model_version}"
    if model_id != key.model_id:
        raise KeyMismatch("model_id", expected=key.model_id, got=model_id)
    if manifest.data_key_id != key.key.key_id:
        raise WrongKeyError(manifest.data_key_id, key.key.key_id)
    return manifest


def unseal_model(manifest: Manifest, chunks: Iterator[bytes], key: InstalledKey) -> UnsealedModel:
    """Steps 3 and 4: unseal the streamed blob into memory and check it against ``manifest``."""
    reader = _ChunkReader(chunks, manifest.digest_algorithm)
    buffer = unseal_to_memory(reader, key.key)
    try:
        if reader.total != manifest.sealed_size:
            raise ManifestMismatchError(
                "sealed_size", expected=manifest.sealed_size, got=reader.total
            )
        digest = reader.hasher.hexdigest()
        if digest != manifest.ciphertext_digest:
            raise ManifestMismatchError(
                "ciphertext_digest", expected=manifest.ciphertext_digest, got=digest
            )
        files = unpack_payload(buffer)
        try:
            verify_payload(manifest, files)
            summary = _summary(manifest, files)
        except BaseException:
            for view in files.values():
                view.release()
            raise
    except BaseException:
        _zero(buffer)
        raise
    return UnsealedModel(manifest, buffer, files, summary)


def _summary(manifest: Manifest, files: dict[str, memoryview]) -> ModelSummary:
    tensors = [t for f in manifest.files if f.tensors is not None for t in f.tensors]
    model_type, architecture = "", ""
    config = files.get("config.json")
    if config is not None:
        try:
            document = json.loads(bytes(config))
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = {}
        if isinstance(document, dict):
            value = document.get("model_type")
            model_type = value if isinstance(value, str) else ""
            archs = document.get("architectures")
            if isinstance(archs, list) and archs and isinstance(archs[0], str):
                architecture = archs[0]
    return ModelSummary(
        model_name=manifest.model_name,
        model_version=manifest.model_version,
        model_type=model_type,
        architecture=architecture,
        parameter_count=sum(math.prod(t.shape) for t in tensors),
        tensor_count=len(tensors),
        sealed_size=manifest.sealed_size,
        provider_fingerprint=manifest.provider,
        data_key_id=manifest.data_key_id,
        files=tuple(f.path for f in manifest.files),
    )
