"""Typed client of the sandbox runtime's gRPC API, for the data owner's agent and the Flower relay.

Every call has a deadline (short for bookkeeping calls, long for loading, training and
encrypting), and a refused call raises :class:`SandboxCallError` carrying the status code and
the runtime's error type (``WrongKeyError``, ``UntrustedManifest``, ``RecordError``, ...), so
callers branch on ``error_type``, never on message text. The relay stays thin: stage messages
and ciphertexts pass through as bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import grpc
import numpy as np

from crypto.identity import PublicIdentity
from enclave._proto import sandbox_pb2, sandbox_pb2_grpc
from enclave.attest.evidence import Evidence
from enclave.sandbox.adapter_seal import SealedAdapter
from enclave.sandbox.convert import (
    SECRET_TO_PROTO,
    adapter_to_proto,
    isolation_from_proto,
    summary_from_proto,
)
from enclave.sandbox.isolation import IsolationReport
from enclave.sandbox.keys import SecretKind
from enclave.sandbox.model_loading import ModelSummary
from enclave.sandbox.state import ConfigureResult
from enclave.sandbox.terms import SignedSessionTerms
from enclave.sandbox.training import AdapterSource, InitialAdapter, PlainAdapter, PlainDelta
from enclave.sandbox.wire import CHUNK_SIZE, ERROR_TYPE_KEY, GRPC_OPTIONS
from fedtune.errors import FedtuneError

DEFAULT_TIMEOUT_S = 60.0
LONG_TIMEOUT_S = 3600.0
SERVICE = "/fedtune.v1.Sandbox/"
RELAYED_METHODS = frozenset({"Train", "Evaluate", "ExportUpdate", "Status"})
"""What a relay may forward: the round's work, never set-up (which the sandbox locks anyway)."""


class SandboxCallError(FedtuneError):
    """A sandbox call failed; ``error_type`` names the runtime's error class."""

    def __init__(self, method: str, code: grpc.StatusCode, error_type: str, message: str) -> None:
        self.method = method
        self.code = code
        self.error_type = error_type
        self.message = message
        super().__init__(f"sandbox {method} failed ({code.name}, {error_type}): {message}")


@dataclass(frozen=True)
class AttestResult:
    """Evidence from the sandbox, to relay to the key broker with the ephemeral key."""

    evidence: Evidence
    evidence_bytes: bytes
    ephemeral_public_key: bytes
    measurement: bytes
    isolation: IsolationReport
    evidence_kind: str


@dataclass(frozen=True)
class TrainResult:
    """One trained round: example count and loss metrics."""

    round: int
    num_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class EvaluateResult:
    """Held-out metrics."""

    num_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class ExportReply:
    """One aggregation stage's reply (opaque bytes to relay)."""

    reply: bytes
    stage: str
    done: bool


@dataclass(frozen=True)
class SandboxStatusInfo:
    """What the runtime reports about itself."""

    phase: str
    isolation: IsolationReport
    measurement: bytes
    evidence_kind: str
    model: ModelSummary | None
    session_id: str
    aggregation: str
    rounds_trained: int
    last_round: int
    ckks_rounds_applied: int
    update_pending: bool
    secrets: tuple[str, ...]
    adapter_length: int
    adapter_fingerprint: str
    rounds: int
    locked: bool
    adapter_ready: bool = False
    adapter_after_round: int = 0


def plain_delta(vector: np.ndarray) -> PlainDelta:
    """The committed averages summed so far, as Train/Evaluate take them in secagg sessions."""
    if not isinstance(vector, np.ndarray) or vector.ndim != 1:
        raise TypeError("vector must be a 1-D numpy array")
    return PlainDelta(vector.astype("<f4", copy=False).tobytes())


def plain_adapter(vector: np.ndarray) -> PlainAdapter:
    """The global adapter vector as Train/Evaluate take it in secure-aggregation sessions."""
    if not isinstance(vector, np.ndarray) or vector.ndim != 1:
        raise TypeError("vector must be a 1-D numpy array")
    return PlainAdapter(vector.astype("<f4", copy=False).tobytes())


def _blob_chunks(blob: BinaryIO | bytes | Iterable[bytes], chunk_size: int) -> Iterator[bytes]:
    if isinstance(blob, bytes | bytearray | memoryview):
        blob = io.BytesIO(bytes(blob))
    if hasattr(blob, "read"):
        while True:
            chunk = blob.read(chunk_size)  # type: ignore[union-attr]
            if not chunk:
                return
            yield chunk
    else:
        yield from blob  # type: ignore[misc]


