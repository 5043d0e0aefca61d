"""Assemble and run the orchestrator: two gRPC servers over one repository and blob store.

The API port requires mutual TLS (BoringSSL refuses a handshake without a client certificate
of the deployment CA) and serves Registry, KeyBroker, Sessions and the audit log. The
enrolment port is server-authenticated TLS only and serves nothing but Enrolment.Enrol:
grpcio cannot make a client certificate optional on one port, so the one RPC callable
without a certificate gets its own port, and the interceptor on each port refuses every
method that does not belong there.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent import futures
from pathlib import Path

import grpc

from crypto.hpke import RecipientPrivateKey
from crypto.identity import Identity
from fedtune._proto import (
    audit_pb2_grpc,
    enrolment_pb2_grpc,
    key_broker_pb2_grpc,
    registry_pb2_grpc,
    sessions_pb2_grpc,
)
from fedtune.audit import AuditLog
from fedtune.audit.service import AuditLogServicer
from fedtune.orchestrator import pki
from fedtune.orchestrator.audit_hook import AuditHook, AuditLogHook
from fedtune.orchestrator.broker import KeyBroker
from fedtune.orchestrator.deployment import DeploymentPaths, load_info, read_private
from fedtune.orchestrator.enrolment import Enroller
from fedtune.orchestrator.exports import ExportService
from fedtune.orchestrator.interceptor import AuthInterceptor
from fedtune.orchestrator.keywrap import FileKeyWrapper, KeyWrapper
from fedtune.orchestrator.owner_verdicts import OwnerVerdicts
from fedtune.orchestrator.registry import RegistryService
from fedtune.orchestrator.rounds import RoundLog
from fedtune.orchestrator.services.enrolment import EnrolmentServicer
from fedtune.orchestrator.services.key_broker import KeyBrokerServicer
from fedtune.orchestrator.services.registry import RegistryServicer
from fedtune.orchestrator.services.sessions import SessionsServicer
from fedtune.orchestrator.sessions import SessionService
from fedtune.orchestrator.settings import OrchestratorSettings
from fedtune.orchestrator.store.blobs import BlobStore, LocalBlobStore
from fedtune.orchestrator.store.repository import Repository
from fedtune.orchestrator.store.sqlite import SqliteRepository

log = logging.getLogger(__name__)

# Chunks of up to 8 MiB plus framing.
MAX_MESSAGE_BYTES = 16 << 20
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


class OrchestratorServer:
    """The control plane of one deployment, started and stopped as a unit."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        *,
        repository: Repository | None = None,
        blobs: BlobStore | None = None,
        wrapper: KeyWrapper | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        root = Path(settings.dir)
        self.paths = DeploymentPaths(root)
        self.info = load_info(root)
        self._ca_pem = self.paths.ca_cert.read_bytes()
        ca_cert = pki.cert_from_pem(self._ca_pem)
        ca_key = pki.key_from_pem(read_private(self.paths.ca_key))
        self._server_key = read_private(self.paths.server_key)
        self._server_chain = self.paths.server_cert.read_bytes()
        broker_key = RecipientPrivateKey.from_bytes(read_private(self.paths.broker_key))

        self.repository = repository or SqliteRepository(self.paths.database)
        self.blobs = blobs or LocalBlobStore(self.paths.blobs)
        self.audit_log = AuditLog.open(
            self.paths.audit_log,
            Identity.load(self.paths.audit_identity),
            audit_origin(self.info.name),
        )
        self.audit = audit or AuditLogHook(self.audit_log)
        self.registry = RegistryService(
            self.repository,
            self.blobs,
            self.audit,
            default_chunk_size=settings.chunk_size,
            sync_every_bytes=settings.upload_sync_bytes,
        )
        self.broker = KeyBroker(
            self.repository,
            self.audit,
            broker_key,
            wrapper or FileKeyWrapper.load(self.paths.master_key),
            nonce_ttl=dt.timedelta(seconds=settings.nonce_ttl_s),
        )
        # A CKKS session's contexts are made as it starts, so the first release need not wait.
        self.sessions = SessionService(
            self.repository, self.audit, on_start=self.broker.prepare_session
        )
        self.rounds = RoundLog(self.repository, self.audit)
        self.verdicts = OwnerVerdicts(self.repository, self.audit)
        self.exports = ExportService(self.repository, self.blobs, self.audit, self.broker)
        self.enroller = Enroller(
            self.repository,
            ca_key,
            ca_cert,
            self.audit,
            cert_validity=dt.timedelta(days=settings.cert_validity_days),
        )
        self._api: grpc.Server | None = None
        self._enrol: grpc.Server | None = None
        self.api_port = 0
        self.enrol_port = 0

    def start(self) -> tuple[int, int]:
        """Bind both ports and start serving; returns (api port, enrolment port)."""
        s = self.settings
        api_port = self.info.api_port if s.port is None else s.port
        enrol_port = self.info.enrol_port if s.enrol_port is None else s.enrol_port
        pool = futures.ThreadPoolExecutor(max_workers=s.max_workers, thread_name_prefix="rpc")
        self._api = grpc.server(
            pool,
            interceptors=[AuthInterceptor(self.repository, self.audit, enrolment_port=False)],
            options=GRPC_OPTIONS,
        )
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryServicer(self.registry, self.exports), self._api
        )
        key_broker_pb2_grpc.add_KeyBrokerServicer_to_server(
            KeyBrokerServicer(self.broker), self._api
        )
        audit_pb2_grpc.add_AuditLogServicer_to_server(AuditLogServicer(self.audit_log), self._api)
        sessions_pb2_grpc.add_SessionsServicer_to_server(
            SessionsServicer(
                self.sessions, self.rounds, self.verdicts, self.exports, watch_max_s=s.watch_max_s
            ),
            self._api,
        )
        mtls = grpc.ssl_server_credentials(
            [(self._server_key, self._server_chain)],
            root_certificates=self._ca_pem,
            require_client_auth=True,
        )
        self.api_port = self._api.add_secure_port(f"{_host(s.host)}:{api_port}", mtls)
        if self.api_port == 0:
            raise OSError(f"could not bind the API port {s.host}:{api_port}")

        self._enrol = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="enrol"),
            interceptors=[AuthInterceptor(self.repository, self.audit, enrolment_port=True)],
            options=GRPC_OPTIONS,
        )
        enrolment_pb2_grpc.add_EnrolmentServicer_to_server(
            EnrolmentServicer(self.enroller, self._ca_pem, self.api_port), self._enrol
        )
        tls = grpc.ssl_server_credentials([(self._server_key, self._server_chain)])
        self.enrol_port = self._enrol.add_secure_port(f"{_host(s.host)}:{enrol_port}", tls)
        if self.enrol_port == 0:
            raise OSError(f"could not bind the enrolment port {s.host}:{enrol_port}")
        self._api.start()
        self._enrol.start()
        log.info("orchestrator serving: api %s, enrolment %s", self.api_port, self.enrol_port)
        return self.api_port, self.enrol_port

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the API server stops (or ``timeout``); True if it stopped."""
        if self._api is None:
            return True
        return self._api.wait_for_termination(timeout)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish for ``grace`` seconds, close state."""
        grace = self.settings.grace_s if grace is None else grace
        events = [srv.stop(grace) for srv in (self._enrol, self._api) if srv is not None]
        for event in events:
            event.wait(grace + 5)
        self.audit_log.close()
        self.repository.close()


def audit_origin(name: str) -> str:
    """The audit log's checkpoint origin for deployment ``name`` (a signed-note key name)."""
    cleaned = "".join(c if c.isalnum() or c in "-._" else "-" for c in name) or "fedtune"
    return f"{cleaned}.fedtune/audit"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
