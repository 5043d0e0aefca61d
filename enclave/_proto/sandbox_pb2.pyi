from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SandboxIsolationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_ISOLATION_MODE_UNSPECIFIED: _ClassVar[SandboxIsolationMode]
    SANDBOX_ISOLATION_MODE_BUBBLEWRAP: _ClassVar[SandboxIsolationMode]
    SANDBOX_ISOLATION_MODE_PLAIN_PROCESS: _ClassVar[SandboxIsolationMode]

class SandboxSecretKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_SECRET_KIND_UNSPECIFIED: _ClassVar[SandboxSecretKind]
    SANDBOX_SECRET_KIND_MODEL_DATA_KEY: _ClassVar[SandboxSecretKind]
    SANDBOX_SECRET_KIND_CKKS_SECRET_CONTEXT: _ClassVar[SandboxSecretKind]
    SANDBOX_SECRET_KIND_SESSION_KEY: _ClassVar[SandboxSecretKind]
SANDBOX_ISOLATION_MODE_UNSPECIFIED: SandboxIsolationMode
SANDBOX_ISOLATION_MODE_BUBBLEWRAP: SandboxIsolationMode
SANDBOX_ISOLATION_MODE_PLAIN_PROCESS: SandboxIsolationMode
SANDBOX_SECRET_KIND_UNSPECIFIED: SandboxSecretKind
SANDBOX_SECRET_KIND_MODEL_DATA_KEY: SandboxSecretKind
SANDBOX_SECRET_KIND_CKKS_SECRET_CONTEXT: SandboxSecretKind
SANDBOX_SECRET_KIND_SESSION_KEY: SandboxSecretKind

