import datetime

from . import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_CREATED: _ClassVar[SessionState]
    SESSION_STATE_OPEN: _ClassVar[SessionState]
    SESSION_STATE_RUNNING: _ClassVar[SessionState]
    SESSION_STATE_FINISHED: _ClassVar[SessionState]
    SESSION_STATE_FAILED: _ClassVar[SessionState]
    SESSION_STATE_CANCELLED: _ClassVar[SessionState]

class RoundEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_EVENT_KIND_UNSPECIFIED: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_ROUND_START: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_ROUND_FINISH: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_ROUND_FAILED: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_DROPOUT: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_EXCLUSION: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_AGGREGATE_COMMIT: _ClassVar[RoundEventKind]
    ROUND_EVENT_KIND_EVALUATION: _ClassVar[RoundEventKind]
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_CREATED: SessionState
SESSION_STATE_OPEN: SessionState
SESSION_STATE_RUNNING: SessionState
SESSION_STATE_FINISHED: SessionState
SESSION_STATE_FAILED: SessionState
SESSION_STATE_CANCELLED: SessionState
ROUND_EVENT_KIND_UNSPECIFIED: RoundEventKind
ROUND_EVENT_KIND_ROUND_START: RoundEventKind
ROUND_EVENT_KIND_ROUND_FINISH: RoundEventKind
ROUND_EVENT_KIND_ROUND_FAILED: RoundEventKind
ROUND_EVENT_KIND_DROPOUT: RoundEventKind
ROUND_EVENT_KIND_EXCLUSION: RoundEventKind
ROUND_EVENT_KIND_AGGREGATE_COMMIT: RoundEventKind
ROUND_EVENT_KIND_EVALUATION: RoundEventKind

