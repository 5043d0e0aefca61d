"""A data owner's own attestation verdicts about its sandbox, put on the record by the owner.

The owner is a relying party too (mutual attestation, as NVFlare's per-job gate): before its
agent exposes any record to the sandbox, and at every re-attestation, it verifies the sandbox's
evidence against the owner's own signed policy. The verdict (accepted or refused, every check)
becomes an audit entry written on the owner's authority, independent of the operator and of
the provider's policy, so anyone reviewing the log sees why an owner joined or walked away.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from fedtune.orchestrator import audit_hook
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Principal, Role
from fedtune.orchestrator.errors import InvalidRequest, NotFound, PermissionDenied
from fedtune.orchestrator.store.repository import Repository

STAGES = frozenset({"join", "reattest"})
VERDICT_STATES = frozenset({"open", "running"})
MAX_REASON = 1024
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class OwnerVerdict:
    """An owner's verdict on its sandbox, as its agent reports it."""

    stage: str
    ok: bool
    reason: str
    summary: Mapping[str, str | int | bool | None] = field(default_factory=dict)
    policy_digest: str = ""
    measurement: bytes = b""


class OwnerVerdicts:
    """Checks and records owners' verdicts (one audit entry each)."""

    def __init__(self, repository: Repository, audit: AuditHook) -> None:
        self._repository = repository
        self._audit = audit

    def record(self, actor: Principal, session_id: str, verdict: OwnerVerdict) -> int:
        """Put an invited owner's verdict on the log; returns how many entries (1)."""
        session = self._repository.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        obj = f"session {session_id}"
        if not any(
            i.fingerprint == actor.fingerprint and i.role == Role.DATA_OWNER.value
            for i in session.invitees
        ):
            raise PermissionDenied(
                "RecordOwnerVerdict", obj, "you are not an invited data owner of this session"
            )
        if session.state not in VERDICT_STATES:
            raise PermissionDenied(
                "RecordOwnerVerdict", obj,
                f"the session is {session.state}; verdicts are recorded while it is open or "
                "running",
            )
        if verdict.stage not in STAGES:
            raise InvalidRequest("stage", f"must be one of {sorted(STAGES)}")
        if not verdict.reason or len(verdict.reason) > MAX_REASON:
            raise InvalidRequest("reason", f"say why, in 1..{MAX_REASON} characters")
        if not _DIGEST.match(verdict.policy_digest):
            raise InvalidRequest("policy_digest", "must be sha256:<64 hex digits> or empty")
        if len(verdict.measurement) > 64:
            raise InvalidRequest("measurement", "at most 64 bytes")
        self._audit.record(
            audit_hook.event(
                "owner.verdict",
                actor,
                "RecordOwnerVerdict",
                obj,
                outcome=audit_hook.OK if verdict.ok else audit_hook.REFUSED,
                reason=verdict.reason,
                session_id=session_id,
                model=f"{session.model_name}@{session.model_version}",
                party=actor.fingerprint,
                verdict=dict(verdict.summary) or None,
                details={
                    "stage": verdict.stage,
                    "relying_party": "data-owner",
                    "policy": verdict.policy_digest,
                    "measurement": verdict.measurement.hex(),
                },
            )
        )
        return 1
