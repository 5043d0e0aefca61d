"""The private staging directory the sandbox sees as /data, filled only after attestation.

The sandbox is launched on an empty directory (mode 0700, under the owner's work dir) bound
read-only as ``/data``. Only once the owner's own policy accepted the sandbox's evidence does
the agent put the record files there: a hard link when the records live on the same file
system (no copy, and the sandbox still cannot write them: the bind is read-only), a copy
otherwise. All or nothing: when one file cannot be staged, the ones staged are removed again.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from fedtune.owner.errors import StagingError


def make_staging_dir(path: Path) -> Path:
    """Create ``path`` empty, mode 0700; StagingError if it exists with anything in it."""
    if not isinstance(path, Path):
        raise TypeError("path must be a pathlib.Path")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    leftovers = sorted(p.name for p in path.iterdir())
    if leftovers:
        raise StagingError(
            str(path), f"the staging directory is not empty ({', '.join(leftovers[:5])}); it must "
            "be empty until the sandbox is attested: remove it or pick another work dir"
        )
    return path


def _source(records: Path, name: str) -> Path:
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts) or "\\" in name:
        raise StagingError(name, "must be a plain path relative to the records directory")
    source = records / name
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise StagingError(str(source), "no such file in the records directory") from None
    if stat.S_ISLNK(st.st_mode):
        raise StagingError(str(source), "is a symbolic link; stage the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise StagingError(str(source), "is not a regular file")
    if not source.resolve().is_relative_to(records.resolve()):
        raise StagingError(str(source), "resolves outside the records directory")
    return source


def stage_records(records: Path, staging: Path, names: Sequence[str]) -> list[Path]:
    """Link (or copy) each named record file into ``staging``; all or nothing."""
    if not records.is_dir():
        raise StagingError(str(records), "the records directory does not exist")
    sources = [(name, _source(records, name)) for name in dict.fromkeys(names)]
    staged: list[Path] = []
    try:
        for name, source in sources:
            target = staging / name
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                # Another file system (or hard links not allowed): a private copy.
                tmp = target.with_name(f".{target.name}.partial")
                shutil.copyfile(source, tmp)
                os.chmod(tmp, 0o600)
                os.replace(tmp, target)
            staged.append(target)
    except OSError as exc:
        unstage(staged)
        raise StagingError(str(exc.filename or records), exc.strerror or str(exc)) from None
    return staged


def unstage(staged: Sequence[Path]) -> None:
    """Remove staged record files (links or copies; the owner's originals stay)."""
    for path in staged:
        path.unlink(missing_ok=True)
