"""The SQLite audit store: durable settings, append-only rules, all-or-nothing batches."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from crypto import merkle
from fedtune.audit import AuditStoreError, SqliteAuditStore
from fedtune.audit.store import LogBinding, StoredCheckpoint


def _leaf(i: int) -> bytes:
    return f"leaf {i}".encode()


def _h(i: int) -> bytes:
    return merkle.leaf_hash(_leaf(i))


def _tree_of_two() -> list[tuple[int, int, bytes]]:
    return [(0, 0, _h(0)), (0, 1, _h(1)), (1, 0, merkle.node_hash(_h(0), _h(1)))]


def test_pragmas_make_commits_durable(db_path: Path):
    with SqliteAuditStore(db_path) as store:
        assert store.path == db_path
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    store = SqliteAuditStore(db_path)
    try:
        assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_batches_are_all_or_nothing(db_path: Path):
    with SqliteAuditStore(db_path) as store:
        store.append_batch(0, [_leaf(0), _leaf(1)], _tree_of_two(), StoredCheckpoint(2, "note 2"))
        assert store.size() == 2
        # Wrong start index: refused before anything is written.
        with pytest.raises(AuditStoreError, match="holds 2 leaves"):
            store.append_batch(5, [_leaf(5)], [], StoredCheckpoint(6, "note 6"))
        # A duplicate checkpoint size fails the whole transaction, leaves included.
        with pytest.raises(AuditStoreError, match="write"):
            store.append_batch(2, [_leaf(2)], [], StoredCheckpoint(2, "again"))
        assert store.size() == 2
        assert store.leaves(0, 10) == [(0, b"leaf 0"), (1, b"leaf 1")]
        assert store.latest_checkpoint() == StoredCheckpoint(2, "note 2")
        assert store.subtree_hash(0, 1) == _h(1)
        assert store.subtree_hash(1, 0) == merkle.node_hash(_h(0), _h(1))
        with pytest.raises(AuditStoreError, match="lacks"):
            store.subtree_hash(1, 1)


def test_checkpoint_lookup_at_or_below(db_path: Path):
    with SqliteAuditStore(db_path) as store:
        store.append_batch(0, [], [], StoredCheckpoint(0, "n0"))
        store.append_batch(0, [_leaf(0), _leaf(1), _leaf(2)], [], StoredCheckpoint(3, "n3"))
        store.append_batch(3, [_leaf(3)], [], StoredCheckpoint(4, "n4"))
        assert store.checkpoint_at_or_below(2) == StoredCheckpoint(0, "n0")
        assert store.checkpoint_at_or_below(3) == StoredCheckpoint(3, "n3")
        assert store.checkpoint_at_or_below(100) == StoredCheckpoint(4, "n4")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE leaves SET leaf = x'00' WHERE idx = 0",
        "DELETE FROM leaves WHERE idx = 0",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "DELETE FROM nodes",
        "UPDATE meta SET value = 'other' WHERE key = 'origin'",
    ],
)
def test_the_file_itself_refuses_updates_and_deletes(db_path: Path, sql: str):
    with SqliteAuditStore(db_path) as store:
        store.bind(LogBinding("o", "k"))
        store.append_batch(0, [_leaf(0), _leaf(1)], _tree_of_two(), StoredCheckpoint(2, "note"))
    conn = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(sql)
    conn.close()


def test_binding_is_recorded_once(db_path: Path):
    with SqliteAuditStore(db_path) as store:
        assert store.binding() is None
        store.bind(LogBinding("log.example/a", "vkey-a"))
        store.bind(LogBinding("log.example/a", "vkey-a"))  # idempotent
        with pytest.raises(AuditStoreError, match="already belongs"):
            store.bind(LogBinding("log.example/b", "vkey-b"))
        assert store.binding() == LogBinding("log.example/a", "vkey-a")


def test_readonly_store(db_path: Path, tmp_path: Path):
    with pytest.raises(AuditStoreError, match="no audit store"):
        SqliteAuditStore(tmp_path / "missing.db", readonly=True)
    not_a_store = tmp_path / "other.db"
    sqlite3.connect(not_a_store).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(AuditStoreError, match="not a fedtune audit store"):
        SqliteAuditStore(not_a_store, readonly=True)
    SqliteAuditStore(db_path).close()
    with SqliteAuditStore(db_path, readonly=True) as store:
        assert store.size() == 0
        with pytest.raises(AuditStoreError, match="read-only"):
            store.append_batch(0, [_leaf(0)], [], StoredCheckpoint(1, "n"))


def test_closed_store_refuses(db_path: Path):
    store = SqliteAuditStore(db_path)
    store.close()
    store.close()
    with pytest.raises(AuditStoreError, match="closed"):
        store.size()
