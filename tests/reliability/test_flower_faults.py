"""kill -9 of an owner's SuperNode, or of its sandbox, mid-round, in a real deployment (TLS
SuperLink, sandboxes under bubblewrap, secure aggregation with threshold 2 of 3).

tests/federated/test_session_faults.py stops sandboxes gracefully; here the SuperNode (its
sandbox living on) or the sandbox runtime dies with SIGKILL right after the owner trained: the
aggregator must drop that owner at the next stage, commit the survivors' sum, finish the session
with the dropout on the record, and leave an audit log that verifies.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fedtune._proto import sessions_pb2
from fedtune.owner import OwnerAgent
from fedtune.sandbox_client import SandboxClient
from tests.federated.session_world import SessionWorld

from ._support import verify_audit

pytestmark = [pytest.mark.slow, pytest.mark.deployment, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionWorld]:
    from enclave.sandbox import bubblewrap_problem

    problem = bubblewrap_problem()
    if problem is not None:
        pytest.skip(f"real sandboxes need bubblewrap: {problem}")
    w = SessionWorld(Path(tmp_path_factory.mktemp("flower-faults")))
    try:
        yield w
    finally:
        w.stop()


def kill_when_trained(
    owner: int, target: str, *, timeout_s: float = 300.0
) -> Callable[[list[OwnerAgent]], list[str]]:
    """A ``during`` hook: once the owner's sandbox trained round 1, SIGKILL ``target``
    (its SuperNode, or the sandbox runtime itself: no graceful stop, no flush)."""

    def hook(agents: list[OwnerAgent]) -> list[str]:
        agent = agents[owner]
        assert agent.sandbox is not None and agent.supernode is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with SandboxClient(agent.sandbox.socket_path, timeout=5) as client:
                trained = client.status().last_round >= 1
            if trained:
                if target == "supernode":
                    pid = agent.supernode.pid
                else:
                    pid = agent.sandbox.sandbox_pid or agent.sandbox.pid
                os.kill(pid, signal.SIGKILL)
                return [agent.config.fingerprint]
            time.sleep(0.2)
        return []

    return hook


@pytest.mark.parametrize("target", ["supernode", "sandbox"])
def test_kill_9_mid_round_drops_the_owner_and_the_session_finishes(
    world: SessionWorld, target: str
) -> None:
    terms = world.new_session(rounds=1)
    run = world.run(terms, during=kill_when_trained(0, target))
    for agent in run.agents:
        agent.close()
    gone = world.owners[0].fingerprint
    assert run.killed == [gone]
    # What the users see: the session finishes; the report names the dropped owner.
    assert run.result.completed, run.result.details
    assert run.report.status == "finished", run.report.reason
    (record,) = run.report.rounds
    assert gone in record.dropped
    assert sorted(record.participants) == sorted(o.fingerprint for o in world.owners[1:])
    events = world.events(run.session_id)
    dropouts = [e for e in events if e.action.value == "dropout"]
    assert dropouts and {e.objects.party for e in dropouts} == {gone}
    assert [e for e in events if e.action.value == "aggregate-commit"]
    verify_audit(world.root)


def test_kill_9_of_the_superlink_mid_round_fails_the_run_at_once_and_loses_nothing(
    world: SessionWorld,
) -> None:
    """Last in this module: it leaves the world without a SuperLink."""
    from fedtune.federated.deployment import SUPERLINK
    from fedtune.federated.errors import ProcessDiedError

    assert world.runner is not None and world.runner.deployment is not None
    deployment = world.runner.deployment
    terms = world.new_session(rounds=1)

    def kill_superlink(agents: list[OwnerAgent]) -> list[str]:
        agent = agents[0]
        assert agent.sandbox is not None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with SandboxClient(agent.sandbox.socket_path, timeout=5) as client:
                if client.status().last_round >= 1:
                    os.kill(deployment.process_ids(SUPERLINK)[0], signal.SIGKILL)
                    return ["superlink"]
            time.sleep(0.2)
        return []

    before = len(world.events(terms.session_id))
    # What the operator sees: the run fails at once (not at the run timeout), naming the
    # SuperLink and how it died.
    started = time.monotonic()
    with pytest.raises(ProcessDiedError) as died:
        world.run(terms, during=kill_superlink)
    assert time.monotonic() - started < 600
    assert died.value.returncode == -signal.SIGKILL
    assert "superlink" in str(died.value).lower()
    # Nothing acknowledged is lost: the session and everything on the record stay as they
    # were; the operator ends it with the reason, on the record.
    info = world.operator.client.get_session(terms.session_id)
    assert info.state == sessions_pb2.SESSION_STATE_RUNNING
    assert len(world.events(terms.session_id)) >= before
    world.operator.client.cancel_session(terms.session_id, "the SuperLink died mid-round")
    cancelled = world.operator.client.get_session(terms.session_id)
    assert cancelled.state == sessions_pb2.SESSION_STATE_CANCELLED
    last = world.events(terms.session_id)[-1]
    assert last.action.value == "session-cancel" and "SuperLink died" in (last.reason or "")
    verify_audit(world.root)
