"""The sandbox runtime's gRPC servicer: thin, every domain error mapped to a status in one table.

Each method converts the request, calls :class:`~enclave.sandbox.state.SandboxState`, and converts
the answer. A domain error (``crypto``, ``enclave``) becomes the status code of the first row of
``STATUS_CODES`` it is an instance of, its message (written for people; crypto messages carry no
secrets) as the details, and its class name in the trailing metadata key ``fedtune-error``, so a
client branches on the type, never on text. Any other exception is a bug: it is logged here and
the client gets INTERNAL without its text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NoReturn

import grpc

from crypto.errors import (
    CkksError,
    CryptoError,
    KeyWrapError,
    ManifestError,
    ManifestSignatureError,
    PayloadError,
    ProtocolViolationError,
    SealedStreamError,
    SecAggError,
    StageOrderError,
    WrongKeyError,
)
from crypto.identity import PublicIdentity
from enclave._proto import sandbox_pb2, sandbox_pb2_grpc
from enclave.errors import EnclaveError, EvidenceUnavailable
from enclave.ml.errors import MLError, TrainingDiverged
from enclave.sandbox.convert import (
    PROTO_TO_SECRET,
    SECRET_TO_PROTO,
    adapter_from_proto,
    isolation_to_proto,
    summary_to_proto,
)
from enclave.sandbox.errors import (
    AdapterNotReady,
    ConfigurationLocked,
    ExportRefused,
    InvalidRequest,
    KeyMismatch,
    ModelStreamError,
    RoundError,
    TermsSignatureError,
    UntrustedManifest,
    WrongPhase,
    WrongSession,
)
from enclave.sandbox.state import SandboxState
from enclave.sandbox.terms import PartySignature, SignedSessionTerms
from enclave.sandbox.wire import ERROR_TYPE_KEY, GRPC_OPTIONS

_log = logging.getLogger(__name__)

# First match wins: specific classes before their bases.
STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (WrongPhase, grpc.StatusCode.FAILED_PRECONDITION),
    (ConfigurationLocked, grpc.StatusCode.FAILED_PRECONDITION),
    (AdapterNotReady, grpc.StatusCode.FAILED_PRECONDITION),
    (TermsSignatureError, grpc.StatusCode.PERMISSION_DENIED),
    (RoundError, grpc.StatusCode.FAILED_PRECONDITION),
    (KeyMismatch, grpc.StatusCode.FAILED_PRECONDITION),
    (WrongKeyError, grpc.StatusCode.FAILED_PRECONDITION),
    (StageOrderError, grpc.StatusCode.FAILED_PRECONDITION),
    (UntrustedManifest, grpc.StatusCode.PERMISSION_DENIED),
    (ManifestSignatureError, grpc.StatusCode.PERMISSION_DENIED),
    (ExportRefused, grpc.StatusCode.PERMISSION_DENIED),
    (WrongSession, grpc.StatusCode.PERMISSION_DENIED),
    (ProtocolViolationError, grpc.StatusCode.PERMISSION_DENIED),
    (SealedStreamError, grpc.StatusCode.DATA_LOSS),
    (PayloadError, grpc.StatusCode.DATA_LOSS),
    (ManifestError, grpc.StatusCode.INVALID_ARGUMENT),
    (KeyWrapError, grpc.StatusCode.INVALID_ARGUMENT),
    (SecAggError, grpc.StatusCode.INVALID_ARGUMENT),
    (CkksError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelStreamError, grpc.StatusCode.INVALID_ARGUMENT),
    (TrainingDiverged, grpc.StatusCode.ABORTED),
    (MLError, grpc.StatusCode.INVALID_ARGUMENT),  # RecordError, ModelLoadError, AdapterMismatch
    (EvidenceUnavailable, grpc.StatusCode.UNAVAILABLE),
    (EnclaveError, grpc.StatusCode.INVALID_ARGUMENT),  # TermsError, DataPathError, ...
    (CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status code of a domain error, or None when ``exc`` is not one."""
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return None


def _abort(context: grpc.ServicerContext, method: str, exc: BaseException) -> NoReturn:
    code = status_for(exc)
    if code is None:
        _log.exception("%s failed with an unexpected error", method)
        context.set_trailing_metadata(((ERROR_TYPE_KEY, "InternalError"),))
        context.abort(
            grpc.StatusCode.INTERNAL,
            f"{method}: internal error in the sandbox runtime (see the sandbox log)",
        )
    _log.info("%s refused: %s: %s", method, type(exc).__name__, exc)
    context.set_trailing_metadata(((ERROR_TYPE_KEY, type(exc).__name__),))
    context.abort(code, str(exc))


