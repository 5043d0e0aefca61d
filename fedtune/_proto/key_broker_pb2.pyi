import datetime

from . import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecretKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECRET_KIND_UNSPECIFIED: _ClassVar[SecretKind]
    SECRET_KIND_MODEL_DATA_KEY: _ClassVar[SecretKind]
    SECRET_KIND_SESSION_CKKS_SECRET: _ClassVar[SecretKind]
    SECRET_KIND_SESSION_KEY: _ClassVar[SecretKind]
    SECRET_KIND_REATTESTATION: _ClassVar[SecretKind]
SECRET_KIND_UNSPECIFIED: SecretKind
SECRET_KIND_MODEL_DATA_KEY: SecretKind
SECRET_KIND_SESSION_CKKS_SECRET: SecretKind
SECRET_KIND_SESSION_KEY: SecretKind
SECRET_KIND_REATTESTATION: SecretKind

class GetBrokerKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BrokerKey(_message.Message):
    __slots__ = ("public_key", "kem")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KEM_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    kem: str
    def __init__(self, public_key: _Optional[bytes] = ..., kem: _Optional[str] = ...) -> None: ...

class RegisterKeyRequest(_message.Message):
    __slots__ = ("model", "wrapped_key", "policy")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    wrapped_key: bytes
    policy: _common_pb2.SignedDocument
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., wrapped_key: _Optional[bytes] = ..., policy: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ...) -> None: ...

class RegisterKeyResponse(_message.Message):
    __slots__ = ("model", "policy_version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    policy_version: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., policy_version: _Optional[int] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("model_name", "policy")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    policy: _common_pb2.SignedDocument
    def __init__(self, model_name: _Optional[str] = ..., policy: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class PolicyStatus(_message.Message):
    __slots__ = ("model_name", "version", "policy", "updated_at")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    policy: _common_pb2.SignedDocument
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., policy: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChallengeRequest(_message.Message):
    __slots__ = ("session_id", "kind")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    kind: SecretKind
    def __init__(self, session_id: _Optional[str] = ..., kind: _Optional[_Union[SecretKind, str]] = ...) -> None: ...

class ChallengeResponse(_message.Message):
    __slots__ = ("nonce", "expires_at")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, nonce: _Optional[bytes] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("session_id", "kind", "evidence", "ephemeral_public_key", "nonce")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    kind: SecretKind
    evidence: bytes
    ephemeral_public_key: bytes
    nonce: bytes
    def __init__(self, session_id: _Optional[str] = ..., kind: _Optional[_Union[SecretKind, str]] = ..., evidence: _Optional[bytes] = ..., ephemeral_public_key: _Optional[bytes] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class ReleasedSecret(_message.Message):
    __slots__ = ("kind", "model", "session_id", "wrapped_secret", "sealed_secret")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_SECRET_FIELD_NUMBER: _ClassVar[int]
    SEALED_SECRET_FIELD_NUMBER: _ClassVar[int]
    kind: SecretKind
    model: _common_pb2.ModelRef
    session_id: str
    wrapped_secret: bytes
    sealed_secret: bytes
    def __init__(self, kind: _Optional[_Union[SecretKind, str]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., session_id: _Optional[str] = ..., wrapped_secret: _Optional[bytes] = ..., sealed_secret: _Optional[bytes] = ...) -> None: ...

class GetPublicContextRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class PublicContext(_message.Message):
    __slots__ = ("session_id", "context", "key_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    context: bytes
    key_id: str
    def __init__(self, session_id: _Optional[str] = ..., context: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason", "verdict")
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    verdict: _common_pb2.Verdict
    def __init__(self, reason: _Optional[str] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released", "refused")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    released: ReleasedSecret
    refused: Refusal
    def __init__(self, released: _Optional[_Union[ReleasedSecret, _Mapping]] = ..., refused: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...

class ReattestResponse(_message.Message):
    __slots__ = ("ok", "reason", "verdict")
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    reason: str
    verdict: _common_pb2.Verdict
    def __init__(self, ok: _Optional[bool] = ..., reason: _Optional[str] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ...) -> None: ...
