"""Sealed-blob storage: the BlobStore interface and the local-folder implementation.

An upload's chunks are written in place into the upload's part file (``pwrite`` at
``index * chunk_size``) and made durable with ``fdatasync`` before the repository records them
as stored; the complete blob then appears under its final key by one atomic rename, so a
reader sees either no blob or the whole one, and completion never copies the bytes again.
An object-store adapter maps the same calls onto a multipart upload.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from fedtune.orchestrator.errors import NotFound, StorageFull

# The OS errors that mean "no room": a full disk or an exhausted quota.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def _no_space_is_typed(what: str, path: Path) -> Iterator[None]:
    # A full disk is an operational condition the caller can act on (free space, retry and
    # resume), not an internal error: say so with a typed error instead of a bare OSError.
    try:
        yield
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise StorageFull(what, str(path.parent)) from exc
        raise

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class BlobStore(Protocol):
    """Where sealed blobs and in-progress uploads live."""

    def prepare_upload(self, upload_id: str, total_size: int) -> None:
        """Create the upload's part file if it does not exist yet."""
        ...

    def write_chunk(self, upload_id: str, offset: int, data: bytes | memoryview) -> None:
        """Write bytes at ``offset`` of the upload (not yet durable)."""
        ...

    def sync_upload(self, upload_id: str) -> None:
        """Make every write to the upload so far durable (and the upload itself findable)."""
        ...

    def read_upload(self, upload_id: str, *, block: int = 4 << 20) -> Iterator[bytes]:
        """Stream the upload's bytes from the start."""
        ...

    def finalize_upload(self, upload_id: str, key: str) -> None:
        """Atomically turn the complete upload into the blob ``key`` (idempotent)."""
        ...

    def discard_upload(self, upload_id: str) -> None:
        """Remove an upload's bytes (after completion, or when abandoned)."""
        ...

    def has_blob(self, key: str) -> bool:
        """Whether the blob ``key`` exists."""
        ...

    def blob_size(self, key: str) -> int:
        """The size of blob ``key`` in bytes."""
        ...

    def read_blob(self, key: str, offset: int, length: int, *, block: int) -> Iterator[bytes]:
        """Stream ``length`` bytes of blob ``key`` from ``offset`` in pieces of ``block`` bytes."""
        ...


def _fsync_dir(directory: Path) -> None:
    # A rename is durable only once its directory is.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe storage name {name!r}")
    return name


class LocalBlobStore:
    """Blobs as files under one folder: ``uploads/<id>.part`` while uploading, ``blobs/<key>``."""

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root)
        # Uploads whose part file's directory entry is known durable.
        self._entry_synced: set[str] = set()
        self._uploads = self._root / "uploads"
        self._blobs = self._root / "blobs"
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)

    def _part(self, upload_id: str) -> Path:
        return self._uploads / f"{_check_name(upload_id)}.part"

    def _blob(self, key: str) -> Path:
        return self._blobs / _check_name(key)

    def prepare_upload(self, upload_id: str, total_size: int) -> None:
        """Create the upload's part file if it does not exist yet."""
        part = self._part(upload_id)
        if part.exists():
            return
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with _no_space_is_typed(f"the {total_size}-byte part file of {upload_id}", part):
                os.ftruncate(fd, total_size)
        finally:
            os.close(fd)
        # Nothing refers to the file until chunks are recorded; sync_upload makes it durable.

    def write_chunk(self, upload_id: str, offset: int, data: bytes | memoryview) -> None:
        """Write bytes at ``offset`` of the upload (not yet durable)."""
        part = self._part(upload_id)
        fd = os.open(part, os.O_WRONLY)
        try:
            view = memoryview(data)
            with _no_space_is_typed(f"{len(view)} bytes of upload {upload_id}", part):
                while view:
                    written = os.pwrite(fd, view, offset)
                    view = view[written:]
                    offset += written
        finally:
            os.close(fd)

    def sync_upload(self, upload_id: str) -> None:
        """Make every write to the upload so far durable (and the part file findable)."""
        part = self._part(upload_id)
        fd = os.open(part, os.O_RDONLY)
        try:
            # fdatasync also flushes the size set by ftruncate: it is needed to read the data.
            with _no_space_is_typed(f"upload {upload_id}", part):
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if upload_id not in self._entry_synced:
            _fsync_dir(self._uploads)
            self._entry_synced.add(upload_id)

    def read_upload(self, upload_id: str, *, block: int = 4 << 20) -> Iterator[bytes]:
        """Stream the upload's bytes from the start."""
        with open(self._part(upload_id), "rb") as handle:
            while piece := handle.read(block):
                yield piece

    def finalize_upload(self, upload_id: str, key: str) -> None:
        """Atomically turn the complete upload into the blob ``key`` (idempotent)."""
        part, blob = self._part(upload_id), self._blob(key)
        if not part.exists():
            if blob.exists():
                return
            raise NotFound("upload bytes", upload_id)
        # Every byte was fdatasync'ed before its chunk was recorded; only the rename remains.
        os.chmod(part, 0o644)
        os.replace(part, blob)
        _fsync_dir(self._blobs)
        self._entry_synced.discard(upload_id)

    def discard_upload(self, upload_id: str) -> None:
        """Remove an upload's bytes (after completion, or when abandoned)."""
        self._part(upload_id).unlink(missing_ok=True)

    def has_blob(self, key: str) -> bool:
        """Whether the blob ``key`` exists."""
        return self._blob(key).exists()

    def blob_size(self, key: str) -> int:
        """The size of blob ``key`` in bytes."""
        try:
            return self._blob(key).stat().st_size
        except FileNotFoundError:
            raise NotFound("blob", key) from None

    def read_blob(self, key: str, offset: int, length: int, *, block: int) -> Iterator[bytes]:
        """Stream ``length`` bytes of blob ``key`` from ``offset`` in pieces of ``block`` bytes."""
        if offset < 0 or length < 0 or block <= 0:
            raise ValueError("offset and length must be >= 0 and block > 0")
        try:
            fd = os.open(self._blob(key), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound("blob", key) from None
        try:
            end = offset + length
            while offset < end:
                piece = os.pread(fd, min(block, end - offset), offset)
                if not piece:
                    return
                yield piece
                offset += len(piece)
        finally:
            os.close(fd)
