"""The key broker standalone at a provider's site: same service, the provider's own keys.

The provider runs it next to its data keys; the orchestrator never holds them. It keeps its
own tables (policies, wrapped keys, nonces, decisions) and its own audit log, authenticates
callers by their deployment client certificates (it trusts the deployment CA), and learns
models and session membership from the orchestrator, asking as the provider. It releases only
for sessions whose signed terms name it (``SessionTerms.key_broker``), so every data owner
consented to where the key comes from.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from concurrent import futures
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.atomicfile import atomic_write_bytes
from crypto.hpke import RecipientPrivateKey
from crypto.identity import Identity
from fedtune._proto import audit_pb2_grpc, key_broker_pb2_grpc
from fedtune.audit import AuditLog
from fedtune.audit.service import AuditLogServicer
from fedtune.orchestrator import pki
from fedtune.orchestrator.audit_hook import AuditLogHook
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import KeyBroker
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, fetch_pinned_ca
from fedtune.orchestrator.deployment import read_private
from fedtune.orchestrator.errors import (
    ConfigurationError,
    PermissionDenied,
    RemoteError,
)
from fedtune.orchestrator.interceptor import AuthInterceptor
from fedtune.orchestrator.keywrap import FileKeyWrapper
from fedtune.orchestrator.server import GRPC_OPTIONS, audit_origin
from fedtune.orchestrator.services.convert import PROTO_TO_STATE
from fedtune.orchestrator.services.key_broker import KeyBrokerServicer
from fedtune.orchestrator.store.records import (
    Acceptance,
    CkksContextRecord,
    Invitee,
    ModelRecord,
    ModelVersionRecord,
    NonceRecord,
    Party,
    PolicyRecord,
    ReleaseDecision,
    SessionRecord,
)
from fedtune.orchestrator.store.sqlite import SqliteRepository
from fedtune.orchestrator.terms import KeyBrokerRef, SessionTerms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerPaths:
    """Files of a standalone broker under its directory."""

    root: Path

    @property
    def info(self) -> Path:
        """broker.json: the reference to put in session terms, and the provider home."""
        return self.root / "broker.json"

    @property
    def tls_key(self) -> Path:
        """The broker's TLS key (0600)."""
        return self.root / "tls.key"

    @property
    def tls_cert(self) -> Path:
        """The broker's self-signed TLS certificate, pinned by SHA-256 in session terms."""
        return self.root / "tls.pem"

    @property
    def hpke_key(self) -> Path:
        """The broker's HPKE private key (0600)."""
        return self.root / "hpke.key"

    @property
    def master_key(self) -> Path:
        """The at-rest master key (0600)."""
        return self.root / "master.key"

    @property
    def database(self) -> Path:
        """Policies, wrapped keys, nonces and decisions."""
        return self.root / "state.sqlite"

    @property
    def audit_identity(self) -> Path:
        """The broker's audit-log signing identity (0600)."""
        return self.root / "audit" / "identity.key"

    @property
    def audit_log(self) -> Path:
        """The broker's own audit log."""
        return self.root / "audit" / "log.sqlite"


@dataclass(frozen=True)
class BrokerInfo:
    """What ``init_broker`` made: the reference for session terms and where the provider lives."""

    ref: KeyBrokerRef
    host: str
    port: int
    provider_home: str


def init_broker(
    root: Path, *, provider_home: Path, host: str, port: int, now: dt.datetime | None = None
) -> BrokerInfo:
    """Create a standalone broker's keys and self-signed TLS certificate under ``root``."""
    now = now or dt.datetime.now(dt.UTC)
    paths = BrokerPaths(Path(root))
    if paths.info.exists():
        raise ConfigurationError(f"{root} holds a key broker already; refusing to overwrite it")
    ClientConfig.load(provider_home)  # the provider must be enrolled: it is how we ask
    tls_key = pki.generate_tls_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fedtune key broker {host}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([pki.host_name(host)]), critical=False)
        .sign(tls_key, hashes.SHA256())
    )
    atomic_write_bytes(paths.tls_key, pki.key_to_pem(tls_key), mode=0o600)
    atomic_write_bytes(paths.tls_cert, pki.cert_to_pem(cert))
    hpke = RecipientPrivateKey.generate()
    atomic_write_bytes(paths.hpke_key, hpke.to_bytes(), mode=0o600)
    FileKeyWrapper.create(paths.master_key)
    Identity.generate().save(paths.audit_identity)
    SqliteRepository(paths.database).close()
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    info = BrokerInfo(
        ref=KeyBrokerRef(
            address=address,
            tls_sha256=pki.ca_fingerprint(cert),
            public_key_sha256=hpke.public_key().fingerprint,
        ),
        host=host,
        port=port,
        provider_home=str(Path(provider_home).absolute()),
    )
    data = {**asdict(info), "ref": info.ref.model_dump()}
    atomic_write_bytes(paths.info, json.dumps(data, indent=2).encode() + b"\n")
    return info


