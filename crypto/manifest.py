"""Sealed-model manifests: the signed description of a sealed blob, and its verification."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

from pydantic import AfterValidator, Field, ValidationError

from crypto.atomicfile import atomic_write_bytes
from crypto.canonical import CanonicalModel
from crypto.digest import DIGEST_ALGORITHM, BulkDigest
from crypto.errors import (
    ManifestFormatError,
    ManifestMismatchError,
    ManifestSignatureError,
    PayloadError,
    SignatureError,
)
from crypto.hazmat.stream import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    sealed_size,
    segment_count,
)
from crypto.identity import Identity, PublicIdentity
from crypto.payload import PAYLOAD_FORMAT, check_member_name, payload_size
from crypto.seal import read_header

MANIFEST_KIND = "fedtune/sealed-model-manifest"
# Version 2: the whole-blob digest is BLAKE3, named in ``digest_algorithm`` (v1: SHA-256).
MANIFEST_VERSION = 2
SIGNING_CONTEXT = "manifest"
SAFETENSORS_SUFFIX = ".safetensors"

_HEX64 = r"^[0-9a-f]{64}$"
_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# Safetensors headers are JSON; the format caps them at 100 MB, we at something sane.
_MAX_SAFETENSORS_HEADER = 100_000_000


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("created_at must carry a time zone (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00+01:00: pydantic reports only ValueError as a validation error.
        raise ValueError("created_at lies outside the years 1-9999 once converted to UTC") from None


def _member(value: str) -> str:
    try:
        return check_member_name(value)
    except PayloadError as exc:
        raise ValueError(exc.reason) from None


def _refuse_old_version(data: bytes | str) -> None:
    """Name a version-1 manifest as such instead of listing every schema difference."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return  # the schema check reports it
    inner = doc.get("manifest") if isinstance(doc, dict) else None
    version = inner.get("manifest_version") if isinstance(inner, dict) else None
    if version == 1:
        raise ManifestFormatError(
            "manifest_version 1 (whole-blob SHA-256) is no longer read; this fedtune reads "
            f"version {MANIFEST_VERSION} (BLAKE3): re-seal the model with `fedtune provider seal`"
        )


class TensorInfo(CanonicalModel):
    """One tensor of a safetensors file, as its header describes it (no tensor data)."""

    name: str = Field(min_length=1)
    dtype: str = Field(min_length=1, max_length=16)
    shape: tuple[Annotated[int, Field(ge=0)], ...]
    data_offsets: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


class FileInfo(CanonicalModel):
    """One file of the sealed model directory: its relative path, size, and tensor index."""

    path: Annotated[str, AfterValidator(_member)]
    size: int = Field(ge=0)
    tensors: tuple[TensorInfo, ...] | None = None


class Manifest(CanonicalModel):
    """What a provider states about a sealed model; signed, it binds the blob to the provider."""

    kind: Literal["fedtune/sealed-model-manifest"] = MANIFEST_KIND
    manifest_version: Literal[2] = MANIFEST_VERSION
    model_name: str = Field(pattern=rf"^{_NAME_PART}(/{_NAME_PART})?$", max_length=200)
    model_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=64)
    created_at: Annotated[datetime, AfterValidator(_utc)]
    provider: str = Field(pattern=r"^ed25519:[0-9a-f]{64}$")
    provider_public_key: bytes = Field(min_length=32, max_length=32)
    data_key_id: str = Field(pattern=_HEX64)
    sealed_format_version: int = FORMAT_VERSION
    blob: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=200)
    payload_format: Literal["tar"] = PAYLOAD_FORMAT
    plaintext_size: int = Field(ge=0)
    segment_size: int = Field(ge=MIN_SEGMENT_SIZE, le=MAX_SEGMENT_SIZE)
    segment_count: int = Field(ge=1)
    sealed_size: int = Field(ge=HEADER_SIZE)
    digest_algorithm: Literal["blake3"] = DIGEST_ALGORITHM
    ciphertext_digest: str = Field(pattern=_HEX64)
    files: tuple[FileInfo, ...]

    @property
    def provider_identity(self) -> PublicIdentity:
        """The provider key embedded in the manifest (not yet trusted by itself)."""
        return PublicIdentity.from_bytes(self.provider_public_key)


