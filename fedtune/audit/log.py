"""The audit log: durable, batched appends with a signed checkpoint after every batch.

Appenders hand canonical event bytes to one writer thread. The writer takes every request that
is waiting (up to ``batch_max`` leaves, optionally lingering ``batch_wait_ms`` for more), extends
the in-memory compact range, signs a C2SP checkpoint for the new size and commits leaves,
completed subtree hashes and checkpoint in one SQLite transaction (group commit). Only then is
each appender woken with its receipt: an acknowledged event is on disk and covered by a signed
checkpoint. If the commit fails nothing is half-written and every appender of the batch gets
the error.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from crypto import merkle
from crypto.identity import Identity
from crypto.note import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    is_valid_key_name,
    open_checkpoint,
    sign_checkpoint,
)
from fedtune.audit.errors import (
    AppendTimeoutError,
    AuditLogClosedError,
    AuditStoreError,
)
from fedtune.audit.events import AuditEvent
from fedtune.audit.reader import DEFAULT_PAGE_SIZE, LogReader
from fedtune.audit.source import Entry
from fedtune.audit.store import AuditStore, LogBinding, SqliteAuditStore, StoredCheckpoint

__all__ = ["AppendReceipt", "AuditLog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AppendReceipt:
    """Where an event landed: its index, its leaf hash, and the first signed size covering it."""

    index: int
    leaf_hash: bytes
    tree_size: int


@dataclass(slots=True)
class _Request:
    leaves: list[bytes]
    hashes: list[bytes]
    future: Future[list[AppendReceipt]]


_STOP = object()


class AuditLog:
    """An append-only RFC 9162 log of audit events with C2SP checkpoints, thread-safe."""

    def __init__(
        self,
        store: AuditStore,
        signer: Identity,
        origin: str,
        *,
        batching: bool = True,
        batch_max: int = 512,
        batch_wait_ms: float = 0.0,
        append_timeout_s: float = 30.0,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if not isinstance(signer, Identity):
            raise TypeError(f"signer must be an Identity, got {type(signer).__name__}")
        if not isinstance(origin, str):
            raise TypeError(f"origin must be str, got {type(origin).__name__}")
        if not is_valid_key_name(origin) or len(origin) > 256:
            raise ValueError(
                f"origin {origin!r} must be a checkpoint key name: non-empty, at most 256 "
                "characters, no spaces or '+' (e.g. 'fedtune.example/audit')"
            )
        if not isinstance(batch_max, int) or batch_max < 1:
            raise ValueError(f"batch_max must be a positive int, got {batch_max!r}")
        if not isinstance(batch_wait_ms, int | float) or batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {batch_wait_ms!r}")
        if not isinstance(append_timeout_s, int | float) or append_timeout_s <= 0:
            raise ValueError(f"append_timeout_s must be > 0, got {append_timeout_s!r}")
        self._store = store
        self._origin = origin
        self._signer = NoteSigner.from_identity(origin, signer)
        self._batching = bool(batching)
        self._batch_max = batch_max if batching else 1
        self._batch_wait_s = batch_wait_ms / 1000.0 if batching else 0.0
        self._append_timeout_s = float(append_timeout_s)
        self._reader = LogReader(store, page_size=page_size)
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._compact = self._open_tree()
        self._writer = threading.Thread(target=self._run, name=f"audit-log:{origin}", daemon=True)
        self._writer.start()

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], signer: Identity, origin: str, **options: object
    ) -> AuditLog:
        """Open (or create) the log stored in the SQLite file ``path``."""
        store = SqliteAuditStore(path)
        try:
            return cls(store, signer, origin, **options)  # type: ignore[arg-type]
        except BaseException:
            store.close()
            raise

    # --- start-up ------------------------------------------------------------------------------

    def _open_tree(self) -> merkle.CompactRange:
        binding = LogBinding(self._origin, self._signer.verifier.vkey)
        existing = self._store.binding()
        if existing is not None and existing != binding:
            raise AuditStoreError(
                f"this store belongs to log {existing.origin!r} with key {existing.vkey}; it "
                f"cannot be opened as {binding.origin!r} with key {binding.vkey}"
            )
        if existing is None:
            self._store.bind(binding)
        latest = self._store.latest_checkpoint()
        if latest is None:
            if self._store.size() != 0:
                raise AuditStoreError("the store holds leaves but no signed checkpoint")
            # Publish the empty tree, so every state of the log is covered by a checkpoint.
            empty = merkle.CompactRange()
            self._store.append_batch(0, [], [], self._sign(empty))
            return empty
        try:
            checkpoint, _ = open_checkpoint(
                latest.note, [self._signer.verifier], origin=self._origin
            )
        except Exception as exc:
            raise AuditStoreError(
                f"the latest stored checkpoint does not verify under this log's key: {exc}"
            ) from exc
        compact = merkle.CompactRange.from_subtrees(checkpoint.size, self._store.subtree_hash)
        if compact.root() != checkpoint.root_hash or self._store.size() != checkpoint.size:
            raise AuditStoreError(
                "the stored tree disagrees with the log's latest signed checkpoint; refusing to "
                "append to a damaged log (run 'fedtune audit verify --db' to locate the damage)"
            )
        return compact

    def _sign(self, compact: merkle.CompactRange) -> StoredCheckpoint:
        checkpoint = Checkpoint(self._origin, compact.size, compact.root())
        return StoredCheckpoint(compact.size, sign_checkpoint(checkpoint, self._signer))

    # --- identity ------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The checkpoint origin line (also the note key name)."""
        return self._origin

    @property
    def verifier(self) -> NoteVerifier:
        """The key auditors pin to verify this log's checkpoints."""
        return self._signer.verifier

    @property
    def batching(self) -> bool:
        """Whether concurrent appends share one transaction and one checkpoint."""
        return self._batching

    # --- appends -------------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> AppendReceipt:
        """Append one event; return once it is durable and a signed checkpoint covers it."""
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[AuditEvent]) -> list[AppendReceipt]:
        """Append events contiguously in one transaction; return once all are durable."""
        if isinstance(events, AuditEvent) or not isinstance(events, Iterable):
            raise TypeError("events must be a sequence of AuditEvent")
        leaves: list[bytes] = []
        for event in events:
            if not isinstance(event, AuditEvent):
                raise TypeError(f"expected AuditEvent, got {type(event).__name__}")
            leaves.append(event.leaf())
        if not leaves:
            return []
        request = _Request(leaves, [merkle.leaf_hash(leaf) for leaf in leaves], Future())
        # Checked and queued under the lock close() takes, so no request lands behind the stop
        # marker where the writer would never see it.
        with self._close_lock:
            if self._closed:
                raise AuditLogClosedError()
            self._queue.put(request)
        try:
            return request.future.result(timeout=self._append_timeout_s)
        except FutureTimeout:
            raise AppendTimeoutError(self._append_timeout_s) from None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Request)
            batch = [first]
            count = len(first.leaves)
            deadline = time.monotonic() + self._batch_wait_s
            while count < self._batch_max:
                try:
                    remaining = deadline - time.monotonic()
                    nxt = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                assert isinstance(nxt, _Request)
                batch.append(nxt)
                count += len(nxt.leaves)
            self._commit(batch)
        # Anything queued after close() was requested is refused, never silently dropped.
        while True:
            try:
                leftover = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(leftover, _Request):
                leftover.future.set_exception(AuditLogClosedError())

    def _commit(self, batch: list[_Request]) -> None:
        start = self._compact.size
        compact = self._compact.copy()
        rows: list[bytes] = []
        nodes: list[tuple[int, int, bytes]] = []
        try:
            for request in batch:
                for leaf, h in zip(request.leaves, request.hashes, strict=True):
                    nodes.append((0, start + len(rows), h))
                    rows.append(leaf)
                    nodes.extend(
                        (node.level, node.index, value) for node, value in compact.append(h)
                    )
            checkpoint = self._sign(compact)
            self._store.append_batch(start, rows, nodes, checkpoint)
        except Exception as exc:  # handed to every appender of the batch, not swallowed
            log.error("audit batch of %d events at index %d failed: %s", len(rows), start, exc)
            error = exc if isinstance(exc, AuditStoreError) else AuditStoreError(str(exc))
            for request in batch:
                request.future.set_exception(error)
            return
        self._compact = compact
        index = start
        for request in batch:
            receipts = [
                AppendReceipt(index + i, h, compact.size) for i, h in enumerate(request.hashes)
            ]
            index += len(request.hashes)
            request.future.set_result(receipts)

    # --- reads ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of entries covered by the latest signed checkpoint."""
        return self._reader.size()

    def checkpoint(self, *, at_or_below: int | None = None) -> str:
        """The latest signed checkpoint note, or the newest one with size <= ``at_or_below``."""
        self._check_open()
        return self._reader.checkpoint(at_or_below=at_or_below)

    def entries(self, start: int, end: int) -> list[Entry]:
        """Entries in [start, end), at most one page."""
        self._check_open()
        return self._reader.entries(start, end)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        self._check_open()
        return self._reader.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``size1`` to ``size2``."""
        self._check_open()
        return self._reader.consistency_proof(size1, size2)

    def _check_open(self) -> None:
        if self._closed:
            raise AuditLogClosedError()

    # --- shutdown ------------------------------------------------------------------------------

    def close(self, *, timeout_s: float = 30.0) -> None:
        """Commit what is queued, stop the writer and close the store (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=timeout_s)
        if self._writer.is_alive():
            raise AuditStoreError(f"the audit writer did not stop within {timeout_s:g} s")
        self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
