"""The provider's local upload step: seal a model directory into a signed artifact; check it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto.atomicfile import atomic_output
from crypto.datakey import DataKey
from crypto.errors import ManifestMismatchError, WrongKeyError
from crypto.hazmat.stream import DEFAULT_SEGMENT_SIZE
from crypto.identity import Identity, PublicIdentity
from crypto.manifest import (
    BlobCheck,
    Manifest,
    SignedManifest,
    VerifiedManifest,
    sign_manifest,
    verify_blob,
    verify_manifest,
    verify_payload,
)
from crypto.payload import PayloadReader, unpack_payload
from crypto.seal import SealResult, seal, unseal_to_memory
from fedtune.provider.errors import ArtifactError
from fedtune.provider.modeldir import ModelDir, scan_model_dir

BLOB_NAME = "model.sealed"
MANIFEST_NAME = "manifest.json"
IDENTITY_FILE = "identity.pem"

Progress = Callable[[int], None]


def identity_path(home: Path) -> Path:
    """Where a party's identity (Ed25519 private key) lives under its home."""
    return Path(home) / IDENTITY_FILE


def data_keys_dir(home: Path) -> Path:
    """Where the provider keeps the data keys of the models it sealed (mode 0700)."""
    return Path(home) / "provider" / "keys"


def data_key_path(home: Path, key_id: str) -> Path:
    """The file holding the data key with this id."""
    return data_keys_dir(home) / f"{key_id}.key"


def load_or_create_identity(home: Path) -> tuple[Identity, bool]:
    """Load the identity under ``home``, creating it (0600) on first use; say whether it is new."""
    path = identity_path(home)
    if path.exists():
        return Identity.load(path), False
    Path(home).mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate()
    identity.save(path)
    return identity, True


@dataclass(frozen=True)
class SealedArtifact:
    """What ``seal_model_dir`` wrote, and how long sealing took."""

    directory: Path
    blob_path: Path
    manifest_path: Path
    key_path: Path
    signed: SignedManifest
    result: SealResult
    model: ModelDir
    seconds: float


def seal_model_dir(
    model_dir: str | os.PathLike[str] | ModelDir,
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    identity: Identity,
    keys_dir: str | os.PathLike[str],
    version: str = "1",
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    overwrite: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> SealedArtifact:
    """Seal ``model_dir`` into ``out_dir`` (blob + signed manifest); store the data key 0600."""
    if not isinstance(identity, Identity):
        raise TypeError("identity must be a crypto.Identity")
    created_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    model = model_dir if isinstance(model_dir, ModelDir) else scan_model_dir(model_dir)
    out = Path(out_dir)
    if out.resolve().is_relative_to(model.root.resolve()):
        raise ArtifactError(str(out), "the output directory must not be inside the model directory")
    blob_path, manifest_path = out / BLOB_NAME, out / MANIFEST_NAME
    if not overwrite and (blob_path.exists() or manifest_path.exists()):
        raise ArtifactError(str(out), "already holds a sealed artifact; pass --force to replace it")
    key = DataKey.generate()
    key_path = Path(keys_dir) / f"{key.key_id}.key"
    written: list[Path] = []
    started = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with PayloadReader(model.files) as reader, atomic_output(blob_path) as dst:
            result = seal(
                reader,
                dst,
                key,
                size=reader.size,
                segment_size=segment_size,
                progress=progress,
            )
        written.append(blob_path)
        Path(keys_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        key.save(key_path)
        written.append(key_path)
        manifest = Manifest(
            model_name=name,
            model_version=version,
            created_at=created_at,
            provider=identity.fingerprint,
            provider_public_key=identity.public.raw,
            data_key_id=key.key_id,
            blob=BLOB_NAME,
            plaintext_size=result.plaintext_size,
            segment_size=result.segment_size,
            segment_count=result.segment_count,
            sealed_size=result.sealed_size,
            digest_algorithm=result.digest_algorithm,
            ciphertext_digest=result.ciphertext_digest,
            files=model.infos,
        )
        signed = sign_manifest(manifest, identity)
        # The manifest goes last: a manifest on disk always has its blob and its key.
        signed.save(manifest_path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return SealedArtifact(
        directory=out,
        blob_path=blob_path,
        manifest_path=manifest_path,
        key_path=key_path,
        signed=signed,
        result=result,
        model=model,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class ArtifactReport:
    """A sealed artifact whose manifest signature, consistency, and blob all checked out."""

    verified: VerifiedManifest
    blob: BlobCheck
    blob_path: Path
    manifest_path: Path
    seconds: float


def open_manifest(directory: str | os.PathLike[str]) -> tuple[SignedManifest, Path]:
    """Read an artifact's manifest and locate its blob."""
    root = Path(directory)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ArtifactError(str(root), f"no {MANIFEST_NAME} here; is this a sealed artifact?")
    signed = SignedManifest.load(manifest_path)
    blob_path = root / signed.manifest.blob
    if not blob_path.is_file():
        raise ArtifactError(str(root), f"the manifest names blob {signed.manifest.blob!r}, missing")
    return signed, blob_path


def verify_artifact(
    directory: str | os.PathLike[str],
    *,
    trusted: PublicIdentity | None = None,
    progress: Progress | None = None,
) -> ArtifactReport:
    """Check an artifact without its key: manifest signature and sums, blob header, size, digest."""
    started = time.perf_counter()
    signed, blob_path = open_manifest(directory)
    verified = verify_manifest(signed, trusted=trusted)
    manifest = verified.manifest
    on_disk = blob_path.stat().st_size
    if on_disk != manifest.sealed_size:
        # Known before reading a byte; the full check below would say the same, later.
        how = "truncated" if on_disk < manifest.sealed_size else "has extra bytes"
        raise ManifestMismatchError(
            "sealed_size", expected=manifest.sealed_size, got=f"{on_disk} (the blob {how})"
        )
    with open(blob_path, "rb") as src:
        blob = verify_blob(manifest, src, progress=progress)
    return ArtifactReport(
        verified=verified,
        blob=blob,
        blob_path=blob_path,
        manifest_path=Path(directory) / MANIFEST_NAME,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class UnsealedModel:
    """A model unsealed into memory: the archive buffer and a view of each file in it."""

    manifest: Manifest
    buffer: memoryview
    files: dict[str, memoryview]
    seconds: float


def unseal_artifact(
    directory: str | os.PathLike[str],
    key: DataKey,
    *,
    trusted: PublicIdentity | None = None,
    progress: Progress | None = None,
) -> UnsealedModel:
    """Check the manifest, unseal the blob into memory, and check the files against the manifest."""
    started = time.perf_counter()
    signed, blob_path = open_manifest(directory)
    manifest = verify_manifest(signed, trusted=trusted).manifest
    if manifest.data_key_id != key.key_id:
        raise WrongKeyError(manifest.data_key_id, key.key_id)
    with open(blob_path, "rb") as src:
        buffer = unseal_to_memory(src, key, progress=progress)
    files = unpack_payload(buffer)
    verify_payload(manifest, files)
    return UnsealedModel(
        manifest=manifest, buffer=buffer, files=files, seconds=time.perf_counter() - started
    )
