"""The one table that turns domain errors into gRPC status codes (and back, on the client)."""

from __future__ import annotations

import grpc

from crypto.errors import CryptoError, SignatureError
from enclave.errors import EnclaveError
from fedtune.errors import FedtuneError
from fedtune.orchestrator.errors import (
    AlreadyExists,
    BlobDigestMismatch,
    ChunkDigestMismatch,
    ConfigurationError,
    EnrolmentRefused,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PolicyDowngrade,
    StorageFull,
    Unauthenticated,
    UploadIncomplete,
)

# Looked up along the exception's MRO, so a subclass inherits its base's code unless listed.
STATUS_CODES: dict[type[BaseException], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    EnrolmentRefused: grpc.StatusCode.PERMISSION_DENIED,
    ChunkDigestMismatch: grpc.StatusCode.DATA_LOSS,
    BlobDigestMismatch: grpc.StatusCode.DATA_LOSS,
    UploadIncomplete: grpc.StatusCode.FAILED_PRECONDITION,
    PolicyDowngrade: grpc.StatusCode.FAILED_PRECONDITION,
    IllegalTransition: grpc.StatusCode.FAILED_PRECONDITION,
    StorageFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ConfigurationError: grpc.StatusCode.INTERNAL,
    SignatureError: grpc.StatusCode.INVALID_ARGUMENT,
    CryptoError: grpc.StatusCode.INVALID_ARGUMENT,
    EnclaveError: grpc.StatusCode.INVALID_ARGUMENT,
    FedtuneError: grpc.StatusCode.FAILED_PRECONDITION,
}

# Errors whose message is written for the caller and safe to send; anything else is
# reported as INTERNAL with a reference only.
DOMAIN_ERRORS = (FedtuneError, CryptoError, EnclaveError)


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code for a domain error, or None when ``exc`` is not one."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return None
