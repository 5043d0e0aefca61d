"""gRPC servicer for the audit log: thin handlers over ``AuditLog``, one table of status codes.

Authentication and authorisation are not done here: the orchestrator serves this servicer
behind its mTLS interceptor, which lets every party read and nobody remote call ``Append``
(marked INTERNAL in the proto). ``serve`` starts a bare server for tests and local use.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc

from fedtune._proto import audit_pb2, audit_pb2_grpc
from fedtune.audit.errors import (
    AppendTimeoutError,
    AuditError,
    AuditLogClosedError,
    AuditRangeError,
    AuditStoreError,
    InvalidEventError,
)
from fedtune.audit.events import AuditEvent
from fedtune.audit.log import AuditLog

__all__ = ["MAX_APPEND_EVENTS", "STATUS_CODES", "AuditLogServicer", "serve"]

log = logging.getLogger(__name__)

# At most this many events per Append call (one transaction, one checkpoint).
MAX_APPEND_EVENTS = 4096

# Domain error -> (status code, whether its message is written for the client). First match wins.
STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode, bool], ...] = (
    (InvalidEventError, grpc.StatusCode.INVALID_ARGUMENT, True),
    (AuditRangeError, grpc.StatusCode.OUT_OF_RANGE, True),
    (AuditLogClosedError, grpc.StatusCode.UNAVAILABLE, True),
    (AppendTimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED, True),
    (AuditStoreError, grpc.StatusCode.INTERNAL, False),
    (AuditError, grpc.StatusCode.INTERNAL, False),
    # Our own argument checks raise TypeError/ValueError with messages about the request.
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT, True),
    (TypeError, grpc.StatusCode.INVALID_ARGUMENT, True),
)
_HIDDEN = "the audit log could not serve this request; the server log has the details"


def _status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code, public in STATUS_CODES:
        if isinstance(exc, kind):
            return code, (str(exc) if public else _HIDDEN)
    return grpc.StatusCode.INTERNAL, _HIDDEN


_F = TypeVar("_F", bound=Callable[..., Any])


def _unary(method: _F) -> _F:
    """Run a unary handler; a raised error becomes the status from ``STATUS_CODES``."""

    @functools.wraps(method)
    def wrapper(self: AuditLogServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, method.__name__, exc)

    return wrapper  # type: ignore[return-value]


def _streaming(method: _F) -> _F:
    """Like ``_unary`` for a server-streaming handler (errors may arise mid-stream)."""

    @functools.wraps(method)
    def wrapper(
        self: AuditLogServicer, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            _abort(context, method.__name__, exc)

    return wrapper  # type: ignore[return-value]


def _abort(context: grpc.ServicerContext, name: str, exc: Exception) -> None:
    code, message = _status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("audit %s failed", name, exc_info=exc)
    context.abort(code, message)


class AuditLogServicer(audit_pb2_grpc.AuditLogServicer):
    """Serves one ``AuditLog``."""

    def __init__(self, audit_log: AuditLog) -> None:
        if not isinstance(audit_log, AuditLog):
            raise TypeError(f"audit_log must be an AuditLog, got {type(audit_log).__name__}")
        self._log = audit_log

    @_unary
    def Append(  # noqa: N802 (gRPC method names)
        self, request: audit_pb2.AppendRequest, context: grpc.ServicerContext
    ) -> audit_pb2.AppendResponse:
        """INTERNAL: append canonical event encodings in one batch."""
        if not request.events:
            raise ValueError("an Append carries at least one event")
        if len(request.events) > MAX_APPEND_EVENTS:
            raise ValueError(
                f"an Append carries at most {MAX_APPEND_EVENTS} events, got {len(request.events)}"
            )
        events = []
        for number, leaf in enumerate(request.events):
            try:
                events.append(AuditEvent.from_leaf(leaf))
            except InvalidEventError as exc:
                raise InvalidEventError(f"events[{number}]: {exc.reason}") from None
        receipts = self._log.append_many(events)
        return audit_pb2.AppendResponse(
            first_index=receipts[0].index,
            leaf_hashes=[r.leaf_hash for r in receipts],
            tree_size=receipts[-1].tree_size,
        )

    @_unary
    def GetCheckpoint(  # noqa: N802
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> audit_pb2.SignedCheckpoint:
        """The latest signed checkpoint, or the newest at or below a size."""
        bound = request.at_or_below_size if request.HasField("at_or_below_size") else None
        return audit_pb2.SignedCheckpoint(note=self._log.checkpoint(at_or_below=bound))

    @_streaming
    def GetEntries(  # noqa: N802
        self, request: audit_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.Entry]:
        """Stream one page of entries from ``start``."""
        for entry in self._log.entries(request.start, request.end):
            yield audit_pb2.Entry(index=entry.index, leaf=entry.leaf)

    @_unary
    def GetInclusionProof(  # noqa: N802
        self, request: audit_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.InclusionProof:
        """PATH(index, D[tree_size])."""
        hashes = self._log.inclusion_proof(request.index, request.tree_size)
        return audit_pb2.InclusionProof(
            index=request.index, tree_size=request.tree_size, hashes=hashes
        )

    @_unary
    def GetConsistencyProof(  # noqa: N802
        self, request: audit_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ConsistencyProof:
        """PROOF(first_size, D[second_size])."""
        hashes = self._log.consistency_proof(request.first_size, request.second_size)
        return audit_pb2.ConsistencyProof(
            first_size=request.first_size, second_size=request.second_size, hashes=hashes
        )


def serve(
    audit_log: AuditLog, address: str = "127.0.0.1:0", *, max_workers: int = 8
) -> tuple[grpc.Server, int]:
    """Start an insecure server for ``audit_log`` on ``address``; return (server, bound port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    audit_pb2_grpc.add_AuditLogServicer_to_server(AuditLogServicer(audit_log), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise AuditError(f"could not bind the audit service to {address} (port in use?)")
    server.start()
    return server, port
