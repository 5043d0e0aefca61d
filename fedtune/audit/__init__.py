"""The tamper-evident audit log: RFC 9162 Merkle tree of events, C2SP signed checkpoints."""

from fedtune.audit.errors import (
    AppendTimeoutError,
    AuditError,
    AuditLogClosedError,
    AuditRangeError,
    AuditRpcError,
    AuditStoreError,
    AuditVerificationError,
    CheckpointRejectedError,
    EntryMismatchError,
    EntryMissingError,
    InvalidEventError,
    LogForkError,
    LogTruncatedError,
    MalformedEntryError,
)
from fedtune.audit.events import ANONYMOUS, Action, AuditEvent, ObjectIds, Outcome, Role
from fedtune.audit.log import AppendReceipt, AuditLog
from fedtune.audit.reader import LogReader
from fedtune.audit.source import Entry, LogSource
from fedtune.audit.store import AuditStore, SqliteAuditStore
from fedtune.audit.verify import VerifyReport, default_checkpoint_path, read_events, verify_log

__all__ = [
    "ANONYMOUS",
    "Action",
    "AppendReceipt",
    "AppendTimeoutError",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditLogClosedError",
    "AuditRangeError",
    "AuditRpcError",
    "AuditStore",
    "AuditStoreError",
    "AuditVerificationError",
    "CheckpointRejectedError",
    "Entry",
    "EntryMismatchError",
    "EntryMissingError",
    "InvalidEventError",
    "LogForkError",
    "LogReader",
    "LogSource",
    "LogTruncatedError",
    "MalformedEntryError",
    "ObjectIds",
    "Outcome",
    "Role",
    "SqliteAuditStore",
    "VerifyReport",
    "default_checkpoint_path",
    "read_events",
    "verify_log",
]
