"""OrchestratorClient: typed calls to the orchestrator over mutual TLS, errors made readable."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from crypto.datakey import DataKey
from crypto.digest import digest_bytes
from crypto.hpke import RecipientPublicKey, wrap_key
from crypto.identity import Identity
from crypto.manifest import Manifest, SignedManifest
from enclave.attest import SignedReleasePolicy, Verdict
from fedtune._proto import (
    common_pb2,
    key_broker_pb2,
    key_broker_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)
from fedtune.orchestrator.broker import REGISTRATION_SESSION, SecretKind, model_id
from fedtune.orchestrator.client.config import ClientConfig
from fedtune.orchestrator.errors import ReleaseRefused, RemoteError
from fedtune.orchestrator.prefetch import prefetch
from fedtune.orchestrator.services.key_broker import KIND_TO_PROTO
from fedtune.orchestrator.terms import SIGNING_CONTEXT as TERMS_CONTEXT
from fedtune.orchestrator.terms import SessionTerms

T = TypeVar("T")
MAX_MESSAGE_BYTES = 16 << 20
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
UploadProgress = Callable[[int, int], None]
"""Called with (bytes stored so far, total bytes) as an upload advances."""


def mtls_channel(config: ClientConfig, *, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to the API port authenticated by the party's client certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_certificate.read_bytes(),
        private_key=config.tls_key.read_bytes(),
        certificate_chain=config.certificate.read_bytes(),
    )
    return grpc.secure_channel(config.server, credentials, options=[*_OPTIONS, *options])


def _call(method: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except grpc.RpcError as exc:
        raise RemoteError(method, exc.code().name, exc.details() or "") from None


class OrchestratorClient:
    """One party's connection to the orchestrator."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: float = 60.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.config = config
        self.timeout = timeout
        # ``channel``: an already opened one (e.g. to a standalone key broker).
        self.channel = channel or mtls_channel(config, options=channel_options)
        self.registry = registry_pb2_grpc.RegistryStub(self.channel)
        self.broker = key_broker_pb2_grpc.KeyBrokerStub(self.channel)
        self.sessions = sessions_pb2_grpc.SessionsStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- registry ----------------------------------------------------------------------------

    def begin_upload(
        self, signed: SignedManifest, *, chunk_size: int = 0
    ) -> registry_pb2.UploadStatus:
        """Start (or find) the upload of the blob ``signed`` describes."""
        doc = common_pb2.SignedDocument(
            canonical=signed.manifest.canonical_bytes(), signature=signed.signature
        )
        return _call(
            "BeginUpload",
            lambda: self.registry.BeginUpload(
                registry_pb2.BeginUploadRequest(manifest=doc, chunk_size=chunk_size),
                timeout=self.timeout,
            ),
        )

    def send_chunks(
        self,
        status: registry_pb2.UploadStatus,
        blob: Path,
        *,
        progress: UploadProgress | None = None,
        stop_after: int | None = None,
    ) -> registry_pb2.UploadStatus:
        """Stream every missing chunk of ``blob`` (``stop_after``: at most that many, for tests)."""
        missing = [i for r in status.missing for i in range(r.start, r.end)]
        if stop_after is not None:
            missing = missing[:stop_after]
        done = status.stored_bytes

        def chunks() -> Iterator[registry_pb2.UploadChunk]:
            nonlocal done
            fd = os.open(blob, os.O_RDONLY)
            try:
                for index in missing:
                    offset = index * status.chunk_size
                    data = os.pread(fd, min(status.chunk_size, status.total_size - offset), offset)
                    yield registry_pb2.UploadChunk(
                        upload_id=status.upload_id,
                        index=index,
                        data=data,
                        digest=digest_bytes(data),
                    )
                    done += len(data)
                    if progress is not None:
                        progress(done, status.total_size)
            finally:
                os.close(fd)

        # Read and hash the next chunk while gRPC sends this one.
        return _call("UploadChunks", lambda: self.registry.UploadChunks(prefetch(chunks())))

    def complete_upload(self, upload_id: str) -> registry_pb2.ModelVersion:
        """Verify and register the uploaded version."""
        return _call(
            "CompleteUpload",
            lambda: self.registry.CompleteUpload(
                registry_pb2.CompleteUploadRequest(upload_id=upload_id), timeout=self.timeout
            ),
        )

    def upload(
        self,
        signed: SignedManifest,
        blob: Path,
        *,
        chunk_size: int = 0,
        progress: UploadProgress | None = None,
    ) -> registry_pb2.ModelVersion:
        """Upload a sealed blob, resuming from the first missing chunk, and register it."""
        size = Path(blob).stat().st_size
        if size != signed.manifest.sealed_size:
            raise ValueError(
                f"{blob} is {size} bytes, the manifest says {signed.manifest.sealed_size}"
            )
        status = self.begin_upload(signed, chunk_size=chunk_size)
        if progress is not None:
            progress(status.stored_bytes, status.total_size)
        if not status.complete and status.missing:
            status = self.send_chunks(status, Path(blob), progress=progress)
        return self.complete_upload(status.upload_id)

    def list_models(self) -> registry_pb2.ListModelsResponse:
        """Every model (metadata)."""
        return _call(
            "ListModels",
            lambda: self.registry.ListModels(
                registry_pb2.ListModelsRequest(), timeout=self.timeout
            ),
        )

    def describe_model(self, name: str) -> registry_pb2.ModelDescription:
        """One model and its versions."""
        return _call(
            "DescribeModel",
            lambda: self.registry.DescribeModel(
                registry_pb2.DescribeModelRequest(name=name), timeout=self.timeout
            ),
        )

    def get_manifest(self, name: str, version: str) -> SignedManifest:
        """The provider-signed manifest of a version."""
        doc = _call(
            "GetManifest",
            lambda: self.registry.GetManifest(
                registry_pb2.GetManifestRequest(
                    model=common_pb2.ModelRef(name=name, version=version)
                ),
                timeout=self.timeout,
            ),
        )
        return SignedManifest(
            manifest=Manifest.model_validate_json(doc.canonical), signature=doc.signature
        )

    def download(
        self, name: str, version: str, dest: Path, *, offset: int = 0, length: int = 0
    ) -> int:
        """Write the sealed blob (or a range) to ``dest``; returns the bytes written."""
        written = 0
        request = registry_pb2.DownloadRequest(
            model=common_pb2.ModelRef(name=name, version=version), offset=offset, length=length
        )

        def run() -> int:
            nonlocal written
            with open(dest, "wb") as handle:
                for piece in self.registry.Download(request, timeout=self.timeout * 10):
                    handle.write(piece.data)
                    written += len(piece.data)
            return written

        return _call("Download", run)

    def download_stream(self, name: str, version: str) -> Iterator[bytes]:
        """The sealed blob's pieces as they arrive (to stream into a sandbox, no file)."""
        request = registry_pb2.DownloadRequest(
            model=common_pb2.ModelRef(name=name, version=version)
        )
        stream = self.registry.Download(request, timeout=self.timeout * 10)
        try:
            for piece in stream:
                yield piece.data
        except grpc.RpcError as exc:
            raise RemoteError("Download", exc.code().name, exc.details() or "") from None
        finally:
            stream.cancel()

    # -- key broker ---------------------------------------------------------------------------

    def broker_key(self) -> RecipientPublicKey:
        """The broker's HPKE public key."""
        resp = _call(
            "GetBrokerKey",
            lambda: self.broker.GetBrokerKey(
                key_broker_pb2.GetBrokerKeyRequest(), timeout=self.timeout
            ),
        )
        return RecipientPublicKey.from_bytes(resp.public_key)

    @staticmethod
    def _policy_doc(policy: SignedReleasePolicy) -> common_pb2.SignedDocument:
        return common_pb2.SignedDocument(
            canonical=policy.policy.canonical_bytes(), signature=policy.signature
        )

    def register_key(
        self, name: str, version: str, key: DataKey, policy: SignedReleasePolicy
    ) -> int:
        """Wrap ``key`` to the broker, register it with ``policy``; return the policy version."""
        wrapped = wrap_key(
            key.raw,
            self.broker_key(),
            model_id=model_id(name, version),
            session_id=REGISTRATION_SESSION,
        )
        resp = _call(
            "RegisterKey",
            lambda: self.broker.RegisterKey(
                key_broker_pb2.RegisterKeyRequest(
                    model=common_pb2.ModelRef(name=name, version=version),
                    wrapped_key=wrapped,
                    policy=self._policy_doc(policy),
                ),
                timeout=self.timeout,
            ),
        )
        return resp.policy_version

    def set_policy(self, name: str, policy: SignedReleasePolicy) -> key_broker_pb2.PolicyStatus:
        """Install a newer release policy for a model."""
        return _call(
            "SetPolicy",
            lambda: self.broker.SetPolicy(
                key_broker_pb2.SetPolicyRequest(model_name=name, policy=self._policy_doc(policy)),
                timeout=self.timeout,
            ),
        )

    def get_policy(self, name: str) -> key_broker_pb2.PolicyStatus:
        """The release policy in force for a model."""
        return _call(
            "GetPolicy",
            lambda: self.broker.GetPolicy(
                key_broker_pb2.GetPolicyRequest(model_name=name), timeout=self.timeout
            ),
        )

    def challenge(self, session_id: str, kind: SecretKind = SecretKind.MODEL_DATA_KEY) -> bytes:
        """A fresh release nonce."""
        resp = _call(
            "Challenge",
            lambda: self.broker.Challenge(
                key_broker_pb2.ChallengeRequest(session_id=session_id, kind=KIND_TO_PROTO[kind]),
                timeout=self.timeout,
            ),
        )
        return resp.nonce

    def release_raw(
        self,
        session_id: str,
        kind: SecretKind,
        evidence: bytes,
        ephemeral_public_key: bytes,
        nonce: bytes,
    ) -> key_broker_pb2.ReleaseResponse:
        """The broker's answer as it came (released secret or refusal with the verdict)."""
        return _call(
            "Release",
            lambda: self.broker.Release(
                key_broker_pb2.ReleaseRequest(
                    session_id=session_id,
                    kind=KIND_TO_PROTO[kind],
                    evidence=evidence,
                    ephemeral_public_key=ephemeral_public_key,
                    nonce=nonce,
                ),
                timeout=self.timeout,
            ),
        )

    def release(
        self,
        session_id: str,
        kind: SecretKind,
        evidence: bytes,
        ephemeral_public_key: bytes,
        nonce: bytes,
    ) -> bytes:
        """The secret HPKE-sealed to the ephemeral key; ReleaseRefused with the failed checks."""
        return self.release_secret(session_id, kind, evidence, ephemeral_public_key, nonce)[0]

    def release_secret(
        self,
        session_id: str,
        kind: SecretKind,
        evidence: bytes,
        ephemeral_public_key: bytes,
        nonce: bytes,
    ) -> tuple[bytes, bytes]:
        """(wrapped key, sealed secret): the CKKS secret comes sealed under the wrapped key."""
        resp = self.release_raw(session_id, kind, evidence, ephemeral_public_key, nonce)
        if resp.WhichOneof("outcome") == "released":
            return resp.released.wrapped_secret, resp.released.sealed_secret
        failed = [c.name for c in resp.refused.verdict.checks if c.status == "failed"]
        raise ReleaseRefused(resp.refused.reason, failed)

    def public_context(self, session_id: str) -> key_broker_pb2.PublicContext:
        """A CKKS session's public context (the aggregator's)."""
        return _call(
            "GetPublicContext",
            lambda: self.broker.GetPublicContext(
                key_broker_pb2.GetPublicContextRequest(session_id=session_id),
                timeout=self.timeout,
            ),
        )

    # -- sessions -----------------------------------------------------------------------------

    @staticmethod
    def _signed_terms(terms: SessionTerms, identity: Identity) -> common_pb2.SignedDocument:
        canonical = terms.canonical_bytes()
        return common_pb2.SignedDocument(
            canonical=canonical, signature=identity.sign(canonical, context=TERMS_CONTEXT)
        )

    def create_session(
        self, terms: SessionTerms, identity: Identity, owner_keys: Sequence[bytes]
    ) -> sessions_pb2.SessionInfo:
        """Propose signed terms."""
        return _call(
            "CreateSession",
            lambda: self.sessions.CreateSession(
                sessions_pb2.CreateSessionRequest(
                    terms=self._signed_terms(terms, identity), owner_public_keys=list(owner_keys)
                ),
                timeout=self.timeout,
            ),
        )

    def invite(
        self, terms: SessionTerms, identity: Identity, added_owner_keys: Sequence[bytes] = ()
    ) -> sessions_pb2.SessionInfo:
        """Amend the terms (more owners, or none) and open the session."""
        return _call(
            "InviteOwners",
            lambda: self.sessions.InviteOwners(
                sessions_pb2.InviteOwnersRequest(
                    session_id=terms.session_id,
                    terms=self._signed_terms(terms, identity),
                    owner_public_keys=list(added_owner_keys),
                ),
                timeout=self.timeout,
            ),
        )

    def accept(self, session_id: str, identity: Identity) -> sessions_pb2.SessionInfo:
        """Sign the session's current terms as fetched from the server."""
        info = self.get_session(session_id)
        signature = identity.sign(info.terms.canonical, context=TERMS_CONTEXT)
        return _call(
            "AcceptSession",
            lambda: self.sessions.AcceptSession(
                sessions_pb2.AcceptSessionRequest(session_id=session_id, signature=signature),
                timeout=self.timeout,
            ),
        )

    def start_session(self, session_id: str, reason: str = "") -> sessions_pb2.SessionInfo:
        """open -> running."""
        return _call(
            "StartSession",
            lambda: self.sessions.StartSession(
                sessions_pb2.TransitionRequest(session_id=session_id, reason=reason),
                timeout=self.timeout,
            ),
        )

    def finish_session(
        self, session_id: str, *, failed: bool = False, reason: str = ""
    ) -> sessions_pb2.SessionInfo:
        """running -> finished | failed."""
        return _call(
            "FinishSession",
            lambda: self.sessions.FinishSession(
                sessions_pb2.FinishSessionRequest(
                    session_id=session_id, failed=failed, reason=reason
                ),
                timeout=self.timeout,
            ),
        )

    def cancel_session(self, session_id: str, reason: str) -> sessions_pb2.SessionInfo:
        """-> cancelled."""
        return _call(
            "CancelSession",
            lambda: self.sessions.CancelSession(
                sessions_pb2.TransitionRequest(session_id=session_id, reason=reason),
                timeout=self.timeout,
            ),
        )

    def get_session(self, session_id: str) -> sessions_pb2.SessionInfo:
        """One session."""
        return _call(
            "GetSession",
            lambda: self.sessions.GetSession(
                sessions_pb2.GetSessionRequest(session_id=session_id), timeout=self.timeout
            ),
        )

    def list_sessions(self) -> list[sessions_pb2.SessionInfo]:
        """The sessions this party may see."""
        resp = _call(
            "ListSessions",
            lambda: self.sessions.ListSessions(
                sessions_pb2.ListSessionsRequest(), timeout=self.timeout
            ),
        )
        return list(resp.sessions)

    def register_node_key(
        self, session_id: str, public_key: bytes, identity: Identity
    ) -> sessions_pb2.SessionInfo:
        """Name this owner's SuperNode for a session: its OpenSSH public key, signed by us."""
        from fedtune.orchestrator.node_keys import sign_node_key

        signature = sign_node_key(identity, session_id, public_key)
        return _call(
            "RegisterNodeKey",
            lambda: self.sessions.RegisterNodeKey(
                sessions_pb2.RegisterNodeKeyRequest(
                    session_id=session_id, public_key=public_key, signature=signature
                ),
                timeout=self.timeout,
            ),
        )

    def record_round_events(
        self, session_id: str, events: Sequence[sessions_pb2.RoundEvent]
    ) -> int:
        """Put the aggregator's round events on the audit log; returns how many."""
        resp = _call(
            "RecordRoundEvents",
            lambda: self.sessions.RecordRoundEvents(
                sessions_pb2.RecordRoundEventsRequest(session_id=session_id, events=list(events)),
                timeout=self.timeout,
            ),
        )
        return resp.recorded

    def put_session_report(
        self, session_id: str, report: bytes
    ) -> sessions_pb2.SessionReportDocument:
        """Store the session report (its JSON)."""
        return _call(
            "PutSessionReport",
            lambda: self.sessions.PutSessionReport(
                sessions_pb2.PutSessionReportRequest(session_id=session_id, report=report),
                timeout=self.timeout,
            ),
        )

    def get_session_report(self, session_id: str) -> sessions_pb2.SessionReportDocument:
        """The session report stored by the aggregator."""
        return _call(
            "GetSessionReport",
            lambda: self.sessions.GetSessionReport(
                sessions_pb2.GetSessionRequest(session_id=session_id), timeout=self.timeout
            ),
        )

    def watch_session(self, session_id: str, *, timeout: float | None = None) -> Iterator[Any]:
        """Session snapshots as they change, until the session ends."""
        stream = self.sessions.WatchSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), timeout=timeout
        )
        try:
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise RemoteError("WatchSession", exc.code().name, exc.details() or "") from None
        finally:
            stream.cancel()

    # -- attestation beyond release ----------------------------------------------------------

    def reattest(
        self, session_id: str, evidence: bytes, ephemeral_public_key: bytes, nonce: bytes
    ) -> key_broker_pb2.ReattestResponse:
        """The broker's verdict on a set-up sandbox's fresh evidence (nonce of kind REATTEST)."""
        return _call(
            "Reattest",
            lambda: self.broker.Reattest(
                key_broker_pb2.ReleaseRequest(
                    session_id=session_id,
                    kind=KIND_TO_PROTO[SecretKind.REATTESTATION],
                    evidence=evidence,
                    ephemeral_public_key=ephemeral_public_key,
                    nonce=nonce,
                ),
                timeout=self.timeout,
            ),
        )

    def record_owner_verdict(
        self,
        session_id: str,
        *,
        stage: str,
        ok: bool,
        reason: str,
        verdict: Verdict | None = None,
        policy_digest: str = "",
        measurement: bytes = b"",
    ) -> int:
        """Put this owner's own verdict on its sandbox on the audit log."""
        from fedtune.orchestrator.services.convert import verdict as verdict_message

        request = sessions_pb2.OwnerVerdictRequest(
            session_id=session_id, stage=stage, ok=ok, reason=reason[:1024],
            policy_digest=policy_digest, measurement=measurement,
        )
        if verdict is not None:
            request.verdict.CopyFrom(verdict_message(verdict))
        resp = _call(
            "RecordOwnerVerdict",
            lambda: self.sessions.RecordOwnerVerdict(request, timeout=self.timeout),
        )
        return resp.recorded

    # -- results: the sealed adapter and its export -----------------------------------------------

    def put_sealed_adapter(
        self, sealed: Any, *, chunk_size: int = 1 << 20
    ) -> registry_pb2.SealedAdapterInfo:
        """Store the sandbox's sealed adapter (an ``enclave.sandbox.SealedAdapter``)."""
        header = registry_pb2.SealedAdapterHeader(
            session_id=sealed.session_id,
            sealed_sha256=sealed.sealed_sha256,
            sealed_size=len(sealed.sealed),
            content_mac=sealed.content_mac,
            key_id=sealed.key_id,
            after_round=sealed.after_round,
            adapter_fingerprint=sealed.adapter_fingerprint,
        )

        def parts() -> Iterator[registry_pb2.SealedAdapterUpload]:
            yield registry_pb2.SealedAdapterUpload(header=header)
            view = memoryview(sealed.sealed)
            for start in range(0, len(view), chunk_size):
                yield registry_pb2.SealedAdapterUpload(chunk=bytes(view[start:start + chunk_size]))

        return _call(
            "PutSealedAdapter",
            lambda: self.registry.PutSealedAdapter(parts(), timeout=self.timeout * 10),
        )

    def get_sealed_adapter(self, session_id: str, *, max_size: int = 1 << 30) -> bytes:
        """The session's sealed adapter (ciphertext), in memory."""

        def run() -> bytes:
            out = bytearray()
            stream = self.registry.GetSealedAdapter(
                registry_pb2.GetSealedAdapterRequest(session_id=session_id),
                timeout=self.timeout * 10,
            )
            for piece in stream:
                if len(out) + len(piece.data) > max_size:
                    stream.cancel()
                    raise ValueError(f"the sealed adapter is larger than {max_size} bytes")
                out += piece.data
            return bytes(out)

        return _call("GetSealedAdapter", run)

    def approve_export(
        self, session_id: str, identity: Identity, adapter_sha256: str
    ) -> sessions_pb2.ExportStatus:
        """Sign and send this party's approval to export the session's sealed adapter."""
        import datetime as dt

        from fedtune.orchestrator.exports import ExportApproval

        approval = ExportApproval(
            session_id=session_id,
            adapter_sha256=adapter_sha256,
            approver=identity.fingerprint,
            approved_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        doc = common_pb2.SignedDocument(
            canonical=approval.canonical_bytes(), signature=approval.sign(identity)
        )
        return _call(
            "ApproveExport",
            lambda: self.sessions.ApproveExport(
                sessions_pb2.ApproveExportRequest(session_id=session_id, approval=doc),
                timeout=self.timeout,
            ),
        )

    def export(self, session_id: str, recipient_public_key: bytes) -> sessions_pb2.ExportResponse:
        """Ask for the session key wrapped to a fresh key of ours (granted or refused)."""
        return _call(
            "Export",
            lambda: self.sessions.Export(
                sessions_pb2.ExportRequest(
                    session_id=session_id, recipient_public_key=recipient_public_key
                ),
                timeout=self.timeout,
            ),
        )
