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
    __slots__ = ("upload_id", "index", "data", "sha256")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    index: int
    data: bytes
    sha256: bytes
    def __init__(self, upload_id: _Optional[str] = ..., index: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class CompleteUploadRequest(_message.Message):
    __slots__ = ("upload_id",)
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    def __init__(self, upload_id: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("model", "owner_fingerprint", "ciphertext_sha256", "size", "registered_at")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OWNER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    owner_fingerprint: str
    ciphertext_sha256: bytes
    size: int
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., owner_fingerprint: _Optional[str] = ..., ciphertext_sha256: _Optional[bytes] = ..., size: _Optional[int] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
