"""Write files so that readers see either the old content or the complete new content."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` on success and vanishes on any exception."""
    target = Path(path)
    # Renaming over a device, FIFO or directory would replace it (as root, /dev/null too).
    if target.exists() and not target.is_file():
        raise IsADirectoryError(target) if target.is_dir() else FileExistsError(
            f"{target} exists and is not a regular file; refusing to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary lives beside the target so the final rename stays on one filesystem.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one step, with permission bits ``mode``."""
    with atomic_output(path, mode=mode) as handle:
        handle.write(data)


def _fsync_dir(directory: Path) -> None:
    # Without this the rename itself may be lost on power failure.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
