"""Multi-host for real: the orchestrator and the SuperLink in one network namespace, three data
owners in three others, joined by veth pairs on a bridge, with real addresses and TLS.

    hub    10.231.77.1   fedtune orchestrator serve (API 7001, enrolment 7002)
                         fedtune session run (SuperLink 9092)
    own1   10.231.77.11  fedtune enrol, fedtune owner join (sandbox, SuperNode)
    own2   10.231.77.12  ...
    own3   10.231.77.13  ...
    (this test process: 10.231.77.254, the provider's workstation)

Every party is its own process started with ``ip netns exec`` and reaches the others only over
the bridge; nothing listens on 127.0.0.1. Needs root and iproute2; skipped with the reason
otherwise. docs/reliability.md describes the same layout on real machines.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.datakey import DataKey
from crypto.identity import Identity
from enclave.attest import AllowedMeasurement, EvidenceKind, ReleasePolicy, runtime_measurement
from enclave.attest.simulated import platform_key_path
from enclave.ml.modeldir import write_model_dir
from enclave.ml.tiny import tiny_bert_files
from fedtune._proto import sessions_pb2
from fedtune.datasets import build_corpus, split_non_iid, write_split
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment
from fedtune.orchestrator.enrolment import create_token
from fedtune.orchestrator.store.sqlite import SqliteRepository
from fedtune.orchestrator.terms import SessionTerms
from fedtune.provider.seal import seal_model_dir

from ._support import audit_events, verify_audit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.deployment,
    pytest.mark.netns,
    pytest.mark.timeout(1500),
]

NET = "10.231.77"
HUB = f"{NET}.1"
WORKSTATION = f"{NET}.254"
API, ENROL, SUPERLINK = 7001, 7002, 9092
OWNERS = 3
FEDTUNE = str(Path(sys.executable).parent / "fedtune")
FAMILIES = {"asyncio": ("asyncio",), "email": ("email", "mailbox", "smtplib"), "xml": ("xml",)}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def netns_problem() -> str | None:
    """Why network namespaces cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2 (the ip command)"
    name = f"ftprobe{secrets.token_hex(3)}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                           timeout=30, check=False)
    if probe.returncode != 0:
        return f"'ip netns add' is not permitted here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
    return None


class Network:
    """The hub and owner namespaces on one bridge, plus a veth for this test process."""

    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.hub = f"ft{tag}hub"
        self.owners = [f"ft{tag}o{i}" for i in range(1, OWNERS + 1)]
        self._root_veth = f"ft{tag}ws"
        self._tag = tag

    def up(self) -> None:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{HUB}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.owners, start=1):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            self._attach(ns, f"ft{self._tag}h{i}", f"{NET}.{10 + i}")
        # The test process (the provider's workstation) joins the bridge from the root namespace.
        peer = f"ft{self._tag}hw"
        _ip("link", "add", self._root_veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", self.hub)
        _ip("-n", self.hub, "link", "set", peer, "master", "br0", "up")
        _ip("addr", "add", f"{WORKSTATION}/24", "dev", self._root_veth)
        _ip("link", "set", self._root_veth, "up")

    def _attach(self, ns: str, hub_end: str, address: str) -> None:
        owner_end = f"{hub_end}x"
        _ip("link", "add", hub_end, "type", "veth", "peer", "name", owner_end)
        _ip("link", "set", hub_end, "netns", self.hub)
        _ip("link", "set", owner_end, "netns", ns)
        _ip("-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", owner_end)
        _ip("-n", ns, "link", "set", owner_end, "up")

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self._root_veth], capture_output=True, check=False,
                       timeout=30)
        for ns in (self.hub, *self.owners):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False,
                           timeout=30)

    @staticmethod
    def run_in(ns: str, args: list[str], *, env: dict[str, str] | None = None,
               log: Path) -> subprocess.Popen[str]:
        """Start ``args`` inside namespace ``ns``; stdout+stderr to ``log``."""
        with open(log, "w") as out:
            return subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=out,
                                    stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **(env or {})})