class SandboxServicer(sandbox_pb2_grpc.SandboxServicer):
    """Maps each RPC onto the state machine."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state

    def Attest(  # noqa: N802 - gRPC method names
        self, request: sandbox_pb2.SandboxAttestRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxAttestResponse:
        """Evidence bound to the nonce and the ephemeral key."""
        try:
            result = self._state.attest(bytes(request.nonce))
        except Exception as exc:  # mapped in one place
            _abort(context, "Attest", exc)
        return sandbox_pb2.SandboxAttestResponse(
            evidence=result.evidence.canonical_bytes(),
            ephemeral_public_key=result.ephemeral_public_key,
            measurement=result.measurement,
            isolation=isolation_to_proto(result.isolation),
            evidence_kind=result.evidence.kind.value,
        )

    def InstallKey(  # noqa: N802
        self, request: sandbox_pb2.SandboxInstallKeyRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxInstallKeyResponse:
        """Unwrap a released secret."""
        try:
            kind = PROTO_TO_SECRET.get(request.kind)
            if kind is None:
                raise InvalidRequest(
                    "kind", "name the secret: model data key, CKKS context or session key"
                )
            key_id = self._state.install_key(
                kind,
                bytes(request.wrapped_key),
                model_id=request.model_id,
                session_id=request.session_id,
                sealed_secret=bytes(request.sealed_secret),
            )
        except Exception as exc:
            _abort(context, "InstallKey", exc)
        return sandbox_pb2.SandboxInstallKeyResponse(kind=SECRET_TO_PROTO[kind], key_id=key_id)

    def LoadModel(  # noqa: N802
        self,
        request_iterator: Iterator[sandbox_pb2.SandboxLoadModelRequest],
        context: grpc.ServicerContext,
    ) -> sandbox_pb2.SandboxModelSummary:
        """Verify the manifest, unseal the streamed blob into memory."""
        try:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("part") != "header":
                raise ModelStreamError("the first message must be the header (signed manifest)")
            header = first.header
            which = header.WhichOneof("trusted_provider")
            trusted: PublicIdentity | str
            if which == "provider_public_key":
                try:
                    trusted = PublicIdentity.from_bytes(bytes(header.provider_public_key))
                except ValueError as exc:
                    raise InvalidRequest("provider_public_key", str(exc)) from None
            elif which == "provider_fingerprint":
                trusted = header.provider_fingerprint
            else:
                raise InvalidRequest(
                    "trusted_provider", "name the provider you trust (public key or fingerprint)"
                )
            summary = self._state.load_model(
                bytes(header.signed_manifest), trusted, _chunks(request_iterator)
            )
        except Exception as exc:
            _abort(context, "LoadModel", exc)
        return summary_to_proto(summary)

    def Configure(  # noqa: N802
        self, request: sandbox_pb2.SandboxConfigureRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxConfigureResponse:
        """Verify the signed terms, load the records, build the model; lock the set-up."""
        try:
            signed = SignedSessionTerms(
                document=bytes(request.session_terms),
                provider=PartySignature(
                    bytes(request.provider.public_key), bytes(request.provider.signature)
                ),
                owner=PartySignature(
                    bytes(request.owner.public_key), bytes(request.owner.signature)
                ),
            )
            result = self._state.configure(
                signed, train_file=request.train_file, eval_file=request.eval_file or None
            )
        except Exception as exc:
            _abort(context, "Configure", exc)
        return sandbox_pb2.SandboxConfigureResponse(
            session_id=result.session_id,
            task=result.task,
            adapter_length=result.adapter_length,
            adapter_fingerprint=result.adapter_fingerprint,
            train_examples=result.train_examples,
            eval_examples=result.eval_examples,
            rounds=result.rounds,
        )

    def Train(  # noqa: N802
        self, request: sandbox_pb2.SandboxTrainRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxTrainResponse:
        """Train one round; the update stays inside."""
        try:
            source = adapter_from_proto(request.adapter if request.HasField("adapter") else None)
            outcome = self._state.train(request.round, source, session_id=request.session_id)
        except Exception as exc:
            _abort(context, "Train", exc)
        return sandbox_pb2.SandboxTrainResponse(
            round=outcome.round, num_examples=outcome.num_examples, metrics=outcome.metrics
        )

    def Evaluate(  # noqa: N802
        self, request: sandbox_pb2.SandboxEvaluateRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxEvaluateResponse:
        """Metrics on the held-out split."""
        try:
            source = adapter_from_proto(request.adapter if request.HasField("adapter") else None)
            metrics = self._state.evaluate(
                source, session_id=request.session_id, split=request.split or "eval"
            )
        except Exception as exc:
            _abort(context, "Evaluate", exc)
        return sandbox_pb2.SandboxEvaluateResponse(
            num_examples=int(metrics.get("num_examples", 0)), metrics=metrics
        )

    def ExportUpdate(  # noqa: N802
        self, request: sandbox_pb2.SandboxExportUpdateRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxExportUpdateResponse:
        """One stage of the aggregation protocol."""
        try:
            which = request.WhichOneof("stage")
            if which == "secagg":
                result = self._state.export_secagg(bytes(request.secagg))
            elif which == "ckks":
                result = self._state.export_ckks(
                    request.ckks.round, session_id=request.ckks.session_id
                )
            else:
                raise InvalidRequest("stage", "send a secagg stage message or a CKKS export")
        except Exception as exc:
            _abort(context, "ExportUpdate", exc)
        return sandbox_pb2.SandboxExportUpdateResponse(
            reply=result.reply, stage=result.stage, done=result.done
        )

    def Status(  # noqa: N802
        self, request: sandbox_pb2.SandboxStatusRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxStatus:
        """Where the runtime is; never blocks on a running call."""
        snap = self._state.status()
        message = sandbox_pb2.SandboxStatus(
            phase=snap.phase.value,
            isolation=isolation_to_proto(snap.isolation),
            measurement=snap.measurement,
            evidence_kind=snap.evidence_kind,
            session_id=snap.session_id,
            aggregation=snap.aggregation,
            rounds_trained=snap.rounds_trained,
            last_round=snap.last_round,
            ckks_rounds_applied=snap.ckks_rounds_applied,
            update_pending=snap.update_pending,
            secrets=list(snap.secrets),
            adapter_length=snap.adapter_length,
            adapter_fingerprint=snap.adapter_fingerprint,
            rounds=snap.rounds,
            locked=snap.locked,
            adapter_ready=snap.adapter_ready,
            adapter_after_round=snap.adapter_after_round,
        )
        if snap.model is not None:
            message.model.CopyFrom(summary_to_proto(snap.model))
        return message

    def SealAdapter(  # noqa: N802
        self, request: sandbox_pb2.SandboxSealAdapterRequest, context: grpc.ServicerContext
    ) -> sandbox_pb2.SandboxSealedAdapter:
        """The final adapter, sealed under the session key."""
        try:
            sealed = self._state.seal_adapter(session_id=request.session_id)
        except Exception as exc:
            _abort(context, "SealAdapter", exc)
        return sandbox_pb2.SandboxSealedAdapter(
            session_id=sealed.session_id,
            sealed=sealed.sealed,
            sealed_sha256=sealed.sealed_sha256,
            payload_size=sealed.payload_size,
            content_mac=sealed.content_mac,
            key_id=sealed.key_id,
            after_round=sealed.after_round,
            adapter_fingerprint=sealed.adapter_fingerprint,
            files=list(sealed.files),
        )


def _chunks(requests: Iterator[sandbox_pb2.SandboxLoadModelRequest]) -> Iterator[bytes]:
    for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise ModelStreamError("only blob chunks may follow the header")
        yield request.chunk


def create_server(
    state: SandboxState, socket_path: str, *, max_workers: int = 4
) -> grpc.Server:
    """A started gRPC server for ``state`` on the Unix socket ``socket_path`` (and nothing else)."""
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox-rpc"),
        options=GRPC_OPTIONS,
    )
    sandbox_pb2_grpc.add_SandboxServicer_to_server(SandboxServicer(state), server)
    bound = server.add_insecure_port(f"unix:{socket_path}")
    if bound == 0:
        raise OSError(f"cannot listen on the Unix socket {socket_path}")
    server.start()
    return server
