"""A whole fedtune deployment on 127.0.0.1 for the examples, built from the public library API.

Every part is the real one: the orchestrator (mutual TLS, registry, key broker, sessions, audit
log) on free ports, parties enrolled through the real enrolment port with one-time tokens, the
operator's TLS SuperLink, each owner's agent with its bubblewrap sandbox under the simulated
TEE. Only the deployment's *shape* is compressed onto one machine: on a real deployment each
party runs the same calls (or the ``fedtune`` CLI) on its own machine.

The examples import this module for the plumbing and keep their own scripts about the step
they show. Nothing here is needed to use fedtune; it is what ``fedtune orchestrator init``,
``fedtune orchestrator serve``, ``fedtune orchestrator invite`` and ``fedtune enrol`` do.
"""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from crypto.identity import Identity
from enclave.attest import (
    AllowedMeasurement,
    EvidenceKind,
    ReleasePolicy,
    SignedReleasePolicy,
    runtime_measurement,
)
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment
from fedtune.orchestrator.enrolment import create_token
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.settings import OrchestratorSettings

if TYPE_CHECKING:  # heavy imports (flwr, torch) only where a session runs
    from fedtune.audit import AuditEvent
    from fedtune.federated.report_model import SessionReport
    from fedtune.federated.runner import SessionRunner
    from fedtune.owner import JoinSpec

__all__ = ["LocalDeployment", "Party", "fedtune_cli", "say", "simulated_policy"]


def say(message: str) -> None:
    """Print one progress line of an example (stderr, so stdout stays the example's result)."""
    print(f"[example] {message}", file=sys.stderr, flush=True)


def fedtune_cli(*args: str, timeout_s: float = 300.0) -> str:
    """Run ``fedtune ARGS...`` as a user would, echo the command, return its stdout.

    Raises ``subprocess.CalledProcessError`` (with the CLI's error line on stderr) on failure.
    """
    # The console script installed next to this interpreter (the venv's), else the one on PATH.
    script = Path(sys.executable).parent / "fedtune"
    command = [str(script) if script.exists() else (shutil.which("fedtune") or "fedtune"), *args]
    print(f"$ fedtune {shlex.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        sys.stderr.write(done.stdout)
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr)
    return done.stdout


@dataclass
class Party:
    """An enrolled party: its home directory, client config, identity and a connected client."""

    name: str
    home: Path
    config: ClientConfig
    identity: Identity
    client: OrchestratorClient

    @property
    def fingerprint(self) -> str:
        """The party's Ed25519 fingerprint (what terms, policies and the audit log name)."""
        return self.identity.fingerprint


def simulated_policy(
    provider: Party,
    model_name: str,
    platform: Identity,
    *,
    version: int = 1,
) -> SignedReleasePolicy:
    """A provider-signed release policy accepting this build of the sandbox under the simulated TEE.

    Development only: a simulated TEE protects nothing from the machine's owner. A production
    policy lists ``sev-snp``/``tdx`` measurements instead and leaves ``allow_simulated`` off.
    """
    policy = ReleasePolicy(
        name=model_name,
        version=version,
        issuer=provider.fingerprint,
        issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        allowed_kinds=[EvidenceKind.SIMULATED],
        allowed_measurements=[
            AllowedMeasurement(
                kind=EvidenceKind.SIMULATED, values={"measurement": runtime_measurement()}
            )
        ],
        allow_simulated=True,
        simulated_platform_keys=[platform.fingerprint],
    )
    return policy.sign(provider.identity)


