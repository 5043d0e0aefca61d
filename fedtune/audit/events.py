"""Audit events: who did what to which object, with what outcome; one canonical JSON leaf each.

Encoding decision: a leaf is the canonical JSON of an ``AuditEvent`` (``crypto.canonical``:
sorted keys, no whitespace, UTF-8, no NaN; optional fields present as ``null``), the same
encoding every signed document in fedtune uses, readable with any JSON tool. A leaf is accepted
back only if re-encoding the decoded event gives the same bytes, so one event has exactly one
leaf. ``v`` versions the schema; a future change adds ``v: 2`` rather than altering ``v: 1``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from crypto.canonical import CanonicalModel
from fedtune.audit.errors import InvalidEventError

__all__ = [
    "ANONYMOUS",
    "Action",
    "AuditEvent",
    "ObjectIds",
    "Outcome",
    "Role",
    "verdict_summary",
]

# The actor of an event caused by a caller who never authenticated (e.g. a refused TLS peer).
ANONYMOUS = "anonymous"

_Fingerprint = Annotated[str, StringConstraints(pattern=r"^ed25519:[0-9a-f]{64}$")]
_Actor = Annotated[str, StringConstraints(pattern=r"^(ed25519:[0-9a-f]{64}|anonymous)$")]
# Identifiers: printable ASCII without spaces, so they read the same in every tool.
_Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
_Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
_Scalar = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
_MAX_MAP_ITEMS = 32
_MAX_VALUE_CHARS = 1024


class Role(StrEnum):
    """The role the actor acted in."""

    PROVIDER = "provider"
    DATA_OWNER = "data-owner"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    SANDBOX = "sandbox"
    SYSTEM = "system"  # the orchestrator itself (broker, scheduler, the log)
    ANONYMOUS = "anonymous"  # a caller that never authenticated


class Action(StrEnum):
    """Every kind of event DESIGN.md promise 5 puts on the record; anything else is refused."""

    # enrolment and model registry
    ENROL = "enrol"
    UPLOAD = "upload"
    POLICY_CHANGE = "policy-change"
    KEY_REGISTER = "key-register"
    # attestation and key release
    ATTESTATION_VERDICT = "attestation-verdict"
    KEY_RELEASE = "key-release"
    # session lifecycle
    SESSION_CREATE = "session-create"
    SESSION_INVITE = "session-invite"
    SESSION_ACCEPT = "session-accept"
    SESSION_START = "session-start"
    SESSION_FINISH = "session-finish"
    SESSION_CANCEL = "session-cancel"
    # federated rounds
    JOIN = "join"
    ROUND_START = "round-start"
    ROUND_FINISH = "round-finish"
    DROPOUT = "dropout"
    AGGREGATE_COMMIT = "aggregate-commit"
    EVALUATION = "evaluation"
    # results
    EXPORT_APPROVAL = "export-approval"
    EXPORT = "export"
    # anything refused before it could become one of the above (bad caller, bad input)
    REFUSAL = "refusal"


class Outcome(StrEnum):
    """How the action ended."""

    OK = "ok"
    REFUSED = "refused"  # policy or authorisation said no
    FAILED = "failed"  # it was allowed but did not succeed


class ObjectIds(CanonicalModel):
    """The objects an event is about; each optional, none free-form."""

    model: _Id | None = None  # model name@version
    round: int | None = Field(default=None, ge=0)
    party: _Fingerprint | None = None  # the party acted upon (invitee, releasee, exporter)
    policy: _Id | None = None  # release-policy fingerprint
    key: _Id | None = None  # data-key or session-key id
    artifact: _Id | None = None  # blob, aggregate or adapter digest


def _check_map(name: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > _MAX_MAP_ITEMS:
        raise ValueError(f"{name} has {len(value)} items, at most {_MAX_MAP_ITEMS} allowed")
    for key, item in value.items():
        if isinstance(item, str) and len(item) > _MAX_VALUE_CHARS:
            raise ValueError(f"{name}[{key!r}] is longer than {_MAX_VALUE_CHARS} characters")
    return value


class AuditEvent(CanonicalModel):
    """One security-relevant event, as it is hashed into the log."""

    v: Literal[1] = 1
    time: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    actor: _Actor
    role: Role
    action: Action
    outcome: Outcome = Outcome.OK
    session: _Id | None = None
    objects: ObjectIds = Field(default_factory=ObjectIds)
    verdict: dict[_Key, _Scalar] | None = None  # attestation verdict summary
    reason: _Text | None = None  # why it was refused or failed
    reference: _Id = Field(default_factory=lambda: uuid.uuid4().hex)  # links related events
    details: dict[_Key, _Scalar] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("time must be timezone-aware (UTC)")
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            # pydantic turns only ValueError into a validation error.
            raise ValueError("time lies outside the years 1-9999 once converted to UTC") from None

    @field_serializer("time")
    def _iso(self, value: dt.datetime) -> str:
        # Always six fractional digits and 'Z', so one instant has one spelling.
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @field_validator("verdict", "details")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_map("map", value)

    @model_validator(mode="after")
    def _consistent(self) -> AuditEvent:
        if self.outcome is not Outcome.OK and self.reason is None:
            raise ValueError(f"an event with outcome {self.outcome.value!r} needs a reason")
        if self.action is Action.REFUSAL and self.outcome is not Outcome.REFUSED:
            raise ValueError("a refusal event has outcome 'refused'")
        if (self.actor == ANONYMOUS) != (self.role is Role.ANONYMOUS):
            raise ValueError("actor 'anonymous' and role 'anonymous' go together")
        return self

    @property
    def refused(self) -> bool:
        """True for refusals and failures, the rows a reviewer looks at first."""
        return self.outcome is not Outcome.OK

    def leaf(self) -> bytes:
        """The leaf bytes: this event's canonical JSON."""
        return self.canonical_bytes()

    @classmethod
    def from_leaf(cls, leaf: bytes) -> AuditEvent:
        """Decode leaf bytes, refusing anything but the canonical encoding of a valid event."""
        if not isinstance(leaf, bytes | bytearray | memoryview):
            raise TypeError(f"leaf must be bytes, got {type(leaf).__name__}")
        raw = bytes(leaf)
        try:
            event = cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise InvalidEventError(problems) from None
        if event.canonical_bytes() != raw:
            raise InvalidEventError("not in canonical form (key order, spacing or spelling)")
        return event


def verdict_summary(verdict: Any) -> dict[str, str | int | bool | None]:
    """A small, flat summary of an ``enclave.attest.verdict.Verdict`` for an event's ``verdict``."""
    from enclave.attest.verdict import Verdict  # imported late: the log itself needs no enclave

    if not isinstance(verdict, Verdict):
        raise TypeError(f"verdict must be an enclave Verdict, got {type(verdict).__name__}")
    failures = verdict.failures
    first = failures[0] if failures else None
    return {
        "kind": verdict.kind,
        "ok": verdict.ok,
        "checks": len(verdict.checks),
        "failed": len(failures),
        "first_failure": first.name if first else None,
        "first_failure_reason": first.reason[:_MAX_VALUE_CHARS] if first else None,
        "policy": verdict.policy_fingerprint,
        "evaluated_at": verdict.evaluated_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
