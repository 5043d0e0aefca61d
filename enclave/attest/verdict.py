"""Verdicts: every check a verifier ran, with its outcome and reason, so an auditor can read why."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from enclave.errors import EnclaveError


class CheckStatus(StrEnum):
    """Outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not-applicable"


class Check(BaseModel):
    """One named check (e.g. ``snp.signature``, ``policy.measurement``) and why it came out so."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    status: CheckStatus
    reason: str
    expected: str | None = None
    got: str | None = None

    @classmethod
    def passed(cls, name: str, reason: str, **kw: str | None) -> Check:
        """A passed check."""
        return cls(name=name, status=CheckStatus.PASSED, reason=reason, **kw)

    @classmethod
    def failed(cls, name: str, reason: str, **kw: str | None) -> Check:
        """A failed check."""
        return cls(name=name, status=CheckStatus.FAILED, reason=reason, **kw)

    @classmethod
    def not_applicable(cls, name: str, reason: str) -> Check:
        """A check that does not apply to this evidence or policy, with the reason why."""
        return cls(name=name, status=CheckStatus.NOT_APPLICABLE, reason=reason)


class Verdict(BaseModel):
    """The result of verifying evidence (and optionally a policy): every check, and the outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    checks: list[Check]
    evaluated_at: datetime
    policy_fingerprint: str | None = None
    warnings: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed and at least one passed (an empty verdict fails closed)."""
        statuses = [c.status for c in self.checks]
        return CheckStatus.FAILED not in statuses and CheckStatus.PASSED in statuses

    @property
    def failures(self) -> list[Check]:
        """The checks that failed, in the order they ran."""
        return [c for c in self.checks if c.status == CheckStatus.FAILED]

    def raise_for_failure(self) -> None:
        """Raise AttestationFailed naming the first failed check, if any check failed."""
        if not self.ok:
            raise AttestationFailed(self)


class AttestationFailed(EnclaveError):
    """Evidence did not satisfy its verifier or policy; ``verdict`` holds every check."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        first = verdict.failures[0] if verdict.failures else None
        if first is None:
            message = f"{verdict.kind} evidence: no check passed"
        else:
            detail = ""
            if first.expected is not None or first.got is not None:
                detail = f" (expected {first.expected}, got {first.got})"
            message = f"{verdict.kind} evidence failed {first.name}: {first.reason}{detail}"
        super().__init__(message)
