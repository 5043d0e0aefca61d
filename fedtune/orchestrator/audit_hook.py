"""The one audit interface every orchestrator service calls for every security-relevant event.

Services describe an event with ``event(...)`` (kind, actor, action, object, outcome, reason,
details, and the attestation verdict when there is one) and hand it to an ``AuditHook``. The
deployment's hook is ``AuditLogHook``: it appends to the tamper-evident audit log
(``fedtune.audit.AuditLog``) and returns once the event is durable under a signed checkpoint.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from fedtune.audit import Action, AuditEvent, AuditLog, ObjectIds, Outcome
from fedtune.audit import Role as AuditRole
from fedtune.audit.events import ANONYMOUS
from fedtune.orchestrator.authz import Principal

OK = "ok"
REFUSED = "refused"
FAILED = "failed"

_MAX_REASON = 2048
_MAX_VALUE = 1024


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A security-relevant event as a service reports it."""

    kind: str
    actor: str
    role: str
    action: str
    object: str
    outcome: str
    reason: str = ""
    session_id: str | None = None
    details: dict[str, str | int | float | bool] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    model: str | None = None
    party: str | None = None
    at: dt.datetime | None = None
    round: int | None = None
    artifact: str | None = None


class AuditHook(Protocol):
    """Receives every security-relevant event; returns once the event is durable."""

    def record(self, event: AuditRecord) -> None:
        """Store ``event`` durably (or raise: an event that cannot be recorded is an error)."""
        ...


# Our event kinds, in the log's closed vocabulary of actions.
ACTIONS: dict[str, Action] = {
    "enrolment": Action.ENROL,
    "model.upload.begin": Action.UPLOAD,
    "model.upload.complete": Action.UPLOAD,
    # A data owner fetching the sealed model is part of joining a session; the log has no
    # separate "download" action (details.step says which step it was).
    "model.download": Action.JOIN,
    "key.register": Action.KEY_REGISTER,
    "policy.set": Action.POLICY_CHANGE,
    "key.release": Action.KEY_RELEASE,
    "session.create": Action.SESSION_CREATE,
    "session.invite": Action.SESSION_INVITE,
    "session.accept": Action.SESSION_ACCEPT,
    "session.running": Action.SESSION_START,
    "session.finished": Action.SESSION_FINISH,
    "session.failed": Action.SESSION_FINISH,
    "session.cancelled": Action.SESSION_CANCEL,
    # the data plane: a data owner names its SuperNode; the aggregator reports the rounds
    "session.node-key": Action.JOIN,
    "key.generate": Action.KEY_REGISTER,
    "round.start": Action.ROUND_START,
    "round.finish": Action.ROUND_FINISH,
    "round.failed": Action.ROUND_FINISH,
    "round.dropout": Action.DROPOUT,
    "round.exclusion": Action.DROPOUT,
    "aggregate.commit": Action.AGGREGATE_COMMIT,
    "evaluation": Action.EVALUATION,
    # attestation beyond key release: the broker's re-attestation, an owner's own verdict
    "attestation.verdict": Action.ATTESTATION_VERDICT,
    "owner.verdict": Action.ATTESTATION_VERDICT,
    # results: the sealed adapter, approvals, the export (granted or refused)
    "adapter.upload": Action.UPLOAD,
    "export.approve": Action.EXPORT_APPROVAL,
    "export": Action.EXPORT,
    "refusal": Action.REFUSAL,
}
_OUTCOMES = {OK: Outcome.OK, REFUSED: Outcome.REFUSED, FAILED: Outcome.FAILED}


def to_audit_event(record: AuditRecord) -> AuditEvent:
    """The audit log's event for one of our records."""
    anonymous = record.role == "none"
    outcome = _OUTCOMES[record.outcome]
    reason = record.reason[:_MAX_REASON] or None
    if outcome is not Outcome.OK and reason is None:
        reason = record.outcome
    details: dict[str, Any] = {"rpc": record.action[:_MAX_VALUE]}
    details |= {
        k: v[:_MAX_VALUE] if isinstance(v, str) else v for k, v in record.details.items()
    }
    if record.object:
        details["object"] = record.object[:_MAX_VALUE]
    return AuditEvent(
        time=record.at or dt.datetime.now(dt.UTC),
        actor=ANONYMOUS if anonymous else record.actor,
        role=AuditRole.ANONYMOUS if anonymous else AuditRole(record.role),
        action=ACTIONS[record.kind],
        outcome=outcome,
        session=record.session_id,
        objects=ObjectIds(
            model=record.model, party=record.party, round=record.round, artifact=record.artifact
        ),
        verdict=record.verdict,
        reason=reason,
        details=details,
    )


class AuditLogHook:
    """Appends every event to the deployment's tamper-evident audit log."""

    def __init__(self, log: AuditLog) -> None:
        if not isinstance(log, AuditLog):
            raise TypeError("log must be a fedtune.audit.AuditLog")
        self._log = log

    def record(self, event: AuditRecord) -> None:
        """Append ``event``; returns once it is durable under a signed checkpoint."""
        self._log.append(to_audit_event(event))


def event(
    kind: str,
    actor: Principal | None,
    action: str,
    obj: str,
    *,
    outcome: str = OK,
    reason: str = "",
    session_id: str | None = None,
    details: dict[str, str | int | float | bool] | None = None,
    verdict: dict[str, Any] | None = None,
    model: str | None = None,
    party: str | None = None,
    round_number: int | None = None,
    artifact: str | None = None,
) -> AuditRecord:
    """Build an audit record for ``actor`` (None: an unauthenticated caller)."""
    if kind not in ACTIONS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    return AuditRecord(
        kind=kind,
        actor=actor.fingerprint if actor else ANONYMOUS,
        role=actor.role.value if actor else "none",
        action=action,
        object=obj,
        outcome=outcome,
        reason=reason,
        session_id=session_id,
        details=dict(details or {}),
        verdict=verdict,
        model=model,
        party=party,
        at=dt.datetime.now(dt.UTC),
        round=round_number,
        artifact=artifact,
    )
