"""The aggregator's record of a session's rounds: round events on the audit log, the report.

The operator's ServerApp reports what happened while it runs the rounds: round start and
finish (or failure), dropouts, exclusions with their reason, the digest of each committed
aggregate, the owners' evaluation metrics and the DP budget spent. Each event becomes one
entry of the tamper-evident log (DESIGN promise 5), written by the orchestrator on the
operator's authority: the log says the aggregator claimed it, and a party that doubts a claim
checks it against what its own sandbox saw. Events are accepted only while the session is
running, only for owners the session invited, and only for rounds the terms allow.

The session report (``fedtune.federated.report_model.SessionReport``) is stored as the
aggregator sends it, after checking it parses and names the session; participants read it
with ``GetSessionReport`` (``fedtune session report``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import ValidationError

from fedtune.orchestrator import audit_hook
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Principal
from fedtune.orchestrator.documents import parse_canonical
from fedtune.orchestrator.errors import IllegalTransition, InvalidRequest, NotFound
from fedtune.orchestrator.relations import require_visible
from fedtune.orchestrator.store.records import SessionRecord, SessionReportRecord
from fedtune.orchestrator.store.repository import Repository
from fedtune.orchestrator.terms import SessionTerms

MAX_EVENTS = 256
MAX_REPORT_SIZE = 4 << 20
MAX_TEXT = 1024
MAX_ENTRIES = 24
REPORT_STATES = frozenset({"running", "finished", "failed", "cancelled"})
_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,47}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_STAGE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

Clock = Callable[[], dt.datetime]


class RoundEventKind(StrEnum):
    """What a round event reports (the audit log's action follows from it)."""

    ROUND_START = "round.start"
    ROUND_FINISH = "round.finish"
    ROUND_FAILED = "round.failed"
    DROPOUT = "round.dropout"
    EXCLUSION = "round.exclusion"
    AGGREGATE_COMMIT = "aggregate.commit"
    EVALUATION = "evaluation"


_NEEDS_PARTY = frozenset({RoundEventKind.DROPOUT, RoundEventKind.EXCLUSION,
                          RoundEventKind.EVALUATION})
_NEEDS_REASON = frozenset({RoundEventKind.ROUND_FAILED, RoundEventKind.DROPOUT,
                           RoundEventKind.EXCLUSION})
# The evaluation before round 1 is an exchange too: owners can drop out of it or be excluded,
# and it can fail; those events carry round 0.
_BEFORE_ROUND_1 = frozenset({RoundEventKind.EVALUATION, RoundEventKind.DROPOUT,
                             RoundEventKind.EXCLUSION, RoundEventKind.ROUND_FAILED})
_OUTCOMES = {
    RoundEventKind.ROUND_FAILED: audit_hook.FAILED,
    RoundEventKind.DROPOUT: audit_hook.FAILED,
    RoundEventKind.EXCLUSION: audit_hook.REFUSED,
}


@dataclass(frozen=True)
class RoundEvent:
    """One thing that happened in a round, as the aggregator reports it."""

    kind: RoundEventKind
    round: int
    party: str = ""
    stage: str = ""
    reason: str = ""
    digest: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RoundLog:
    """Validates the aggregator's round events and puts each on the audit log; keeps reports."""

    def __init__(self, repository: Repository, audit: AuditHook, *, clock: Clock = _utcnow) -> None:
        self._repository = repository
        self._audit = audit
        self._clock = clock

    def _session(self, session_id: str) -> SessionRecord:
        session = self._repository.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    def record(
        self, actor: Principal, session_id: str, events: Sequence[RoundEvent]
    ) -> int:
        """Check every event first (all or nothing), then audit each; returns how many."""
        session = self._session(session_id)
        if session.state != "running":
            raise IllegalTransition(
                session_id, session.state, session.state,
                "round events are recorded only while the session is running",
            )
        if not 1 <= len(events) <= MAX_EVENTS:
            raise InvalidRequest("events", f"send 1..{MAX_EVENTS} events per call")
        terms = parse_canonical(SessionTerms, session.terms, field="stored terms")
        owners = set(terms.invited_owners)
        for index, item in enumerate(events):
            _check(item, index, owners, terms.rounds)
        model = f"{session.model_name}@{session.model_version}"
        for item in events:
            self._audit.record(_audit_record(actor, session_id, model, item))
        return len(events)

    def put_report(self, actor: Principal, session_id: str, report: bytes) -> SessionReportRecord:
        """Store the session report after checking it parses and names this session."""
        from fedtune.federated.report_model import SessionReport

        session = self._session(session_id)
        if session.state not in REPORT_STATES:
            raise IllegalTransition(
                session_id, session.state, session.state,
                "a report is stored once the session runs",
            )
        if not isinstance(report, bytes) or not 1 <= len(report) <= MAX_REPORT_SIZE:
            raise InvalidRequest("report", f"send the report's JSON (1..{MAX_REPORT_SIZE} bytes)")
        try:
            parsed = SessionReport.model_validate_json(report)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise InvalidRequest(f"report.{where}", first["msg"]) from None
        if parsed.session_id != session_id:
            raise InvalidRequest(
                "report.session_id", f"the report is about {parsed.session_id!r}"
            )
        record = SessionReportRecord(session_id, bytes(report), self._clock())
        self._repository.put_session_report(record)
        return record

    def get_report(self, actor: Principal, session_id: str) -> SessionReportRecord:
        """The stored report, for the operator and the session's participants."""
        session = self._session(session_id)
        require_visible(session, actor, "GetSessionReport")
        record = self._repository.get_session_report(session_id)
        if record is None:
            raise NotFound("session report", session_id)
        return record


def _text(field_name: str, value: str, *, required: bool) -> None:
    if required and not value:
        raise InvalidRequest(field_name, "must not be empty")
    if len(value) > MAX_TEXT or any(ord(c) < 0x20 for c in value):
        raise InvalidRequest(field_name, f"at most {MAX_TEXT} printable characters")


def _check(item: RoundEvent, index: int, owners: set[str], rounds: int) -> None:
    where = f"events[{index}]"
    if not isinstance(item.kind, RoundEventKind):
        raise InvalidRequest(f"{where}.kind", "name the kind of event")
    if not 0 <= item.round <= rounds or (item.round == 0 and item.kind not in _BEFORE_ROUND_1):
        raise InvalidRequest(
            f"{where}.round",
            f"must be in 1..{rounds} (0 only for the evaluation before round 1: its results, "
            "drop-outs, exclusions or failure)",
        )
    if item.kind in _NEEDS_PARTY:
        if item.party not in owners:
            raise InvalidRequest(f"{where}.party", "must be an owner the session invited")
    elif item.party:
        raise InvalidRequest(f"{where}.party", f"a {item.kind.value} event names no owner")
    _text(f"{where}.reason", item.reason, required=item.kind in _NEEDS_REASON)
    if item.stage and not _STAGE.match(item.stage):
        raise InvalidRequest(f"{where}.stage", "a short lower-case stage name")
    if (item.kind is RoundEventKind.AGGREGATE_COMMIT) != bool(item.digest):
        raise InvalidRequest(f"{where}.digest", "an aggregate commit, and only it, has a digest")
    if item.digest and not _DIGEST.match(item.digest):
        raise InvalidRequest(f"{where}.digest", "must be sha256:<64 hex digits>")
    if len(item.metrics) + len(item.details) > MAX_ENTRIES:
        raise InvalidRequest(where, f"at most {MAX_ENTRIES} metrics and details together")
    for key, value in item.metrics.items():
        if not _KEY.match(key):
            raise InvalidRequest(f"{where}.metrics", f"{key!r} is not a metric name")
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidRequest(f"{where}.metrics[{key!r}]", "must be a finite number")
    for key, value in item.details.items():
        if not _KEY.match(key) or key in item.metrics:
            raise InvalidRequest(f"{where}.details", f"{key!r} is not a free detail name")
        _text(f"{where}.details[{key!r}]", value, required=False)


def _audit_record(
    actor: Principal, session_id: str, model: str, item: RoundEvent
) -> audit_hook.AuditRecord:
    details: dict[str, str | int | float | bool] = {}
    if item.stage:
        details["stage"] = item.stage
    details.update({f"metric.{k}": float(v) for k, v in item.metrics.items()})
    details.update(dict(item.details))
    return audit_hook.event(
        item.kind.value,
        actor,
        "RecordRoundEvents",
        f"session {session_id} round {item.round}",
        outcome=_OUTCOMES.get(item.kind, audit_hook.OK),
        reason=item.reason,
        session_id=session_id,
        details=details,
        model=model,
        party=item.party or None,
        round_number=item.round,
        artifact=item.digest or None,
    )
