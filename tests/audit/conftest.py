"""Shared fixtures for the audit-log tests: a signing identity, events, logs, servers, tampering."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crypto.identity import Identity
from fedtune.audit import AuditEvent, AuditLog, LogReader, ObjectIds, SqliteAuditStore
from fedtune.audit.client import AuditClient
from fedtune.audit.service import serve

ORIGIN = "fedtune.test/audit"
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def log_identity() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def parties() -> dict[str, Identity]:
    return {name: Identity.generate() for name in ("provider", "owner", "operator")}


def make_event(i: int, by: Identity, **overrides: object) -> AuditEvent:
    """A deterministic, valid event number ``i`` by ``by`` (fields overridable)."""
    fields: dict[str, object] = {
        "time": T0 + dt.timedelta(seconds=i),
        "actor": by.fingerprint,
        "role": "system",
        "action": "round-start",
        "session": "sess-1",
        "objects": ObjectIds(round=i),
        "reference": f"ref-{i}",
    }
    fields.update(overrides)
    return AuditEvent(**fields)


@pytest.fixture
def event_factory(log_identity: Identity) -> Callable[..., AuditEvent]:
    return lambda i, **kw: make_event(i, log_identity, **kw)


def build_log(
    path: Path, identity: Identity, batches: list[int], *, origin: str = ORIGIN, offset: int = 0
) -> AuditLog:
    """A log at ``path`` whose entries were appended in batches of the given sizes."""
    audit_log = AuditLog.open(path, identity, origin)
    i = offset
    for size in batches:
        audit_log.append_many([make_event(n, identity) for n in range(i, i + size)])
        i += size
    return audit_log


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@contextlib.contextmanager
def tamper(path: Path) -> Iterator[sqlite3.Connection]:
    """Edit the store file directly, as an attacker with file access would (triggers dropped)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
        for name in names:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


@contextlib.contextmanager
def local_source(path: Path) -> Iterator[LogReader]:
    """Read a store file directly (read-only), as an operator on the same machine would."""
    store = SqliteAuditStore(path, readonly=True)
    try:
        yield LogReader(store)
    finally:
        store.close()


@contextlib.contextmanager
def grpc_source(audit_log: AuditLog) -> Iterator[AuditClient]:
    """Serve ``audit_log`` on a free loopback port and yield a client for it; stop afterwards."""
    server, port = serve(audit_log, "127.0.0.1:0")
    try:
        with AuditClient(f"127.0.0.1:{port}", timeout_s=10.0) as client:
            yield client
    finally:
        server.stop(grace=None).wait(timeout=10)


# Helpers reach the test modules as fixtures (importing ``conftest`` by name is fragile when
# several test directories have one).
@pytest.fixture
def build() -> Callable[..., AuditLog]:
    return build_log


@pytest.fixture
def tampering() -> Callable[[Path], contextlib.AbstractContextManager[sqlite3.Connection]]:
    return tamper


@pytest.fixture
def local() -> Callable[[Path], contextlib.AbstractContextManager[LogReader]]:
    return local_source


@pytest.fixture
def remote() -> Callable[[AuditLog], contextlib.AbstractContextManager[AuditClient]]:
    return grpc_source
