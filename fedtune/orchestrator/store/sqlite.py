"""SQLite implementation of the repository: WAL, synchronous=FULL, versioned schema, group commit.

Every write runs on one writer thread. Writes that arrive while a commit is in progress are
batched into the next transaction, each inside its own SAVEPOINT, so one failing write rolls
back alone while the batch shares one fsync (group commit). A caller returns only after the
COMMIT that holds its write, so an acknowledged change survives a crash at any later point.
"""

from __future__ import annotations

import datetime as dt
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fedtune.orchestrator.errors import AlreadyExists, IllegalTransition, NotFound, PolicyDowngrade
from fedtune.orchestrator.store.records import (
    Acceptance,
    CkksContextRecord,
    EnrolmentToken,
    ExportApprovalRecord,
    Invitee,
    IssuedCertificate,
    ModelRecord,
    ModelVersionRecord,
    NodeKeyRecord,
    NonceRecord,
    Party,
    PolicyRecord,
    ReleaseDecision,
    SealedAdapterRecord,
    SessionRecord,
    SessionReportRecord,
    TransitionRecord,
    Upload,
)

T = TypeVar("T")

# Each entry moves the schema from version i to i+1; never edit an applied entry, append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE enrolment_tokens (
        token_sha256 BLOB PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT, used_by TEXT
    );
    CREATE TABLE parties (
        fingerprint TEXT PRIMARY KEY, public_key BLOB NOT NULL, role TEXT NOT NULL,
        name TEXT NOT NULL, enrolled_at TEXT NOT NULL
    );
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, role TEXT NOT NULL,
        name TEXT NOT NULL, not_after TEXT NOT NULL, issued_at TEXT NOT NULL, revoked_at TEXT
    );
    CREATE TABLE models (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE TABLE uploads (
        upload_id TEXT PRIMARY KEY, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
        owner TEXT NOT NULL, manifest BLOB NOT NULL, manifest_signature BLOB NOT NULL,
        manifest_sha256 BLOB NOT NULL, ciphertext_sha256 BLOB NOT NULL,
        total_size INTEGER NOT NULL, chunk_size INTEGER NOT NULL, chunk_count INTEGER NOT NULL,
        created_at TEXT NOT NULL, completed_at TEXT,
        UNIQUE (model_name, model_version)
    );
    CREATE TABLE upload_chunks (
        upload_id TEXT NOT NULL REFERENCES uploads(upload_id), idx INTEGER NOT NULL,
        sha256 BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (upload_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE model_versions (
        model_name TEXT NOT NULL REFERENCES models(name), version TEXT NOT NULL,
        owner TEXT NOT NULL, manifest BLOB NOT NULL, manifest_signature BLOB NOT NULL,
        ciphertext_sha256 BLOB NOT NULL, size INTEGER NOT NULL, blob_key TEXT NOT NULL,
        registered_at TEXT NOT NULL, PRIMARY KEY (model_name, version)
    );
    CREATE TABLE policies (
        model_name TEXT PRIMARY KEY, version INTEGER NOT NULL, document BLOB NOT NULL,
        signature BLOB NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE policy_history (
        model_name TEXT NOT NULL, version INTEGER NOT NULL, document BLOB NOT NULL,
        signature BLOB NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (model_name, version)
    );
    CREATE TABLE secrets (
        kind TEXT NOT NULL, object_id TEXT NOT NULL, wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL, PRIMARY KEY (kind, object_id)
    );
    CREATE TABLE nonces (
        nonce BLOB PRIMARY KEY, issued_to TEXT NOT NULL, session_id TEXT NOT NULL,
        kind TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT
    );
    CREATE TABLE release_decisions (
        nonce BLOB PRIMARY KEY, session_id TEXT NOT NULL, caller TEXT NOT NULL,
        kind TEXT NOT NULL, released INTEGER NOT NULL, summary TEXT NOT NULL,
        decided_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY, terms BLOB NOT NULL, terms_signature BLOB NOT NULL,
        creator TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
        model_name TEXT NOT NULL, model_version TEXT NOT NULL, provider TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE session_invitees (
        session_id TEXT NOT NULL REFERENCES sessions(session_id), fingerprint TEXT NOT NULL,
        public_key BLOB NOT NULL, role TEXT NOT NULL, PRIMARY KEY (session_id, fingerprint)
    );
    CREATE TABLE session_acceptances (
        session_id TEXT NOT NULL REFERENCES sessions(session_id), fingerprint TEXT NOT NULL,
        signature BLOB NOT NULL, accepted_at TEXT NOT NULL, PRIMARY KEY (session_id, fingerprint)
    );
    CREATE TABLE session_transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, from_state TEXT NOT NULL,
        to_state TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL
    );
    CREATE INDEX session_transitions_by_session ON session_transitions (session_id, seq);
    """,
    """
    CREATE TABLE session_node_keys (
        session_id TEXT NOT NULL REFERENCES sessions(session_id), fingerprint TEXT NOT NULL,
        public_key BLOB NOT NULL, signature BLOB NOT NULL, registered_at TEXT NOT NULL,
        PRIMARY KEY (session_id, fingerprint)
    );
    CREATE TABLE session_reports (
        session_id TEXT PRIMARY KEY, report BLOB NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE ckks_contexts (
        session_id TEXT PRIMARY KEY, sealed_context BLOB NOT NULL, public_context BLOB NOT NULL,
        key_id TEXT NOT NULL, created_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE session_adapters (
        session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
        sealed_sha256 TEXT NOT NULL, sealed_size INTEGER NOT NULL, content_mac TEXT NOT NULL,
        key_id TEXT NOT NULL, after_round INTEGER NOT NULL, adapter_fingerprint TEXT NOT NULL,
        uploaded_by TEXT NOT NULL, blob_key TEXT NOT NULL, stored_at TEXT NOT NULL
    );
    CREATE TABLE adapter_confirmations (
        session_id TEXT NOT NULL REFERENCES sessions(session_id), fingerprint TEXT NOT NULL,
        confirmed_at TEXT NOT NULL, PRIMARY KEY (session_id, fingerprint)
    );
    CREATE TABLE export_approvals (
        session_id TEXT NOT NULL REFERENCES sessions(session_id), fingerprint TEXT NOT NULL,
        role TEXT NOT NULL, adapter_sha256 TEXT NOT NULL, document BLOB NOT NULL,
        signature BLOB NOT NULL, approved_at TEXT NOT NULL, PRIMARY KEY (session_id, fingerprint)
    );
    """,
    # Sealed-blob digests became BLAKE3 (manifest version 2): the columns say "digest" and
    # each row names its algorithm; rows written before this step were SHA-256.
    """
    ALTER TABLE uploads RENAME COLUMN ciphertext_sha256 TO ciphertext_digest;
    ALTER TABLE uploads ADD COLUMN digest_algorithm TEXT NOT NULL DEFAULT 'sha256';
    ALTER TABLE upload_chunks RENAME COLUMN sha256 TO digest;
    ALTER TABLE model_versions RENAME COLUMN ciphertext_sha256 TO ciphertext_digest;
    ALTER TABLE model_versions ADD COLUMN digest_algorithm TEXT NOT NULL DEFAULT 'sha256';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def _ts(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(dt.UTC).isoformat()


def _opt_ts(value: dt.datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _dt(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _req_dt(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION, one transaction per step; return the version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {current} is newer than this fedtune ({SCHEMA_VERSION})"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


class SqliteRepository:
    """The embedded repository: one SQLite file in WAL mode with synchronous=FULL."""

    def __init__(self, path: str | Path, *, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._max_batch = max_batch
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer = self._connect()
        migrate(self._writer)
        self._queue: queue.SimpleQueue[
            tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run_writer, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsynced) before it returns; NORMAL could lose the last
        # acknowledged transactions on power loss.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    # -- plumbing -------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees the same committed state."""
        conn = self._reader()
        conn.execute("BEGIN DEFERRED")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("repository is closed")
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future.result()

    def _run_writer(self) -> None:
        conn = self._writer
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit_batch(conn, batch)
            if stop:
                return

    def _commit_batch(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]],
    ) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for fn, future in batch:
            conn.execute("SAVEPOINT op")
            try:
                result = fn(conn)
            except BaseException as exc:  # handed to the caller; the savepoint undoes its rows
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((future, None, exc))
            else:
                conn.execute("RELEASE op")
                if isinstance(result, sqlite3.Cursor):
                    # A cursor must die on this thread: finalising its statement on another
                    # thread while this one uses the connection is SQLITE_MISUSE.
                    result.close()
                    result = None
                outcomes.append((future, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            for future, _, _ in outcomes:
                future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def close(self) -> None:
        """Finish queued writes, stop the writer and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # -- enrolment --------------------------------------------------------------------------

    def add_token(self, token: EnrolmentToken) -> None:
        """Store a new enrolment token (by hash)."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO enrolment_tokens VALUES (?,?,?,?,?,?,?)",
                (
                    token.token_sha256,
                    token.role,
                    token.name,
                    _ts(token.created_at),
                    _ts(token.expires_at),
                    _opt_ts(token.used_at),
                    token.used_by,
                ),
            )

        self._write(op)

    def get_token(self, token_sha256: bytes) -> EnrolmentToken | None:
        """The token with this hash, if any."""
        row = (
            self._reader()
            .execute("SELECT * FROM enrolment_tokens WHERE token_sha256 = ?", (token_sha256,))
            .fetchone()
        )
        if row is None:
            return None
        return EnrolmentToken(
            row[0], row[1], row[2], _req_dt(row[3]), _req_dt(row[4]), _dt(row[5]), row[6]
        )

    @staticmethod
    def _insert_party(c: sqlite3.Connection, party: Party, cert: IssuedCertificate) -> None:
        existing = c.execute(
            "SELECT public_key, role FROM parties WHERE fingerprint = ?", (party.fingerprint,)
        ).fetchone()
        if existing is not None and (existing[0] != party.public_key or existing[1] != party.role):
            raise AlreadyExists(
                "identity", party.fingerprint, f"already enrolled with role {existing[1]}"
            )
        if existing is None:
            c.execute(
                "INSERT INTO parties VALUES (?,?,?,?,?)",
                (
                    party.fingerprint,
                    party.public_key,
                    party.role,
                    party.name,
                    _ts(party.enrolled_at),
                ),
            )
        c.execute(
            "INSERT INTO certificates VALUES (?,?,?,?,?,?,?)",
            (
                format(cert.serial, "x"),
                cert.fingerprint,
                cert.role,
                cert.name,
                _ts(cert.not_after),
                _ts(cert.issued_at),
                _opt_ts(cert.revoked_at),
            ),
        )

    def redeem_token(
        self, token_sha256: bytes, party: Party, certificate: IssuedCertificate, *, now: dt.datetime
    ) -> bool:
        """Mark the token used and record the party and its certificate, atomically."""

        def op(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "SELECT expires_at, used_at FROM enrolment_tokens WHERE token_sha256 = ?",
                (token_sha256,),
            ).fetchone()
            if row is None or row[1] is not None or _req_dt(row[0]) <= now:
                return False
            c.execute(
                "UPDATE enrolment_tokens SET used_at = ?, used_by = ? WHERE token_sha256 = ?",
                (_ts(now), party.fingerprint, token_sha256),
            )
            self._insert_party(c, party, certificate)
            return True

        return self._write(op)

    def add_party(self, party: Party, certificate: IssuedCertificate) -> None:
        """Record an identity and a certificate issued outside enrolment (the operator's)."""
        self._write(lambda c: self._insert_party(c, party, certificate))

    def get_party(self, fingerprint: str) -> Party | None:
        """The enrolled party with this identity fingerprint, if any."""
        row = (
            self._reader()
            .execute("SELECT * FROM parties WHERE fingerprint = ?", (fingerprint,))
            .fetchone()
        )
        return None if row is None else Party(row[0], row[1], row[2], row[3], _req_dt(row[4]))

    def get_certificate(self, serial: int) -> IssuedCertificate | None:
        """The issued certificate with this serial number, if any."""
        row = (
            self._reader()
            .execute("SELECT * FROM certificates WHERE serial = ?", (format(serial, "x"),))
            .fetchone()
        )
        if row is None:
            return None
        return IssuedCertificate(
            int(row[0], 16), row[1], row[2], row[3], _req_dt(row[4]), _req_dt(row[5]), _dt(row[6])
        )

    # -- registry ---------------------------------------------------------------------------

    @staticmethod
    def _upload_from(row: sqlite3.Row | tuple[Any, ...]) -> Upload:
        return Upload(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
            _req_dt(row[11]),
            _dt(row[12]),
            row[13],
        )

    def begin_upload(self, upload: Upload) -> Upload:
        """Create the upload (claiming the model name) or return the existing identical one."""

        def op(c: sqlite3.Connection) -> Upload:
            model = c.execute(
                "SELECT owner FROM models WHERE name = ?", (upload.model_name,)
            ).fetchone()
            if model is not None and model[0] != upload.owner:
                raise AlreadyExists("model", upload.model_name, "it belongs to another provider")
            row = c.execute(
                "SELECT * FROM uploads WHERE model_name = ? AND model_version = ?",
                (upload.model_name, upload.model_version),
            ).fetchone()
            if row is not None:
                existing = self._upload_from(row)
                if existing.manifest_sha256 != upload.manifest_sha256:
                    raise AlreadyExists(
                        "model version",
                        f"{upload.model_name}@{upload.model_version}",
                        "an upload with a different manifest exists; pick a new version",
                    )
                return existing
            if model is None:
                c.execute(
                    "INSERT INTO models VALUES (?,?,?)",
                    (upload.model_name, upload.owner, _ts(upload.created_at)),
                )
            c.execute(
                "INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    upload.upload_id,
                    upload.model_name,
                    upload.model_version,
                    upload.owner,
                    upload.manifest,
                    upload.manifest_signature,
                    upload.manifest_sha256,
                    upload.ciphertext_digest,
                    upload.total_size,
                    upload.chunk_size,
                    upload.chunk_count,
                    _ts(upload.created_at),
                    None,
                    upload.digest_algorithm,
                ),
            )
            return upload

        return self._write(op)

    def get_upload(self, upload_id: str) -> Upload | None:
        """The upload with this id, if any."""
        row = (
            self._reader()
            .execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,))
            .fetchone()
        )
        return None if row is None else self._upload_from(row)

    def record_chunks(self, upload_id: str, chunks: Sequence[tuple[int, bytes, int]]) -> None:
        """Note that chunks (index, digest, size) are durably stored (idempotent)."""
        rows = [(upload_id, index, digest, size) for index, digest, size in chunks]
        self._write(
            lambda c: c.executemany("INSERT OR IGNORE INTO upload_chunks VALUES (?,?,?,?)", rows)
        )

    def stored_chunks(self, upload_id: str) -> set[int]:
        """Indices of the chunks stored for an upload."""
        rows = (
            self._reader()
            .execute("SELECT idx FROM upload_chunks WHERE upload_id = ?", (upload_id,))
            .fetchall()
        )
        return {r[0] for r in rows}

    def reset_upload(self, upload_id: str) -> None:
        """Forget every stored chunk of an incomplete upload (its bytes proved wrong)."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM upload_chunks WHERE upload_id = ? AND upload_id IN"
                " (SELECT upload_id FROM uploads WHERE completed_at IS NULL)",
                (upload_id,),
            )

        self._write(op)

    def complete_upload(self, upload_id: str, version: ModelVersionRecord) -> ModelVersionRecord:
        """Mark the upload complete and register the version atomically (idempotent)."""

        def op(c: sqlite3.Connection) -> ModelVersionRecord:
            row = c.execute(
                "SELECT completed_at FROM uploads WHERE upload_id = ?", (upload_id,)
            ).fetchone()
            if row is None:
                raise NotFound("upload", upload_id)
            existing = c.execute(
                "SELECT * FROM model_versions WHERE model_name = ? AND version = ?",
                (version.model_name, version.version),
            ).fetchone()
            if existing is not None:
                return self._version_from(existing)
            c.execute(
                "UPDATE uploads SET completed_at = ? WHERE upload_id = ?",
                (_ts(version.registered_at), upload_id),
            )
            c.execute(
                "INSERT INTO model_versions VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    version.model_name,
                    version.version,
                    version.owner,
                    version.manifest,
                    version.manifest_signature,
                    version.ciphertext_digest,
                    version.size,
                    version.blob_key,
                    _ts(version.registered_at),
                    version.digest_algorithm,
                ),
            )
            c.execute("DELETE FROM upload_chunks WHERE upload_id = ?", (upload_id,))
            return version

        return self._write(op)

    @staticmethod
    def _version_from(row: sqlite3.Row | tuple[Any, ...]) -> ModelVersionRecord:
        return ModelVersionRecord(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], _req_dt(row[8]), row[9]
        )

    def get_model(self, name: str) -> ModelRecord | None:
        """A model and its registered versions, if any."""
        with self._snapshot() as c:
            row = c.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            versions = c.execute(
                "SELECT version FROM model_versions WHERE model_name = ? ORDER BY registered_at",
                (name,),
            ).fetchall()
        return ModelRecord(row[0], row[1], _req_dt(row[2]), tuple(v[0] for v in versions))

    def list_models(self) -> list[ModelRecord]:
        """Every model with its registered versions."""
        with self._snapshot() as c:
            models = c.execute("SELECT * FROM models ORDER BY name").fetchall()
            versions = c.execute(
                "SELECT model_name, version FROM model_versions ORDER BY registered_at"
            ).fetchall()
        by_model: dict[str, list[str]] = {}
        for name, version in versions:
            by_model.setdefault(name, []).append(version)
        return [
            ModelRecord(r[0], r[1], _req_dt(r[2]), tuple(by_model.get(r[0], ()))) for r in models
        ]

    def get_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """One registered version, if any."""
        row = (
            self._reader()
            .execute(
                "SELECT * FROM model_versions WHERE model_name = ? AND version = ?", (name, version)
            )
            .fetchone()
        )
        return None if row is None else self._version_from(row)

    def list_versions(self, name: str) -> list[ModelVersionRecord]:
        """The registered versions of a model, oldest first."""
        rows = (
            self._reader()
            .execute(
                "SELECT * FROM model_versions WHERE model_name = ? ORDER BY registered_at", (name,)
            )
            .fetchall()
        )
        return [self._version_from(r) for r in rows]

    # -- key broker ---------------------------------------------------------------------------

    def get_policy(self, model_name: str) -> PolicyRecord | None:
        """The release policy in force for a model, if any."""
        row = (
            self._reader()
            .execute("SELECT * FROM policies WHERE model_name = ?", (model_name,))
            .fetchone()
        )
        return (
            None if row is None else PolicyRecord(row[0], row[1], row[2], row[3], _req_dt(row[4]))
        )

    @staticmethod
    def _put_policy(c: sqlite3.Connection, policy: PolicyRecord) -> PolicyRecord:
        row = c.execute(
            "SELECT * FROM policies WHERE model_name = ?", (policy.model_name,)
        ).fetchone()
        if row is not None:
            current = PolicyRecord(row[0], row[1], row[2], row[3], _req_dt(row[4]))
            if policy.version == current.version and policy.document == current.document:
                return current
            if policy.version <= current.version:
                raise PolicyDowngrade(policy.model_name, current.version, policy.version)
        c.execute(
            "INSERT OR REPLACE INTO policies VALUES (?,?,?,?,?)",
            (
                policy.model_name,
                policy.version,
                policy.document,
                policy.signature,
                _ts(policy.updated_at),
            ),
        )
        c.execute(
            "INSERT INTO policy_history VALUES (?,?,?,?,?)",
            (
                policy.model_name,
                policy.version,
                policy.document,
                policy.signature,
                _ts(policy.updated_at),
            ),
        )
        return policy

    def put_policy(self, policy: PolicyRecord) -> PolicyRecord:
        """Install a higher-versioned (or the identical) policy; PolicyDowngrade otherwise."""
        return self._write(lambda c: self._put_policy(c, policy))

    @staticmethod
    def _put_secret(
        c: sqlite3.Connection, kind: str, object_id: str, wrapped: bytes, now: dt.datetime
    ) -> None:
        c.execute(
            "INSERT OR REPLACE INTO secrets VALUES (?,?,?,?)", (kind, object_id, wrapped, _ts(now))
        )

    def put_secret(self, kind: str, object_id: str, wrapped: bytes, *, now: dt.datetime) -> None:
        """Store (or replace) a secret wrapped under the broker's master key."""
        self._write(lambda c: self._put_secret(c, kind, object_id, wrapped, now))

    def get_secret(self, kind: str, object_id: str) -> bytes | None:
        """A wrapped secret, if any."""
        row = (
            self._reader()
            .execute(
                "SELECT wrapped FROM secrets WHERE kind = ? AND object_id = ?", (kind, object_id)
            )
            .fetchone()
        )
        return None if row is None else row[0]

    def add_secret(self, kind: str, object_id: str, wrapped: bytes, *, now: dt.datetime) -> bool:
        """Store a wrapped secret unless one exists for (kind, object_id): then False."""

        def op(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO secrets VALUES (?,?,?,?)",
                (kind, object_id, wrapped, _ts(now)),
            )
            added = cur.rowcount == 1
            cur.close()
            return added

        return self._write(op)

    def register_key(
        self, object_id: str, wrapped: bytes, policy: PolicyRecord, *, now: dt.datetime
    ) -> PolicyRecord:
        """Store a model version's wrapped data key and its policy in one transaction."""

        def op(c: sqlite3.Connection) -> PolicyRecord:
            in_force = self._put_policy(c, policy)
            self._put_secret(c, "model-data-key", object_id, wrapped, now)
            return in_force

        return self._write(op)

    def add_nonce(self, nonce: NonceRecord) -> None:
        """Store a freshly issued nonce."""
        self._write(
            lambda c: c.execute(
                "INSERT INTO nonces VALUES (?,?,?,?,?,?,?)",
                (
                    nonce.nonce,
                    nonce.issued_to,
                    nonce.session_id,
                    nonce.kind,
                    _ts(nonce.issued_at),
                    _ts(nonce.expires_at),
                    _opt_ts(nonce.used_at),
                ),
            )
        )

    def get_nonce(self, nonce: bytes) -> NonceRecord | None:
        """A nonce, used or not, if it was ever issued."""
        row = self._reader().execute("SELECT * FROM nonces WHERE nonce = ?", (nonce,)).fetchone()
        if row is None:
            return None
        return NonceRecord(
            row[0], row[1], row[2], row[3], _req_dt(row[4]), _req_dt(row[5]), _dt(row[6])
        )

    def purge_nonces(self, *, expired_before: dt.datetime) -> int:
        """Delete nonces that expired before the cutoff; returns how many."""

        def op(c: sqlite3.Connection) -> int:
            cur = c.execute("DELETE FROM nonces WHERE expires_at < ?", (_ts(expired_before),))
            count = cur.rowcount
            cur.close()
            return count

        return self._write(op)

    def decide_release(self, decision: ReleaseDecision) -> bool:
        """Consume the nonce and record the decision in one transaction; False on replay."""

        def op(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE nonces SET used_at = ? WHERE nonce = ? AND used_at IS NULL",
                (_ts(decision.decided_at), decision.nonce),
            )
            if cur.rowcount != 1:
                return False
            c.execute(
                "INSERT INTO release_decisions VALUES (?,?,?,?,?,?,?)",
                (
                    decision.nonce,
                    decision.session_id,
                    decision.caller,
                    decision.kind,
                    int(decision.released),
                    decision.summary,
                    _ts(decision.decided_at),
                ),
            )
            return True

        return self._write(op)

    # -- sessions ----------------------------------------------------------------------------

    def create_session(self, session: SessionRecord) -> None:
        """Store a new session with its invitees (and any acceptance it starts with)."""

        def op(c: sqlite3.Connection) -> None:
            if c.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (session.session_id,)
            ).fetchone():
                raise AlreadyExists("session", session.session_id)
            c.execute(
                "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    session.session_id,
                    session.terms,
                    session.terms_signature,
                    session.creator,
                    session.state,
                    session.reason,
                    session.model_name,
                    session.model_version,
                    session.provider,
                    _ts(session.created_at),
                    _ts(session.updated_at),
                ),
            )
            for inv in session.invitees:
                c.execute(
                    "INSERT INTO session_invitees VALUES (?,?,?,?)",
                    (session.session_id, inv.fingerprint, inv.public_key, inv.role),
                )
            for acc in session.acceptances:
                c.execute(
                    "INSERT INTO session_acceptances VALUES (?,?,?,?)",
                    (session.session_id, acc.fingerprint, acc.signature, _ts(acc.accepted_at)),
                )
            for tr in session.transitions:
                self._insert_transition(c, session.session_id, tr)

        self._write(op)

    @staticmethod
    def _insert_transition(c: sqlite3.Connection, session_id: str, tr: TransitionRecord) -> None:
        c.execute(
            "INSERT INTO session_transitions (session_id, from_state, to_state, actor, reason, at)"
            " VALUES (?,?,?,?,?,?)",
            (session_id, tr.from_state, tr.to_state, tr.actor, tr.reason, _ts(tr.at)),
        )

    @staticmethod
    def _load_session(c: sqlite3.Connection, row: tuple[Any, ...]) -> SessionRecord:
        sid = row[0]
        invitees = tuple(
            Invitee(r[0], r[1], r[2])
            for r in c.execute(
                "SELECT fingerprint, public_key, role FROM session_invitees WHERE session_id = ?"
                " ORDER BY role DESC, fingerprint",
                (sid,),
            )
        )
        acceptances = tuple(
            Acceptance(r[0], r[1], _req_dt(r[2]))
            for r in c.execute(
                "SELECT fingerprint, signature, accepted_at FROM session_acceptances"
                " WHERE session_id = ? ORDER BY accepted_at",
                (sid,),
            )
        )
        transitions = tuple(
            TransitionRecord(r[0], r[1], r[2], r[3], _req_dt(r[4]))
            for r in c.execute(
                "SELECT from_state, to_state, actor, reason, at FROM session_transitions"
                " WHERE session_id = ? ORDER BY seq",
                (sid,),
            )
        )
        node_keys = tuple(
            NodeKeyRecord(r[0], r[1], r[2], _req_dt(r[3]))
            for r in c.execute(
                "SELECT fingerprint, public_key, signature, registered_at FROM session_node_keys"
                " WHERE session_id = ? ORDER BY fingerprint",
                (sid,),
            )
        )
        return SessionRecord(
            sid,
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            _req_dt(row[9]),
            _req_dt(row[10]),
            invitees,
            acceptances,
            transitions,
            node_keys,
        )

    def get_session(self, session_id: str) -> SessionRecord | None:
        """A session with its invitees, acceptances and transitions, if any."""
        with self._snapshot() as c:
            row = c.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            return None if row is None else self._load_session(c, row)

    def get_session_for_member(self, session_id: str, fingerprint: str) -> SessionRecord | None:
        """A session with only ``fingerprint``'s invitation and acceptance, no transitions."""
        with self._snapshot() as c:
            row = c.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            if row is None:
                return None
            inv = c.execute(
                "SELECT fingerprint, public_key, role FROM session_invitees"
                " WHERE session_id = ? AND fingerprint = ?",
                (session_id, fingerprint),
            ).fetchall()
            acc = c.execute(
                "SELECT fingerprint, signature, accepted_at FROM session_acceptances"
                " WHERE session_id = ? AND fingerprint = ?",
                (session_id, fingerprint),
            ).fetchall()
        return SessionRecord(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            _req_dt(row[9]),
            _req_dt(row[10]),
            tuple(Invitee(r[0], r[1], r[2]) for r in inv),
            tuple(Acceptance(r[0], r[1], _req_dt(r[2])) for r in acc),
        )

    def list_sessions(self) -> list[SessionRecord]:
        """Every session (with participants and transitions)."""
        with self._snapshot() as c:
            rows = c.execute("SELECT * FROM sessions ORDER BY created_at").fetchall()
            return [self._load_session(c, r) for r in rows]

    @staticmethod
    def _move(c: sqlite3.Connection, session_id: str, tr: TransitionRecord) -> None:
        row = c.execute("SELECT state FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            raise NotFound("session", session_id)
        if row[0] != tr.from_state:
            raise IllegalTransition(
                session_id, row[0], tr.to_state, f"it is {row[0]}, not {tr.from_state}"
            )
        if tr.to_state != tr.from_state:
            c.execute(
                "UPDATE sessions SET state = ?, reason = ?, updated_at = ? WHERE session_id = ?",
                (tr.to_state, tr.reason, _ts(tr.at), session_id),
            )
        else:
            c.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", (_ts(tr.at), session_id)
            )
        SqliteRepository._insert_transition(c, session_id, tr)

    def amend_terms(
        self,
        session_id: str,
        terms: bytes,
        signature: bytes,
        added: Sequence[Invitee],
        transition: TransitionRecord,
        acceptance: Acceptance | None = None,
    ) -> None:
        """Replace terms, add invitees, drop stale acceptances, accept and move, atomically."""

        def op(c: sqlite3.Connection) -> None:
            old = c.execute(
                "SELECT terms FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            self._move(c, session_id, transition)
            c.execute(
                "UPDATE sessions SET terms = ?, terms_signature = ? WHERE session_id = ?",
                (terms, signature, session_id),
            )
            for inv in added:
                c.execute(
                    "INSERT OR IGNORE INTO session_invitees VALUES (?,?,?,?)",
                    (session_id, inv.fingerprint, inv.public_key, inv.role),
                )
            if old is not None and old[0] != terms:
                # An acceptance covers the exact bytes signed; new terms need new signatures.
                c.execute("DELETE FROM session_acceptances WHERE session_id = ?", (session_id,))
            if acceptance is not None:
                c.execute(
                    "INSERT OR REPLACE INTO session_acceptances VALUES (?,?,?,?)",
                    (
                        session_id,
                        acceptance.fingerprint,
                        acceptance.signature,
                        _ts(acceptance.accepted_at),
                    ),
                )

        self._write(op)

    def add_acceptance(
        self, session_id: str, fingerprint: str, signature: bytes, terms: bytes, *, now: dt.datetime
    ) -> None:
        """Record an acceptance, provided the terms are still ``terms``."""

        def op(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT terms FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise NotFound("session", session_id)
            if row[0] != terms:
                raise IllegalTransition(
                    session_id, "open", "open", "the terms changed meanwhile; sign them again"
                )
            c.execute(
                "INSERT OR REPLACE INTO session_acceptances VALUES (?,?,?,?)",
                (session_id, fingerprint, signature, _ts(now)),
            )
            c.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", (_ts(now), session_id)
            )

        self._write(op)

    def transition(self, session_id: str, transition: TransitionRecord) -> None:
        """Move a session from ``transition.from_state`` to ``to_state`` (compare-and-set)."""
        self._write(lambda c: self._move(c, session_id, transition))

    # -- sessions: the data plane -------------------------------------------------------------

    def put_node_key(self, session_id: str, key: NodeKeyRecord, *, states: Sequence[str]) -> None:
        """Record (or replace) an owner's SuperNode key while the session is in ``states``.

        Raises IllegalTransition when the session moved out of ``states`` meanwhile, and
        AlreadyExists when another owner of the session registered the same key.
        """

        def op(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT state FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise NotFound("session", session_id)
            if row[0] not in states:
                raise IllegalTransition(
                    session_id, row[0], row[0], "SuperNode keys are registered only while "
                    f"the session is {' or '.join(sorted(states))}"
                )
            other = c.execute(
                "SELECT fingerprint FROM session_node_keys WHERE session_id = ? AND public_key = ?"
                " AND fingerprint != ?",
                (session_id, key.public_key, key.fingerprint),
            ).fetchone()
            if other is not None:
                raise AlreadyExists(
                    "SuperNode key", key.fingerprint, f"{other[0]} registered the same key"
                )
            c.execute(
                "INSERT OR REPLACE INTO session_node_keys VALUES (?,?,?,?,?)",
                (session_id, key.fingerprint, key.public_key, key.signature,
                 _ts(key.registered_at)),
            )
            c.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?",
                (_ts(key.registered_at), session_id),
            )

        self._write(op)

    def put_session_report(self, report: SessionReportRecord) -> None:
        """Store (or replace) the aggregator's report of a session."""

        def op(c: sqlite3.Connection) -> None:
            if c.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (report.session_id,)
            ).fetchone() is None:
                raise NotFound("session", report.session_id)
            c.execute(
                "INSERT OR REPLACE INTO session_reports VALUES (?,?,?)",
                (report.session_id, report.report, _ts(report.updated_at)),
            )

        self._write(op)

    def get_session_report(self, session_id: str) -> SessionReportRecord | None:
        """The stored report of a session, if any."""
        row = (
            self._reader()
            .execute("SELECT * FROM session_reports WHERE session_id = ?", (session_id,))
            .fetchone()
        )
        return None if row is None else SessionReportRecord(row[0], row[1], _req_dt(row[2]))

    def put_ckks_context(
        self, record: CkksContextRecord, wrapped_key: bytes, *, secret_kind: str
    ) -> bool:
        """Store a session's CKKS contexts and the wrapped sealing key, unless they exist.

        One transaction; returns False (storing nothing) when the session has them already,
        so concurrent first uses keep the one context that was stored first.
        """

        def op(c: sqlite3.Connection) -> bool:
            if c.execute(
                "SELECT 1 FROM ckks_contexts WHERE session_id = ?", (record.session_id,)
            ).fetchone():
                return False
            c.execute(
                "INSERT INTO ckks_contexts VALUES (?,?,?,?,?)",
                (record.session_id, record.sealed_context, record.public_context, record.key_id,
                 _ts(record.created_at)),
            )
            self._put_secret(c, secret_kind, record.session_id, wrapped_key, record.created_at)
            return True

        return self._write(op)

    def get_ckks_context(self, session_id: str) -> CkksContextRecord | None:
        """A session's CKKS contexts, if generated."""
        row = (
            self._reader()
            .execute("SELECT * FROM ckks_contexts WHERE session_id = ?", (session_id,))
            .fetchone()
        )
        if row is None:
            return None
        return CkksContextRecord(row[0], row[1], row[2], row[3], _req_dt(row[4]))

    # -- results: the sealed adapter and export approvals ---------------------------------------

    def put_sealed_adapter(self, record: SealedAdapterRecord) -> SealedAdapterRecord:
        """Store a session's sealed adapter unless one is stored; return the one stored."""

        def op(c: sqlite3.Connection) -> None:
            if c.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (record.session_id,)
            ).fetchone() is None:
                raise NotFound("session", record.session_id)
            c.execute(
                "INSERT OR IGNORE INTO session_adapters VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.session_id, record.sealed_sha256, record.sealed_size, record.content_mac,
                 record.key_id, record.after_round, record.adapter_fingerprint,
                 record.uploaded_by, record.blob_key, _ts(record.stored_at)),
            )
            c.execute(
                "INSERT OR IGNORE INTO adapter_confirmations VALUES (?,?,?)",
                (record.session_id, record.uploaded_by, _ts(record.stored_at)),
            )

        self._write(op)
        stored = self.get_sealed_adapter(record.session_id)
        assert stored is not None
        return stored

    def get_sealed_adapter(self, session_id: str) -> SealedAdapterRecord | None:
        """A session's sealed adapter with the owners who confirmed it, if stored."""
        with self._snapshot() as c:
            row = c.execute(
                "SELECT * FROM session_adapters WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            confirmed = tuple(
                r[0]
                for r in c.execute(
                    "SELECT fingerprint FROM adapter_confirmations WHERE session_id = ?"
                    " ORDER BY confirmed_at, fingerprint",
                    (session_id,),
                )
            )
        return SealedAdapterRecord(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
            _req_dt(row[9]), confirmed,
        )

    def confirm_sealed_adapter(
        self, session_id: str, fingerprint: str, *, now: dt.datetime
    ) -> None:
        """Record that ``fingerprint``'s sandbox sealed the same adapter content (idempotent)."""
        self._write(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO adapter_confirmations VALUES (?,?,?)",
                (session_id, fingerprint, _ts(now)),
            )
        )

    def put_export_approval(self, record: ExportApprovalRecord) -> None:
        """Store (or replace) a party's export approval for a session."""
        self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO export_approvals VALUES (?,?,?,?,?,?,?)",
                (record.session_id, record.fingerprint, record.role, record.adapter_sha256,
                 record.document, record.signature, _ts(record.approved_at)),
            )
        )

    def list_export_approvals(self, session_id: str) -> list[ExportApprovalRecord]:
        """Every export approval of a session, by approver."""
        rows = (
            self._reader()
            .execute(
                "SELECT * FROM export_approvals WHERE session_id = ? ORDER BY fingerprint",
                (session_id,),
            )
            .fetchall()
        )
        return [
            ExportApprovalRecord(r[0], r[1], r[2], r[3], r[4], r[5], _req_dt(r[6])) for r in rows
        ]