@pytest.fixture
def network() -> Iterator[Network]:
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)
    net = Network()
    try:
        net.up()
        yield net
    finally:
        net.down()


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise AssertionError(f"{log.name} exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{log.name}: no {pattern!r} within {timeout_s} s")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _owner_toml(path: Path, work_dir: Path) -> Path:
    path.write_text(
        f'work_dir = "{work_dir}"\n'
        "[policy]\n"
        'tee = "simulated"\n'
        "allow_simulated = true\n"
        "[[policy.allowed]]\n"
        'kind = "simulated"\n'
        f'values = {{ measurement = "{runtime_measurement().hex()}" }}\n'
        "[data]\n"
        'train = "train.jsonl"\n'
        'eval = "eval.jsonl"\n'
        "[superlink]\n"
        f'address = "{HUB}:{SUPERLINK}"\n'
        "[limits]\n"
        "threads = 1\n",
        encoding="utf-8",
    )
    return path


def test_a_session_across_four_network_namespaces(network: Network, tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="ftn-"))  # Unix socket paths: at most 107 bytes
    logs = tmp_path / "logs"
    logs.mkdir()
    root = tmp_path / "deployment"
    info = init_deployment(root, hosts=[HUB], api_port=API, enrol_port=ENROL)
    procs: list[subprocess.Popen[str]] = []
    try:
        # -- the hub: the orchestrator, on the bridge address only ---------------------------
        server = network.run_in(network.hub, [
            FEDTUNE, "orchestrator", "serve", "--dir", str(root), "--host", HUB,
            "--port", str(API), "--enrol-port", str(ENROL),
        ], log=logs / "orchestrator.log")
        procs.append(server)
        _wait_for(logs / "orchestrator.log", rf"listening api={re.escape(HUB)}:{API}", server, 90)

        def token(role: Role, name: str) -> str:
            repo = SqliteRepository(DeploymentPaths(root).database)
            try:
                return create_token(repo, role, name, ttl=dt.timedelta(hours=1),
                                    now=dt.datetime.now(dt.UTC))
            finally:
                repo.close()

        # -- each owner enrols from inside its own namespace, over the bridge ----------------
        homes = [tmp_path / f"owner{i}" for i in range(1, OWNERS + 1)]
        platforms = [Identity.generate() for _ in homes]
        for i, (ns, home, platform) in enumerate(
            zip(network.owners, homes, platforms, strict=True), start=1
        ):
            log = logs / f"enrol-{i}.log"
            enrol = network.run_in(ns, [
                FEDTUNE, "enrol", "--server", f"{HUB}:{ENROL}",
                "--token", token(Role.DATA_OWNER, f"owner{i}"),
                "--ca-fingerprint", info.ca_fingerprint, "--home", str(home),
            ], log=log)
            assert enrol.wait(timeout=120) == 0, log.read_text()
            key = platform_key_path(home)
            key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            platform.save(key)
        owner_configs = [ClientConfig.load(home) for home in homes]
        assert all(c.server == f"{HUB}:{API}" for c in owner_configs)

        # -- the provider, from the workstation: seal, upload, release policy, terms ----------
        from fedtune.orchestrator.client import enrol as enrol_party

        provider_config = enrol_party(f"{HUB}:{ENROL}", token(Role.PROVIDER, "acme"),
                                      info.ca_fingerprint, tmp_path / "acme")
        provider_id = provider_config.load_identity()
        provider = OrchestratorClient(provider_config, timeout=60)
        model = write_model_dir(tiny_bert_files(seed=7, hidden_size=32), tmp_path / "model")
        sealed = seal_model_dir(model, tmp_path / "sealed", name="acme/netns", version="1",
                                identity=provider_id, keys_dir=tmp_path / "acme" / "keys")
        provider.upload(sealed.signed, sealed.blob_path, chunk_size=1 << 20)
        measurement = runtime_measurement()
        policy = ReleasePolicy(
            name="acme/netns", version=1, issuer=provider_id.fingerprint,
            issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            allowed_kinds=[EvidenceKind.SIMULATED],
            allowed_measurements=[AllowedMeasurement(kind=EvidenceKind.SIMULATED,
                                                     values={"measurement": measurement})],
            allow_simulated=True,
            simulated_platform_keys=[p.fingerprint for p in platforms],
        ).sign(provider_id)
        provider.register_key("acme/netns", "1", DataKey.load(sealed.key_path), policy)

        corpus = build_corpus(families=FAMILIES, seed=3, max_per_label=24, max_chars=300)
        split = split_non_iid(corpus.records, OWNERS, labels=corpus.labels, seed=5, alpha=0.8)
        write_split(split, tmp_path / "data")
        data_dirs = [tmp_path / "data" / shard.name for shard in split.owners]

        owner_ids = [c.load_identity() for c in owner_configs]
        sid = f"netns-{secrets.token_hex(3)}"
        terms = SessionTerms(
            session_id=sid, model_name="acme/netns", model_version="1",
            provider_fingerprint=provider_id.fingerprint,
            invited_owners=sorted(o.fingerprint for o in owner_ids),
            rounds=1, aggregation="secagg", min_participants=2, secagg_threshold=2,
            learning_rate=5e-2, batch_size=8, max_length=48, task="classification",
            labels=sorted(FAMILIES), created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        provider.create_session(terms, provider_id, [o.public.raw for o in owner_ids])
        provider.invite(terms, provider_id)

        # -- the owners join from their namespaces: accept, then wait for the start ----------
        owners = []
        for i, (ns, home, data) in enumerate(
            zip(network.owners, homes, data_dirs, strict=True), start=1
        ):
            config = _owner_toml(tmp_path / f"owner{i}.toml", short / f"w{i}")
            owners.append(network.run_in(ns, [
                FEDTUNE, "owner", "join", sid, "--data", str(data), "--config", str(config),
                "--home", str(home), "--yes",
            ], env={"FEDTUNE_HOME": str(home)}, log=logs / f"owner-{i}.log"))
        procs += owners
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            session = provider.get_session(sid)
            accepted = {p.fingerprint for p in session.participants if p.accepted}
            if accepted >= {o.fingerprint for o in owner_ids}:
                break
            for i, proc in enumerate(owners, start=1):
                assert proc.poll() is None, (logs / f"owner-{i}.log").read_text()[-3000:]
            time.sleep(0.5)
        else:
            raise AssertionError("the owners did not accept within 300 s")
        provider.start_session(sid)

        # -- the operator runs the rounds from the hub: SuperLink on the bridge address ------
        operator_log = logs / "session-run.log"
        operator = network.run_in(network.hub, [
            FEDTUNE, "session", "run", sid, "--dir", str(root), "--workdir", str(short / "op"),
            "--host", HUB, "--port", str(SUPERLINK), "--public-host", HUB,
            "--key-wait", "600", "--timeout", "1200",
        ], env={"FEDTUNE_HOME": str(root / "operator")}, log=operator_log)
        procs.append(operator)
        rc = operator.wait(timeout=1300)
        assert rc == 0, operator_log.read_text()[-5000:]
        for i, proc in enumerate(owners, start=1):
            assert proc.wait(timeout=300) == 0, (logs / f"owner-{i}.log").read_text()[-5000:]

        final = provider.get_session(sid)
        assert final.state == sessions_pb2.SESSION_STATE_FINISHED, final
        provider.close()
        # The owners' steps happened from their own addresses, over TLS, on the record.
        events = [e for e in audit_events(root) if e.session == sid]
        released = {e.objects.party for e in events if e.action.value == "key-release"
                    and e.outcome.value == "ok"}
        assert released >= {o.fingerprint for o in owner_ids}
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(short, ignore_errors=True)
    verify_audit(root)
