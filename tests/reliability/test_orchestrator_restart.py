"""kill -9 of a real ``fedtune orchestrator serve`` while a session is running and a round is
being recorded, then a restart: the session resumes where it was, nothing acknowledged is lost,
the audit log verifies before and after the restart.

tests/orchestrator/test_crash.py covers the kill during an upload and during session
transitions; this covers the running session: concurrent key releases (each consumes a nonce
durably and is audited) and the aggregator's round events (each acknowledged one is audited).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crypto.hpke import RecipientPrivateKey
from enclave.attest import report_data_for
from fedtune._proto import sessions_pb2
from fedtune.audit import AuditEvent
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment
from fedtune.orchestrator.enrolment import create_token
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.store.sqlite import SqliteRepository
from tests.orchestrator.conftest import (
    Party,
    data_key_of,
    release_policy,
    seal_model,
    simulated_tee,
    terms_for,
)
from tests.orchestrator.test_crash import ServerProcess

from ._support import audit_events, verify_audit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SID = "live"


class Parties:
    """Enrolled parties of a server process, reconnectable after a restart."""

    def __init__(self, proc: ServerProcess, root: Path, tmp: Path, ca_fingerprint: str) -> None:
        self.proc, self.root, self.tmp, self.ca = proc, root, tmp, ca_fingerprint

    def enrol(self, role: Role, name: str) -> Party:
        repo = SqliteRepository(DeploymentPaths(self.root).database)
        try:
            token = create_token(
                repo, role, name, ttl=dt.timedelta(hours=1), now=dt.datetime.now(dt.UTC)
            )
        finally:
            repo.close()
        home = self.tmp / name
        config = enrol(f"127.0.0.1:{self.proc.enrol}", token, self.ca, home)
        return Party(home, config, config.load_identity(), OrchestratorClient(config, timeout=20))

    def operator(self) -> Party:
        config = ClientConfig.load(self.root / "operator")
        return self.reconnect(Party(self.root / "operator", config, config.load_identity(),
                                    OrchestratorClient(config, timeout=20)))

    def reconnect(self, party: Party) -> Party:
        party.client.close()
        config = party.config.model_copy(update={"server": f"127.0.0.1:{self.proc.api}"})
        return Party(party.home, config, party.identity, OrchestratorClient(config, timeout=20))


def _until_refused(step: Callable[[int], None], failures: list[RemoteError]) -> None:
    n = 0
    while True:
        try:
            step(n)
        except RemoteError as exc:
            failures.append(exc)
            return
        n += 1


def test_kill_9_mid_round_then_restart_resumes_the_session_and_loses_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "deployment"
    info = init_deployment(root, hosts=["127.0.0.1", "localhost"], api_port=0, enrol_port=0)
    proc = ServerProcess(root)
    proc.start()
    try:
        world = Parties(proc, root, tmp_path, info.ca_fingerprint)
        acme = world.enrol(Role.PROVIDER, "acme")
        alice, bob = world.enrol(Role.DATA_OWNER, "alice"), world.enrol(Role.DATA_OWNER, "bob")
        operator = world.operator()
        art = seal_model(acme, tmp_path)
        acme.client.upload(art.signed, art.blob_path)
        tee = simulated_tee(tmp_path)
        acme.client.register_key(
            "acme/base", "1", data_key_of(acme, art), release_policy(acme, "acme/base", tee)
        )
        terms = terms_for(SID, acme, [alice, bob])
        acme.client.create_session(
            terms, acme.identity, [alice.identity.public.raw, bob.identity.public.raw]
        )
        acme.client.invite(terms, acme.identity)
        alice.client.accept(SID, alice.identity)
        bob.client.accept(SID, bob.identity)
        acme.client.start_session(SID)

        public = RecipientPrivateKey.generate().public_key().to_bytes()
        released: list[bytes] = []  # nonces whose release was acknowledged
        rounds: list[int] = []  # sequence numbers of acknowledged round events
        failures: list[RemoteError] = []

        def release(_: int) -> None:
            nonce = alice.client.challenge(SID)
            evidence = tee.get_evidence(report_data_for(nonce, public)).canonical_bytes()
            alice.client.release(SID, SecretKind.MODEL_DATA_KEY, evidence, public, nonce)
            released.append(nonce)

        def record_round(n: int) -> None:
            event = sessions_pb2.RoundEvent(
                kind=sessions_pb2.ROUND_EVENT_KIND_ROUND_START, round=1, details={"seq": str(n)}
            )
            operator.client.record_round_events(SID, [event])
            rounds.append(n)

        workers = [
            threading.Thread(target=_until_refused, args=(step, failures))
            for step in (release, record_round)
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while (len(released) < 5 or len(rounds) < 5) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()  # SIGKILL, mid-round, with both streams of calls in flight
        for worker in workers:
            worker.join(30)
        assert len(released) >= 5 and len(rounds) >= 5
        # What the users see: the calls in flight fail as UNAVAILABLE, nothing else.
        assert len(failures) == 2 and {f.code for f in failures} == {"UNAVAILABLE"}, failures

        # Offline, before the restart: the log verifies and holds every acknowledged step.
        verify_audit(root)
        events = [e for e in audit_events(root) if e.session == SID]
        _holds_every_acknowledged_step(events, alice, len(released), rounds)

        proc.start()
        alice, acme, operator = (world.reconnect(p) for p in (alice, acme, operator))
        info_after = acme.client.get_session(SID)
        assert info_after.state == sessions_pb2.SESSION_STATE_RUNNING
        assert {p.fingerprint for p in info_after.participants if p.accepted} >= {
            alice.fingerprint, bob.fingerprint
        }
        # A nonce spent before the kill stays spent.
        spent = released[-1]
        replay = alice.client.release_raw(
            SID, SecretKind.MODEL_DATA_KEY,
            tee.get_evidence(report_data_for(spent, public)).canonical_bytes(), public, spent,
        )
        assert replay.WhichOneof("outcome") == "refused" and "replay" in replay.refused.reason
        # The session resumes: a fresh release, the rest of the round, the end of the session.
        release(0)
        operator.client.record_round_events(
            SID, [sessions_pb2.RoundEvent(kind=sessions_pb2.ROUND_EVENT_KIND_ROUND_FINISH,
                                          round=1)]
        )
        operator.client.finish_session(SID)
        assert acme.client.get_session(SID).state == sessions_pb2.SESSION_STATE_FINISHED
        for party in (alice, acme, operator, bob):
            party.client.close()
    finally:
        proc.kill()
    report = verify_audit(root)
    assert report.size == len(audit_events(root))


def _holds_every_acknowledged_step(
    events: list[AuditEvent], alice: Party, releases: int, rounds: list[int]
) -> None:
    ok_releases = [
        e for e in events
        if e.action.value == "key-release" and e.outcome.value == "ok"
        and e.objects.party == alice.fingerprint
    ]
    assert len(ok_releases) >= releases, (len(ok_releases), releases)
    recorded = {
        int(e.details["seq"]) for e in events
        if e.action.value == "round-start" and "seq" in e.details
    }
    missing = set(rounds) - recorded
    assert not missing, f"acknowledged round events missing from the audit log: {missing}"