def load_broker_info(root: Path) -> BrokerInfo:
    """Read broker.json."""
    try:
        data = json.loads(BrokerPaths(Path(root)).info.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{root} is not a key broker directory") from None
    return BrokerInfo(
        ref=KeyBrokerRef(**data["ref"]),
        host=data["host"],
        port=data["port"],
        provider_home=data["provider_home"],
    )


class OrchestratorView:
    """The broker's store: its own tables locally; models and sessions from the orchestrator."""

    def __init__(
        self,
        local: SqliteRepository,
        orchestrator: OrchestratorClient,
        provider: Identity,
        ref: KeyBrokerRef,
    ) -> None:
        self._local = local
        self._orchestrator = orchestrator
        self._provider = Party(
            provider.fingerprint,
            provider.public.raw,
            Role.PROVIDER.value,
            orchestrator.config.name,
            dt.datetime.now(dt.UTC),
        )
        self._ref = ref

    # views from the orchestrator, asked as the provider -----------------------------------

    def get_party(self, fingerprint: str) -> Party | None:
        """Only the provider this broker serves is known here."""
        return self._provider if fingerprint == self._provider.fingerprint else None

    def get_model(self, name: str) -> ModelRecord | None:
        """The model as the orchestrator's registry describes it."""
        try:
            desc = self._orchestrator.describe_model(name)
        except RemoteError as exc:
            if exc.code == "NOT_FOUND":
                return None
            raise
        return ModelRecord(
            desc.name,
            desc.owner_fingerprint,
            dt.datetime.now(dt.UTC),
            tuple(v.model.version for v in desc.versions),
        )

    def get_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """A registered version with its provider-signed manifest."""
        model = self.get_model(name)
        if model is None or version not in model.versions:
            return None
        signed = self._orchestrator.get_manifest(name, version)
        m = signed.manifest
        return ModelVersionRecord(
            name,
            version,
            model.owner,
            m.canonical_bytes(),
            signed.signature,
            bytes.fromhex(m.ciphertext_digest),
            m.sealed_size,
            m.ciphertext_digest,
            dt.datetime.now(dt.UTC),
            m.digest_algorithm,
        )

    def get_session_for_member(self, session_id: str, fingerprint: str) -> SessionRecord | None:
        """The session from the orchestrator, refused unless its terms name this broker."""
        try:
            info = self._orchestrator.get_session(session_id)
        except RemoteError as exc:
            if exc.code in ("NOT_FOUND", "PERMISSION_DENIED"):
                return None
            raise
        terms = SessionTerms.model_validate_json(info.terms.canonical)
        named = terms.key_broker
        # The broker is its certificate and HPKE key; the address is only where to find it.
        if named is None or (named.tls_sha256, named.public_key_sha256) != (
            self._ref.tls_sha256,
            self._ref.public_key_sha256,
        ):
            raise PermissionDenied(
                "KeyBroker",
                f"session {session_id}",
                "its terms do not name this key broker; the owners agreed to another one",
            )
        now = dt.datetime.now(dt.UTC)
        mine = [p for p in info.participants if p.fingerprint == fingerprint]
        return SessionRecord(
            session_id=session_id,
            terms=info.terms.canonical,
            terms_signature=info.terms.signature,
            creator=info.creator,
            state=PROTO_TO_STATE[info.state].value,
            reason=info.reason,
            model_name=terms.model_name,
            model_version=terms.model_version,
            provider=terms.provider_fingerprint,
            created_at=terms.created_at,
            updated_at=now,
            invitees=tuple(Invitee(p.fingerprint, b"", p.role) for p in mine),
            acceptances=tuple(
                Acceptance(p.fingerprint, b"", p.accepted_at.ToDatetime(dt.UTC))
                for p in mine
                if p.accepted
            ),
        )

    # the broker's own tables ------------------------------------------------------------------

    def get_policy(self, model_name: str) -> PolicyRecord | None:
        """The policy in force."""
        return self._local.get_policy(model_name)

    def put_policy(self, policy: PolicyRecord) -> PolicyRecord:
        """Install a higher-versioned policy."""
        return self._local.put_policy(policy)

    def register_key(
        self, object_id: str, wrapped: bytes, policy: PolicyRecord, *, now: dt.datetime
    ) -> PolicyRecord:
        """Store a wrapped data key with its policy."""
        return self._local.register_key(object_id, wrapped, policy, now=now)

    def get_secret(self, kind: str, object_id: str) -> bytes | None:
        """A wrapped secret."""
        return self._local.get_secret(kind, object_id)

    def add_secret(self, kind: str, object_id: str, wrapped: bytes, *, now: dt.datetime) -> bool:
        """Store a wrapped secret (a session key) here, unless one exists."""
        return self._local.add_secret(kind, object_id, wrapped, now=now)

    def add_nonce(self, nonce: NonceRecord) -> None:
        """Store an issued nonce."""
        self._local.add_nonce(nonce)

    def get_nonce(self, nonce: bytes) -> NonceRecord | None:
        """A nonce, if issued."""
        return self._local.get_nonce(nonce)

    def decide_release(self, decision: ReleaseDecision) -> bool:
        """Consume a nonce with the decision."""
        return self._local.decide_release(decision)

    def purge_nonces(self, *, expired_before: dt.datetime) -> int:
        """Forget long-expired nonces."""
        return self._local.purge_nonces(expired_before=expired_before)

    def put_ckks_context(
        self, record: CkksContextRecord, wrapped_key: bytes, *, secret_kind: str
    ) -> bool:
        """Store a session's CKKS contexts with their wrapped key, here (never upstream)."""
        return self._local.put_ckks_context(record, wrapped_key, secret_kind=secret_kind)

    def get_ckks_context(self, session_id: str) -> CkksContextRecord | None:
        """A session's CKKS contexts, if this broker generated them."""
        return self._local.get_ckks_context(session_id)


class StandaloneBroker:
    """A KeyBroker (and its audit log) served on the provider's own mutual-TLS port."""

    def __init__(
        self, root: Path, *, host: str | None = None, port: int | None = None, max_workers: int = 32
    ) -> None:
        paths = BrokerPaths(Path(root))
        self.info = load_broker_info(root)
        config = ClientConfig.load(Path(self.info.provider_home))
        if config.role is not Role.PROVIDER:
            raise ConfigurationError("a standalone key broker runs under a provider's enrolment")
        self.orchestrator = OrchestratorClient(config)
        self.local = SqliteRepository(paths.database)
        self.audit_log = AuditLog.open(
            paths.audit_log,
            Identity.load(paths.audit_identity),
            audit_origin(f"broker-{config.name}"),
        )
        self.audit = AuditLogHook(self.audit_log)
        self.store = OrchestratorView(
            self.local, self.orchestrator, config.load_identity(), self.info.ref
        )
        self.broker = KeyBroker(
            self.store,
            self.audit,
            RecipientPrivateKey.from_bytes(read_private(paths.hpke_key)),
            FileKeyWrapper.load(paths.master_key),
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="broker"),
            interceptors=[AuthInterceptor(None, self.audit, enrolment_port=False)],
            options=GRPC_OPTIONS,
        )
        key_broker_pb2_grpc.add_KeyBrokerServicer_to_server(
            KeyBrokerServicer(self.broker), self._server
        )
        audit_pb2_grpc.add_AuditLogServicer_to_server(
            AuditLogServicer(self.audit_log), self._server
        )
        credentials = grpc.ssl_server_credentials(
            [(read_private(paths.tls_key), paths.tls_cert.read_bytes())],
            root_certificates=config.ca_certificate.read_bytes(),
            require_client_auth=True,
        )
        bind_host = host or self.info.host
        bind = f"[{bind_host}]" if ":" in bind_host else bind_host
        self.port = self._server.add_secure_port(
            f"{bind}:{self.info.port if port is None else port}", credentials
        )
        if self.port == 0:
            raise OSError("could not bind the key broker's port")

    def start(self) -> int:
        """Start serving; returns the port."""
        self._server.start()
        return self.port

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops."""
        return self._server.wait_for_termination(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving and close state."""
        self._server.stop(grace).wait(grace + 5)
        self.audit_log.close()
        self.local.close()
        self.orchestrator.close()


def broker_client(
    config: ClientConfig, ref: KeyBrokerRef, *, timeout: float = 60.0
) -> OrchestratorClient:
    """A client whose key-broker calls go to the standalone broker ``ref`` names (pinned)."""
    cert = fetch_pinned_ca(ref.address, ref.tls_sha256)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=cert.public_bytes(serialization.Encoding.PEM),
        private_key=config.tls_key.read_bytes(),
        certificate_chain=config.certificate.read_bytes(),
    )
    channel = grpc.secure_channel(ref.address, credentials, options=GRPC_OPTIONS)
    return OrchestratorClient(config, timeout=timeout, channel=channel)


__all__ = [
    "BrokerInfo",
    "BrokerPaths",
    "OrchestratorView",
    "StandaloneBroker",
    "broker_client",
    "init_broker",
    "load_broker_info",
]
