"""Errors of the data owner's agent."""

from __future__ import annotations

from fedtune.errors import FedtuneError


class OwnerError(FedtuneError):
    """Base of every error the owner's agent raises."""


class JoinError(OwnerError):
    """A step of joining a session failed; ``step`` names it, the message says what to do."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"joining the session, step {step}: {reason}")


class OwnerConfigError(OwnerError):
    """owner.toml is missing or wrong; ``where`` names the file (and the field)."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class SandboxRefused(OwnerError):
    """The sandbox's evidence does not satisfy the owner's own policy: no record was exposed.

    ``verdict`` holds every check; ``failed`` names the first failed check.
    """

    def __init__(self, stage: str, failed: str, reason: str, verdict: object = None) -> None:
        self.stage = stage
        self.failed = failed
        self.reason = reason
        self.verdict = verdict
        super().__init__(
            f"{stage}: your policy refuses this sandbox ({failed}: {reason}); none of your "
            "records was shown to it"
            if stage == "join"
            else f"{stage}: your policy refuses this sandbox now ({failed}: {reason})"
        )


class StagingError(OwnerError):
    """A record file cannot be staged for the sandbox; ``path`` names it. Nothing was staged."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"staging {path}: {reason}")


class JailError(OwnerError):
    """The SuperNode cannot be jailed as required (bubblewrap missing, unsafe binds)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"SuperNode jail: {reason}")


class ParticipationStopped(OwnerError):
    """The owner's participation ended early (a failed re-attestation, a lost SuperNode)."""

    def __init__(self, cause: str, reason: str) -> None:
        self.cause = cause
        self.reason = reason
        super().__init__(f"participation stopped ({cause}): {reason}")


class ExportError(OwnerError):
    """An export could not complete; ``step`` names where, the message what to do."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"export, step {step}: {reason}")


class ExportRefused(ExportError):
    """The orchestrator refused the export: ``missing`` lists (role, fingerprint) pairs."""

    def __init__(self, reason: str, missing: list[tuple[str, str]]) -> None:
        self.missing = missing
        super().__init__("approvals", reason)
