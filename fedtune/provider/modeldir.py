"""Read a safetensors model directory: which files get sealed, and their tensor indexes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from crypto.errors import ManifestFormatError
from crypto.manifest import (
    SAFETENSORS_SUFFIX,
    FileInfo,
    TensorInfo,
    safetensors_header_length,
    safetensors_index,
)
from crypto.payload import PayloadFile
from fedtune.provider.errors import ModelDirError


@dataclass(frozen=True)
class ModelDir:
    """The files of a model directory that will be sealed, in archive order."""

    root: Path
    files: tuple[PayloadFile, ...]
    infos: tuple[FileInfo, ...]
    skipped: tuple[str, ...]
    """Hidden entries (names starting with '.') and symlinked directories, left out."""

    @property
    def total_size(self) -> int:
        """Sum of the file sizes."""
        return sum(f.size for f in self.files)

    @property
    def tensor_count(self) -> int:
        """Number of tensors over all safetensors files."""
        return sum(len(i.tensors or ()) for i in self.infos)


def read_tensor_index(path: Path) -> tuple[TensorInfo, ...]:
    """Describe the tensors of one safetensors file from its header (tensors are not loaded)."""
    from safetensors import safe_open  # the library validates the header and the offsets

    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            head += handle.read(safetensors_header_length(head) - 8)
        tensors = safetensors_index(head)
        with safe_open(str(path), framework="numpy") as opened:
            names = sorted(opened.keys())
    except ManifestFormatError as exc:
        raise ModelDirError(str(path), f"not a valid safetensors file: {exc.reason}") from None
    except Exception as exc:  # safetensors raises its own SafetensorError for bad files
        raise ModelDirError(str(path), f"not a valid safetensors file: {exc}") from exc
    if names != [t.name for t in tensors]:
        raise ModelDirError(str(path), "tensor names in the header disagree with safetensors")
    return tensors


def scan_model_dir(root: str | os.PathLike[str]) -> ModelDir:
    """List every regular file under ``root`` (hidden ones excepted), with tensor indexes."""
    base = Path(root)
    if not base.is_dir():
        raise ModelDirError(str(base), "not a directory")
    files: list[PayloadFile] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if name.startswith(".") or (here / name).is_symlink():
                skipped.append((here / name).relative_to(base).as_posix() + "/")
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink()]
        for name in filenames:
            full = here / name
            rel = full.relative_to(base).as_posix()
            if name.startswith("."):
                skipped.append(rel)
                continue
            # Symlinked files (as in a Hugging Face cache snapshot) are sealed as their target.
            if not full.is_file():
                skipped.append(rel)
                continue
            files.append(PayloadFile(name=rel, path=full, size=full.stat().st_size))
    files.sort(key=lambda f: f.name.encode("utf-8"))
    if not any(f.name.endswith(SAFETENSORS_SUFFIX) for f in files):
        raise ModelDirError(
            str(base), "no *.safetensors file found (save the model with safetensors)"
        )
    infos = []
    for entry in files:
        if entry.name.endswith(SAFETENSORS_SUFFIX):
            tensors = read_tensor_index(entry.path)
            infos.append(FileInfo(path=entry.name, size=entry.size, tensors=tensors))
        else:
            infos.append(FileInfo(path=entry.name, size=entry.size))
    return ModelDir(
        root=base, files=tuple(files), infos=tuple(infos), skipped=tuple(sorted(skipped))
    )
