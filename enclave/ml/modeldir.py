"""In-memory model directories (``{relative path: bytes}``): checking, reading and writing them.

The sandbox receives the provider's model as such a mapping after unsealing and never writes
it out; the provider's tooling reads one from disk before sealing, and tests write tiny ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from crypto.atomicfile import atomic_write_bytes

ModelFiles = Mapping[str, bytes]

DEFAULT_MAX_TOTAL_BYTES = 64 * 1024**3


def check_relpath(name: str) -> str:
    """``name`` if it is a clean relative POSIX path inside a model directory; ValueError if not."""
    if not isinstance(name, str):
        raise TypeError(f"model file names must be str, got {type(name).__name__}")
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ValueError(f"model file name {name!r} is not a clean relative path")
    return name


def check_model_files(files: ModelFiles) -> dict[str, bytes]:
    """A plain dict copy of ``files`` after checking every name and value type."""
    if not isinstance(files, Mapping):
        raise TypeError(
            f"model files must be a mapping of path to bytes, got {type(files).__name__}"
        )
    checked: dict[str, bytes] = {}
    for name, data in files.items():
        check_relpath(name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"model file {name!r} must be bytes, got {type(data).__name__}")
        checked[name] = bytes(data) if not isinstance(data, bytes) else data
    return checked


def read_model_dir(
    path: str | os.PathLike[str], *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> dict[str, bytes]:
    """Every regular, non-hidden file under ``path`` as ``{relative posix path: bytes}``."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(max_total_bytes, int) or max_total_bytes < 1:
        raise ValueError(f"max_total_bytes must be a positive int, got {max_total_bytes!r}")
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    files: dict[str, bytes] = {}
    total = 0
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root)
        # Hidden files (.gitattributes, .cache/) are tooling, not part of the model.
        if any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        if file.is_symlink():
            raise ValueError(f"{file} is a symbolic link; model directories hold plain files")
        data = file.read_bytes()
        total += len(data)
        if total > max_total_bytes:
            raise ValueError(f"{root} holds more than {max_total_bytes} bytes")
        files[rel.as_posix()] = data
    if not files:
        raise ValueError(f"{root} holds no files")
    return files


def write_model_dir(files: ModelFiles, path: str | os.PathLike[str]) -> Path:
    """Write ``files`` under ``path`` (which must not exist or be empty), each file atomically."""
    checked = check_model_files(files)
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    root = Path(path)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    for name, data in checked.items():
        atomic_write_bytes(root / name, data)
    return root
