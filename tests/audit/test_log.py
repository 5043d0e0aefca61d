"""The audit log: durable batched appends, signed checkpoints, proofs, restart and refusals."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crypto import merkle
from crypto.identity import Identity
from crypto.note import open_checkpoint
from fedtune.audit import (
    AuditEvent,
    AuditLog,
    AuditLogClosedError,
    AuditRangeError,
    AuditStoreError,
    SqliteAuditStore,
)

ORIGIN = "fedtune.test/audit"


def _checkpoints(path: Path) -> list[int]:
    with SqliteAuditStore(path, readonly=True) as store:
        sizes = []
        size = store.latest_checkpoint().size
        while True:
            found = store.checkpoint_at_or_below(size)
            if found is None:
                break
            sizes.append(found.size)
            size = found.size - 1
            if size < 0:
                break
        return sorted(sizes)


def test_new_log_publishes_the_empty_tree(db_path: Path, log_identity: Identity):
    with AuditLog.open(db_path, log_identity, ORIGIN) as audit_log:
        checkpoint, note = open_checkpoint(audit_log.checkpoint(), [audit_log.verifier])
        assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 0)
        assert checkpoint.root_hash == merkle.EMPTY_ROOT
        assert note.signatures[0].key_name == ORIGIN
        assert audit_log.size == 0


def test_append_returns_a_receipt_covered_by_a_signed_checkpoint(
    db_path: Path, log_identity: Identity, event_factory
):
    with AuditLog.open(db_path, log_identity, ORIGIN) as audit_log:
        events = [event_factory(i) for i in range(7)]
        receipts = [audit_log.append(e) for e in events[:3]] + audit_log.append_many(events[3:])
        assert [r.index for r in receipts] == list(range(7))
        assert [r.tree_size for r in receipts] == [1, 2, 3, 7, 7, 7, 7]
        for event, receipt in zip(events, receipts, strict=True):
            assert receipt.leaf_hash == merkle.leaf_hash(event.leaf())
            note = audit_log.checkpoint(at_or_below=receipt.tree_size)
            checkpoint, _ = open_checkpoint(note, [audit_log.verifier], origin=ORIGIN)
            assert checkpoint.size == receipt.tree_size
            proof = audit_log.inclusion_proof(receipt.index, receipt.tree_size)
            merkle.verify_inclusion(
                receipt.leaf_hash, receipt.index, receipt.tree_size, proof, checkpoint.root_hash
            )
        # Entries come back byte for byte.
        assert [e.leaf for e in audit_log.entries(0, 7)] == [e.leaf() for e in events]
        # And the root is the RFC 9162 root of those leaves.
        checkpoint, _ = open_checkpoint(audit_log.checkpoint(), [audit_log.verifier])
        assert checkpoint.root_hash == merkle.root_from_leaf_hashes(
            [merkle.leaf_hash(e.leaf()) for e in events]
        )


def test_proofs_match_an_in_memory_tree(db_path: Path, log_identity: Identity, build):
    audit_log = build(db_path, log_identity, [1, 2, 3, 5, 8, 13, 21, 1, 30])
    try:
        leaves = [e.leaf for e in audit_log.entries(0, audit_log.size)]
        tree = merkle.MemoryTree.from_leaf_hashes([merkle.leaf_hash(x) for x in leaves])
        size = audit_log.size
        assert size == 84
        for index in (0, 1, 17, 63, 64, 83):
            for at in (index + 1, 64, 65, size):
                if index < at <= size:
                    assert audit_log.inclusion_proof(index, at) == tree.inclusion_proof(index, at)
        for size1 in (1, 3, 32, 63, 64, 83, 84):
            assert audit_log.consistency_proof(size1, size) == tree.consistency_proof(size1)
    finally:
        audit_log.close()


def test_concurrent_appends_are_grouped_and_all_acknowledged(
    db_path: Path, log_identity: Identity, event_factory
):
    receipts: list = []
    lock = threading.Lock()

    def appender(worker: int) -> None:
        for i in range(25):
            r = audit_log.append(event_factory(worker * 1000 + i))
            with lock:
                receipts.append(r)

    with AuditLog.open(db_path, log_identity, ORIGIN, batch_wait_ms=2.0) as audit_log:
        threads = [threading.Thread(target=appender, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert sorted(r.index for r in receipts) == list(range(200))
        assert audit_log.size == 200
    sizes = _checkpoints(db_path)
    # Group commit: fewer checkpoints (= transactions) than appends, one per batch.
    assert sizes[0] == 0 and sizes[-1] == 200
    assert len(sizes) - 1 < 200


def test_batching_off_commits_each_append_alone(
    db_path: Path, log_identity: Identity, event_factory
):
    with AuditLog.open(db_path, log_identity, ORIGIN, batching=False) as audit_log:
        assert not audit_log.batching
        threads = [
            threading.Thread(
                target=lambda w=w: [audit_log.append(event_factory(w * 100 + i)) for i in range(10)]
            )
            for w in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert _checkpoints(db_path) == list(range(41))


def test_reopen_continues_the_same_tree(db_path: Path, log_identity: Identity, build):
    audit_log = build(db_path, log_identity, [3, 4])
    before = audit_log.checkpoint()
    audit_log.close()
    with AuditLog.open(db_path, log_identity, ORIGIN) as again:
        assert again.checkpoint() == before
        again.append_many([AuditEvent.from_leaf(e.leaf) for e in again.entries(0, 2)])
        assert again.size == 9
        first, _ = open_checkpoint(before, [again.verifier])
        now, _ = open_checkpoint(again.checkpoint(), [again.verifier])
        merkle.verify_consistency(
            first.size,
            now.size,
            again.consistency_proof(first.size, now.size),
            first.root_hash,
            now.root_hash,
        )


def test_store_of_another_log_is_refused(db_path: Path, log_identity: Identity, build):
    build(db_path, log_identity, [2]).close()
    with pytest.raises(AuditStoreError, match="belongs to log"):
        AuditLog.open(db_path, Identity.generate(), ORIGIN)
    with pytest.raises(AuditStoreError, match="belongs to log"):
        AuditLog.open(db_path, log_identity, "fedtune.test/other")


def test_damaged_tree_is_refused_at_start(db_path: Path, log_identity: Identity, build, tampering):
    build(db_path, log_identity, [4, 4]).close()
    with tampering(db_path) as conn:
        conn.execute("UPDATE nodes SET hash = zeroblob(32) WHERE level = 3 AND idx = 0")
    with pytest.raises(AuditStoreError, match="disagrees"):
        AuditLog.open(db_path, log_identity, ORIGIN)


def test_failed_commit_reaches_every_appender_and_changes_nothing(
    db_path: Path, log_identity: Identity, build, tampering, event_factory
):
    audit_log = build(db_path, log_identity, [3])
    try:
        before = audit_log.checkpoint()
        # Another writer sneaks a row in: the log must refuse to build on a store it did not write.
        with tampering(db_path) as conn:
            conn.execute("INSERT INTO leaves(idx, leaf) VALUES (3, x'00')")
        with pytest.raises(AuditStoreError, match="holds 4 leaves"):
            audit_log.append(event_factory(3))
        assert audit_log.checkpoint() == before
    finally:
        audit_log.close()


def test_validation_and_closed_log(db_path: Path, log_identity: Identity, event_factory):
    with pytest.raises(ValueError, match="origin"):
        AuditLog.open(db_path, log_identity, "has space")
    with pytest.raises(ValueError, match="batch_max"):
        AuditLog.open(db_path, log_identity, ORIGIN, batch_max=0)
    with SqliteAuditStore(db_path) as store, pytest.raises(TypeError):
        AuditLog(store, "not an identity", ORIGIN)  # type: ignore[arg-type]
    audit_log = AuditLog.open(db_path, log_identity, ORIGIN)
    with pytest.raises(TypeError):
        audit_log.append_many(event_factory(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        audit_log.append({"action": "upload"})  # type: ignore[arg-type]
    assert audit_log.append_many([]) == []
    audit_log.append(event_factory(0))
    with pytest.raises(AuditRangeError):
        audit_log.entries(0, 2)
    with pytest.raises(AuditRangeError):
        audit_log.inclusion_proof(0, 2)
    with pytest.raises(ValueError):
        audit_log.inclusion_proof(1, 1)
    with pytest.raises(ValueError):
        audit_log.consistency_proof(0, 1)
    with pytest.raises(ValueError):
        audit_log.entries(1, 0)
    audit_log.close()
    audit_log.close()
    with pytest.raises(AuditLogClosedError):
        audit_log.append(event_factory(1))
    with pytest.raises(AuditLogClosedError):
        audit_log.checkpoint()
