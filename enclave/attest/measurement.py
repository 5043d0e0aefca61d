"""The sandbox runtime's measurement: one SHA-384 over the code of ``crypto`` and ``enclave``.

The sandbox imports only ``crypto`` and ``enclave`` (the project's import rule), so hashing those
two package directories measures everything it can run of ours. An owner reproduces the value
from a checkout, without installing anything, with::

    python -c "from pathlib import Path; from enclave.attest.measurement import \\
        runtime_measurement; print(runtime_measurement([Path('crypto'), Path('enclave')]).hex())"

The digest is computed as follows (all integers big-endian)::

    files   = every regular file under each root whose name ends in one of MEASURED_SUFFIXES,
              skipping __pycache__ folders, named "<root folder name>/<posix path below it>"
    entry   = u32(len(name)) || name (UTF-8) || SHA-384(file content)
    digest  = SHA-384(DOMAIN || u32(len(files)) || entry_1 || ... || entry_n), entries sorted
              by name (byte order of the UTF-8 names)

Sorting makes the result independent of directory listing order; the length prefixes and the
count make the encoding unambiguous; the domain string keeps this digest from ever equalling a
SHA-384 computed for another purpose.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

MEASUREMENT_SIZE = 48
DOMAIN = b"fedtune/v1 sandbox-runtime-measurement\x00"
# Python sources and stubs (including generated protobuf stubs), and the data files the
# runtime trusts (pinned certificates, JSON).
MEASURED_SUFFIXES = (".py", ".pyi", ".pem", ".der", ".json")
SKIPPED_DIRS = frozenset({"__pycache__"})


def default_roots() -> list[Path]:
    """The directories of the installed ``crypto`` and ``enclave`` packages."""
    import crypto
    import enclave

    return [Path(crypto.__file__).resolve().parent, Path(enclave.__file__).resolve().parent]


def measured_files(roots: Sequence[Path]) -> list[tuple[str, Path]]:
    """The (name, path) pairs that go into the measurement, sorted by name."""
    entries: dict[str, Path] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"measurement root {root} is not a directory")
        for dirpath, dirnames, filenames in os.walk(root):
            # Pruning in place stops os.walk from descending into skipped folders.
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
            for filename in filenames:
                if not filename.endswith(MEASURED_SUFFIXES):
                    continue
                path = Path(dirpath, filename)
                if not path.is_file():
                    continue
                name = f"{root.name}/{path.relative_to(root).as_posix()}"
                if name in entries:
                    raise ValueError(f"two measurement roots both provide {name}")
                entries[name] = path
    return sorted(entries.items(), key=lambda item: item[0].encode("utf-8"))


def runtime_measurement(roots: Sequence[Path] | None = None) -> bytes:
    """The 48-byte SHA-384 measurement of the sandbox runtime's code files (see module doc)."""
    if roots is not None:
        if isinstance(roots, str | bytes | os.PathLike):
            raise TypeError("roots must be a sequence of directories, not a single path")
        if not roots:
            raise ValueError("roots must name at least one directory")
    files = measured_files(default_roots() if roots is None else list(roots))
    outer = hashlib.sha384(DOMAIN)
    outer.update(len(files).to_bytes(4, "big"))
    for name, path in files:
        encoded = name.encode("utf-8")
        outer.update(len(encoded).to_bytes(4, "big"))
        outer.update(encoded)
        with path.open("rb") as handle:
            outer.update(hashlib.file_digest(handle, "sha384").digest())
    return outer.digest()
