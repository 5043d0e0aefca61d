import datetime

from . import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BeginUploadRequest(_message.Message):
    __slots__ = ("manifest", "chunk_size")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    manifest: _common_pb2.SignedDocument
    chunk_size: int
    def __init__(self, manifest: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ChunkRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class UploadStatus(_message.Message):
    __slots__ = ("upload_id", "model", "total_size", "chunk_size", "chunk_count", "missing", "first_missing", "stored_bytes", "complete")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    FIRST_MISSING_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    model: _common_pb2.ModelRef
    total_size: int
    chunk_size: int
    chunk_count: int
    missing: _containers.RepeatedCompositeFieldContainer[ChunkRange]
    first_missing: int
    stored_bytes: int
    complete: bool
    def __init__(self, upload_id: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., total_size: _Optional[int] = ..., chunk_size: _Optional[int] = ..., chunk_count: _Optional[int] = ..., missing: _Optional[_Iterable[_Union[ChunkRange, _Mapping]]] = ..., first_missing: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., complete: _Optional[bool] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("upload_id", "index", "data", "digest")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    index: int
    data: bytes
    digest: bytes
    def __init__(self, upload_id: _Optional[str] = ..., index: _Optional[int] = ..., data: _Optional[bytes] = ..., digest: _Optional[bytes] = ...) -> None: ...

class CompleteUploadRequest(_message.Message):
    __slots__ = ("upload_id",)
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    def __init__(self, upload_id: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("model", "owner_fingerprint", "ciphertext_digest", "size", "registered_at", "digest_algorithm")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OWNER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    owner_fingerprint: str
    ciphertext_digest: bytes
    size: int
    registered_at: _timestamp_pb2.Timestamp
    digest_algorithm: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., owner_fingerprint: _Optional[str] = ..., ciphertext_digest: _Optional[bytes] = ..., size: _Optional[int] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., digest_algorithm: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("name", "owner_fingerprint", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner_fingerprint: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., owner_fingerprint: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ModelDescription(_message.Message):
    __slots__ = ("name", "owner_fingerprint", "versions", "policy_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner_fingerprint: str
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    policy_version: int
    def __init__(self, name: _Optional[str] = ..., owner_fingerprint: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., policy_version: _Optional[int] = ...) -> None: ...

class GetManifestRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("model", "offset", "length")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    offset: int
    length: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class BlobChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SealedAdapterHeader(_message.Message):
    __slots__ = ("session_id", "sealed_sha256", "sealed_size", "content_mac", "key_id", "after_round", "adapter_fingerprint")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEALED_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEALED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_MAC_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ROUND_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    sealed_sha256: str
    sealed_size: int
    content_mac: str
    key_id: str
    after_round: int
    adapter_fingerprint: str
    def __init__(self, session_id: _Optional[str] = ..., sealed_sha256: _Optional[str] = ..., sealed_size: _Optional[int] = ..., content_mac: _Optional[str] = ..., key_id: _Optional[str] = ..., after_round: _Optional[int] = ..., adapter_fingerprint: _Optional[str] = ...) -> None: ...

class SealedAdapterUpload(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SealedAdapterHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SealedAdapterHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SealedAdapterInfo(_message.Message):
    __slots__ = ("session_id", "sealed_sha256", "sealed_size", "content_mac", "key_id", "after_round", "adapter_fingerprint", "uploaded_by", "confirmed_by", "stored_at", "stored_now")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEALED_SHA256_FIELD_NUMBER: _ClassVar[int]
    SEALED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_MAC_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ROUND_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_BY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    STORED_NOW_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    sealed_sha256: str
    sealed_size: int
    content_mac: str
    key_id: str
    after_round: int
    adapter_fingerprint: str
    uploaded_by: str
    confirmed_by: _containers.RepeatedScalarFieldContainer[str]
    stored_at: _timestamp_pb2.Timestamp
    stored_now: bool
    def __init__(self, session_id: _Optional[str] = ..., sealed_sha256: _Optional[str] = ..., sealed_size: _Optional[int] = ..., content_mac: _Optional[str] = ..., key_id: _Optional[str] = ..., after_round: _Optional[int] = ..., adapter_fingerprint: _Optional[str] = ..., uploaded_by: _Optional[str] = ..., confirmed_by: _Optional[_Iterable[str]] = ..., stored_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stored_now: _Optional[bool] = ...) -> None: ...

class GetSealedAdapterRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...
