"""The sealed payload: a model directory as one deterministic, uncompressed tar, read lazily."""

from __future__ import annotations

import io
import itertools
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from crypto.errors import PayloadError

PAYLOAD_FORMAT = "tar"
_BLOCK = tarfile.BLOCKSIZE
# POSIX ends an archive with two zero blocks; record padding (tarfile's 10240) is optional
# for readers, so we leave it out and the size stays a plain function of the members.
_END_OF_ARCHIVE = bytes(2 * _BLOCK)
_FORMAT = tarfile.PAX_FORMAT


def check_member_name(name: str) -> str:
    """Return ``name`` if it is a safe relative POSIX path inside the archive, else raise."""
    if not isinstance(name, str):
        raise TypeError("member name must be a str")
    path = PurePosixPath(name)
    if (
        not name
        or "\x00" in name
        or "\\" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise PayloadError(name, "member names must be relative paths without '.', '..' or '\\'")
    return name


@dataclass(frozen=True)
class PayloadFile:
    """One file of the payload: its name inside the archive, where to read it, its size."""

    name: str
    path: Path
    size: int

    def __post_init__(self) -> None:
        check_member_name(self.name)
        if self.size < 0:
            raise ValueError("size must be >= 0")


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    # TarInfo defaults: mtime 0, uid/gid 0, empty uname/gname, regular file. Only the name
    # and the size vary, so the same files always give the same archive bytes.
    return info.tobuf(_FORMAT, "utf-8", "strict")


def _padding(size: int) -> int:
    return -size % _BLOCK


def _sorted_files(files: Sequence[PayloadFile]) -> list[PayloadFile]:
    ordered = sorted(files, key=lambda f: f.name.encode("utf-8"))
    for before, after in itertools.pairwise(ordered):
        if before.name == after.name:
            raise PayloadError(after.name, "the same member name appears twice")
    return ordered


def payload_size(files: Sequence[tuple[str, int]]) -> int:
    """Exact byte size of the archive holding files with these (name, size) pairs."""
    total = len(_END_OF_ARCHIVE)
    for name, size in files:
        total += len(_tar_header(check_member_name(name), size)) + size + _padding(size)
    return total


class PayloadReader(io.RawIOBase):
    """A readable stream of the archive of ``files``, produced as it is read (flat memory)."""

    def __init__(self, files: Sequence[PayloadFile]) -> None:
        super().__init__()
        self.files: tuple[PayloadFile, ...] = tuple(_sorted_files(files))
        self.size = payload_size([(f.name, f.size) for f in self.files])
        self._parts = self._iter_parts()
        self._current: bytes | BinaryIO | None = None
        self._current_left = 0
        self._current_file: PayloadFile | None = None
        self._offset = 0

    def _iter_parts(self) -> Iterator[tuple[bytes | PayloadFile, int]]:
        for entry in self.files:
            header = _tar_header(entry.name, entry.size)
            yield header, len(header)
            yield entry, entry.size
            pad = _padding(entry.size)
            if pad:
                yield bytes(pad), pad
        yield _END_OF_ARCHIVE, len(_END_OF_ARCHIVE)

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        filled = 0
        while filled < len(view):
            if self._current_left == 0:
                if not self._next_part():
                    break
                continue  # the new part may itself be empty (an empty file)
            want = min(len(view) - filled, self._current_left)
            if isinstance(self._current, bytes):
                start = len(self._current) - self._current_left
                view[filled : filled + want] = self._current[start : start + want]
                got = want
            else:
                assert self._current is not None
                got = _read_some(self._current, view[filled : filled + want])
                if got == 0:
                    entry = self._current_file
                    assert entry is not None
                    raise PayloadError(
                        entry.name, f"{entry.path} shrank while it was being read; seal again"
                    )
            filled += got
            self._current_left -= got
            self._offset += got
        return filled

    def _next_part(self) -> bool:
        self._finish_file()
        try:
            part, length = next(self._parts)
        except StopIteration:
            return False
        if isinstance(part, PayloadFile):
            self._current_file = part
            self._current = open(part.path, "rb")  # noqa: SIM115 - closed in _finish_file
        else:
            self._current = part
        self._current_left = length
        return True

    def _finish_file(self) -> None:
        if isinstance(self._current, bytes) or self._current is None:
            return
        handle, entry = self._current, self._current_file
        self._current = None
        try:
            if handle.read(1):
                assert entry is not None
                raise PayloadError(
                    entry.name, f"{entry.path} grew while it was being read; seal again"
                )
        finally:
            handle.close()

    def close(self) -> None:
        """Close any file still open."""
        if self._current is not None and not isinstance(self._current, bytes):
            self._current.close()
            self._current = None
        super().close()


def _read_some(handle: BinaryIO, view: memoryview) -> int:
    got = handle.readinto(view)  # type: ignore[attr-defined]
    return got or 0


class _MemoryReader(io.RawIOBase):
    """A seekable read-only stream over a buffer, without copying it (BytesIO would)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        out = memoryview(b).cast("B")
        n = max(0, min(len(out), len(self._view) - self._pos))
        out[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n


def unpack_payload(data: bytes | bytearray | memoryview) -> dict[str, memoryview]:
    """Map each member's name to a read-only view of its bytes in ``data`` (no copy, no disk)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("data must be bytes, bytearray or memoryview")
    view = memoryview(data).cast("B").toreadonly()
    files: dict[str, memoryview] = {}
    try:
        with tarfile.open(fileobj=_MemoryReader(view), mode="r:") as archive:
            for member in archive:
                name = check_member_name(member.name)
                if not member.isreg():
                    raise PayloadError(name, "only regular files may appear in a model archive")
                if name in files:
                    raise PayloadError(name, "the same member name appears twice")
                end = member.offset_data + member.size
                if end > len(view):
                    raise PayloadError(name, "member data runs past the end of the archive")
                files[name] = view[member.offset_data : end]
    except tarfile.TarError as exc:
        raise PayloadError(None, f"not a readable tar archive ({exc})") from exc
    return files
