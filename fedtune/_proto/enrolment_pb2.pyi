from . import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrolRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: _common_pb2.SignedDocument
    def __init__(self, request: _Optional[_Union[_common_pb2.SignedDocument, _Mapping]] = ...) -> None: ...

class EnrolResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_certificate_pem", "role", "name", "fingerprint", "api_port")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    API_PORT_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    ca_certificate_pem: str
    role: str
    name: str
    fingerprint: str
    api_port: int
    def __init__(self, certificate_pem: _Optional[str] = ..., ca_certificate_pem: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ..., fingerprint: _Optional[str] = ..., api_port: _Optional[int] = ...) -> None: ...
