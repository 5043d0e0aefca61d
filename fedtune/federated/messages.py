"""The content of fedtune's Flower messages: sandbox calls for the relay, and what came back.

The aggregator never talks to a sandbox itself. It serialises the sandbox requests of one
stage (``Train``, ``Evaluate``, ``ExportUpdate``, ``Status`` of ``sandbox.proto``) into a
:class:`CallBatch`; the relay ClientApp on the owner's SuperNode forwards each request, in
order, to the owner's sandbox and sends the serialised answers back as :class:`CallReplies`,
stopping at the first refusal, whose gRPC status and error type it reports (so the
aggregator can put a precise reason on the record). The relay reads nothing of the requests
and answers: masked vectors, shares and ciphertexts pass through as opaque bytes.

Both travel in one ``ConfigRecord`` named ``fedtune``:

    request: v = 1, session = <session id>, calls = [method, ...], requests = [bytes, ...]
    reply:   v = 1, calls = [method, ...], replies = [bytes, ...],
             error-call, error-code, error-type, error-message  (empty strings if none)

This module stays light (no torch, no TenSEAL): every relay message starts a fresh process
that imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from fedtune.federated.errors import FederatedError

__all__ = [
    "FORMAT_VERSION",
    "MAX_CALLS",
    "RECORD",
    "RELAY",
    "RELAYED_METHODS",
    "CallBatch",
    "CallFailure",
    "CallReplies",
    "MessageFormatError",
]

RECORD = "fedtune"
FORMAT_VERSION = 1
MAX_CALLS = 8
MAX_TEXT = 2048
RELAYED_METHODS = frozenset({"Train", "Evaluate", "ExportUpdate", "Status"})
"""Sandbox methods a batch may name: a round's work, never set-up (the sandbox locks it)."""
RELAY = "relay"
"""The ``error-call`` of a failure of the relay itself (no socket, another session's node)."""


class MessageFormatError(FederatedError):
    """A Flower message carries no well-formed fedtune batch or reply; ``field`` says where."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"fedtune message, {field}: {reason}")


def _record(content: RecordDict) -> ConfigRecord:
    if not isinstance(content, RecordDict):
        raise TypeError("content must be a flwr RecordDict")
    record = content.config_records.get(RECORD)
    if record is None:
        raise MessageFormatError(RECORD, "the message carries no fedtune record")
    version = record.get("v")
    if version != FORMAT_VERSION:
        raise MessageFormatError("v", f"format {version!r}, this build reads {FORMAT_VERSION}")
    return record


def _strings(record: ConfigRecord, key: str) -> list[str]:
    value = record.get(key)
    if isinstance(value, str):  # Flower stores a one-element list as a list; be strict anyway
        raise MessageFormatError(key, "must be a list of strings")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageFormatError(key, "must be a list of strings")
    return value


def _blobs(record: ConfigRecord, key: str) -> list[bytes]:
    value = record.get(key)
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise MessageFormatError(key, "must be a list of bytes")
    return value


def _text(record: ConfigRecord, key: str) -> str:
    value = record.get(key, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise MessageFormatError(key, f"must be a string of at most {MAX_TEXT} characters")
    return value


def _check_calls(methods: Sequence[str], field: str) -> None:
    if len(methods) > MAX_CALLS:
        raise MessageFormatError(field, f"at most {MAX_CALLS} calls per message")
    unknown = sorted(set(methods) - RELAYED_METHODS)
    if unknown:
        raise MessageFormatError(
            field, f"{unknown} are not relayed (only {sorted(RELAYED_METHODS)})"
        )


@dataclass(frozen=True)
class CallBatch:
    """The sandbox calls of one stage for one owner, in the order the relay makes them."""

    session_id: str
    methods: tuple[str, ...]
    requests: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, str) or not self.session_id:
            raise ValueError("session_id must be a non-empty str")
        if len(self.methods) != len(self.requests) or not self.methods:
            raise ValueError("give one request per method, at least one")
        if not all(isinstance(r, bytes) for r in self.requests):
            raise TypeError("requests must be bytes")
        _check_calls(self.methods, "calls")

    def to_content(self) -> RecordDict:
        """The Flower message content carrying this batch."""
        return RecordDict({
            RECORD: ConfigRecord({
                "v": FORMAT_VERSION,
                "session": self.session_id,
                "calls": list(self.methods),
                "requests": list(self.requests),
            })
        })

    @classmethod
    def from_content(cls, content: RecordDict) -> CallBatch:
        """Read a batch from a message's content (MessageFormatError when it is not one)."""
        record = _record(content)
        methods = _strings(record, "calls")
        requests = _blobs(record, "requests")
        _check_calls(methods, "calls")
        if not methods or len(methods) != len(requests):
            raise MessageFormatError("requests", "one request per call, at least one")
        session = _text(record, "session")
        if not session:
            raise MessageFormatError("session", "names no session")
        return cls(session, tuple(methods), tuple(requests))


@dataclass(frozen=True)
class CallFailure:
    """The sandbox refused a call: which one, its gRPC status name and its error type."""

    method: str
    code: str
    error_type: str
    message: str

    def describe(self) -> str:
        """One line for the audit log: ``Train refused (FAILED_PRECONDITION, RoundError): ...``."""
        return f"{self.method} refused ({self.code}, {self.error_type}): {self.message}"[:MAX_TEXT]


@dataclass(frozen=True)
class CallReplies:
    """The answers to a batch's calls, in order, up to the first refusal (``failure``)."""

    methods: tuple[str, ...]
    replies: tuple[bytes, ...]
    failure: CallFailure | None = None

    def __post_init__(self) -> None:
        if len(self.methods) != len(self.replies):
            raise ValueError("give one reply per method")

    def to_content(self) -> RecordDict:
        """The Flower message content carrying these replies."""
        failure = self.failure
        return RecordDict({
            RECORD: ConfigRecord({
                "v": FORMAT_VERSION,
                "calls": list(self.methods),
                "replies": list(self.replies),
                "error-call": failure.method if failure else "",
                "error-code": failure.code if failure else "",
                "error-type": failure.error_type if failure else "",
                "error-message": failure.message[:MAX_TEXT] if failure else "",
            })
        })

    @classmethod
    def from_content(cls, content: RecordDict) -> CallReplies:
        """Read replies from a message's content (MessageFormatError when they are not)."""
        record = _record(content)
        methods = _strings(record, "calls")
        replies = _blobs(record, "replies")
        _check_calls(methods, "calls")
        if len(methods) != len(replies):
            raise MessageFormatError("replies", "one reply per call")
        method = _text(record, "error-call")
        failure = None
        if method:
            if method != RELAY:
                _check_calls([method], "error-call")
            failure = CallFailure(
                method, _text(record, "error-code"), _text(record, "error-type"),
                _text(record, "error-message"),
            )
        return cls(tuple(methods), tuple(replies), failure)

    def answered(self, batch: CallBatch) -> bool:
        """Whether every call of ``batch`` was answered, in order, without a refusal."""
        return self.failure is None and self.methods == batch.methods