class LocalDeployment:
    """An orchestrator on 127.0.0.1 with a fresh deployment directory under ``root``.

    Use as a context manager; ``stop()`` stops the runner, every client and the server.
    """

    def __init__(self, root: Path) -> None:
        if not isinstance(root, Path):
            raise TypeError("root must be a pathlib.Path")
        self.root = root
        self.deployment_dir = root / "deployment"
        # Unix socket paths hold at most 107 bytes: sandboxes and Flower state get a short dir.
        self.short = Path(tempfile.mkdtemp(prefix="ftx-"))
        self.info = init_deployment(
            self.deployment_dir, hosts=["127.0.0.1", "localhost"], api_port=0, enrol_port=0
        )
        self.server = OrchestratorServer(
            OrchestratorSettings(
                dir=self.deployment_dir, host="127.0.0.1", port=0, enrol_port=0, grace_s=0.5
            )
        )
        self.server.start()
        self._clients: list[OrchestratorClient] = []
        self.runner: SessionRunner | None = None
        # The simulated TEE's platform key: on real hardware this is the CPU vendor's chain.
        self.platform = Identity.generate()

    # -- parties ---------------------------------------------------------------------------

    def enrol(self, role: Role, name: str) -> Party:
        """Invite ``name`` (a one-time token) and enrol it through the enrolment port."""
        token = create_token(
            self.server.repository, role, name, ttl=dt.timedelta(hours=1),
            now=dt.datetime.now(dt.UTC),
        )
        home = self.root / "homes" / name
        config = enrol(
            f"127.0.0.1:{self.server.enrol_port}", token, self.info.ca_fingerprint, home
        )
        return self._party(name, home, config)

    def operator(self) -> Party:
        """The operator, created by ``init``; its config is pointed at this server's port."""
        home = DeploymentPaths(self.deployment_dir).operator_home
        config = ClientConfig.load(home).model_copy(
            update={"server": f"127.0.0.1:{self.server.api_port}"}
        )
        config.save(home)  # the runner and the ServerApp read the operator's home
        return self._party("operator", home, config)

    def _party(self, name: str, home: Path, config: ClientConfig) -> Party:
        client = OrchestratorClient(config, timeout=60)
        self._clients.append(client)
        return Party(name, home, config, config.load_identity(), client)

    # -- the audit log -----------------------------------------------------------------------

    @property
    def audit_db(self) -> Path:
        """The audit log's SQLite store (what ``fedtune audit verify --db`` reads)."""
        return DeploymentPaths(self.deployment_dir).audit_log

    def audit_events(self) -> list[AuditEvent]:
        """Every event on the audit log so far, decoded (``fedtune.audit.AuditEvent``)."""
        from fedtune.audit import AuditEvent

        log = self.server.audit_log
        events: list[AuditEvent] = []
        while len(events) < log.size:
            page = log.entries(len(events), log.size)
            events += [AuditEvent.from_leaf(entry.leaf) for entry in page]
        return events

    def write_log_key(self, path: Path) -> Path:
        """Write the log's verifier key (``NAME+KEYID+BASE64``), as the operator publishes it."""
        path.write_text(self.server.audit_log.verifier.vkey + "\n", encoding="utf-8")
        return path

    # -- the data plane ---------------------------------------------------------------------

    def start_superlink(self) -> SessionRunner:
        """The operator's SessionRunner with its TLS SuperLink (SuperNode authentication on)."""
        from fedtune.federated.runner import RunnerSpec, SessionRunner

        self.operator()
        self.runner = SessionRunner(
            RunnerSpec(
                deployment_dir=self.deployment_dir,
                workdir=self.short / "op",
                key_wait_s=120.0,
                run_timeout_s=900.0,
                run_config={"stage-timeout-s": 120.0, "node-wait-s": 120.0,
                            "train-timeout-s": 300.0, "evaluate-timeout-s": 300.0},
            )
        )
        self.runner.start_superlink()
        return self.runner

    def owner_work_dir(self, session_id: str, index: int) -> Path:
        """A short working directory for one owner's sandbox socket and SuperNode."""
        return self.short / f"{session_id[:6]}-{index}"

    def join_spec(self, session_id: str, index: int, data_dir: Path) -> JoinSpec:
        """Owner ``index``'s JoinSpec: its records, a short work dir, this SuperLink."""
        from fedtune.owner import JoinSpec

        assert self.runner is not None and self.runner.deployment is not None
        return JoinSpec(
            session_id=session_id, data_dir=data_dir, train_file="train.jsonl",
            eval_file="eval.jsonl", work_dir=self.owner_work_dir(session_id, index),
            superlink_address=self.runner.deployment.superlink_address,
            platform_key=self.platform, num_threads=1,
        )

    def run_session(self, session_id: str, owners: list[tuple[Party, Path]]) -> SessionReport:
        """Each owner joins (sandbox, attested key release, model, terms), then the rounds run.

        Returns the operator's SessionReport. On separate machines each owner runs its own
        ``OwnerAgent`` (``fedtune owner join``) and the operator ``fedtune session run``.
        """
        from fedtune.owner import OwnerAgent

        assert self.runner is not None
        agents = []
        try:
            for index, (party, data_dir) in enumerate(owners):
                agent = OwnerAgent(party.config, self.join_spec(session_id, index, data_dir))
                agents.append(agent)
                agent.prepare()
                say(f"owner {party.name}: sandbox up, keys released on attestation, model in")
            admitted = self.runner.admit_owners(session_id)
            say(f"operator admitted {len(admitted)} SuperNode keys")
            for agent in agents:
                agent.start_supernode()
            run_id = self.runner.submit(session_id)
            say(f"Flower run {run_id} submitted; waiting for the rounds")
            result = self.runner.wait(run_id)
            say(f"Flower run {run_id}: {result.status} in {result.wall_s:.0f} s")
            return self.runner.report(session_id)
        finally:
            for agent in agents:
                agent.close()

    # -- lifetime ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the runner, close every client, stop the server and remove the short dir."""
        if self.runner is not None:
            self.runner.close()
        for client in self._clients:
            client.close()
        self.server.stop(0.5)
        shutil.rmtree(self.short, ignore_errors=True)

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
