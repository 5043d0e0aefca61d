"""gRPC client of the audit log: a ``LogSource`` for verifiers, plus the internal ``append``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from fedtune._proto import audit_pb2, audit_pb2_grpc
from fedtune.audit.errors import AuditRpcError
from fedtune.audit.events import AuditEvent
from fedtune.audit.log import AppendReceipt
from fedtune.audit.source import Entry

__all__ = ["AuditClient", "open_channel"]

_T = TypeVar("_T")


def open_channel(target: str) -> grpc.Channel:
    """A plaintext channel to a standalone audit service.

    The orchestrator's audit service sits behind mutual TLS: pass ``channel=`` (the party's
    ``mtls_channel``) to :class:`AuditClient` instead, as ``fedtune audit`` does by default.
    """
    if not isinstance(target, str) or not target:
        raise ValueError("target must be HOST:PORT")
    return grpc.insecure_channel(target)


class AuditClient:
    """Talks to an audit service; implements ``LogSource``. Use as a context manager."""

    def __init__(
        self, target: str, *, timeout_s: float = 30.0, channel: grpc.Channel | None = None
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._target = target
        self._timeout_s = timeout_s
        self._channel = channel if channel is not None else open_channel(target)
        self._stub = audit_pb2_grpc.AuditLogStub(self._channel)

    def _call(self, method: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except grpc.RpcError as exc:
            code: Any = exc.code() if hasattr(exc, "code") else None
            details: Any = exc.details() if hasattr(exc, "details") else str(exc)
            raise AuditRpcError(
                self._target, method, code.name if code is not None else "UNKNOWN", str(details)
            ) from None

    def checkpoint(self, *, at_or_below: int | None = None) -> str:
        """The latest signed checkpoint note, or the newest one with size <= ``at_or_below``."""
        request = (
            audit_pb2.GetCheckpointRequest()
            if at_or_below is None
            else audit_pb2.GetCheckpointRequest(at_or_below_size=at_or_below)
        )
        reply = self._call(
            "GetCheckpoint", lambda: self._stub.GetCheckpoint(request, timeout=self._timeout_s)
        )
        return reply.note

    def entries(self, start: int, end: int) -> list[Entry]:
        """One page of entries from ``start`` (the server bounds its size)."""
        request = audit_pb2.GetEntriesRequest(start=start, end=end)

        def page() -> list[Entry]:
            stream = self._stub.GetEntries(request, timeout=self._timeout_s)
            got: list[Entry] = []
            for message in stream:
                got.append(Entry(message.index, message.leaf))
                if len(got) >= end - start:
                    # A server sending more than was asked for is cut off, not buffered.
                    stream.cancel()
                    break
            return got

        return self._call("GetEntries", page)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        request = audit_pb2.GetInclusionProofRequest(index=index, tree_size=size)
        reply = self._call(
            "GetInclusionProof",
            lambda: self._stub.GetInclusionProof(request, timeout=self._timeout_s),
        )
        return list(reply.hashes)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``size1`` to ``size2``."""
        request = audit_pb2.GetConsistencyProofRequest(first_size=size1, second_size=size2)
        reply = self._call(
            "GetConsistencyProof",
            lambda: self._stub.GetConsistencyProof(request, timeout=self._timeout_s),
        )
        return list(reply.hashes)

    def append(self, events: Sequence[AuditEvent]) -> list[AppendReceipt]:
        """INTERNAL (orchestrator components only): append events in one batch."""
        leaves = [e.leaf() for e in events]
        request = audit_pb2.AppendRequest(events=leaves)
        reply = self._call("Append", lambda: self._stub.Append(request, timeout=self._timeout_s))
        return [
            AppendReceipt(reply.first_index + i, bytes(h), reply.tree_size)
            for i, h in enumerate(reply.leaf_hashes)
        ]

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
