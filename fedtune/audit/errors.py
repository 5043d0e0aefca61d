"""The audit log's errors: what the log refuses, and what a verifier found wrong with a log."""

from __future__ import annotations

from fedtune.errors import FedtuneError


class AuditError(FedtuneError):
    """Base of every audit-log error."""


# --- the log and its store -------------------------------------------------------------------


class InvalidEventError(AuditError):
    """An event offered for appending is not a valid, canonically encoded audit event."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid audit event: {reason}")


class AuditRangeError(AuditError):
    """A requested index, range or tree size lies beyond what the log has published."""

    def __init__(self, what: str, *, got: int, limit: int) -> None:
        self.what = what
        self.got = got
        self.limit = limit
        super().__init__(
            f"{what} {got} is beyond the log, whose latest signed checkpoint has size {limit}"
        )


class AuditStoreError(AuditError):
    """The store cannot be opened or written, belongs to another log, or contradicts itself."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"audit store: {reason}")


class AuditLogClosedError(AuditError):
    """The log was closed; nothing more is appended or served."""

    def __init__(self) -> None:
        super().__init__("the audit log is closed")


class AppendTimeoutError(AuditError):
    """An append was not acknowledged in time (it may still become durable later)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"the audit log did not acknowledge the append within {timeout_s:g} s; it may still "
            "be committed: check the log before retrying to avoid a duplicate entry"
        )


class AuditRpcError(AuditError):
    """The audit service answered a call with an error status."""

    def __init__(self, target: str, method: str, code: str, details: str) -> None:
        self.target = target
        self.method = method
        self.code = code
        self.details = details
        super().__init__(f"audit service at {target} refused {method}: {code}: {details}")


# --- what a verifier finds ---------------------------------------------------------------------


class AuditVerificationError(AuditError):
    """The log failed verification; the subclass says how, ``check`` names the failed check."""

    check = "log"


class CheckpointRejectedError(AuditVerificationError):
    """A checkpoint (the log's latest, an older one, or the saved one) does not verify."""

    check = "checkpoint"

    def __init__(self, which: str, reason: str) -> None:
        self.which = which
        self.reason = reason
        super().__init__(f"{which} checkpoint rejected: {reason}")


class EntryMissingError(AuditVerificationError):
    """The log's signed checkpoint covers an entry the log no longer serves."""

    check = "entries"

    def __init__(self, index: int, size: int) -> None:
        self.index = index
        self.size = size
        super().__init__(
            f"entry {index} is missing: the log's signed checkpoint covers {size} entries but "
            f"the log serves none at index {index} (deleted or truncated)"
        )


class EntryMismatchError(AuditVerificationError):
    """An entry differs from the one the log signed (edited, reordered, inserted or replaced)."""

    check = "entries"

    def __init__(self, index: int, checkpoint_size: int, reason: str) -> None:
        self.index = index
        self.checkpoint_size = checkpoint_size
        self.reason = reason
        super().__init__(
            f"entry {index} is not the entry the log signed (first bad entry; checked against "
            f"the signed checkpoint of size {checkpoint_size}): {reason}"
        )


class MalformedEntryError(AuditVerificationError):
    """A signed entry is not a canonical audit event: the log signed something it should not."""

    check = "entries"

    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        self.reason = reason
        super().__init__(f"entry {index} is not a canonical audit event: {reason}")


class LogTruncatedError(AuditVerificationError):
    """The log is now smaller than a checkpoint this party saved: entries were removed."""

    check = "consistency"

    def __init__(self, saved_size: int, size: int) -> None:
        self.saved_size = saved_size
        self.size = size
        super().__init__(
            f"log truncated: your saved checkpoint covers {saved_size} entries but the log's "
            f"latest signed checkpoint covers only {size}; entries {size}..{saved_size - 1} "
            "were removed or the log was rolled back"
        )


class LogForkError(AuditVerificationError):
    """The log signed a history that contradicts a checkpoint this party saved (fork/rewrite)."""

    check = "consistency"

    def __init__(
        self, *, saved_size: int, saved_root: bytes, size: int, root: bytes, reason: str
    ) -> None:
        self.saved_size = saved_size
        self.saved_root = saved_root
        self.size = size
        self.root = root
        self.reason = reason
        super().__init__(
            f"log fork: {reason} (saved checkpoint: size {saved_size}, root "
            f"{saved_root.hex()[:16]}...; log now: size {size}, root {root.hex()[:16]}...); keep "
            "both signed checkpoints, together they prove the log misbehaved"
        )
