"""The Sessions servicer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc

from fedtune._proto import sessions_pb2, sessions_pb2_grpc
from fedtune.audit.events import verdict_summary
from fedtune.orchestrator.errors import InvalidRequest
from fedtune.orchestrator.exports import ExportService
from fedtune.orchestrator.interceptor import caller
from fedtune.orchestrator.owner_verdicts import OwnerVerdict, OwnerVerdicts
from fedtune.orchestrator.rounds import RoundEvent, RoundEventKind, RoundLog
from fedtune.orchestrator.services import convert
from fedtune.orchestrator.sessions import TERMINAL, SessionService, SessionState

EVENT_KINDS = {
    sessions_pb2.ROUND_EVENT_KIND_ROUND_START: RoundEventKind.ROUND_START,
    sessions_pb2.ROUND_EVENT_KIND_ROUND_FINISH: RoundEventKind.ROUND_FINISH,
    sessions_pb2.ROUND_EVENT_KIND_ROUND_FAILED: RoundEventKind.ROUND_FAILED,
    sessions_pb2.ROUND_EVENT_KIND_DROPOUT: RoundEventKind.DROPOUT,
    sessions_pb2.ROUND_EVENT_KIND_EXCLUSION: RoundEventKind.EXCLUSION,
    sessions_pb2.ROUND_EVENT_KIND_AGGREGATE_COMMIT: RoundEventKind.AGGREGATE_COMMIT,
    sessions_pb2.ROUND_EVENT_KIND_EVALUATION: RoundEventKind.EVALUATION,
}
EVENT_KIND_TO_PROTO = {v: k for k, v in EVENT_KINDS.items()}


def round_event(message: sessions_pb2.RoundEvent, index: int) -> RoundEvent:
    """The domain event for one RoundEvent message."""
    kind = EVENT_KINDS.get(message.kind)
    if kind is None:
        raise InvalidRequest(f"events[{index}].kind", "name the kind of event")
    return RoundEvent(
        kind=kind,
        round=message.round,
        party=message.party,
        stage=message.stage,
        reason=message.reason,
        digest=message.digest,
        metrics=dict(message.metrics),
        details=dict(message.details),
    )

# How often a watch re-checks that its client is still there while nothing changes.
_WATCH_POLL_S = 1.0


class SessionsServicer(sessions_pb2_grpc.SessionsServicer):
    """Session RPCs, delegated to SessionService."""

    def __init__(
        self,
        service: SessionService,
        rounds: RoundLog,
        verdicts: OwnerVerdicts,
        exports: ExportService,
        *,
        watch_max_s: float = 3600.0,
    ) -> None:
        if watch_max_s <= 0:
            raise ValueError("watch_max_s must be positive")
        self._service = service
        self._rounds = rounds
        self._verdicts = verdicts
        self._exports = exports
        self._watch_max_s = watch_max_s

    def CreateSession(  # noqa: N802
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """Store proposed terms."""
        return convert.session_info(
            self._service.create(
                caller(context),
                request.terms.canonical,
                request.terms.signature,
                list(request.owner_public_keys),
            )
        )

    def InviteOwners(  # noqa: N802
        self, request: sessions_pb2.InviteOwnersRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """Amend and open."""
        return convert.session_info(
            self._service.invite(
                caller(context),
                request.session_id,
                request.terms.canonical,
                request.terms.signature,
                list(request.owner_public_keys),
            )
        )

    def AcceptSession(  # noqa: N802
        self, request: sessions_pb2.AcceptSessionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """Record an acceptance."""
        return convert.session_info(
            self._service.accept(caller(context), request.session_id, request.signature)
        )

    def StartSession(  # noqa: N802
        self, request: sessions_pb2.TransitionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """open -> running."""
        return convert.session_info(
            self._service.start(caller(context), request.session_id, request.reason)
        )

    def FinishSession(  # noqa: N802
        self, request: sessions_pb2.FinishSessionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """running -> finished | failed."""
        return convert.session_info(
            self._service.finish(
                caller(context), request.session_id, failed=request.failed, reason=request.reason
            )
        )

    def CancelSession(  # noqa: N802
        self, request: sessions_pb2.TransitionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """-> cancelled."""
        return convert.session_info(
            self._service.cancel(caller(context), request.session_id, request.reason)
        )

    def GetSession(  # noqa: N802
        self, request: sessions_pb2.GetSessionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """One session."""
        return convert.session_info(self._service.get(caller(context), request.session_id))

    def ListSessions(  # noqa: N802
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.ListSessionsResponse:
        """The caller's sessions."""
        return sessions_pb2.ListSessionsResponse(
            sessions=[convert.session_info(s) for s in self._service.list(caller(context))]
        )

    def WatchSession(  # noqa: N802
        self, request: sessions_pb2.GetSessionRequest, context: grpc.ServicerContext
    ) -> Iterator[sessions_pb2.SessionInfo]:
        """The session now and after each change, until it ends, the client leaves or time's up."""
        actor = caller(context)
        deadline = time.monotonic() + self._watch_max_s
        seen = self._service.change_counter
        record = self._service.get(actor, request.session_id, method="WatchSession")
        yield convert.session_info(record)
        last = record.updated_at, record.state, len(record.acceptances)
        while SessionState(record.state) not in TERMINAL and context.is_active():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            seen = self._service.wait_for_change(seen, min(_WATCH_POLL_S, remaining))
            record = self._service.get(actor, request.session_id, method="WatchSession")
            now = record.updated_at, record.state, len(record.acceptances)
            if now != last:
                last = now
                yield convert.session_info(record)

    def RegisterNodeKey(  # noqa: N802
        self, request: sessions_pb2.RegisterNodeKeyRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionInfo:
        """An owner names its SuperNode key."""
        return convert.session_info(
            self._service.register_node_key(
                caller(context), request.session_id, request.public_key, request.signature
            )
        )

    def RecordRoundEvents(  # noqa: N802
        self, request: sessions_pb2.RecordRoundEventsRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.RecordRoundEventsResponse:
        """The aggregator's round events, onto the audit log."""
        events = [round_event(e, i) for i, e in enumerate(request.events)]
        recorded = self._rounds.record(caller(context), request.session_id, events)
        return sessions_pb2.RecordRoundEventsResponse(recorded=recorded)

    def PutSessionReport(  # noqa: N802
        self, request: sessions_pb2.PutSessionReportRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionReportDocument:
        """Store the session report."""
        return convert.report_document(
            self._rounds.put_report(caller(context), request.session_id, request.report)
        )

    def GetSessionReport(  # noqa: N802
        self, request: sessions_pb2.GetSessionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.SessionReportDocument:
        """The session report."""
        return convert.report_document(
            self._rounds.get_report(caller(context), request.session_id)
        )

    def RecordOwnerVerdict(  # noqa: N802
        self, request: sessions_pb2.OwnerVerdictRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.OwnerVerdictResponse:
        """An owner's own verdict on its sandbox, onto the audit log."""
        summary = {}
        if request.HasField("verdict"):
            summary = verdict_summary(convert.verdict_from_proto(request.verdict, field="verdict"))
        recorded = self._verdicts.record(
            caller(context),
            request.session_id,
            OwnerVerdict(
                stage=request.stage,
                ok=request.ok,
                reason=request.reason,
                summary=summary,
                policy_digest=request.policy_digest,
                measurement=bytes(request.measurement),
            ),
        )
        return sessions_pb2.OwnerVerdictResponse(recorded=recorded)

    def ApproveExport(  # noqa: N802
        self, request: sessions_pb2.ApproveExportRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.ExportStatus:
        """Record a party's signed export approval."""
        return convert.export_status(
            self._exports.approve(
                caller(context),
                request.session_id,
                request.approval.canonical,
                request.approval.signature,
            )
        )

    def Export(  # noqa: N802
        self, request: sessions_pb2.ExportRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.ExportResponse:
        """The session key for an approved export, or the missing approvals."""
        decision = self._exports.export(
            caller(context), request.session_id, request.recipient_public_key
        )
        if not decision.granted:
            return sessions_pb2.ExportResponse(
                refused=sessions_pb2.ExportRefusal(
                    reason=decision.reason,
                    missing=[
                        sessions_pb2.MissingApproval(fingerprint=m.fingerprint, role=m.role)
                        for m in decision.missing
                    ],
                )
            )
        assert decision.adapter is not None
        return sessions_pb2.ExportResponse(
            granted=sessions_pb2.ExportGranted(
                wrapped_session_key=decision.wrapped_session_key,
                model_id=decision.model_id,
                adapter_sha256=decision.adapter.sealed_sha256,
                sealed_size=decision.adapter.sealed_size,
                content_mac=decision.adapter.content_mac,
            )
        )
