"""The Sessions servicer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc

from fedtune._proto import sessions_pb2, sessions_pb2_grpc
from fedtune.orchestrator.interceptor import caller
from fedtune.orchestrator.services import convert
from fedtune.orchestrator.sessions import TERMINAL, SessionService, SessionState

# How often a watch re-checks that its client is still there while nothing changes.
_WATCH_POLL_S = 1.0


class SessionsServicer(sessions_pb2_grpc.SessionsServicer):
    """Session RPCs, delegated to SessionService."""

    def __init__(self, service: SessionService, *, watch_max_s: float = 3600.0) -> None:
        if watch_max_s <= 0:
            raise ValueError("watch_max_s must be positive")
        self._service = service
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
