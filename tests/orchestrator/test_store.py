"""The durable state: SQLite repository (group commit, savepoints, schema) and the blob store."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
import threading

import pytest

from fedtune.orchestrator.documents import parse_canonical
from fedtune.orchestrator.errors import (
    AlreadyExists,
    ConfigurationError,
    InvalidRequest,
    NotFound,
    PolicyDowngrade,
)
from fedtune.orchestrator.keywrap import FileKeyWrapper, WrappedSecretCorrupt
from fedtune.orchestrator.registry import _missing_ranges
from fedtune.orchestrator.store import LocalBlobStore, SqliteRepository
from fedtune.orchestrator.store.records import EnrolmentToken, NonceRecord, PolicyRecord, Upload
from fedtune.orchestrator.store.sqlite import SCHEMA_VERSION
from fedtune.orchestrator.terms import SessionTerms

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def repo(tmp_path):
    r = SqliteRepository(tmp_path / "state.sqlite")
    yield r
    r.close()


def test_schema_is_versioned_and_wal_full(tmp_path, repo):
    conn = sqlite3.connect(tmp_path / "state.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # Reopening migrates nothing and keeps data.
    repo.add_token(EnrolmentToken(b"t" * 32, "provider", "p", NOW, NOW + dt.timedelta(hours=1)))
    repo.close()
    again = SqliteRepository(tmp_path / "state.sqlite")
    assert again.get_token(b"t" * 32).name == "p"
    again.close()


def test_a_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteRepository(tmp_path / "s.sqlite")


def test_blob_digest_migration_keeps_sha256_rows_named_as_such(tmp_path):
    # A database as the schema before BLAKE3 digests (step 4) left it, with one upload.
    from fedtune.orchestrator.store.sqlite import MIGRATIONS

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:3]:
        conn.executescript(step)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO models VALUES ('acme/x', 'a', ?)", (NOW.isoformat(),))
    conn.execute(
        "INSERT INTO uploads (upload_id, model_name, model_version, owner, manifest,"
        " manifest_signature, manifest_sha256, ciphertext_sha256, total_size, chunk_size,"
        " chunk_count, created_at) VALUES ('old', 'acme/x', '1', 'a', x'7b7d', x'73', ?, ?,"
        " 10, 4, 3, ?)",
        (b"m" * 32, b"s" * 32, NOW.isoformat()),
    )
    conn.execute("INSERT INTO upload_chunks VALUES ('old', 0, ?, 4)", (b"h" * 32,))
    conn.commit()
    conn.close()
    repo = SqliteRepository(path)
    try:
        old = repo.get_upload("old")
        assert old.ciphertext_digest == b"s" * 32 and old.digest_algorithm == "sha256"
        assert repo.stored_chunks("old") == {0}
        repo.begin_upload(_upload(uid="new", version="2"))
        new = repo.get_upload("new")
        assert new.digest_algorithm == "blake3" and new.ciphertext_digest == b"c" * 32
    finally:
        repo.close()
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(model_versions)")}
    conn.close()
    assert {"ciphertext_digest", "digest_algorithm"} <= columns
    assert "ciphertext_sha256" not in columns


def test_group_commit_keeps_each_write_atomic(repo):
    # Many concurrent writers, some failing: each failure rolls back alone.
    errors = []

    def add(i):
        try:
            repo.add_nonce(NonceRecord(i.to_bytes(32, "big"), "f", "s", "k", NOW, NOW))
            if i % 3 == 0:  # a duplicate insert fails inside its own savepoint
                repo.add_nonce(NonceRecord(i.to_bytes(32, "big"), "f", "s", "k", NOW, NOW))
        except sqlite3.IntegrityError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 20
    assert all(repo.get_nonce(i.to_bytes(32, "big")) is not None for i in range(60))


def test_policy_versions_only_go_up(repo):
    p1 = PolicyRecord("m", 1, b"doc1", b"s", NOW)
    assert repo.put_policy(p1).version == 1
    assert repo.put_policy(p1).version == 1  # the identical policy again is a no-op
    with pytest.raises(PolicyDowngrade):
        repo.put_policy(PolicyRecord("m", 1, b"other", b"s", NOW))
    repo.put_policy(PolicyRecord("m", 3, b"doc3", b"s", NOW))
    with pytest.raises(PolicyDowngrade) as err:
        repo.put_policy(PolicyRecord("m", 2, b"doc2", b"s", NOW))
    assert (err.value.current, err.value.got) == (3, 2)
    assert repo.get_policy("m").document == b"doc3"


def _upload(uid="u1", owner="a", version="1", manifest_sha=b"m" * 32):
    return Upload(
        uid, "acme/x", version, owner, b"{}", b"s", manifest_sha, b"c" * 32, 10, 4, 3, NOW
    )


def test_upload_claims_the_name_and_is_idempotent(repo):
    first = repo.begin_upload(_upload())
    assert repo.begin_upload(_upload(uid="u2")).upload_id == first.upload_id
    with pytest.raises(AlreadyExists, match="different manifest"):
        repo.begin_upload(_upload(uid="u3", manifest_sha=b"n" * 32))
    with pytest.raises(AlreadyExists, match="another provider"):
        repo.begin_upload(_upload(uid="u4", owner="b", version="2"))
    repo.record_chunks("u1", [(0, b"h" * 32, 4), (2, b"h" * 32, 2)])
    repo.record_chunks("u1", [(0, b"h" * 32, 4)])
    assert repo.stored_chunks("u1") == {0, 2}
    assert _upload().chunk_length(2) == 2
    assert _missing_ranges(3, {0, 2}) == [(1, 2)]
    assert _missing_ranges(5, set()) == [(0, 5)]


def test_nonce_is_consumed_once(repo):
    from fedtune.orchestrator.store.records import ReleaseDecision

    repo.add_nonce(NonceRecord(b"n" * 32, "f", "s", "k", NOW, NOW + dt.timedelta(minutes=1)))
    decision = ReleaseDecision(b"n" * 32, "s", "f", "k", True, "released", NOW)
    assert repo.decide_release(decision) is True
    assert repo.decide_release(decision) is False
    assert repo.get_nonce(b"n" * 32).used_at == NOW


def test_blob_store_finalises_atomically(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    store.prepare_upload("u1", 10)
    store.write_chunk("u1", 4, b"world!")
    store.write_chunk("u1", 0, b"helo")
    store.sync_upload("u1")
    assert not store.has_blob("k")
    store.finalize_upload("u1", "k")
    assert store.has_blob("k") and store.blob_size("k") == 10
    assert b"".join(store.read_blob("k", 2, 5, block=2)) == b"loworld"[:5]
    store.finalize_upload("u1", "k")  # idempotent after a crash between rename and commit
    with pytest.raises(NotFound):
        store.finalize_upload("u2", "k2")
    with pytest.raises(ValueError, match="unsafe"):
        store.prepare_upload("../etc", 1)
    part_mode = stat.S_IMODE((tmp_path / "blobs" / "blobs" / "k").stat().st_mode)
    assert part_mode == 0o644


def test_master_key_wrapping_binds_the_object(tmp_path):
    path = tmp_path / "master.key"
    wrapper = FileKeyWrapper.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wrapped = wrapper.wrap(b"k" * 32, aad=b"model-data-key:a@1")
    assert FileKeyWrapper.load(path).unwrap(wrapped, aad=b"model-data-key:a@1") == b"k" * 32
    with pytest.raises(WrappedSecretCorrupt):
        wrapper.unwrap(wrapped, aad=b"model-data-key:b@1")  # copied to another row
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(WrappedSecretCorrupt):
        wrapper.unwrap(tampered, aad=b"model-data-key:a@1")
    with pytest.raises(ConfigurationError, match="refusing"):
        FileKeyWrapper.create(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        FileKeyWrapper.load(path)


def test_only_canonical_documents_are_accepted():
    terms = SessionTerms(
        session_id="s",
        model_name="m",
        model_version="1",
        provider_fingerprint="ed25519:" + "a" * 64,
        invited_owners=["ed25519:" + "b" * 64],
        rounds=1,
        aggregation="ckks",
        min_participants=1,
        labels=["x", "y"],
        created_at=NOW,
    )
    canonical = terms.canonical_bytes()
    assert parse_canonical(SessionTerms, canonical, field="terms") == terms
    pretty = terms.model_dump_json(indent=2).encode()
    with pytest.raises(InvalidRequest, match="canonical"):
        parse_canonical(SessionTerms, pretty, field="terms")
    with pytest.raises(InvalidRequest, match="not a valid"):
        parse_canonical(SessionTerms, b'{"session_id": 3}', field="terms")


def test_writes_hand_back_no_cursor(repo):
    # Regression: a cursor returned to the calling thread was finalised there while the
    # writer thread used the connection (sqlite3.InterfaceError: API misuse).
    repo.add_nonce(NonceRecord(b"c" * 32, "f", "s", "k", NOW, NOW))
    result = repo._write(lambda c: c.execute("SELECT 1"))
    assert result is None


def test_expired_nonces_are_purged_and_fresh_ones_kept(repo):
    old = NonceRecord(b"o" * 32, "f", "s", "k", NOW, NOW + dt.timedelta(seconds=1))
    fresh = NonceRecord(b"f" * 32, "f", "s", "k", NOW, NOW + dt.timedelta(hours=2))
    repo.add_nonce(old)
    repo.add_nonce(fresh)
    assert repo.purge_nonces(expired_before=NOW + dt.timedelta(hours=1)) == 1
    assert repo.get_nonce(b"o" * 32) is None
    assert repo.get_nonce(b"f" * 32) == fresh
