"""The sandbox runtime's measurement, with what went into it, as ``fedtune sandbox measure`` shows.

The runtime measures itself with :func:`enclave.attest.runtime_measurement` over the ``crypto``
and ``enclave`` package directories it imports (inside the sandbox they are bound read-only at
``/opt/fedtune/code``). File names enter the digest relative to each package directory, so the
value does not depend on where the code lives: an owner reproduces it from a checkout with
``fedtune sandbox measure --checkout PATH`` (or the one-liner in
``enclave/attest/measurement.py``) and pins it in a release policy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enclave.attest.measurement import (
    MEASURED_SUFFIXES,
    default_roots,
    measured_files,
    runtime_measurement,
)

CODE_PACKAGES = ("crypto", "enclave")


@dataclass(frozen=True)
class MeasurementInfo:
    """A runtime measurement and how it was computed."""

    digest: bytes
    roots: tuple[Path, ...]
    file_count: int
    suffixes: tuple[str, ...] = MEASURED_SUFFIXES

    @property
    def hex(self) -> str:
        """The digest in lower-case hex, as release policies and ``fedtune attest`` show it."""
        return self.digest.hex()


def code_roots() -> tuple[Path, ...]:
    """The directories of the ``crypto`` and ``enclave`` packages this process imports."""
    return tuple(default_roots())


def checkout_roots(checkout: str | os.PathLike[str]) -> tuple[Path, ...]:
    """The ``crypto`` and ``enclave`` directories of a source checkout at ``checkout``."""
    if not isinstance(checkout, str | os.PathLike):
        raise TypeError("checkout must be a path")
    base = Path(checkout)
    roots = tuple(base / name for name in CODE_PACKAGES)
    missing = [str(root) for root in roots if not (root / "__init__.py").is_file()]
    if missing:
        raise ValueError(
            f"{base} is not a fedtune checkout: no package at {', '.join(missing)}"
        )
    return roots


def measure(roots: Sequence[Path] | None = None) -> MeasurementInfo:
    """Measure the runtime code under ``roots`` (default: the imported packages)."""
    chosen = tuple(Path(r) for r in roots) if roots is not None else code_roots()
    files = measured_files(list(chosen))
    return MeasurementInfo(
        digest=runtime_measurement(list(chosen)), roots=chosen, file_count=len(files)
    )