class SignedManifest(CanonicalModel):
    """A manifest and the provider's Ed25519 signature over its canonical bytes."""

    manifest: Manifest
    signature: bytes = Field(min_length=64, max_length=64)

    def to_json(self) -> bytes:
        """Human-readable JSON for ``manifest.json`` (the signature covers canonical bytes)."""
        return self.model_dump_json(indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedManifest:
        """Parse ``manifest.json``; raise ManifestFormatError naming what is wrong."""
        _refuse_old_version(data)
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise ManifestFormatError(problems) from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``manifest.json`` atomically."""
        atomic_write_bytes(path, self.to_json(), mode=0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SignedManifest:
        """Read and parse a manifest file."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ManifestFormatError(f"{path} does not exist") from None
        return cls.from_json(data)


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose signature and internal consistency were checked."""

    manifest: Manifest
    signer: PublicIdentity
    pinned: bool
    """True when the signer was the trusted key the caller passed; False when the manifest's
    own embedded key was used (which proves integrity, not who the provider is)."""


@dataclass(frozen=True)
class BlobCheck:
    """What ``verify_blob`` read: the blob's size and digest, both equal to the manifest's."""

    sealed_size: int
    digest_algorithm: str
    ciphertext_digest: str


def sign_manifest(manifest: Manifest, identity: Identity) -> SignedManifest:
    """Sign ``manifest`` with the provider identity it names."""
    if not isinstance(manifest, Manifest):
        raise TypeError("manifest must be a Manifest")
    if not isinstance(identity, Identity):
        raise TypeError("identity must be an Identity")
    if manifest.provider_public_key != identity.public.raw:
        raise ValueError("manifest.provider_public_key is not this identity's public key")
    signature = identity.sign(manifest.canonical_bytes(), context=SIGNING_CONTEXT)
    return SignedManifest(manifest=manifest, signature=signature)


def _mismatch(field: str, expected: object, got: object) -> None:
    if expected != got:
        raise ManifestMismatchError(field, expected=expected, got=got)


def _check_consistency(m: Manifest) -> None:
    """Fields that follow from other fields must agree (checked after the signature)."""
    _mismatch("provider", m.provider_identity.fingerprint, m.provider)
    _mismatch("sealed_format_version", FORMAT_VERSION, m.sealed_format_version)
    _mismatch("plaintext_size", payload_size([(f.path, f.size) for f in m.files]), m.plaintext_size)
    _mismatch("segment_count", segment_count(m.plaintext_size, m.segment_size), m.segment_count)
    _mismatch("sealed_size", sealed_size(m.plaintext_size, m.segment_size), m.sealed_size)
    paths = [f.path for f in m.files]
    _mismatch("files", sorted(set(paths), key=lambda p: p.encode("utf-8")), paths)


def verify_manifest(
    signed: SignedManifest, *, trusted: PublicIdentity | None = None
) -> VerifiedManifest:
    """Check the signature (against ``trusted``, else the embedded key) and the manifest's sums."""
    if not isinstance(signed, SignedManifest):
        raise TypeError("signed must be a SignedManifest")
    if trusted is not None and not isinstance(trusted, PublicIdentity):
        raise TypeError("trusted must be a PublicIdentity or None")
    manifest = signed.manifest
    embedded = manifest.provider_identity
    if trusted is not None and embedded != trusted:
        raise ManifestMismatchError(
            "provider_public_key", expected=trusted.fingerprint, got=embedded.fingerprint
        )
    signer = trusted if trusted is not None else embedded
    try:
        signer.verify(signed.signature, manifest.canonical_bytes(), context=SIGNING_CONTEXT)
    except SignatureError:
        raise ManifestSignatureError(signer.fingerprint, pinned=trusted is not None) from None
    _check_consistency(manifest)
    return VerifiedManifest(manifest=manifest, signer=signer, pinned=trusted is not None)


def verify_blob(
    manifest: Manifest,
    src: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 1 << 20,
) -> BlobCheck:
    """Check a sealed blob against the manifest without the key: header fields, size, digest."""
    if not isinstance(manifest, Manifest):
        raise TypeError("manifest must be a Manifest")
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    hasher = BulkDigest(algorithm=manifest.digest_algorithm)

    class _Tee:
        """Hash the header bytes as ``read_header`` consumes them."""

        def read(self, n: int) -> bytes:
            data = src.read(n)
            hasher.update(data)
            return data

    header = read_header(_Tee())  # type: ignore[arg-type]
    _mismatch("data_key_id", manifest.data_key_id, header.key_id.hex())
    _mismatch("sealed_format_version", manifest.sealed_format_version, header.version)
    _mismatch("segment_size", manifest.segment_size, header.segment_size)
    _mismatch("plaintext_size", manifest.plaintext_size, header.plaintext_size)
    _mismatch("segment_count", manifest.segment_count, header.segment_count)
    total = HEADER_SIZE
    buf = memoryview(bytearray(chunk_size))
    readinto = getattr(src, "readinto", None)
    while True:
        if readinto is not None:
            got = readinto(buf)
        else:
            data = src.read(chunk_size)
            got = len(data)
            buf[:got] = data
        if not got:
            break
        hasher.update(buf[:got])
        total += got
        if progress is not None:
            progress(got)
    if total != manifest.sealed_size:
        how = "truncated" if total < manifest.sealed_size else "has extra bytes"
        raise ManifestMismatchError(
            "sealed_size", expected=manifest.sealed_size, got=f"{total} (the blob {how})"
        )
    digest = hasher.hexdigest()
    _mismatch("ciphertext_digest", manifest.ciphertext_digest, digest)
    return BlobCheck(
        sealed_size=total, digest_algorithm=manifest.digest_algorithm, ciphertext_digest=digest
    )


def safetensors_index(header: bytes) -> tuple[TensorInfo, ...]:
    """Parse a safetensors file's leading bytes (u64 length + JSON header) into a tensor index."""
    if len(header) < 8:
        raise ManifestFormatError("safetensors file shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", header[:8])
    if length > _MAX_SAFETENSORS_HEADER or len(header) < 8 + length:
        raise ManifestFormatError(f"safetensors header length {length} is out of range")
    try:
        table = json.loads(bytes(header[8 : 8 + length]))
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers past Python's digit limit;
        # RecursionError, nesting deeper than the decoder's stack.
        raise ManifestFormatError(f"safetensors header is not JSON ({exc})") from None
    if not isinstance(table, dict):
        raise ManifestFormatError("safetensors header is not a JSON object")
    tensors = []
    for name in sorted(table):
        if name == "__metadata__":
            continue
        entry = table[name]
        try:
            tensors.append(
                TensorInfo(
                    name=name,
                    dtype=entry["dtype"],
                    shape=tuple(entry["shape"]),
                    data_offsets=tuple(entry["data_offsets"]),
                )
            )
        except (KeyError, TypeError, ValidationError) as exc:
            raise ManifestFormatError(f"safetensors entry {name!r} is malformed ({exc})") from None
    return tuple(tensors)


def safetensors_header_length(prefix: bytes) -> int:
    """Bytes to read from the start of a safetensors file to cover its whole header."""
    if len(prefix) < 8:
        raise ManifestFormatError("safetensors file shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > _MAX_SAFETENSORS_HEADER:
        raise ManifestFormatError(f"safetensors header length {length} is out of range")
    return 8 + length


def verify_payload(manifest: Manifest, files: Mapping[str, bytes | memoryview]) -> None:
    """Check unpacked payload files against the manifest: names, sizes, tensor indexes."""
    if not isinstance(manifest, Manifest):
        raise TypeError("manifest must be a Manifest")
    expected = {f.path: f for f in manifest.files}
    _mismatch("files", sorted(expected), sorted(files))
    for path, data in files.items():
        info = expected[path]
        _mismatch(f"files[{path}].size", info.size, len(data))
        if info.tensors is not None:
            head = bytes(data[: safetensors_header_length(bytes(data[:8]))])
            _mismatch(f"files[{path}].tensors", info.tensors, safetensors_index(head))
