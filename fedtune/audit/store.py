"""Durable, append-only storage for the audit log: the ``AuditStore`` interface and its SQLite form.

A store keeps three things, written together in one transaction per batch: the leaves (the
exact bytes hashed), the tree (the hash of every perfect subtree, leaf hashes at level 0, so a
proof at any size needs O(log n) look-ups), and every signed checkpoint the log published.
Content and tree are kept apart on purpose: a verifier recomputes hashes from the content and
checks them against the signed tree, so damage to one shows up against the other.
There is no update or delete in the interface; the SQLite form also refuses both with triggers,
so only someone editing the file by hand can rewrite history, and verifiers catch that.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from fedtune.audit.errors import AuditStoreError

__all__ = ["AuditStore", "LogBinding", "SqliteAuditStore", "StoredCheckpoint"]

SCHEMA_VERSION = "1"


class StoredCheckpoint(NamedTuple):
    """A signed checkpoint note as published, with the tree size it commits to."""

    size: int
    note: str


class LogBinding(NamedTuple):
    """Which log a store belongs to: its origin line and its note verifier key."""

    origin: str
    vkey: str


class AuditStore(Protocol):
    """What the audit log needs from storage (a PostgreSQL adapter would implement the same)."""

    def binding(self) -> LogBinding | None:
        """The log this store belongs to, or None for a fresh store."""
        ...

    def bind(self, binding: LogBinding) -> None:
        """Record, once, which log this store belongs to."""
        ...

    def size(self) -> int:
        """Number of leaves stored."""
        ...

    def append_batch(
        self,
        start: int,
        leaves: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoint: StoredCheckpoint,
    ) -> None:
        """Durably append leaves from index ``start``, the perfect subtrees they complete as
        (level, index, hash) with their leaf hashes at level 0, and the checkpoint covering
        them: all or nothing."""
        ...

    def leaves(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """The stored (index, leaf) rows with start <= index < end, in index order."""
        ...

    def subtree_hash(self, level: int, index: int) -> bytes:
        """The hash of perfect subtree (level, index); level 0 is a leaf hash."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size."""
        ...

    def checkpoint_at_or_below(self, size: int) -> StoredCheckpoint | None:
        """The published checkpoint with the largest tree size <= ``size``."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL CHECK (level >= 0),
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
"""
# Append-only: the interface has no update or delete, and the file refuses them too.
_TRIGGERS = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;\n"
    for table in ("meta", "leaves", "nodes", "checkpoints")
    for op in ("UPDATE", "DELETE")
)


def _as_bytes(value: object) -> bytes:
    # The column is declared BLOB, but SQLite stores whatever it is given: a hand-edited row may
    # hold TEXT or a number. Serve its bytes anyway and let the verifier judge them.
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