class SandboxClient:
    """A connection to one sandbox runtime over its Unix socket."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        session_id: str = "",
        timeout: float = DEFAULT_TIMEOUT_S,
        long_timeout: float = LONG_TIMEOUT_S,
    ) -> None:
        if not isinstance(socket_path, str | os.PathLike):
            raise TypeError("socket_path must be a path")
        if not isinstance(session_id, str):
            raise TypeError("session_id must be a str")
        for name, value in (("timeout", timeout), ("long_timeout", long_timeout)):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds")
            if value <= 0:
                raise ValueError(f"{name} must be positive")
        self.socket_path = Path(socket_path)
        # The session Train, Evaluate and CKKS exports name (the sandbox refuses others);
        # set by configure() when this client did the set-up.
        self.session_id = session_id
        self.timeout = float(timeout)
        self.long_timeout = float(long_timeout)
        self._channel = grpc.insecure_channel(f"unix:{self.socket_path}", options=GRPC_OPTIONS)
        self._stub = sandbox_pb2_grpc.SandboxStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, call: object, request: object, timeout: float) -> object:
        try:
            return call(request, timeout=timeout)  # type: ignore[operator]
        except grpc.RpcError as exc:
            raise _call_error(method, exc) from None

    def _session(self, session_id: str | None) -> str:
        session = self.session_id if session_id is None else session_id
        if not session:
            raise ValueError("name the session (session_id=...), or configure through this client")
        return session

    def relay(self, method: str, request: bytes, *, timeout: float | None = None) -> bytes:
        """Forward one serialised request to ``method`` and return the serialised reply.

        For the Flower relay, which passes the aggregator's requests through unread. Only
        ``RELAYED_METHODS`` are forwarded; a refusal raises SandboxCallError as any call does.
        """
        if method not in RELAYED_METHODS:
            raise ValueError(f"{method!r} is not relayed; only {sorted(RELAYED_METHODS)}")
        if not isinstance(request, bytes):
            raise TypeError("request must be bytes")
        # No (de)serialisers: the bytes pass through as they are.
        call = self._channel.unary_unary(SERVICE + method)
        response = self._call(method, call, request, timeout or self.long_timeout)
        assert isinstance(response, bytes)
        return response

    # -- calls -------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Block until the runtime's socket accepts calls (SandboxCallError when it does not)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise SandboxCallError(
                "connect", grpc.StatusCode.UNAVAILABLE, "Unavailable",
                f"no sandbox answered on {self.socket_path} within {timeout} s",
            ) from None

    def attest(self, nonce: bytes) -> AttestResult:
        """Evidence whose report data is SHA-512(nonce || ephemeral public key)."""
        response = self._call(
            "Attest", self._stub.Attest, sandbox_pb2.SandboxAttestRequest(nonce=nonce),
            self.timeout,
        )
        assert isinstance(response, sandbox_pb2.SandboxAttestResponse)
        raw = bytes(response.evidence)
        return AttestResult(
            evidence=Evidence.model_validate_json(raw),
            evidence_bytes=raw,
            ephemeral_public_key=bytes(response.ephemeral_public_key),
            measurement=bytes(response.measurement),
            isolation=isolation_from_proto(response.isolation),
            evidence_kind=response.evidence_kind,
        )

    def install_key(
        self,
        kind: SecretKind,
        wrapped_key: bytes,
        *,
        model_id: str,
        session_id: str,
        sealed_secret: bytes = b"",
    ) -> str:
        """Install a released secret; returns its key id."""
        if not isinstance(kind, SecretKind):
            raise TypeError("kind must be a SecretKind")
        request = sandbox_pb2.SandboxInstallKeyRequest(
            kind=SECRET_TO_PROTO[kind], wrapped_key=wrapped_key, model_id=model_id,
            session_id=session_id, sealed_secret=sealed_secret,
        )
        response = self._call("InstallKey", self._stub.InstallKey, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxInstallKeyResponse)
        return response.key_id

    def load_model(
        self,
        signed_manifest: bytes,
        blob: BinaryIO | bytes | Iterable[bytes],
        *,
        provider: PublicIdentity | str,
        chunk_size: int = CHUNK_SIZE,
    ) -> ModelSummary:
        """Stream the signed manifest and the sealed blob; the runtime unseals into memory."""
        if isinstance(provider, PublicIdentity):
            header = sandbox_pb2.SandboxModelHeader(
                signed_manifest=signed_manifest, provider_public_key=provider.raw
            )
        elif isinstance(provider, str):
            header = sandbox_pb2.SandboxModelHeader(
                signed_manifest=signed_manifest, provider_fingerprint=provider
            )
        else:
            raise TypeError("provider must be a PublicIdentity or a fingerprint string")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError("chunk_size must be a positive int")

        def requests() -> Iterator[sandbox_pb2.SandboxLoadModelRequest]:
            yield sandbox_pb2.SandboxLoadModelRequest(header=header)
            for chunk in _blob_chunks(blob, chunk_size):
                yield sandbox_pb2.SandboxLoadModelRequest(chunk=chunk)

        response = self._call("LoadModel", self._stub.LoadModel, requests(), self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxModelSummary)
        return summary_from_proto(response)

    def configure(
        self, terms: SignedSessionTerms, *, train_file: str, eval_file: str | None = None
    ) -> ConfigureResult:
        """Send the signed session terms and name the owner's record files (in its data dir).

        The last set-up call: the sandbox locks its set-up once it succeeded.
        """
        if not isinstance(terms, SignedSessionTerms):
            raise TypeError("terms must be SignedSessionTerms (the document and two signatures)")
        request = sandbox_pb2.SandboxConfigureRequest(
            session_terms=terms.document,
            provider=sandbox_pb2.SandboxSignature(
                public_key=terms.provider.public_key, signature=terms.provider.signature
            ),
            owner=sandbox_pb2.SandboxSignature(
                public_key=terms.owner.public_key, signature=terms.owner.signature
            ),
            train_file=train_file,
            eval_file=eval_file or "",
        )
        response = self._call("Configure", self._stub.Configure, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxConfigureResponse)
        self.session_id = response.session_id
        return ConfigureResult(
            session_id=response.session_id,
            task=response.task,
            adapter_length=response.adapter_length,
            adapter_fingerprint=response.adapter_fingerprint,
            train_examples=response.train_examples,
            eval_examples=response.eval_examples,
            rounds=response.rounds,
        )

    def train(
        self,
        round_number: int,
        adapter: AdapterSource | None = None,
        *,
        session_id: str | None = None,
    ) -> TrainResult:
        """Train one round from ``adapter`` (default: the initial adapter)."""
        request = sandbox_pb2.SandboxTrainRequest(
            round=round_number,
            adapter=adapter_to_proto(adapter or InitialAdapter()),
            session_id=self._session(session_id),
        )
        response = self._call("Train", self._stub.Train, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxTrainResponse)
        return TrainResult(response.round, response.num_examples, dict(response.metrics))

    def evaluate(
        self, adapter: AdapterSource | None = None, *, session_id: str | None = None
    ) -> EvaluateResult:
        """Held-out metrics of ``adapter`` (default: the initial adapter)."""
        request = sandbox_pb2.SandboxEvaluateRequest(
            split="eval",
            adapter=adapter_to_proto(adapter or InitialAdapter()),
            session_id=self._session(session_id),
        )
        response = self._call("Evaluate", self._stub.Evaluate, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxEvaluateResponse)
        return EvaluateResult(response.num_examples, dict(response.metrics))

    def export_secagg(self, message: bytes) -> ExportReply:
        """Relay one secure-aggregation stage request; returns the stage response."""
        request = sandbox_pb2.SandboxExportUpdateRequest(secagg=message)
        response = self._call("ExportUpdate", self._stub.ExportUpdate, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxExportUpdateResponse)
        return ExportReply(bytes(response.reply), response.stage, response.done)

    def export_ckks(self, round_number: int, *, session_id: str | None = None) -> ExportReply:
        """The round's weighted update, CKKS-encrypted."""
        request = sandbox_pb2.SandboxExportUpdateRequest(
            ckks=sandbox_pb2.SandboxCkksExport(
                round=round_number, session_id=self._session(session_id)
            )
        )
        response = self._call("ExportUpdate", self._stub.ExportUpdate, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxExportUpdateResponse)
        return ExportReply(bytes(response.reply), response.stage, response.done)

    def status(self) -> SandboxStatusInfo:
        """Where the runtime is."""
        response = self._call(
            "Status", self._stub.Status, sandbox_pb2.SandboxStatusRequest(), self.timeout
        )
        assert isinstance(response, sandbox_pb2.SandboxStatus)
        return SandboxStatusInfo(
            phase=response.phase,
            isolation=isolation_from_proto(response.isolation),
            measurement=bytes(response.measurement),
            evidence_kind=response.evidence_kind,
            model=summary_from_proto(response.model) if response.HasField("model") else None,
            session_id=response.session_id,
            aggregation=response.aggregation,
            rounds_trained=response.rounds_trained,
            last_round=response.last_round,
            ckks_rounds_applied=response.ckks_rounds_applied,
            update_pending=response.update_pending,
            secrets=tuple(response.secrets),
            adapter_length=response.adapter_length,
            adapter_fingerprint=response.adapter_fingerprint,
            rounds=response.rounds,
            locked=response.locked,
            adapter_ready=response.adapter_ready,
            adapter_after_round=response.adapter_after_round,
        )

    def seal_adapter(self, *, session_id: str | None = None) -> SealedAdapter:
        """The session's final adapter, sealed under the session key (never in plaintext)."""
        request = sandbox_pb2.SandboxSealAdapterRequest(session_id=self._session(session_id))
        response = self._call("SealAdapter", self._stub.SealAdapter, request, self.long_timeout)
        assert isinstance(response, sandbox_pb2.SandboxSealedAdapter)
        return SealedAdapter(
            session_id=response.session_id,
            sealed=bytes(response.sealed),
            sealed_sha256=response.sealed_sha256,
            payload_size=response.payload_size,
            content_mac=response.content_mac,
            key_id=response.key_id,
            after_round=response.after_round,
            adapter_fingerprint=response.adapter_fingerprint,
            files=tuple(response.files),
        )


def _call_error(method: str, exc: grpc.RpcError) -> SandboxCallError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    error_type = "RpcError"
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == ERROR_TYPE_KEY:
            error_type = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if code is grpc.StatusCode.UNAVAILABLE and error_type == "RpcError":
        error_type = "Unavailable"
    return SandboxCallError(method, code, error_type, details or "")
