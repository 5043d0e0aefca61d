"""kill -9 of a real ``fedtune orchestrator serve`` during an upload and during session
transitions: after a restart nothing that was acknowledged is lost, and the upload resumes."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crypto.hpke import RecipientPrivateKey
from enclave.attest import report_data_for
from fedtune._proto import sessions_pb2
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import DeploymentPaths
from fedtune.orchestrator.enrolment import create_token
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.store.sqlite import SqliteRepository

from .conftest import Party, data_key_of, release_policy, seal_model, simulated_tee, terms_for

FEDTUNE = str(Path(sys.executable).parent / "fedtune")
_LISTENING = re.compile(r"listening api=\S+:(\d+) enrol=\S+:(\d+)")


class ServerProcess:
    """``fedtune orchestrator serve`` in a child process, on free ports."""

    def __init__(self, root: Path, **env: str) -> None:
        self.root = root
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[str] | None = None
        self.api = self.enrol = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                FEDTUNE,
                "orchestrator",
                "serve",
                "--dir",
                str(self.root),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--enrol-port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = _LISTENING.search(line)
            if match:
                self.api, self.enrol = int(match[1]), int(match[2])
                return
        self.kill()
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
            self.proc.stdout.close()


@pytest.fixture
def proc(deployment):
    server = ServerProcess(deployment.root, FEDTUNE_ORCHESTRATOR_UPLOAD_SYNC_BYTES="262144")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _enrol(proc: ServerProcess, deployment, home: Path, role: Role, name: str) -> Party:
    repo = SqliteRepository(DeploymentPaths(deployment.root).database)
    try:
        token = create_token(
            repo, role, name, ttl=dt.timedelta(hours=1), now=dt.datetime.now(dt.UTC)
        )
    finally:
        repo.close()
    config = enrol(f"127.0.0.1:{proc.enrol}", token, deployment.info.ca_fingerprint, home)
    return Party(home, config, config.load_identity(), OrchestratorClient(config, timeout=30))


def _reconnect(party: Party, proc: ServerProcess) -> Party:
    party.client.close()
    config = party.config.model_copy(update={"server": f"127.0.0.1:{proc.api}"})
    return Party(party.home, config, party.identity, OrchestratorClient(config, timeout=30))


def test_kill_9_during_upload_loses_no_acknowledged_chunk(proc, deployment, tmp_path):
    provider = _enrol(proc, deployment, tmp_path / "acme", Role.PROVIDER, "acme")
    art = seal_model(provider, tmp_path, size=6_000_000)
    chunk = 64 << 10
    status = provider.client.begin_upload(art.signed, chunk_size=chunk)
    acked = provider.client.send_chunks(status, art.blob_path, stop_after=10)
    assert acked.first_missing == 10  # acknowledged: chunks 0..9
    progress = []

    def slow(done, total):
        progress.append(done)
        time.sleep(0.01)

    failure: list[BaseException] = []

    def upload():
        try:
            provider.client.upload(art.signed, art.blob_path, chunk_size=chunk, progress=slow)
        except RemoteError as exc:
            failure.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 60
    while (
        not progress or progress[-1] < art.signed.manifest.sealed_size // 2
    ) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL, mid-stream
    thread.join(30)
    assert failure and failure[0].code == "UNAVAILABLE"
    proc.start()
    provider = _reconnect(provider, proc)
    status = provider.client.begin_upload(art.signed, chunk_size=chunk)
    missing = {i for r in status.missing for i in range(r.start, r.end)}
    assert not missing & set(range(10)), "an acknowledged chunk was lost"
    assert status.first_missing > 10, "the in-progress upload kept nothing (it synced meanwhile)"
    version = provider.client.upload(art.signed, art.blob_path, chunk_size=chunk)
    assert version.size == art.signed.manifest.sealed_size
    out = tmp_path / "out.sealed"
    provider.client.download("acme/base", "1", out)
    assert out.read_bytes() == art.blob_path.read_bytes()
    provider.client.close()


def test_kill_9_during_session_transitions_loses_nothing_acknowledged(proc, deployment, tmp_path):
    provider = _enrol(proc, deployment, tmp_path / "acme", Role.PROVIDER, "acme")
    alice = _enrol(proc, deployment, tmp_path / "alice", Role.DATA_OWNER, "alice")
    bob = _enrol(proc, deployment, tmp_path / "bob", Role.DATA_OWNER, "bob")
    art = seal_model(provider, tmp_path)
    provider.client.upload(art.signed, art.blob_path)
    tee = simulated_tee(tmp_path)
    provider.client.register_key(
        "acme/base", "1", data_key_of(provider, art), release_policy(provider, "acme/base", tee)
    )
    # One running session with a used and an unused nonce, acknowledged before the kill.
    keys = [alice.identity.public.raw, bob.identity.public.raw]
    terms = terms_for("base", provider, [alice, bob])
    provider.client.create_session(terms, provider.identity, keys)
    provider.client.invite(terms, provider.identity)
    alice.client.accept("base", alice.identity)
    bob.client.accept("base", bob.identity)
    provider.client.start_session("base")
    eph = RecipientPrivateKey.generate()
    pub = eph.public_key().to_bytes()
    used = alice.client.challenge("base")
    alice.client.release(
        "base",
        SecretKind.MODEL_DATA_KEY,
        tee.get_evidence(report_data_for(used, pub)).canonical_bytes(),
        pub,
        used,
    )
    unused = alice.client.challenge("base")

    acked: dict[str, int] = {}  # session -> number of acknowledged steps
    stop = threading.Event()

    def steps(sid):
        terms = terms_for(sid, provider, [alice, bob])
        return [
            lambda: provider.client.create_session(terms, provider.identity, keys),
            lambda: provider.client.invite(terms, provider.identity),
            lambda: alice.client.accept(sid, alice.identity),
            lambda: bob.client.accept(sid, bob.identity),
            lambda: provider.client.start_session(sid),
            lambda: provider.client.cancel_session(sid, "churn"),
        ]

    def churn():
        n = 0
        while not stop.is_set():
            sid = f"c{n}"
            for i, step in enumerate(steps(sid)):
                try:
                    step()
                except RemoteError:
                    return
                acked[sid] = i + 1
            n += 1

    thread = threading.Thread(target=churn)
    thread.start()
    deadline = time.monotonic() + 60
    while len(acked) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    stop.set()
    thread.join(30)
    assert len(acked) >= 3
    proc.start()
    provider, alice = _reconnect(provider, proc), _reconnect(alice, proc)
    # Acknowledged steps: create, invite, alice accepts, bob accepts, start, cancel.
    floor = {1: "CREATED", 2: "OPEN", 3: "OPEN", 4: "OPEN", 5: "RUNNING", 6: "CANCELLED"}
    for sid, steps in acked.items():
        info = provider.client.get_session(sid)
        want = getattr(sessions_pb2, f"SESSION_STATE_{floor[steps]}")
        assert info.state >= want, (sid, steps, info.state)
        accepted = {p.fingerprint for p in info.participants if p.accepted}
        if steps >= 3:
            assert alice.fingerprint in accepted, sid
        if steps >= 4:
            assert bob.fingerprint in accepted, sid
    # The nonce acknowledged as issued is still unused; the used one is still used.
    resp = alice.client.release_raw(
        "base",
        SecretKind.MODEL_DATA_KEY,
        tee.get_evidence(report_data_for(unused, pub)).canonical_bytes(),
        pub,
        unused,
    )
    assert resp.WhichOneof("outcome") == "released"
    replay = alice.client.release_raw(
        "base",
        SecretKind.MODEL_DATA_KEY,
        tee.get_evidence(report_data_for(used, pub)).canonical_bytes(),
        pub,
        used,
    )
    assert replay.WhichOneof("outcome") == "refused" and "replay" in replay.refused.reason
    provider.client.close()
    alice.client.close()
    bob.client.close()


def test_config_points_at_the_restarted_server(deployment):
    # The operator's config from init names the API port init recorded.
    config = ClientConfig.load(deployment.root / "operator")
    assert config.role is Role.OPERATOR and config.server.endswith(":0")
