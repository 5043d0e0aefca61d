"""verify_log against honest and tampered logs, read locally and over gRPC.

Tampering edits the SQLite file directly (triggers dropped), as someone with access to the
operator's disk would: edit, delete, reorder, truncate; and a fork, where the log's key signs a
second, different tree.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from crypto import merkle
from crypto.identity import Identity
from crypto.note import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from fedtune.audit import (
    AuditEvent,
    AuditLog,
    CheckpointRejectedError,
    EntryMismatchError,
    EntryMissingError,
    LogForkError,
    LogReader,
    LogTruncatedError,
    MalformedEntryError,
    SqliteAuditStore,
    default_checkpoint_path,
    read_events,
    verify_log,
)
from fedtune.audit.store import LogBinding, StoredCheckpoint

ORIGIN = "fedtune.test/audit"
BATCHES = [5, 1, 7, 3, 16, 2]  # checkpoints at sizes 0, 5, 6, 13, 16, 32, 34
SIZE = sum(BATCHES)


@pytest.fixture
def log_a(db_path: Path, log_identity: Identity, build):
    audit_log = build(db_path, log_identity, BATCHES)
    yield audit_log
    audit_log.close()


@pytest.fixture(params=["local", "grpc"])
def source_of(request, local, remote, db_path: Path):
    """Open a LogSource over the log: the store file read directly, or the gRPC service."""

    @contextlib.contextmanager
    def opener(audit_log: AuditLog, path: Path = db_path):
        if request.param == "local":
            with local(path) as source:
                yield source
        else:
            with remote(audit_log) as source:
                yield source

    return opener


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return tmp_path / "party" / "saved.checkpoint"


def _verify(source, audit_log: AuditLog, saved: Path, **kw):
    return verify_log(source, audit_log.verifier, saved_checkpoint=saved, **kw)


def test_honest_log_verifies_and_the_checkpoint_is_kept(log_a, source_of, saved, event_factory):
    with source_of(log_a) as source:
        first = _verify(source, log_a, saved)
    assert (first.size, first.previous_size, first.entries_checked) == (SIZE, None, SIZE)
    assert saved.read_text() == log_a.checkpoint()
    log_a.append_many([event_factory(100 + i) for i in range(5)])
    with source_of(log_a) as source:
        second = _verify(source, log_a, saved, keep_events=True)
    assert (second.previous_size, second.size) == (SIZE, SIZE + 5)
    assert second.previous_root == first.root_hash
    assert saved.read_text() == log_a.checkpoint()
    assert [i for i, _ in second.events] == list(range(SIZE + 5))
    assert second.events[-1][1] == event_factory(104)


def _replace_leaf(conn, index: int, leaf: bytes) -> None:
    conn.execute("UPDATE leaves SET leaf = ? WHERE idx = ?", (leaf, index))


@pytest.mark.parametrize(("index", "batch_end"), [(0, 5), (5, 6), (14, 16), (33, 34)])
def test_edited_entry_is_named(
    log_a, source_of, saved, tampering, db_path, event_factory, index, batch_end
):
    with source_of(log_a) as source:
        _verify(source, log_a, saved)
    before = saved.read_text()
    with tampering(db_path) as conn:
        # A plausible edit: a different, perfectly valid event in its place.
        _replace_leaf(conn, index, event_factory(index, action="evaluation").leaf())
    with source_of(log_a) as source, pytest.raises(EntryMismatchError) as err:
        _verify(source, log_a, saved)
    assert err.value.index == index
    assert err.value.checkpoint_size == batch_end
    assert f"entry {index} " in str(err.value)
    assert saved.read_text() == before  # nothing is saved from a failed run


def test_garbage_entry_is_named_as_mismatch(log_a, source_of, saved, tampering, db_path):
    with tampering(db_path) as conn:
        _replace_leaf(conn, 20, b"\x00not json at all")
    with source_of(log_a) as source, pytest.raises(EntryMismatchError) as err:
        _verify(source, log_a, saved)
    assert err.value.index == 20


def test_entry_edited_in_place_with_sql_text_functions(log_a, source_of, saved, tampering, db_path):
    # SQL's replace() turns the BLOB into TEXT: the store serves its bytes, the verifier judges.
    with tampering(db_path) as conn:
        conn.execute(
            "UPDATE leaves SET leaf = replace(leaf, 'round-start', 'evaluation') WHERE idx = 21"
        )
        assert (
            conn.execute("SELECT typeof(leaf) FROM leaves WHERE idx = 21").fetchone()[0] == "text"
        )
    with source_of(log_a) as source, pytest.raises(EntryMismatchError) as err:
        _verify(source, log_a, saved)
    assert err.value.index == 21


def test_deleted_entry_is_named(log_a, source_of, saved, tampering, db_path):
    with tampering(db_path) as conn:
        conn.execute("DELETE FROM leaves WHERE idx = 9")
    with source_of(log_a) as source, pytest.raises(EntryMissingError) as err:
        _verify(source, log_a, saved)
    assert (err.value.index, err.value.size) == (9, SIZE)


def test_deleted_and_renumbered_entry_is_named(log_a, source_of, saved, tampering, db_path):
    with tampering(db_path) as conn:
        conn.execute("DELETE FROM leaves WHERE idx = 9")
        conn.execute("UPDATE leaves SET idx = -(idx - 1) WHERE idx > 9")
        conn.execute("UPDATE leaves SET idx = -idx WHERE idx < 0")
    with source_of(log_a) as source, pytest.raises(EntryMismatchError) as err:
        _verify(source, log_a, saved)
    assert err.value.index == 9


def test_reordered_entries_are_named(log_a, source_of, saved, tampering, db_path):
    with tampering(db_path) as conn:
        (a,) = conn.execute("SELECT leaf FROM leaves WHERE idx = 3").fetchone()
        (b,) = conn.execute("SELECT leaf FROM leaves WHERE idx = 20").fetchone()
        _replace_leaf(conn, 3, b)
        _replace_leaf(conn, 20, a)
    with source_of(log_a) as source, pytest.raises(EntryMismatchError) as err:
        _verify(source, log_a, saved)
    assert err.value.index == 3


def test_truncated_entries_are_named(log_a, source_of, saved, tampering, db_path):
    with tampering(db_path) as conn:
        conn.execute("DELETE FROM leaves WHERE idx >= 30")
    with source_of(log_a) as source, pytest.raises(EntryMissingError) as err:
        _verify(source, log_a, saved)
    assert err.value.index == 30


def test_consistent_truncation_is_caught_by_the_saved_checkpoint(
    log_a, source_of, saved, tampering, db_path
):
    with source_of(log_a) as source:
        _verify(source, log_a, saved)
    # Roll the whole log back to size 13: leaves, subtree hashes and checkpoints. It is
    # self-consistent again, so only a party that kept a later checkpoint can tell.
    with tampering(db_path) as conn:
        conn.execute("DELETE FROM leaves WHERE idx >= 13")
        conn.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > 13")
        conn.execute("DELETE FROM checkpoints WHERE size > 13")
    with local_copy_verifies(db_path, log_a):
        pass
    with source_of(log_a) as source, pytest.raises(LogTruncatedError) as err:
        _verify(source, log_a, saved)
    assert (err.value.saved_size, err.value.size) == (SIZE, 13)


@contextlib.contextmanager
def local_copy_verifies(db_path: Path, audit_log: AuditLog):
    """Assert that, without a saved checkpoint, the rolled-back log looks fine on its own."""
    with SqliteAuditStore(db_path, readonly=True) as store:
        report = verify_log(LogReader(store), audit_log.verifier, saved_checkpoint=None)
        assert report.size == 13
    yield


def test_fork_at_the_same_size(log_a, source_of, saved, tmp_path, log_identity, build):
    with source_of(log_a) as source:
        _verify(source, log_a, saved)
    # The same key signs a different tree of the same size (a split view).
    fork_path = tmp_path / "fork.db"
    log_b = build(fork_path, log_identity, [SIZE], offset=1000)
    try:
        with source_of(log_b, fork_path) as source, pytest.raises(LogForkError) as err:
            _verify(source, log_b, saved)
        assert "same size" in str(err.value)
        assert err.value.saved_size == err.value.size == SIZE
    finally:
        log_b.close()


def test_fork_that_grew(log_a, source_of, saved, tmp_path, log_identity, build):
    with source_of(log_a) as source:
        _verify(source, log_a, saved)
    fork_path = tmp_path / "fork.db"
    log_b = build(fork_path, log_identity, [10, SIZE], offset=1000)
    try:
        with source_of(log_b, fork_path) as source, pytest.raises(LogForkError) as err:
            _verify(source, log_b, saved)
        assert "cannot prove" in str(err.value)
        assert (err.value.saved_size, err.value.size) == (SIZE, SIZE + 10)
    finally:
        log_b.close()


def test_rewritten_and_resigned_history(log_a, source_of, saved, tmp_path, log_identity, build):
    with source_of(log_a) as source:
        _verify(source, log_a, saved)
    # Someone with the key rebuilds the log with entry 7 changed and everything re-signed.
    rewritten = tmp_path / "rewritten.db"
    log_b = AuditLog.open(rewritten, log_identity, ORIGIN)
    try:
        leaves = [e.leaf for e in log_a.entries(0, SIZE)]
        events = [AuditEvent.from_leaf(x) for x in leaves]
        events[7] = events[7].model_copy(update={"reference": "rewritten"})
        log_b.append_many(events + events[:4])
        with source_of(log_b, rewritten) as source, pytest.raises(LogForkError):
            _verify(source, log_b, saved)
    finally:
        log_b.close()


def test_forged_checkpoint_is_rejected(log_a, source_of, saved, tampering, db_path):
    with tampering(db_path) as conn:
        (note,) = conn.execute("SELECT note FROM checkpoints WHERE size = ?", (SIZE,)).fetchone()
        lines = note.split("\n")
        lines[1] = str(SIZE + 1)
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", ("\n".join(lines), SIZE))
    with source_of(log_a) as source, pytest.raises(CheckpointRejectedError) as err:
        _verify(source, log_a, saved)
    assert "latest" in err.value.which


def test_wrong_log_key_or_origin_is_rejected(log_a, source_of, saved):
    stranger = NoteVerifier.from_public(ORIGIN, Identity.generate().public)
    with source_of(log_a) as source:
        with pytest.raises(CheckpointRejectedError, match="no signature from a trusted key"):
            verify_log(source, stranger, saved_checkpoint=saved)
        with pytest.raises(CheckpointRejectedError, match="origin"):
            verify_log(source, log_a.verifier, saved_checkpoint=saved, origin="other.example/log")
    assert not saved.exists()


def test_corrupt_saved_checkpoint_is_reported(log_a, source_of, saved):
    saved.parent.mkdir(parents=True)
    saved.write_text("not a checkpoint\n")
    with source_of(log_a) as source, pytest.raises(CheckpointRejectedError) as err:
        _verify(source, log_a, saved)
    assert "saved" in err.value.which
    assert saved.read_text() == "not a checkpoint\n"


def test_signed_entry_that_is_not_an_event(tmp_path, log_identity, local):
    # A log that signed a leaf which is not a canonical event: the hashes check out, the
    # content does not.
    path = tmp_path / "odd.db"
    signer = NoteSigner.from_identity(ORIGIN, log_identity)
    leaves = [b'{"not":"an event"}']
    compact = merkle.CompactRange()
    nodes = []
    for i, x in enumerate(leaves):
        nodes.append((0, i, merkle.leaf_hash(x)))
        nodes += [(n.level, n.index, h) for n, h in compact.append(merkle.leaf_hash(x))]
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, compact.root()), signer)
    with SqliteAuditStore(path) as store:
        store.bind(LogBinding(ORIGIN, signer.verifier.vkey))
        store.append_batch(0, leaves, nodes, StoredCheckpoint(1, note))
    with local(path) as source, pytest.raises(MalformedEntryError) as err:
        verify_log(source, signer.verifier, saved_checkpoint=None)
    assert err.value.index == 0


def test_every_edited_position_is_located(
    tmp_path, log_identity, build, local, tampering, event_factory
):
    # Exhaustive over a small log with uneven batches: the binary search over checkpoints and
    # the inclusion proofs inside the batch always land on the edited index.
    master = tmp_path / "master.db"
    build(master, log_identity, [3, 1, 5, 3, 1]).close()
    verifier = NoteVerifier.from_public(ORIGIN, log_identity.public)
    for index in range(13):
        copy = tmp_path / f"copy{index}.db"
        shutil.copy(master, copy)
        with tampering(copy) as conn:
            _replace_leaf(conn, index, event_factory(500 + index).leaf())
        with local(copy) as source, pytest.raises(EntryMismatchError) as err:
            verify_log(source, verifier, saved_checkpoint=None)
        assert err.value.index == index


def test_default_checkpoint_path_is_per_origin(tmp_path):
    a = default_checkpoint_path("fedtune.example/audit", tmp_path)
    b = default_checkpoint_path("fedtune.example_audit", tmp_path)
    assert a.parent == tmp_path / "audit"
    assert a.name.startswith("fedtune.example_audit-")
    assert a != b


def test_read_events_without_a_key(log_a, source_of):
    with source_of(log_a) as source:
        checkpoint, events = read_events(source)
    assert checkpoint.size == SIZE
    assert [i for i, _ in events] == list(range(SIZE))


def test_empty_log_verifies_and_any_growth_extends_it(
    db_path, log_identity, local, saved, event_factory
):
    audit_log = AuditLog.open(db_path, log_identity, ORIGIN)
    try:
        with local(db_path) as source:
            report = verify_log(source, audit_log.verifier, saved_checkpoint=saved)
        assert (report.size, report.root_hash) == (0, merkle.EMPTY_ROOT)
        audit_log.append_many([event_factory(i) for i in range(5)])
        with local(db_path) as source:
            report = verify_log(source, audit_log.verifier, saved_checkpoint=saved)
        assert (report.previous_size, report.size) == (0, 5)
    finally:
        audit_log.close()
