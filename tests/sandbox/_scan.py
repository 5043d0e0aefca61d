"""Find any 64-byte window of a plaintext inside files: the no-plaintext-on-disk check.

Every window of the plaintext (at every byte offset) and of each scanned file is hashed with a
rolling polynomial hash mod 2^64 (vectorised with numpy); windows whose hashes meet are then
compared byte for byte, so a hit is never a hash collision. Degenerate windows are skipped:
those that repeat with a period of 8 bytes or less (runs of zero bytes, a LayerNorm weight of
1.0 repeated) or hold fewer than 16 distinct byte values (the seam between such runs); they
occur in any file and say nothing about the weights. A window of random float32 weights holds
about 40 distinct byte values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WINDOW = 64
_BASE = np.uint64(0x100000001B3)  # odd, so invertible mod 2^64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
MIN_DISTINCT_BYTES = 16
MAX_FILE = 512 * 1024 * 1024


def _powers(base: np.uint64, count: int) -> np.ndarray:
    powers = np.full(count, base, dtype=np.uint64)
    powers[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(powers, dtype=np.uint64)


def window_hashes(data: bytes) -> np.ndarray:
    """The hash of every WINDOW-byte window of ``data``, indexed by its start offset."""
    n = len(data)
    if n < WINDOW:
        return np.empty(0, dtype=np.uint64)
    values = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    with np.errstate(over="ignore"):
        # prefix[k] = sum_{t<k} b[t] * B^(n-1-t); a window's sum, times B^-(n-WINDOW-i), is
        # h(i) = sum_j b[i+j] * B^(WINDOW-1-j).
        up = _powers(_BASE, n)[::-1]
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(values * up, dtype=np.uint64)))
        sums = prefix[WINDOW:] - prefix[:-WINDOW]
        down = _powers(_BASE_INV, n - WINDOW + 1)[::-1]
        return sums * down


def degenerate(data: bytes) -> np.ndarray:
    """For each window start: True when the window repeats with a period of 8 bytes or less."""
    n = len(data)
    if n < WINDOW:
        return np.empty(0, dtype=bool)
    values = np.frombuffer(data, dtype=np.uint8)
    periodic = np.zeros(n - WINDOW + 1, dtype=bool)
    for period in (1, 2, 4, 8):
        same = (values[period:] == values[:-period]).astype(np.int64)
        runs = np.concatenate(([0], np.cumsum(same)))
        span = WINDOW - period
        periodic |= (runs[span : span + n - WINDOW + 1] - runs[: n - WINDOW + 1]) == span
    return periodic


@dataclass(frozen=True)
class Hit:
    """A plaintext window found in a file."""

    path: str
    offset: int
    plaintext_offset: int


class PlaintextIndex:
    """The windows of one plaintext, ready to search other bytes for."""

    def __init__(self, plaintext: bytes) -> None:
        if len(plaintext) < WINDOW:
            raise ValueError("the plaintext is shorter than one window")
        self.plaintext = plaintext
        hashes = window_hashes(plaintext)
        keep = ~degenerate(plaintext)
        self._offsets = np.nonzero(keep)[0]
        order = np.argsort(hashes[keep], kind="stable")
        self._hashes = hashes[keep][order]
        self._offsets = self._offsets[order]

    def search(self, data: bytes, *, name: str = "<bytes>", limit: int = 5) -> list[Hit]:
        """Offsets in ``data`` where a non-degenerate window of the plaintext occurs."""
        hashes = window_hashes(data)
        if not len(hashes):
            return []
        at = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        candidates = np.nonzero((self._hashes[at] == hashes) & ~degenerate(data))[0]
        hits: list[Hit] = []
        for offset in candidates:
            window = data[offset : offset + WINDOW]
            if len(set(window)) < MIN_DISTINCT_BYTES:
                continue
            h = hashes[offset]
            lo = np.searchsorted(self._hashes, h, side="left")
            hi = np.searchsorted(self._hashes, h, side="right")
            for source in self._offsets[lo:hi]:
                if self.plaintext[source : source + WINDOW] == window:
                    hits.append(Hit(name, int(offset), int(source)))
                    break
            if len(hits) >= limit:
                break
        return hits


@dataclass
class ScanReport:
    """What a scan looked at and what it found."""

    files: int = 0
    bytes: int = 0
    unreadable: int = 0
    hits: list[Hit] | None = None


def scan_paths(
    index: PlaintextIndex,
    roots: Iterable[Path],
    *,
    exclude: Iterable[Path] = (),
    newer_than: float | None = None,
) -> ScanReport:
    """Search every regular file under ``roots`` (not following symlinks) for plaintext windows."""
    excluded = [Path(p).resolve() for p in exclude]
    report = ScanReport(hits=[])
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        walker = [(str(root.parent), [], [root.name])] if root.is_file() else os.walk(root)
        for dirpath, dirnames, filenames in walker:
            dirnames[:] = [
                d for d in dirnames
                if not any(Path(dirpath, d).resolve() == e for e in excluded)
            ]
            for filename in filenames:
                path = Path(dirpath, filename)
                if any(path.resolve().is_relative_to(e) for e in excluded):
                    continue
                try:
                    stat = path.lstat()
                    if not path.is_file() or path.is_symlink() or stat.st_size > MAX_FILE:
                        continue
                    if newer_than is not None and stat.st_mtime < newer_than:
                        continue
                    data = path.read_bytes()
                except OSError:
                    report.unreadable += 1
                    continue
                report.files += 1
                report.bytes += len(data)
                assert report.hits is not None
                report.hits.extend(index.search(data, name=str(path)))
    return report
