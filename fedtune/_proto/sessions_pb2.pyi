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
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_CREATED: SessionState
SESSION_STATE_OPEN: SessionState
SESSION_STATE_RUNNING: SessionState
SESSION_STATE_FINISHED: SessionState
SESSION_STATE_FAILED: SessionState
SESSION_STATE_CANCELLED: SessionState

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
    __slots__ = ("fingerprint", "role", "accepted", "accepted_at")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    role: str
    accepted: bool
    accepted_at: _timestamp_pb2.Timestamp
    def __init__(self, fingerprint: _Optional[str] = ..., role: _Optional[str] = ..., accepted: _Optional[bool] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
