"""The model registry: resumable chunked upload of sealed blobs, versions, entitled download."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from crypto.digest import DIGEST_SIZE, BulkDigest, digest_bytes
from crypto.identity import PublicIdentity
from crypto.manifest import Manifest
from fedtune.orchestrator import audit_hook
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Principal
from fedtune.orchestrator.documents import parse_canonical
from fedtune.orchestrator.errors import (
    AlreadyExists,
    BlobDigestMismatch,
    ChunkDigestMismatch,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UploadIncomplete,
)
from fedtune.orchestrator.manifests import HEADER_SIZE, check_blob_header, verify_uploaded_manifest
from fedtune.orchestrator.relations import require_download_entitlement
from fedtune.orchestrator.store.blobs import BlobStore
from fedtune.orchestrator.store.records import ModelRecord, ModelVersionRecord, Upload
from fedtune.orchestrator.store.repository import Repository

MIN_CHUNK_SIZE = 64 << 10
MAX_CHUNK_SIZE = 8 << 20
DEFAULT_CHUNK_SIZE = 4 << 20
# Received chunks are made durable (fdatasync + one recorded transaction) at least this often.
SYNC_EVERY_BYTES = 16 << 20
DOWNLOAD_BLOCK = 1 << 20

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IncomingChunk:
    """One chunk as a client sent it."""

    upload_id: str
    index: int
    data: bytes
    digest: bytes


@dataclass(frozen=True)
class UploadProgress:
    """An upload and which of its chunks are still missing (as half-open index ranges)."""

    upload: Upload
    missing: list[tuple[int, int]]
    stored_bytes: int
    complete: bool

    @property
    def first_missing(self) -> int:
        """The first chunk to send, or ``chunk_count`` when none is missing."""
        return self.missing[0][0] if self.missing else self.upload.chunk_count


@dataclass
class _LiveUpload:
    """What this process knows about an upload in progress, beyond the repository."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stored: set[int] = field(default_factory=set)
    written: set[int] = field(default_factory=set)
    # Digest of chunks 0..next_index-1 while they arrive in order; None once they don't
    # (then completion re-reads the blob). Updated on its own thread, in submission order,
    # so the whole-blob hash overlaps with receiving and checking the next chunk.
    hasher: BulkDigest | None = None
    next_index: int = 0
    hashing: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="blob-digest")
    )

    def blob_digest(self, chunk_count: int) -> str | None:
        """The running digest once every chunk went through it in order, else None."""
        self.hashing.submit(lambda: None).result()  # wait for queued updates
        if self.hasher is None or self.next_index != chunk_count:
            return None
        return self.hasher.hexdigest()

    def close(self) -> None:
        """Stop the hashing thread."""
        self.hashing.shutdown(wait=True)


