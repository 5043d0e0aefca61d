"""A deployment directory: its CA, server and broker keys, operator identity, state and blobs."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.atomicfile import atomic_write_bytes
from crypto.hpke import RecipientPrivateKey
from crypto.identity import Identity
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client.config import ClientConfig
from fedtune.orchestrator.errors import ConfigurationError
from fedtune.orchestrator.keywrap import FileKeyWrapper
from fedtune.orchestrator.store.records import IssuedCertificate, Party
from fedtune.orchestrator.store.sqlite import SqliteRepository

DEFAULT_API_PORT = 7443
DEFAULT_ENROL_PORT = 7444


@dataclass(frozen=True)
class DeploymentPaths:
    """Where each file of a deployment lives under its root."""

    root: Path

    @property
    def info(self) -> Path:
        """deployment.json: CA fingerprint, hosts, ports."""
        return self.root / "deployment.json"

    @property
    def ca_cert(self) -> Path:
        """The CA certificate (public)."""
        return self.root / "ca" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA private key (0600)."""
        return self.root / "ca" / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server's TLS certificate chain (leaf, CA)."""
        return self.root / "server" / "server.pem"

    @property
    def server_key(self) -> Path:
        """The server's TLS key (0600)."""
        return self.root / "server" / "server.key"

    @property
    def broker_key(self) -> Path:
        """The broker's HPKE private key (0600)."""
        return self.root / "broker" / "hpke.key"

    @property
    def master_key(self) -> Path:
        """The broker's at-rest master key (0600)."""
        return self.root / "broker" / "master.key"

    @property
    def audit_identity(self) -> Path:
        """The audit log's signing identity (0600)."""
        return self.root / "audit" / "identity.key"

    @property
    def audit_log(self) -> Path:
        """The audit log's own SQLite store."""
        return self.root / "audit" / "log.sqlite"

    @property
    def database(self) -> Path:
        """The SQLite state."""
        return self.root / "state" / "orchestrator.sqlite"

    @property
    def blobs(self) -> Path:
        """Sealed blobs and uploads in progress."""
        return self.root / "blobs"

    @property
    def operator_home(self) -> Path:
        """The operator's party home (identity, certificate, client config)."""
        return self.root / "operator"


@dataclass(frozen=True)
class DeploymentInfo:
    """The public facts of a deployment, as init printed them."""

    name: str
    ca_fingerprint: str
    hosts: list[str]
    api_port: int
    enrol_port: int
    created_at: str

    def to_json(self) -> bytes:
        """JSON for deployment.json."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode() + b"\n"


def read_private(path: Path) -> bytes:
    """Read a secret file, refusing one that group or others can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path} does not exist: run 'fedtune orchestrator init'"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; a private key must be readable by "
            f"its owner only: run 'chmod 600 {path}'"
        )
    return path.read_bytes()


def load_info(root: Path) -> DeploymentInfo:
    """Read deployment.json."""
    paths = DeploymentPaths(root)
    try:
        data = json.loads(paths.info.read_text())
    except FileNotFoundError:
        raise ConfigurationError(
            f"{root} is not a deployment directory: run 'fedtune orchestrator init --dir {root}'"
        ) from None
    return DeploymentInfo(**data)


def init_deployment(
    root: Path,
    *,
    hosts: list[str],
    name: str = "fedtune",
    operator_name: str = "operator",
    api_port: int = DEFAULT_API_PORT,
    enrol_port: int = DEFAULT_ENROL_PORT,
    now: dt.datetime | None = None,
) -> DeploymentInfo:
    """Create a deployment: CA, server certificate, broker keys, audit identity, operator."""
    if not hosts:
        raise ValueError("at least one host name or address is needed")
    now = now or dt.datetime.now(dt.UTC)
    paths = DeploymentPaths(Path(root))
    if paths.info.exists():
        raise ConfigurationError(f"{root} is a deployment already; refusing to overwrite it")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)

    ca_key, ca_cert = pki.create_ca(f"{name} deployment CA", now=now)
    atomic_write_bytes(paths.ca_key, pki.key_to_pem(ca_key), mode=0o600)
    atomic_write_bytes(paths.ca_cert, pki.cert_to_pem(ca_cert))
    server_key, server_cert = pki.issue_server_certificate(ca_key, ca_cert, hosts, now=now)
    atomic_write_bytes(paths.server_key, pki.key_to_pem(server_key), mode=0o600)
    # The chain (leaf, CA) lets an enrolling party read the CA from the handshake and pin it.
    atomic_write_bytes(paths.server_cert, pki.cert_to_pem(server_cert) + pki.cert_to_pem(ca_cert))

    broker = RecipientPrivateKey.generate()
    atomic_write_bytes(paths.broker_key, broker.to_bytes(), mode=0o600)
    FileKeyWrapper.create(paths.master_key)
    Identity.generate().save(paths.audit_identity)

    repository = SqliteRepository(paths.database)
    try:
        _create_operator(repository, paths, ca_key, ca_cert, operator_name, hosts[0], api_port, now)
    finally:
        repository.close()
    info = DeploymentInfo(
        name=name,
        ca_fingerprint=pki.ca_fingerprint(ca_cert),
        hosts=list(hosts),
        api_port=api_port,
        enrol_port=enrol_port,
        created_at=now.isoformat(),
    )
    atomic_write_bytes(paths.info, info.to_json())
    return info


def _create_operator(
    repository: SqliteRepository,
    paths: DeploymentPaths,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    operator_name: str,
    host: str,
    api_port: int,
    now: dt.datetime,
) -> None:
    identity = Identity.generate()
    tls_key = pki.generate_tls_key()
    cert = pki.issue_client_certificate(
        ca_key,
        ca_cert,
        pki.build_csr(tls_key, operator_name),
        fingerprint=identity.fingerprint,
        role=Role.OPERATOR,
        name=operator_name,
        now=now,
    )
    repository.add_party(
        Party(identity.fingerprint, identity.public.raw, Role.OPERATOR.value, operator_name, now),
        IssuedCertificate(
            cert.serial_number,
            identity.fingerprint,
            Role.OPERATOR.value,
            operator_name,
            cert.not_valid_after_utc,
            now,
        ),
    )
    ClientConfig.write_new(
        paths.operator_home,
        identity=identity,
        tls_key=tls_key,
        certificate=cert,
        ca_certificate=ca_cert,
        server=f"{_bracket(host)}:{api_port}",
        role=Role.OPERATOR,
        name=operator_name,
    )


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