class CreateSessionRequest(_message.Message):
    __slots__ = ("terms", "owner_public_keys")
    TERMS_FIELD_NUMBER: _ClassVar[int]
    OWNER_PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    terms: _common_pb2.SignedDocument
    owner_public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, terms: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ..., owner_public_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class InviteOwnersRequest(_message.Message):
    __slots__ = ("session_id", "terms", "owner_public_keys")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    OWNER_PUBLIC_KEYS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    terms: _common_pb2.SignedDocument
    owner_public_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, session_id: _Optional[str] = ..., terms: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ..., owner_public_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AcceptSessionRequest(_message.Message):
    __slots__ = ("session_id", "signature")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    signature: bytes
    def __init__(self, session_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class TransitionRequest(_message.Message):
    __slots__ = ("session_id", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FinishSessionRequest(_message.Message):
    __slots__ = ("session_id", "failed", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    failed: bool
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., failed: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Participant(_message.Message):
    __slots__ = ("fingerprint", "role", "accepted", "accepted_at", "public_key", "acceptance_signature", "node_key")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    NODE_KEY_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    role: str
    accepted: bool
    accepted_at: _timestamp_pb2.Timestamp
    public_key: bytes
    acceptance_signature: bytes
    node_key: NodeKey
    def __init__(self, fingerprint: _Optional[str] = ..., role: _Optional[str] = ..., accepted: _Optional[bool] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., public_key: _Optional[bytes] = ..., acceptance_signature: _Optional[bytes] = ..., node_key: _Optional[_Union[NodeKey, _Mapping]] = ...) -> None: ...

class NodeKey(_message.Message):
    __slots__ = ("public_key", "signature", "registered_at")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    signature: bytes
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterNodeKeyRequest(_message.Message):
    __slots__ = ("session_id", "public_key", "signature")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    public_key: bytes
    signature: bytes
    def __init__(self, session_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class RoundEvent(_message.Message):
    __slots__ = ("kind", "round", "party", "stage", "reason", "digest", "metrics", "details")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    kind: RoundEventKind
    round: int
    party: str
    stage: str
    reason: str
    digest: str
    metrics: _containers.ScalarMap[str, float]
    details: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[_Union[RoundEventKind, str]] = ..., round: _Optional[int] = ..., party: _Optional[str] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ..., digest: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RecordRoundEventsRequest(_message.Message):
    __slots__ = ("session_id", "events")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    events: _containers.RepeatedCompositeFieldContainer[RoundEvent]
    def __init__(self, session_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[RoundEvent, _Mapping]]] = ...) -> None: ...

class RecordRoundEventsResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...

class PutSessionReportRequest(_message.Message):
    __slots__ = ("session_id", "report")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    report: bytes
    def __init__(self, session_id: _Optional[str] = ..., report: _Optional[bytes] = ...) -> None: ...

class SessionReportDocument(_message.Message):
    __slots__ = ("session_id", "report", "updated_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    report: bytes
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., report: _Optional[bytes] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("from_state", "to_state", "actor", "reason", "at")
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    from_state: SessionState
    to_state: SessionState
    actor: str
    reason: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, from_state: _Optional[_Union[SessionState, str]] = ..., to_state: _Optional[_Union[SessionState, str]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "terms", "creator", "state", "reason", "participants", "transitions", "updated_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    terms: _common_pb2.SignedDocument
    creator: str
    state: SessionState
    reason: str
    participants: _containers.RepeatedCompositeFieldContainer[Participant]
    transitions: _containers.RepeatedCompositeFieldContainer[Transition]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., terms: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ..., creator: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., reason: _Optional[str] = ..., participants: _Optional[_Iterable[_Union[Participant, _Mapping]]] = ..., transitions: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ...) -> None: ...

class OwnerVerdictRequest(_message.Message):
    __slots__ = ("session_id", "stage", "ok", "reason", "verdict", "policy_digest", "measurement")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    stage: str
    ok: bool
    reason: str
    verdict: _common_pb2.Verdict
    policy_digest: str
    measurement: bytes
    def __init__(self, session_id: _Optional[str] = ..., stage: _Optional[str] = ..., ok: _Optional[bool] = ..., reason: _Optional[str] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ..., policy_digest: _Optional[str] = ..., measurement: _Optional[bytes] = ...) -> None: ...

class OwnerVerdictResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...

class ApproveExportRequest(_message.Message):
    __slots__ = ("session_id", "approval")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    approval: _common_pb2.SignedDocument
    def __init__(self, session_id: _Optional[str] = ..., approval: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ...) -> None: ...

class ExportApprovalInfo(_message.Message):
    __slots__ = ("fingerprint", "role", "adapter_sha256", "approved_at", "approval")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_SHA256_FIELD_NUMBER: _ClassVar[int]
    APPROVED_AT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    role: str
    adapter_sha256: str
    approved_at: _timestamp_pb2.Timestamp
    approval: _common_pb2.SignedDocument
    def __init__(self, fingerprint: _Optional[str] = ..., role: _Optional[str] = ..., adapter_sha256: _Optional[str] = ..., approved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approval: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ...) -> None: ...

class MissingApproval(_message.Message):
    __slots__ = ("fingerprint", "role")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    role: str
    def __init__(self, fingerprint: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class ExportStatus(_message.Message):
    __slots__ = ("session_id", "adapter_sha256", "approvals", "missing")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_SHA256_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    adapter_sha256: str
    approvals: _containers.RepeatedCompositeFieldContainer[ExportApprovalInfo]
    missing: _containers.RepeatedCompositeFieldContainer[MissingApproval]
    def __init__(self, session_id: _Optional[str] = ..., adapter_sha256: _Optional[str] = ..., approvals: _Optional[_Iterable[_Union[ExportApprovalInfo, _Mapping]]] = ..., missing: _Optional[_Iterable[_Union[MissingApproval, _Mapping]]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("session_id", "recipient_public_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    recipient_public_key: bytes
    def __init__(self, session_id: _Optional[str] = ..., recipient_public_key: _Optional[bytes] = ...) -> None: ...

class ExportGranted(_message.Message):
    __slots__ = ("wrapped_session_key", "model_id", "adapter_sha256", "sealed_size", "content_mac")
    WRAPPED_SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEALED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_MAC_FIELD_NUMBER: _ClassVar[int]
    wrapped_session_key: bytes
    model_id: str
    adapter_sha256: str
    sealed_size: int
    content_mac: str
    def __init__(self, wrapped_session_key: _Optional[bytes] = ..., model_id: _Optional[str] = ..., adapter_sha256: _Optional[str] = ..., sealed_size: _Optional[int] = ..., content_mac: _Optional[str] = ...) -> None: ...

class ExportRefusal(_message.Message):
    __slots__ = ("reason", "missing")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    reason: str
    missing: _containers.RepeatedCompositeFieldContainer[MissingApproval]
    def __init__(self, reason: _Optional[str] = ..., missing: _Optional[_Iterable[_Union[MissingApproval, _Mapping]]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("granted", "refused")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    granted: ExportGranted
    refused: ExportRefusal
    def __init__(self, granted: _Optional[_Union[ExportGranted, _Mapping]] = ..., refused: _Optional[_Union[ExportRefusal, _Mapping]] = ...) -> None: ...
