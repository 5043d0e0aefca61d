"""A whole fedtune deployment on 127.0.0.1 for the session tests: every part real.

The orchestrator (mutual TLS, key broker, audit log), a provider that sealed and uploaded a
tiny BERT with a release policy accepting the simulated TEE, three data owners with non-IID
records from the stdlib corpus, and the operator's SessionRunner with its TLS SuperLink
(SuperNode authentication on). Each test session then: the provider proposes terms, the owners
accept, the session starts; each owner's agent launches a sandbox (bubblewrap), gets the keys
released on attestation, streams the sealed model in, configures it with the signed terms and
registers a SuperNode key; the runner admits those keys; the SuperNodes start; the run goes.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crypto.identity import Identity
from enclave.attest import AllowedMeasurement, EvidenceKind, ReleasePolicy, runtime_measurement
from enclave.ml.modeldir import read_model_dir, write_model_dir
from enclave.ml.tiny import tiny_bert_files
from enclave.sandbox import derive_sandbox_terms, parse_session_terms
from enclave.sandbox.training import TrainingSession
from fedtune.audit import AuditEvent
from fedtune.datasets import build_corpus, split_non_iid, write_split
from fedtune.federated.appdir import AppDir, ConfigValue
from fedtune.federated.deployment import RunResult
from fedtune.federated.report_model import SessionReport
from fedtune.federated.runner import RunnerSpec, SessionRunner
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.deployment import init_deployment
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.terms import DifferentialPrivacy, SessionTerms
from fedtune.owner import JoinSpec, OwnerAgent
from fedtune.provider.seal import seal_model_dir
from fedtune.sandbox_client import SandboxClient
from tests.orchestrator.conftest import Deployment, Parties, Party, audit_events, start_server

MODEL = "acme/tiny-session"
VERSION = "1"
FAMILIES = {
    "asyncio": ("asyncio",),
    "email": ("email", "mailbox", "smtplib", "imaplib", "poplib", "mimetypes"),
    "xml": ("xml", "html"),
}
LABELS = sorted(FAMILIES)
OWNERS = 3


@dataclass
class Owner:
    """A data owner: its enrolment and its records (train and held-out files)."""

    party: Party
    data_dir: Path

    @property
    def fingerprint(self) -> str:
        return self.party.fingerprint


@dataclass
class SessionRun:
    """One session as a test ran it."""

    session_id: str
    terms: SessionTerms
    result: RunResult
    report: SessionReport
    agents: list[OwnerAgent]
    results_dir: Path
    killed: list[str] = field(default_factory=list)


class SessionWorld:
    """Orchestrator, provider, owners and the operator's SuperLink, started once."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        # Unix socket paths hold at most 107 bytes: sandboxes live under a short directory.
        self.short = Path(tempfile.mkdtemp(prefix="fts-"))
        self.root = tmp / "deployment"
        info = init_deployment(self.root, hosts=["127.0.0.1", "localhost"], api_port=0,
                               enrol_port=0)
        self.server: OrchestratorServer = start_server(self.root)
        self.parties = Parties(self.server, Deployment(self.root, info), tmp)
        self.runner: SessionRunner | None = None
        try:
            self._populate()
        except BaseException:
            self.stop()
            raise

    def _populate(self) -> None:
        self.provider = self.parties.enrol(Role.PROVIDER, "acme")
        self.owners = [
            Owner(self.parties.enrol(Role.DATA_OWNER, f"owner{i}"), Path()) for i in range(OWNERS)
        ]
        self.operator = self.parties.operator()
        # The runner and the ServerApp read the operator's home: point it at this server.
        self.operator.config.save(self.operator.home)
        self.platform = Identity.generate()
        # The provider's model: a tiny BERT, sealed, uploaded, its key under a release policy
        # that accepts this build of the sandbox under the simulated TEE.
        self.model_files = tiny_bert_files(seed=7, hidden_size=32)
        model_dir = write_model_dir(self.model_files, self.tmp / "model")
        artifact = seal_model_dir(model_dir, self.tmp / "sealed", name=MODEL, version=VERSION,
                                  identity=self.provider.identity,
                                  keys_dir=self.provider.home / "keys")
        self.provider.client.upload(artifact.signed, artifact.blob_path, chunk_size=1 << 20)
        from crypto.datakey import DataKey

        self.measurement = runtime_measurement()
        self.policy_version = 1
        self.provider.client.register_key(
            MODEL, VERSION, DataKey.load(artifact.key_path), self._policy()
        )
        # Non-IID owners: Dirichlet label skew over three stdlib package families.
        corpus = build_corpus(families=FAMILIES, seed=3, max_per_label=30, max_chars=300)
        split = split_non_iid(corpus.records, OWNERS, labels=corpus.labels, seed=5, alpha=0.8)
        data = self.tmp / "owner-data"
        write_split(split, data)
        for owner, shard in zip(self.owners, split.owners, strict=True):
            owner.data_dir = data / shard.name
        self.runner = SessionRunner(RunnerSpec(
            deployment_dir=self.root, workdir=self.short / "op", key_wait_s=60.0,
            run_timeout_s=900.0,
            run_config={"stage-timeout-s": 90.0, "node-wait-s": 90.0, "train-timeout-s": 300.0,
                        "evaluate-timeout-s": 300.0},
        ))
        self.runner.start_superlink()

    def _policy(self) -> object:
        """The provider's policy: this build of the sandbox, under the simulated TEE."""
        return ReleasePolicy(
            name=MODEL, version=self.policy_version, issuer=self.provider.fingerprint,
            issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            allowed_kinds=[EvidenceKind.SIMULATED],
            allowed_measurements=[AllowedMeasurement(
                kind=EvidenceKind.SIMULATED, values={"measurement": self.measurement})],
            allow_simulated=True, simulated_platform_keys=[self.platform.fingerprint],
        ).sign(self.provider.identity)

    def _pin_current_build(self) -> None:
        # The shared tree changes under long test runs; the provider pins what runs now.
        current = runtime_measurement()
        if current != self.measurement:
            self.measurement, self.policy_version = current, self.policy_version + 1
            self.provider.client.set_policy(MODEL, self._policy())

    # -- sessions ---------------------------------------------------------------------------

    def new_session(self, *, aggregation: str = "secagg", rounds: int = 2,
                    dp: DifferentialPrivacy | None = None) -> SessionTerms:
        """Terms proposed by the provider, accepted by every owner, started."""
        self._pin_current_build()
        sid = f"s{uuid.uuid4().hex[:10]}"
        terms = SessionTerms(
            session_id=sid, model_name=MODEL, model_version=VERSION,
            provider_fingerprint=self.provider.fingerprint,
            invited_owners=sorted(o.fingerprint for o in self.owners),
            rounds=rounds, aggregation=aggregation, min_participants=2,
            secagg_threshold=2 if aggregation == "secagg" else None,
            dp=dp or DifferentialPrivacy(), learning_rate=5e-2, batch_size=8, max_length=48,
            task="classification", labels=LABELS,
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        client = self.provider.client
        client.create_session(terms, self.provider.identity,
                              [o.party.identity.public.raw for o in self.owners])
        client.invite(terms, self.provider.identity)
        for owner in self.owners:
            owner.party.client.accept(sid, owner.party.identity)
        client.start_session(sid)
        return terms

    def agents(self, terms: SessionTerms, *, superlink: str | None = None) -> list[OwnerAgent]:
        """Each owner's agent, prepared (sandbox ready, SuperNode key registered)."""
        assert self.runner is not None and self.runner.deployment is not None
        address = superlink or self.runner.deployment.superlink_address
        agents = []
        try:
            for index, owner in enumerate(self.owners):
                spec = JoinSpec(
                    session_id=terms.session_id, data_dir=owner.data_dir,
                    train_file="train.jsonl", eval_file="eval.jsonl",
                    work_dir=self.short / f"{terms.session_id[:6]}-{index}",
                    superlink_address=address, platform_key=self.platform, num_threads=1,
                )
                agent = OwnerAgent(owner.party.config, spec)
                agents.append(agent)
                agent.prepare()
        except BaseException:
            for agent in agents:
                agent.close()
            raise
        return agents

    def run(
        self,
        terms: SessionTerms,
        *,
        app: AppDir | None = None,
        run_config: Mapping[str, ConfigValue] | None = None,
        during: Callable[[list[OwnerAgent]], list[str]] | None = None,
    ) -> SessionRun:
        """Prepare the owners, admit them, run the session; ``during`` runs beside the run."""
        assert self.runner is not None
        agents = self.agents(terms)
        try:
            self.runner.admit_owners(terms.session_id)
            for agent in agents:
                agent.start_supernode()
            run_id = self.runner.submit(terms.session_id, app=app, run_config=run_config)
            killed: list[str] = []
            watcher = None
            if during is not None:
                watcher = threading.Thread(target=lambda: killed.extend(during(agents)),
                                           daemon=True)
                watcher.start()
            result = self.runner.wait(run_id)
            if watcher is not None:
                watcher.join(timeout=30)
            report = self.runner.report(terms.session_id)
        except BaseException:
            for agent in agents:
                agent.close()
            raise
        for agent in agents:
            agent.stop_supernode()
        return SessionRun(terms.session_id, terms, result, report, agents,
                          self.runner.results_dir(terms.session_id), killed)

    def events(self, session_id: str) -> list[AuditEvent]:
        """The audit log's events of one session."""
        return [e for e in audit_events(self.server) if e.session == session_id]

    def owner_of(self, fingerprint: str) -> Owner:
        return next(o for o in self.owners if o.fingerprint == fingerprint)

    def replay_update(self, terms: SessionTerms, fingerprint: str,
                      start_delta: np.ndarray | None, round_number: int) -> tuple[np.ndarray, int]:
        """The update an owner's sandbox computes, recomputed here from the same inputs."""
        sandbox_terms = derive_sandbox_terms(parse_session_terms(terms.canonical_bytes()))
        owner = self.owner_of(fingerprint)
        session = TrainingSession(
            sandbox_terms, read_model_dir(self.tmp / "model"), owner.data_dir,
            train_file="train.jsonl", eval_file="eval.jsonl", num_threads=1,
        )
        start = session.initial if start_delta is None else (
            session.initial + start_delta.astype(np.float32)).astype(np.float32)
        outcome, delta = session.train(round_number, start)
        return delta, outcome.num_examples

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.close()
        self.parties.close()
        self.server.stop(0.5)
        shutil.rmtree(self.short, ignore_errors=True)


def kill_when_trained(owners: list[int], *, round_number: int = 1,
                      timeout_s: float = 300.0) -> Callable[[list[OwnerAgent]], list[str]]:
    """A ``during`` hook: once each chosen owner's sandbox trained the round, stop it."""

    def hook(agents: list[OwnerAgent]) -> list[str]:
        killed = []
        deadline = time.monotonic() + timeout_s
        targets = [agents[i] for i in owners]
        while targets and time.monotonic() < deadline:
            for agent in list(targets):
                assert agent.sandbox is not None
                with SandboxClient(agent.sandbox.socket_path, timeout=5) as client:
                    trained = client.status().last_round >= round_number
                if trained:
                    agent.sandbox.stop()
                    killed.append(agent.config.fingerprint)
                    targets.remove(agent)
            time.sleep(0.2)
        return killed

    return hook
