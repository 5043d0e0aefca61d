"""Fixtures: a real orchestrator on 127.0.0.1 (ports 0), enrolled parties, sealed models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from crypto.datakey import DataKey
from crypto.identity import Identity
from enclave.attest import AllowedMeasurement, EvidenceKind, ReleasePolicy, SignedReleasePolicy
from enclave.attest.simulated import SimulatedTee
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import DeploymentInfo, init_deployment
from fedtune.orchestrator.enrolment import create_token
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.settings import OrchestratorSettings
from fedtune.orchestrator.terms import SessionTerms
from fedtune.provider.seal import SealedArtifact, seal_model_dir


@dataclass
class Party:
    """An enrolled party: its home, config, identity and a connected client."""

    home: Path
    config: ClientConfig
    identity: Identity
    client: OrchestratorClient

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint


@dataclass
class Deployment:
    root: Path
    info: DeploymentInfo


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    root = tmp_path / "deployment"
    info = init_deployment(root, hosts=["127.0.0.1", "localhost"], api_port=0, enrol_port=0)
    return Deployment(root, info)


def start_server(root: Path, **overrides: object) -> OrchestratorServer:
    settings = OrchestratorSettings(
        dir=root,
        host="127.0.0.1",
        port=0,
        enrol_port=0,
        max_workers=32,
        grace_s=0.5,
        **overrides,
    )
    server = OrchestratorServer(settings)
    server.start()
    return server


@pytest.fixture
def server(deployment: Deployment) -> Iterator[tuple[OrchestratorServer, int]]:
    srv = start_server(deployment.root)
    try:
        yield srv, srv.api_port
    finally:
        srv.stop(0.5)


class Parties:
    """Enrols parties against a running server through its real enrolment port."""

    def __init__(self, server: OrchestratorServer, deployment: Deployment, tmp: Path) -> None:
        self.server = server
        self.deployment = deployment
        self.tmp = tmp
        self._clients: list[OrchestratorClient] = []

    def token(self, role: Role, name: str, *, ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
        return create_token(
            self.server.repository, role, name, ttl=ttl, now=dt.datetime.now(dt.UTC)
        )

    def enrol(self, role: Role, name: str) -> Party:
        home = self.tmp / "homes" / name
        config = enrol(
            f"127.0.0.1:{self.server.enrol_port}",
            self.token(role, name),
            self.deployment.info.ca_fingerprint,
            home,
        )
        client = OrchestratorClient(config, timeout=30)
        self._clients.append(client)
        return Party(home, config, config.load_identity(), client)

    def operator(self) -> Party:
        home = self.deployment.root / "operator"
        config = ClientConfig.load(home)
        config = config.model_copy(update={"server": f"127.0.0.1:{self.server.api_port}"})
        client = OrchestratorClient(config, timeout=30)
        self._clients.append(client)
        return Party(home, config, config.load_identity(), client)

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def parties(
    server: tuple[OrchestratorServer, int], deployment: Deployment, tmp_path: Path
) -> Iterator[Parties]:
    p = Parties(server[0], deployment, tmp_path)
    try:
        yield p
    finally:
        p.close()


def make_model_dir(root: Path, *, size: int = 200_000, seed: int = 0) -> Path:
    """A small model directory: one safetensors file of random float32 weights and a config."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file(
        {"w": rng.standard_normal(size // 4).astype(np.float32)}, str(root / "model.safetensors")
    )
    (root / "config.json").write_text('{"model_type": "tiny"}')
    return root


def seal_model(
    party: Party,
    tmp: Path,
    *,
    name: str = "acme/base",
    version: str = "1",
    size: int = 200_000,
    segment_size: int = 64 << 10,
) -> SealedArtifact:
    """Seal a fresh random model as ``party``."""
    model = make_model_dir(tmp / f"model-{name.replace('/', '_')}-{version}", size=size)
    return seal_model_dir(
        model,
        tmp / f"sealed-{name.replace('/', '_')}-{version}",
        name=name,
        identity=party.identity,
        keys_dir=party.home / "provider" / "keys",
        version=version,
        segment_size=segment_size,
    )


def simulated_tee(tmp: Path) -> SimulatedTee:
    return SimulatedTee(Identity.generate())


def release_policy(
    provider: Party,
    name: str,
    tee: SimulatedTee,
    *,
    version: int = 1,
    allow_simulated: bool = True,
    measurement: bytes | None = None,
) -> SignedReleasePolicy:
    """A provider-signed policy allowing ``tee``'s simulated evidence (or refusing it)."""
    kinds = [EvidenceKind.SIMULATED] if allow_simulated else [EvidenceKind.SEV_SNP]
    policy = ReleasePolicy(
        name=name,
        version=version,
        issuer=provider.fingerprint,
        issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        allowed_kinds=kinds,
        allowed_measurements=[
            AllowedMeasurement(
                kind=EvidenceKind.SIMULATED if allow_simulated else EvidenceKind.SEV_SNP,
                values={"measurement": measurement or tee.measurement},
            )
        ],
        allow_simulated=allow_simulated,
        simulated_platform_keys=[tee.public_key.fingerprint] if allow_simulated else [],
    )
    return policy.sign(provider.identity)


def terms_for(
    session_id: str,
    provider: Party,
    owners: list[Party],
    *,
    name: str = "acme/base",
    version: str = "1",
    min_participants: int = 2,
) -> SessionTerms:
    return SessionTerms(
        session_id=session_id,
        model_name=name,
        model_version=version,
        provider_fingerprint=provider.fingerprint,
        invited_owners=sorted(o.fingerprint for o in owners),
        rounds=3,
        aggregation="secagg",
        min_participants=min_participants,
        secagg_threshold=2,
        labels=["neg", "pos"],
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )


def uploaded(provider: Party, tmp: Path, **kw: object) -> SealedArtifact:
    art = seal_model(provider, tmp, **kw)
    provider.client.upload(art.signed, art.blob_path, chunk_size=64 << 10)
    return art


def data_key_of(provider: Party, art: SealedArtifact) -> DataKey:
    return DataKey.load(art.key_path)


def audit_events(server: OrchestratorServer) -> list:
    """Every event in the server's audit log, decoded."""
    from fedtune.audit import AuditEvent

    size = server.audit_log.size
    events, start = [], 0
    while start < size:
        page = server.audit_log.entries(start, size)
        events += [AuditEvent.from_leaf(e.leaf) for e in page]
        start += len(page)
    return events
