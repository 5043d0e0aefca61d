"""The orchestrator's typed errors; ``status.py`` maps each to one gRPC status code."""

from __future__ import annotations

from fedtune.errors import FedtuneError


class OrchestratorError(FedtuneError):
    """Base of every error the orchestrator (server or client side) raises."""


class ConfigurationError(OrchestratorError):
    """A deployment directory, client configuration or setting is missing or inconsistent."""


class NotFound(OrchestratorError):
    """The named object does not exist (or the caller may not learn that it does)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} does not exist")


class AlreadyExists(OrchestratorError):
    """An object with this name exists already, with different content."""

    def __init__(self, kind: str, name: str, detail: str = "") -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} already exists" + (f": {detail}" if detail else ""))


class InvalidRequest(OrchestratorError):
    """A request field is malformed or inconsistent; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Unauthenticated(OrchestratorError):
    """The caller presented no valid client certificate of this deployment."""


class PermissionDenied(OrchestratorError):
    """The caller's role or relation to the object does not allow the call; says what is missing."""

    def __init__(self, method: str, obj: str, reason: str) -> None:
        self.method = method
        self.object = obj
        self.reason = reason
        super().__init__(f"{method} on {obj}: {reason}")


class EnrolmentRefused(OrchestratorError):
    """An enrolment token is unknown, expired or used, or its request does not verify."""


class ChunkDigestMismatch(OrchestratorError):
    """A chunk's bytes do not hash to the digest sent with it."""

    def __init__(self, index: int, expected: str, got: str) -> None:
        self.index = index
        self.expected = expected
        self.got = got
        super().__init__(
            f"chunk {index}: the digest of the data is {got}, the chunk said {expected}; "
            "the chunk was not stored, send it again"
        )


class BlobDigestMismatch(OrchestratorError):
    """The assembled blob differs from what the signed manifest describes."""

    def __init__(self, what: str, expected: str, got: str, *, reset: bool = False) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        self.reset = reset
        super().__init__(
            f"assembled blob {what} is {got}, the manifest says {expected}"
            + (
                "; the upload was reset: check the sealed file against its manifest "
                "('fedtune provider verify') and upload it again"
                if reset
                else ""
            )
        )


class UploadIncomplete(OrchestratorError):
    """CompleteUpload was called before every chunk was stored."""

    def __init__(self, upload_id: str, first_missing: int, missing: int) -> None:
        self.upload_id = upload_id
        self.first_missing = first_missing
        self.missing = missing
        super().__init__(
            f"upload {upload_id} still misses {missing} chunk(s), the first is {first_missing}; "
            "resume the upload before completing it"
        )


class StorageFull(OrchestratorError):
    """The orchestrator's storage has no room left (ENOSPC/EDQUOT) for what it was asked to keep."""

    def __init__(self, what: str, path: str) -> None:
        self.what = what
        self.path = path
        super().__init__(
            f"the orchestrator's storage is full: could not write {what} under {path}; "
            "chunks acknowledged before stay stored: free space on the server (or grow the "
            "volume) and retry, the upload resumes from its first missing chunk"
        )


class PolicyDowngrade(OrchestratorError):
    """A release policy update does not carry a higher version than the one in force."""

    def __init__(self, model: str, current: int, got: int) -> None:
        self.model = model
        self.current = current
        self.got = got
        super().__init__(
            f"release policy of {model!r} is at version {current}; an update must carry a "
            f"higher version, got {got}"
        )


class IllegalTransition(OrchestratorError):
    """A session cannot move from its current state to the requested one."""

    def __init__(self, session_id: str, from_state: str, to_state: str, reason: str = "") -> None:
        self.session_id = session_id
        self.from_state = from_state
        self.to_state = to_state
        super().__init__(
            f"session {session_id} cannot go from {from_state} to {to_state}"
            + (f": {reason}" if reason else "")
        )


class RemoteError(OrchestratorError):
    """The orchestrator refused a call; ``code`` is the gRPC status name, ``details`` its text."""

    def __init__(self, method: str, code: str, details: str) -> None:
        self.method = method
        self.code = code
        self.details = details
        super().__init__(f"{method} failed with {code}: {details}")


class ReleaseRefused(OrchestratorError):
    """The key broker refused a release; ``checks`` lists every failed check of the verdict."""

    def __init__(self, reason: str, failed_checks: list[str]) -> None:
        self.reason = reason
        self.failed_checks = failed_checks
        super().__init__(
            f"key release refused: {reason}"
            + (f" (failed: {', '.join(failed_checks)})" if failed_checks else "")
        )
