"""Read side of a stored log: checkpoints, pages of entries and O(log n) proofs."""

from __future__ import annotations

from crypto import merkle
from fedtune.audit.errors import AuditRangeError, AuditStoreError
from fedtune.audit.source import Entry
from fedtune.audit.store import AuditStore, StoredCheckpoint

__all__ = ["DEFAULT_PAGE_SIZE", "LogReader"]

DEFAULT_PAGE_SIZE = 1000


def _uint(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class LogReader:
    """Serves what a store holds, bounded by the latest signed checkpoint; trusts the store.

    Used by the log itself (behind the gRPC service) and, over a read-only store, by an
    operator auditing the file directly; either way the verifier re-checks everything.
    """

    def __init__(self, store: AuditStore, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive int, got {page_size!r}")
        self._store = store
        self._page_size = page_size

    @property
    def store(self) -> AuditStore:
        """The store read from."""
        return self._store

    def latest(self) -> StoredCheckpoint:
        """The newest stored checkpoint."""
        latest = self._store.latest_checkpoint()
        if latest is None:
            raise AuditStoreError("the store holds no signed checkpoint (not an initialised log)")
        return latest

    def size(self) -> int:
        """The tree size of the latest signed checkpoint: what the log has published."""
        return self.latest().size

    def checkpoint(self, *, at_or_below: int | None = None) -> str:
        """The latest signed checkpoint note, or the newest one with size <= ``at_or_below``."""
        if at_or_below is None:
            return self.latest().note
        _uint("at_or_below", at_or_below)
        # No checkpoint is larger than the latest, and a uint64 from a request may not fit the
        # store's signed 64-bit integers: ask for at most the latest size.
        found = self._store.checkpoint_at_or_below(min(at_or_below, self.size()))
        if found is None:
            raise AuditRangeError("checkpoint size", got=at_or_below, limit=self.size())
        return found.note

    def entries(self, start: int, end: int) -> list[Entry]:
        """Entries in [start, end), at most one page; ask again from the last index + 1."""
        _uint("start", start)
        _uint("end", end)
        if start > end:
            raise ValueError(f"requires start <= end, got start={start} end={end}")
        size = self.size()
        if end > size:
            raise AuditRangeError("end", got=end, limit=size)
        stop = min(end, start + self._page_size)
        return [Entry(i, leaf) for i, leaf in self._store.leaves(start, stop)]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        _uint("index", index)
        _uint("size", size)
        current = self.size()
        if size > current:
            raise AuditRangeError("tree size", got=size, limit=current)
        if index >= size:
            raise ValueError(f"requires index < size, got index={index} size={size}")
        return merkle.inclusion_proof(index, size, self._store.subtree_hash)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``size1`` to ``size2``."""
        _uint("size1", size1)
        _uint("size2", size2)
        current = self.size()
        if size2 > current:
            raise AuditRangeError("tree size", got=size2, limit=current)
        if not 0 < size1 <= size2:
            raise ValueError(f"requires 0 < size1 <= size2, got size1={size1} size2={size2}")
        return merkle.consistency_proof(size1, size2, self._store.subtree_hash)
