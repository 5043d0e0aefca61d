"""Where a verifier reads a log from: the ``LogSource`` interface and the ``Entry`` it yields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

__all__ = ["Entry", "LogSource"]


class Entry(NamedTuple):
    """One leaf of the log: its index and its bytes exactly as hashed."""

    index: int
    leaf: bytes


class LogSource(Protocol):
    """A log as an auditor sees it: served by the gRPC client or read from a local store.

    Nothing from a source is trusted: the verifier checks every checkpoint signature, recomputes
    every hash and checks every proof.
    """

    def checkpoint(self, *, at_or_below: int | None = None) -> str:
        """The latest signed checkpoint note, or the newest one with size <= ``at_or_below``."""
        ...

    def entries(self, start: int, end: int) -> Iterable[Entry]:
        """Entries in [start, end) in order; may stop early (one page): ask again for the rest."""
        ...

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``size1`` to ``size2``."""
        ...