class SqliteAuditStore:
    """``AuditStore`` in one SQLite file: WAL, ``synchronous=FULL`` (a commit is on disk)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self._path = Path(path)
        self._readonly = readonly
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False
        if readonly:
            if not self._path.is_file():
                raise AuditStoreError(f"no audit store at {self._path}")
            self._writer: sqlite3.Connection | None = None
            self._reader = self._connect(readonly=True)
            self._check_schema()
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect(readonly=False)
            self._create_schema()
            self._reader = self._connect(readonly=False)

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"{self._path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: the WAL is fsynced at every commit, so an acknowledged append survives
                # power loss (NORMAL would only protect against application crashes).
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot open {self._path}: {exc}") from exc

    def _create_schema(self) -> None:
        assert self._writer is not None
        try:
            with self._write_lock:
                # Every statement is idempotent (IF NOT EXISTS / OR IGNORE), so two processes
                # opening a fresh file at once both end with the same schema.
                self._writer.executescript(_SCHEMA + _TRIGGERS)
                self._writer.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)",
                    (SCHEMA_VERSION,),
                )
                row = self._writer.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot initialise {self._path}: {exc}") from exc
        if row[0] != SCHEMA_VERSION:
            raise AuditStoreError(
                f"{self._path} has schema {row[0]}, this fedtune reads {SCHEMA_VERSION}"
            )

    def _check_schema(self) -> None:
        try:
            row = self._read("SELECT value FROM meta WHERE key='schema'")
        except AuditStoreError as exc:
            raise AuditStoreError(f"{self._path} is not a fedtune audit store") from exc
        if not row or row[0][0] != SCHEMA_VERSION:
            raise AuditStoreError(f"{self._path} is not a fedtune audit store (schema 1)")

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        if self._closed:
            raise AuditStoreError("the store is closed")
        with self._read_lock:
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuditStoreError(f"read from {self._path} failed: {exc}") from exc

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    def binding(self) -> LogBinding | None:
        """The log this store belongs to, or None for a fresh store."""
        rows = dict(self._read("SELECT key, value FROM meta WHERE key IN ('origin', 'vkey')"))
        if not rows:
            return None
        if set(rows) != {"origin", "vkey"}:
            raise AuditStoreError("the store's log binding is incomplete")
        return LogBinding(rows["origin"], rows["vkey"])

    def bind(self, binding: LogBinding) -> None:
        """Record, once, which log this store belongs to."""
        existing = self.binding()
        if existing is not None:
            if existing != binding:
                raise AuditStoreError(f"the store already belongs to log {existing.origin!r}")
            return
        self._write(
            lambda conn: conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                (("origin", binding.origin), ("vkey", binding.vkey)),
            )
        )

    def size(self) -> int:
        """Number of leaves stored (one past the highest index)."""
        return int(self._read("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves")[0][0])

    def append_batch(
        self,
        start: int,
        leaves: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoint: StoredCheckpoint,
    ) -> None:
        """Append leaves, their subtree hashes and the covering checkpoint in one durable commit."""

        def write(conn: sqlite3.Connection) -> None:
            (current,) = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves").fetchone()
            if current != start:
                raise AuditStoreError(
                    f"append at index {start} but the store holds {current} leaves "
                    "(another writer, or a damaged store)"
                )
            conn.executemany(
                "INSERT INTO leaves(idx, leaf) VALUES (?, ?)",
                [(start + i, leaf) for i, leaf in enumerate(leaves)],
            )
            conn.executemany("INSERT INTO nodes(level, idx, hash) VALUES (?, ?, ?)", nodes)
            conn.execute(
                "INSERT INTO checkpoints(size, note) VALUES (?, ?)",
                (checkpoint.size, checkpoint.note),
            )

        self._write(write)

    def _write(self, body: Callable[[sqlite3.Connection], object]) -> None:
        if self._closed:
            raise AuditStoreError("the store is closed")
        if self._writer is None:
            raise AuditStoreError(f"{self._path} is open read-only")
        conn = self._writer
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    body(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise AuditStoreError(f"write to {self._path} failed: {exc}") from exc

    def leaves(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """The stored (index, leaf) rows with start <= index < end, in index order."""
        rows = self._read(
            "SELECT idx, leaf FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [(int(i), _as_bytes(leaf)) for i, leaf in rows]

    def subtree_hash(self, level: int, index: int) -> bytes:
        """The hash of perfect subtree (level, index); level 0 is a leaf hash."""
        rows = self._read("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index))
        if not rows or not isinstance(rows[0][0], bytes):
            raise AuditStoreError(f"the store lacks the hash of subtree ({level}, {index})")
        return rows[0][0]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size."""
        rows = self._read("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return StoredCheckpoint(int(rows[0][0]), rows[0][1]) if rows else None

    def checkpoint_at_or_below(self, size: int) -> StoredCheckpoint | None:
        """The published checkpoint with the largest tree size <= ``size``."""
        rows = self._read(
            "SELECT size, note FROM checkpoints WHERE size <= ? ORDER BY size DESC LIMIT 1",
            (size,),
        )
        return StoredCheckpoint(int(rows[0][0]), rows[0][1]) if rows else None

    def close(self) -> None:
        """Close both connections (idempotent)."""
        if self._closed:
            return
        with self._write_lock, self._read_lock:
            self._closed = True
            self._reader.close()
            if self._writer is not None:
                self._writer.close()

    def __enter__(self) -> SqliteAuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