def _missing_ranges(count: int, stored: set[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(count):
        if i in stored:
            if start is not None:
                ranges.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        ranges.append((start, count))
    return ranges


class RegistryService:
    """Upload, list, describe and download sealed models; the registry holds only ciphertext."""

    def __init__(
        self,
        repository: Repository,
        blobs: BlobStore,
        audit: AuditHook,
        *,
        default_chunk_size: int = DEFAULT_CHUNK_SIZE,
        sync_every_bytes: int = SYNC_EVERY_BYTES,
        clock: Clock = _utcnow,
    ) -> None:
        if not MIN_CHUNK_SIZE <= default_chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"default_chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
        if sync_every_bytes < 1:
            raise ValueError("sync_every_bytes must be positive")
        self._repository = repository
        self._blobs = blobs
        self._audit = audit
        self._default_chunk_size = default_chunk_size
        self._sync_every = sync_every_bytes
        self._clock = clock
        self._live: dict[str, _LiveUpload] = {}
        self._live_lock = threading.Lock()

    # -- upload ------------------------------------------------------------------------------

    def _identity(self, actor: Principal) -> PublicIdentity:
        party = self._repository.get_party(actor.fingerprint)
        if party is None:
            raise PermissionDenied("BeginUpload", "registry", "your identity is not enrolled here")
        return PublicIdentity.from_bytes(party.public_key)

    def begin_upload(
        self, actor: Principal, canonical: bytes, signature: bytes, *, chunk_size: int = 0
    ) -> UploadProgress:
        """Start the upload a signed manifest describes, or return the one already started."""
        manifest = verify_uploaded_manifest(canonical, signature, self._identity(actor))
        chunk_size = chunk_size or self._default_chunk_size
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise InvalidRequest(
                "chunk_size", f"must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes"
            )
        total = manifest.sealed_size
        upload = Upload(
            upload_id=uuid.uuid4().hex,
            model_name=manifest.model_name,
            model_version=manifest.model_version,
            owner=actor.fingerprint,
            manifest=canonical,
            manifest_signature=signature,
            manifest_sha256=hashlib.sha256(canonical).digest(),
            ciphertext_digest=bytes.fromhex(manifest.ciphertext_digest),
            digest_algorithm=manifest.digest_algorithm,
            total_size=total,
            chunk_size=chunk_size,
            chunk_count=max(1, -(-total // chunk_size)),
            created_at=self._clock(),
        )
        try:
            stored = self._repository.begin_upload(upload)
        except AlreadyExists as exc:
            if exc.kind != "model":
                raise
            # "the name belongs to another provider" is a relation refusal, said as such.
            raise PermissionDenied(
                "BeginUpload",
                f"model {manifest.model_name}",
                "the model name belongs to another provider; only its owner uploads versions",
            ) from None
        if stored.upload_id == upload.upload_id:
            self._audit.record(
                audit_hook.event(
                    "model.upload.begin",
                    actor,
                    "BeginUpload",
                    f"model {manifest.model_name}@{manifest.model_version}",
                    model=f"{manifest.model_name}@{manifest.model_version}",
                    details={
                        "upload_id": stored.upload_id,
                        "size": str(total),
                        "ciphertext_digest": manifest.ciphertext_digest,
                        "digest_algorithm": manifest.digest_algorithm,
                    },
                )
            )
        if stored.completed_at is None:
            self._blobs.prepare_upload(stored.upload_id, stored.total_size)
        return self.progress(stored)

    def progress(self, upload: Upload) -> UploadProgress:
        """Which chunks of ``upload`` are stored and which are missing."""
        if upload.completed_at is not None:
            return UploadProgress(upload, [], upload.total_size, True)
        stored = self._repository.stored_chunks(upload.upload_id)
        stored_bytes = sum(upload.chunk_length(i) for i in stored)
        return UploadProgress(
            upload, _missing_ranges(upload.chunk_count, stored), stored_bytes, False
        )

    def _owned_upload(self, actor: Principal, upload_id: str, method: str) -> Upload:
        upload = self._repository.get_upload(upload_id)
        if upload is None:
            raise NotFound("upload", upload_id)
        if upload.owner != actor.fingerprint:
            raise PermissionDenied(method, f"upload {upload_id}", "it belongs to another provider")
        return upload

    def _live_state(self, upload: Upload) -> _LiveUpload:
        with self._live_lock:
            state = self._live.get(upload.upload_id)
            if state is None:
                stored = self._repository.stored_chunks(upload.upload_id)
                state = _LiveUpload(stored=set(stored), written=set(stored))
                if not stored:
                    state.hasher = BulkDigest(algorithm=upload.digest_algorithm)
                self._live[upload.upload_id] = state
            return state

    def upload_chunks(self, actor: Principal, chunks: Iterable[IncomingChunk]) -> UploadProgress:
        """Store each new chunk whose digest matches; skip stored ones; refuse a wrong digest."""
        upload: Upload | None = None
        state: _LiveUpload | None = None
        pending: list[tuple[int, bytes, int]] = []
        pending_bytes = 0
        received = 0
        try:
            for chunk in chunks:
                if upload is None:
                    upload = self._owned_upload(actor, chunk.upload_id, "UploadChunks")
                    if upload.completed_at is not None:
                        raise InvalidRequest("upload_id", "the upload is already complete")
                    state = self._live_state(upload)
                elif chunk.upload_id != upload.upload_id:
                    raise InvalidRequest("upload_id", "one stream carries chunks of one upload")
                assert state is not None
                self._check_shape(upload, chunk)
                if self._store_chunk(upload, state, chunk):
                    pending.append((chunk.index, chunk.digest, len(chunk.data)))
                    pending_bytes += len(chunk.data)
                    received += len(chunk.data)
                if pending_bytes >= self._sync_every:
                    self._flush(upload, state, pending)
                    pending, pending_bytes = [], 0
        finally:
            # Chunks verified and written before an error or a dropped client stay stored.
            if upload is not None and state is not None and pending:
                self._flush(upload, state, pending)
        if upload is None:
            raise InvalidRequest("chunks", "the stream carried no chunk")
        return self.progress(upload)

    @staticmethod
    def _check_shape(upload: Upload, chunk: IncomingChunk) -> None:
        if not 0 <= chunk.index < upload.chunk_count:
            raise InvalidRequest(
                "index", f"chunk {chunk.index} is out of range [0, {upload.chunk_count})"
            )
        want = upload.chunk_length(chunk.index)
        if len(chunk.data) != want:
            raise InvalidRequest(
                "data", f"chunk {chunk.index} must be {want} bytes, got {len(chunk.data)}"
            )
        if len(chunk.digest) != DIGEST_SIZE:
            raise InvalidRequest(
                "digest",
                f"chunk {chunk.index}: a {upload.digest_algorithm} digest is {DIGEST_SIZE} bytes",
            )

    def _store_chunk(self, upload: Upload, state: _LiveUpload, chunk: IncomingChunk) -> bool:
        digest = digest_bytes(chunk.data, algorithm=upload.digest_algorithm)
        if not hmac.compare_digest(digest, chunk.digest):
            raise ChunkDigestMismatch(chunk.index, chunk.digest.hex(), digest.hex())
        with state.lock:
            if chunk.index in state.written:
                return False  # re-sent chunk: a no-op
            self._blobs.write_chunk(upload.upload_id, chunk.index * upload.chunk_size, chunk.data)
            state.written.add(chunk.index)
            if state.hasher is not None:
                if chunk.index == state.next_index:
                    state.hashing.submit(state.hasher.update, chunk.data)
                    state.next_index += 1
                else:
                    state.hasher = None
        return True

    def _flush(
        self, upload: Upload, state: _LiveUpload, pending: list[tuple[int, bytes, int]]
    ) -> None:
        try:
            self._blobs.sync_upload(upload.upload_id)
            self._repository.record_chunks(upload.upload_id, pending)
        except BaseException:
            # Not recorded, so not stored: a re-sent copy must be written and recorded again.
            with state.lock:
                state.written.difference_update(i for i, _, _ in pending)
                state.hasher = None
            raise
        with state.lock:
            state.stored.update(i for i, _, _ in pending)

    def complete_upload(self, actor: Principal, upload_id: str) -> ModelVersionRecord:
        """Check the assembled blob against the signed manifest and register the version."""
        upload = self._owned_upload(actor, upload_id, "CompleteUpload")
        if upload.completed_at is not None:
            self._blobs.discard_upload(upload_id)
            version = self._repository.get_version(upload.model_name, upload.model_version)
            if version is None:
                raise NotFound("model version", f"{upload.model_name}@{upload.model_version}")
            return version
        progress = self.progress(upload)
        if progress.missing:
            missing = sum(end - start for start, end in progress.missing)
            raise UploadIncomplete(upload_id, progress.first_missing, missing)
        manifest = parse_canonical(Manifest, upload.manifest, field="stored manifest")
        key = upload.ciphertext_digest.hex()
        with self._live_lock:
            state = self._live.get(upload_id)
        try:
            if self._blobs.has_blob(key):
                # A crash after the rename and before the registration: the blob is the upload.
                self._check_bytes(
                    manifest, self._blobs.read_blob(key, 0, upload.total_size, block=4 << 20)
                )
            else:
                head = b"".join(
                    _take(self._blobs.read_upload(upload_id, block=HEADER_SIZE), HEADER_SIZE)
                )
                check_blob_header(manifest, head)
                digest = state.blob_digest(upload.chunk_count) if state is not None else None
                if digest is None:
                    digest = self._digest(manifest, self._blobs.read_upload(upload_id))
                if digest != manifest.ciphertext_digest:
                    raise BlobDigestMismatch(
                        manifest.digest_algorithm.upper(), manifest.ciphertext_digest, digest
                    )
                self._blobs.finalize_upload(upload_id, key)
        except BlobDigestMismatch as exc:
            # Every chunk matched its own digest, yet the whole does not match the manifest:
            # start over rather than keep bytes that can never complete.
            self._repository.reset_upload(upload_id)
            with self._live_lock:
                stale = self._live.pop(upload_id, None)
            if stale is not None:
                stale.close()
            raise BlobDigestMismatch(exc.what, exc.expected, exc.got, reset=True) from None
        now = self._clock()
        version = self._repository.complete_upload(
            upload_id,
            ModelVersionRecord(
                model_name=upload.model_name,
                version=upload.model_version,
                owner=upload.owner,
                manifest=upload.manifest,
                manifest_signature=upload.manifest_signature,
                ciphertext_digest=upload.ciphertext_digest,
                size=upload.total_size,
                blob_key=key,
                registered_at=now,
                digest_algorithm=upload.digest_algorithm,
            ),
        )
        with self._live_lock:
            finished = self._live.pop(upload_id, None)
        if finished is not None:
            finished.close()
        self._blobs.discard_upload(upload_id)
        self._audit.record(
            audit_hook.event(
                "model.upload.complete",
                actor,
                "CompleteUpload",
                f"model {upload.model_name}@{upload.model_version}",
                model=f"{upload.model_name}@{upload.model_version}",
                details={
                    "size": str(upload.total_size),
                    "ciphertext_digest": key,
                    "digest_algorithm": upload.digest_algorithm,
                },
            )
        )
        return version

    @staticmethod
    def _digest(manifest: Manifest, pieces: Iterator[bytes]) -> str:
        hasher = BulkDigest(algorithm=manifest.digest_algorithm)
        for piece in pieces:
            hasher.update(piece)
        return hasher.hexdigest()

    def _check_bytes(self, manifest: Manifest, pieces: Iterator[bytes]) -> None:
        hasher = BulkDigest(algorithm=manifest.digest_algorithm)
        head = b""
        for piece in pieces:
            if len(head) < HEADER_SIZE:
                head += piece[: HEADER_SIZE - len(head)]
            hasher.update(piece)
        check_blob_header(manifest, head)
        if hasher.hexdigest() != manifest.ciphertext_digest:
            raise BlobDigestMismatch(
                manifest.digest_algorithm.upper(), manifest.ciphertext_digest, hasher.hexdigest()
            )

    # -- catalogue and download ---------------------------------------------------------------

    def list_models(self) -> list[ModelRecord]:
        """Every model and its versions (metadata only)."""
        return self._repository.list_models()

    def describe(self, name: str) -> tuple[ModelRecord, list[ModelVersionRecord]]:
        """A model and its registered versions."""
        model = self._repository.get_model(name)
        if model is None:
            raise NotFound("model", name)
        return model, self._repository.list_versions(name)

    def describe_with_policy(
        self, name: str
    ) -> tuple[ModelRecord, list[ModelVersionRecord], int | None]:
        """A model, its versions and the version of its release policy (if one is set)."""
        model, versions = self.describe(name)
        policy = self._repository.get_policy(name)
        return model, versions, policy.version if policy else None

    def version(self, name: str, version: str) -> ModelVersionRecord:
        """One registered version."""
        record = self._repository.get_version(name, version)
        if record is None:
            raise NotFound("model version", f"{name}@{version}")
        return record

    def download(
        self, actor: Principal, name: str, version: str, *, offset: int = 0, length: int = 0
    ) -> Iterator[tuple[int, bytes]]:
        """Yield (offset, bytes) pieces of the sealed blob, to an entitled caller."""
        require_download_entitlement(self._repository, actor, "Download", name, version)
        record = self.version(name, version)
        if offset > record.size:
            raise InvalidRequest("offset", f"beyond the blob's {record.size} bytes")
        end = record.size if length == 0 else min(record.size, offset + length)
        self._audit.record(
            audit_hook.event(
                "model.download",
                actor,
                "Download",
                f"model {name}@{version}",
                model=f"{name}@{version}",
                party=actor.fingerprint,
                details={
                    "step": "download-sealed-model",
                    "offset": str(offset),
                    "length": str(end - offset),
                },
            )
        )
        return self._pieces(record.blob_key, offset, end)

    def _pieces(self, key: str, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
        position = offset
        for piece in self._blobs.read_blob(key, offset, end - offset, block=DOWNLOAD_BLOCK):
            yield position, piece
            position += len(piece)


def _take(pieces: Iterator[bytes], n: int) -> Iterator[bytes]:
    got = 0
    for piece in pieces:
        if got >= n:
            return
        yield piece[: n - got]
        got += len(piece)