class SandboxIsolation(_message.Message):
    __slots__ = ("mode", "namespaces", "network_isolated", "interfaces", "filesystem_isolated", "dumpable", "core_limit", "capabilities", "tee", "weaker", "warnings")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ISOLATED_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_ISOLATED_FIELD_NUMBER: _ClassVar[int]
    DUMPABLE_FIELD_NUMBER: _ClassVar[int]
    CORE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TEE_FIELD_NUMBER: _ClassVar[int]
    WEAKER_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    mode: SandboxIsolationMode
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    network_isolated: bool
    interfaces: _containers.RepeatedScalarFieldContainer[str]
    filesystem_isolated: bool
    dumpable: bool
    core_limit: int
    capabilities: str
    tee: str
    weaker: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mode: _Optional[_Union[SandboxIsolationMode, str]] = ..., namespaces: _Optional[_Iterable[str]] = ..., network_isolated: _Optional[bool] = ..., interfaces: _Optional[_Iterable[str]] = ..., filesystem_isolated: _Optional[bool] = ..., dumpable: _Optional[bool] = ..., core_limit: _Optional[int] = ..., capabilities: _Optional[str] = ..., tee: _Optional[str] = ..., weaker: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class SandboxAttestRequest(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    def __init__(self, nonce: _Optional[bytes] = ...) -> None: ...

class SandboxAttestResponse(_message.Message):
    __slots__ = ("evidence", "ephemeral_public_key", "measurement", "isolation", "evidence_kind")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_KIND_FIELD_NUMBER: _ClassVar[int]
    evidence: bytes
    ephemeral_public_key: bytes
    measurement: bytes
    isolation: SandboxIsolation
    evidence_kind: str
    def __init__(self, evidence: _Optional[bytes] = ..., ephemeral_public_key: _Optional[bytes] = ..., measurement: _Optional[bytes] = ..., isolation: _Optional[_Union[SandboxIsolation, _Mapping]] = ..., evidence_kind: _Optional[str] = ...) -> None: ...

class SandboxInstallKeyRequest(_message.Message):
    __slots__ = ("kind", "wrapped_key", "model_id", "session_id", "sealed_secret")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEALED_SECRET_FIELD_NUMBER: _ClassVar[int]
    kind: SandboxSecretKind
    wrapped_key: bytes
    model_id: str
    session_id: str
    sealed_secret: bytes
    def __init__(self, kind: _Optional[_Union[SandboxSecretKind, str]] = ..., wrapped_key: _Optional[bytes] = ..., model_id: _Optional[str] = ..., session_id: _Optional[str] = ..., sealed_secret: _Optional[bytes] = ...) -> None: ...

class SandboxInstallKeyResponse(_message.Message):
    __slots__ = ("kind", "key_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    kind: SandboxSecretKind
    key_id: str
    def __init__(self, kind: _Optional[_Union[SandboxSecretKind, str]] = ..., key_id: _Optional[str] = ...) -> None: ...

class SandboxModelHeader(_message.Message):
    __slots__ = ("signed_manifest", "provider_public_key", "provider_fingerprint")
    SIGNED_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    signed_manifest: bytes
    provider_public_key: bytes
    provider_fingerprint: str
    def __init__(self, signed_manifest: _Optional[bytes] = ..., provider_public_key: _Optional[bytes] = ..., provider_fingerprint: _Optional[str] = ...) -> None: ...

class SandboxLoadModelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SandboxModelHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SandboxModelHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SandboxModelSummary(_message.Message):
    __slots__ = ("model_name", "model_version", "model_type", "architecture", "parameter_count", "tensor_count", "sealed_size", "provider_fingerprint", "data_key_id", "files")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TENSOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEALED_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    model_type: str
    architecture: str
    parameter_count: int
    tensor_count: int
    sealed_size: int
    provider_fingerprint: str
    data_key_id: str
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., model_type: _Optional[str] = ..., architecture: _Optional[str] = ..., parameter_count: _Optional[int] = ..., tensor_count: _Optional[int] = ..., sealed_size: _Optional[int] = ..., provider_fingerprint: _Optional[str] = ..., data_key_id: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...

class SandboxSignature(_message.Message):
    __slots__ = ("public_key", "signature")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    signature: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SandboxConfigureRequest(_message.Message):
    __slots__ = ("train_file", "eval_file", "session_terms", "provider", "owner")
    TRAIN_FILE_FIELD_NUMBER: _ClassVar[int]
    EVAL_FILE_FIELD_NUMBER: _ClassVar[int]
    SESSION_TERMS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    train_file: str
    eval_file: str
    session_terms: bytes
    provider: SandboxSignature
    owner: SandboxSignature
    def __init__(self, train_file: _Optional[str] = ..., eval_file: _Optional[str] = ..., session_terms: _Optional[bytes] = ..., provider: _Optional[_Union[SandboxSignature, _Mapping]] = ..., owner: _Optional[_Union[SandboxSignature, _Mapping]] = ...) -> None: ...

class SandboxConfigureResponse(_message.Message):
    __slots__ = ("session_id", "task", "adapter_length", "adapter_fingerprint", "train_examples", "eval_examples", "rounds")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    EVAL_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    task: str
    adapter_length: int
    adapter_fingerprint: str
    train_examples: int
    eval_examples: int
    rounds: int
    def __init__(self, session_id: _Optional[str] = ..., task: _Optional[str] = ..., adapter_length: _Optional[int] = ..., adapter_fingerprint: _Optional[str] = ..., train_examples: _Optional[int] = ..., eval_examples: _Optional[int] = ..., rounds: _Optional[int] = ...) -> None: ...

class SandboxCkksAggregate(_message.Message):
    __slots__ = ("round", "blob")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    round: int
    blob: bytes
    def __init__(self, round: _Optional[int] = ..., blob: _Optional[bytes] = ...) -> None: ...

class SandboxCkksAggregates(_message.Message):
    __slots__ = ("aggregates",)
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    aggregates: _containers.RepeatedCompositeFieldContainer[SandboxCkksAggregate]
    def __init__(self, aggregates: _Optional[_Iterable[_Union[SandboxCkksAggregate, _Mapping]]] = ...) -> None: ...

class SandboxInitialAdapter(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SandboxAdapter(_message.Message):
    __slots__ = ("initial", "plain_float32", "ckks", "plain_delta_float32")
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    PLAIN_FLOAT32_FIELD_NUMBER: _ClassVar[int]
    CKKS_FIELD_NUMBER: _ClassVar[int]
    PLAIN_DELTA_FLOAT32_FIELD_NUMBER: _ClassVar[int]
    initial: SandboxInitialAdapter
    plain_float32: bytes
    ckks: SandboxCkksAggregates
    plain_delta_float32: bytes
    def __init__(self, initial: _Optional[_Union[SandboxInitialAdapter, _Mapping]] = ..., plain_float32: _Optional[bytes] = ..., ckks: _Optional[_Union[SandboxCkksAggregates, _Mapping]] = ..., plain_delta_float32: _Optional[bytes] = ...) -> None: ...

class SandboxTrainRequest(_message.Message):
    __slots__ = ("round", "adapter", "session_id")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    round: int
    adapter: SandboxAdapter
    session_id: str
    def __init__(self, round: _Optional[int] = ..., adapter: _Optional[_Union[SandboxAdapter, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class SandboxTrainResponse(_message.Message):
    __slots__ = ("round", "num_examples", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    round: int
    num_examples: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, round: _Optional[int] = ..., num_examples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SandboxEvaluateRequest(_message.Message):
    __slots__ = ("split", "adapter", "session_id")
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    split: str
    adapter: SandboxAdapter
    session_id: str
    def __init__(self, split: _Optional[str] = ..., adapter: _Optional[_Union[SandboxAdapter, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class SandboxEvaluateResponse(_message.Message):
    __slots__ = ("num_examples", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    num_examples: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, num_examples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SandboxCkksExport(_message.Message):
    __slots__ = ("round", "session_id")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    round: int
    session_id: str
    def __init__(self, round: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class SandboxExportUpdateRequest(_message.Message):
    __slots__ = ("secagg", "ckks")
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    CKKS_FIELD_NUMBER: _ClassVar[int]
    secagg: bytes
    ckks: SandboxCkksExport
    def __init__(self, secagg: _Optional[bytes] = ..., ckks: _Optional[_Union[SandboxCkksExport, _Mapping]] = ...) -> None: ...

class SandboxExportUpdateResponse(_message.Message):
    __slots__ = ("reply", "stage", "done")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    reply: bytes
    stage: str
    done: bool
    def __init__(self, reply: _Optional[bytes] = ..., stage: _Optional[str] = ..., done: _Optional[bool] = ...) -> None: ...

class SandboxStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SandboxStatus(_message.Message):
    __slots__ = ("phase", "isolation", "measurement", "evidence_kind", "model", "session_id", "aggregation", "rounds_trained", "last_round", "ckks_rounds_applied", "update_pending", "secrets", "adapter_length", "adapter_fingerprint", "rounds", "locked", "adapter_ready", "adapter_after_round")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TRAINED_FIELD_NUMBER: _ClassVar[int]
    LAST_ROUND_FIELD_NUMBER: _ClassVar[int]
    CKKS_ROUNDS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_PENDING_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_READY_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_AFTER_ROUND_FIELD_NUMBER: _ClassVar[int]
    phase: str
    isolation: SandboxIsolation
    measurement: bytes
    evidence_kind: str
    model: SandboxModelSummary
    session_id: str
    aggregation: str
    rounds_trained: int
    last_round: int
    ckks_rounds_applied: int
    update_pending: bool
    secrets: _containers.RepeatedScalarFieldContainer[str]
    adapter_length: int
    adapter_fingerprint: str
    rounds: int
    locked: bool
    adapter_ready: bool
    adapter_after_round: int
    def __init__(self, phase: _Optional[str] = ..., isolation: _Optional[_Union[SandboxIsolation, _Mapping]] = ..., measurement: _Optional[bytes] = ..., evidence_kind: _Optional[str] = ..., model: _Optional[_Union[SandboxModelSummary, _Mapping]] = ..., session_id: _Optional[str] = ..., aggregation: _Optional[str] = ..., rounds_trained: _Optional[int] = ..., last_round: _Optional[int] = ..., ckks_rounds_applied: _Optional[int] = ..., update_pending: _Optional[bool] = ..., secrets: _Optional[_Iterable[str]] = ..., adapter_length: _Optional[int] = ..., adapter_fingerprint: _Optional[str] = ..., rounds: _Optional[int] = ..., locked: _Optional[bool] = ..., adapter_ready: _Optional[bool] = ..., adapter_after_round: _Optional[int] = ...) -> None: ...

class SandboxSealAdapterRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SandboxSealedAdapter(_message.Message):
    __slots__ = ("session_id", "sealed", "sealed_sha256", "payload_size", "content_mac", "key_id", "after_round", "adapter_fingerprint", "files")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    SEALED_SHA256_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_MAC_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ROUND_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    sealed: bytes
    sealed_sha256: str
    payload_size: int
    content_mac: str
    key_id: str
    after_round: int
    adapter_fingerprint: str
    files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., sealed: _Optional[bytes] = ..., sealed_sha256: _Optional[str] = ..., payload_size: _Optional[int] = ..., content_mac: _Optional[str] = ..., key_id: _Optional[str] = ..., after_round: _Optional[int] = ..., adapter_fingerprint: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ...) -> None: ...
