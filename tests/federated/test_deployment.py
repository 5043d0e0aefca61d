"""Real SuperLink + SuperNodes on 127.0.0.1 running the harness app, then nothing left over."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fedtune.federated.appdir import AppDir
from fedtune.federated.deployment import (
    SUPERLINK,
    Deployment,
    SuperNodeSpec,
    TlsCertificates,
    write_supernode_auth_key,
)
from fedtune.federated.errors import ProcessStartError, RunFailedError, RunTimeoutError

from .conftest import LineServer, assert_no_processes_left
from .tlsfiles import write_ca_and_server_cert

OWNERS = {"alice": 1.0, "bob": 2.0, "carol": 3.0}
ARRAY_SIZE = 4  # arange(4) * round sums to 6 * round


def _family(deployment: Deployment) -> set[int]:
    pids: set[int] = set()
    for name in [SUPERLINK, *deployment.nodes]:
        pids.update(deployment.process_ids(name))
    return pids


@pytest.mark.deployment
def test_three_owners_two_rounds(tmp_path: Path, harness_dir: AppDir,
                                 line_server: LineServer) -> None:
    result_path = tmp_path / "result.json"
    workdir = tmp_path / "deployment"
    with Deployment(workdir, env={"FEDTUNE_HARNESS_PROBE": "deployment-wide"}) as deployment:
        link = deployment.start_superlink()
        nodes = deployment.add_supernodes([
            SuperNodeSpec(owner, {"owner": owner, "scale": scale,
                                  "socket-path": str(line_server.path)},
                          env={"FEDTUNE_HARNESS_PROBE": f"env-of-{owner}"})
            for owner, scale in OWNERS.items()
        ])
        spawned = _family(deployment)
        result = deployment.run(harness_dir, run_config={
            "result-path": str(result_path), "expected-nodes": 3, "num-rounds": 2,
            "array-size": ARRAY_SIZE}, timeout_s=300)
        spawned |= _family(deployment)
        deployment_id = deployment.deployment_id

    assert_no_processes_left(deployment_id, workdir, spawned)
    assert result.completed and result.status == "finished:completed"
    assert result.details == ""
    assert result.log_path.is_file()
    assert link.port > 0 and {n.name for n in nodes} == set(OWNERS)

    out = json.loads(result_path.read_text())
    node_of = {n.name: str(n.node_id) for n in nodes}
    assert sorted(n["node-id"] for n in out["nodes"]) == sorted(node_of.values())
    # The ServerApp runs in the SuperLink's directory and environment.
    assert out["server"]["cwd"] == str(workdir / "superlink")
    assert out["server"]["env-probe"] == "deployment-wide"
    assert out["server"]["run-id"] == result.run_id

    assert [r["round"] for r in out["rounds"]] == [1, 2]
    previous_pid = {}
    for rnd in out["rounds"]:
        assert rnd["missing"] == []
        by_owner = {r["owner"]: r for r in rnd["replies"]}
        assert set(by_owner) == set(OWNERS)
        for owner, scale in OWNERS.items():
            reply = by_owner[owner]
            expected_sum = 6.0 * rnd["round"] * scale
            assert reply["sum"] == expected_sum
            assert reply["n"] == ARRAY_SIZE
            # node id <-> owner: what the SuperLink routed to is what the harness started.
            assert reply["src-node-id"] == reply["node-id"] == node_of[owner]
            assert reply["env-probe"] == f"env-of-{owner}"
            assert reply["cwd"] == str(workdir / "nodes" / owner)
            assert reply["sys-path-0"].startswith(str(workdir / "nodes" / owner / "flwr-home"))
            assert reply["socket-reply"] == f"ack {owner} {expected_sum}"
            # Context.state carries across the per-message ClientApp processes...
            assert reply["calls"] == rnd["round"]
            # ...which are fresh processes, children of the same SuperExec.
            if owner in previous_pid:
                assert reply["pid"] != previous_pid[owner][0]
                assert reply["ppid"] == previous_pid[owner][1]
            previous_pid[owner] = (reply["pid"], reply["ppid"])
    assert sorted(line_server.lines) == sorted(
        f"{o} {6.0 * r * s}" for o, s in OWNERS.items() for r in (1, 2))


@pytest.mark.deployment
def test_failures_are_reported(tmp_path: Path, harness_dir: AppDir) -> None:
    workdir = tmp_path / "deployment"
    with Deployment(workdir) as deployment:
        deployment.start_superlink()
        deployment.add_supernodes([SuperNodeSpec("alice", {"owner": "alice"})])

        # A misspelt run-config key is refused before anything is submitted.
        with pytest.raises(ValueError, match="num-round"):
            deployment.submit(harness_dir, run_config={"num-round": 1})

        # A ServerApp exception ends the run as finished:failed, with the reason.
        with pytest.raises(RunFailedError) as failed:
            deployment.run(harness_dir, run_config={
                "result-path": str(tmp_path / "never.json"), "expected-nodes": 1,
                "fail-at-round": 1}, timeout_s=180)
        assert failed.value.status == "finished:failed"
        assert "harness app asked to fail at round 1" in failed.value.details
        assert "RuntimeError" in failed.value.log_tail
        assert not (tmp_path / "never.json").exists()

        # A run still going at its time limit is stopped, and says so.
        slow = deployment.submit(harness_dir, run_config={
            "result-path": str(tmp_path / "slow.json"), "expected-nodes": 1,
            "client-sleep-s": 120.0})
        with pytest.raises(RunTimeoutError) as late:
            deployment.wait(slow, timeout_s=5)
        assert late.value.run_id == slow
        stopped = deployment.wait(slow, timeout_s=60, check=False)
        assert stopped.status == "finished:stopped" and not stopped.completed
        deployment_id = deployment.deployment_id
    assert_no_processes_left(deployment_id, workdir, set())


@pytest.mark.deployment
def test_tls_with_supernode_authentication(tmp_path: Path, harness_dir: AppDir,
                                           tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    keys = {}
    for owner in ("alice", "bob"):
        write_supernode_auth_key(tmp_path / "keys" / owner)
        keys[owner] = tmp_path / "keys" / owner
    workdir = tmp_path / "operator"
    with Deployment(workdir, tls=TlsCertificates(ca, cert, key),
                    supernode_auth=True) as deployment:
        deployment.start_superlink()
        assert "insecure = false" in (workdir / "cli" / "config.toml").read_text()
        nodes = {n.name: n for n in deployment.add_supernodes(
            [SuperNodeSpec(o, {"owner": o}, auth_key=keys[o]) for o in keys])}
        result = deployment.run(harness_dir, run_config={
            "result-path": str(tmp_path / "r.json"), "expected-nodes": 2, "num-rounds": 1},
            timeout_s=240)
        assert result.completed
        out = json.loads((tmp_path / "r.json").read_text())
        # With registered keys the ServerApp learns each node's owner from the SuperLink.
        assert {n["name"]: n["node-id"] for n in out["nodes"]} == {
            o: str(n.node_id) for o, n in nodes.items()}
        assert {r["owner"]: r["sum"] for r in out["rounds"][0]["replies"]} == {
            "alice": 6.0, "bob": 6.0}

        deployment_id = deployment.deployment_id
    assert_no_processes_left(deployment_id, workdir, set())


@pytest.mark.deployment
def test_owner_side_supernodes(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    """The multi-host layout: owners run only a SuperNode against the operator's SuperLink.

    The owner's side knows the SuperLink's address and CA and holds its own key; the
    operator registered the public half. A key never registered, or a SuperLink certificate
    from another CA, is refused, and the error names the SuperNode.
    """
    ca, cert, key = tls_files
    alice_pub = write_supernode_auth_key(tmp_path / "keys" / "alice")
    write_supernode_auth_key(tmp_path / "keys" / "mallory")
    other_ca, _, _ = write_ca_and_server_cert(tmp_path / "other", ca_name="someone else")
    with Deployment(tmp_path / "operator", tls=TlsCertificates(ca, cert, key),
                    supernode_auth=True) as operator:
        link = operator.start_superlink()
        registered = operator.register_supernode(alice_pub, "alice")
        with Deployment(tmp_path / "owner", tls=TlsCertificates(ca),
                        superlink_address=link.address, startup_timeout_s=30) as owner:
            (node,) = owner.add_supernodes([SuperNodeSpec(
                "alice", {"owner": "alice"}, auth_key=tmp_path / "keys" / "alice")])
            assert node.node_id == registered
            with pytest.raises(ProcessStartError, match="mallory") as unknown_key:
                owner.add_supernodes([SuperNodeSpec(
                    "mallory", {"owner": "mallory"}, auth_key=tmp_path / "keys" / "mallory")])
            assert unknown_key.value.returncode not in (None, 0)
            assert "Failed to activate SuperNode" in unknown_key.value.log_tail
            owner_id = owner.deployment_id
        with Deployment(tmp_path / "intruder", tls=TlsCertificates(other_ca),
                        superlink_address=link.address, startup_timeout_s=15) as intruder:
            started = time.monotonic()
            with pytest.raises(ProcessStartError, match="eve") as wrong_ca:
                intruder.add_supernodes([SuperNodeSpec(
                    "eve", {"owner": "eve"}, auth_key=tmp_path / "keys" / "alice")])
            assert time.monotonic() - started < 60
            assert "CERTIFICATE_VERIFY_FAILED" in wrong_ca.value.log_tail
            intruder_id = intruder.deployment_id
        operator_id = operator.deployment_id
    for deployment_id, name in ((owner_id, "owner"), (intruder_id, "intruder"),
                                (operator_id, "operator")):
        assert_no_processes_left(deployment_id, tmp_path / name, set())


def _wait_for_clientapp(deployment: Deployment, owner: str, timeout_s: float = 90.0) -> None:
    """Block until a flwr-clientapp process of ``owner``'s SuperNode is running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in deployment.process_ids(owner):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"flwr-clientapp" in cmdline:
                return
        time.sleep(0.1)
    raise AssertionError(f"no ClientApp of {owner} started within {timeout_s} s")


def _replies(path: Path, rnd: int) -> dict[str, dict[str, object]]:
    out = json.loads(path.read_text())
    return {r["node-id"]: r for r in out["rounds"][rnd - 1]["replies"]}


@pytest.mark.deployment
@pytest.mark.slow
def test_supernode_dropout_and_restarts(tmp_path: Path, harness_dir: AppDir) -> None:
    workdir = tmp_path / "deployment"
    common = {"expected-nodes": 2, "client-sleep-s": 8.0, "round-timeout-s": 200.0}
    with Deployment(workdir) as deployment:
        link = deployment.start_superlink()
        nodes = {n.name: n for n in deployment.add_supernodes(
            [SuperNodeSpec(o, {"owner": o}) for o in ("alice", "bob")])}

        # kill -9 of a whole SuperNode while its ClientApp works: the ServerApp gets an
        # error reply (NODE_UNAVAILABLE) once the node's heartbeat window has passed.
        run1 = deployment.submit(harness_dir, run_config={
            **common, "result-path": str(tmp_path / "r1.json"), "num-rounds": 2})
        _wait_for_clientapp(deployment, "bob")
        deployment.kill("bob")
        assert not deployment.is_running("bob") and deployment.process_ids("bob") == []
        assert deployment.wait(run1, timeout_s=300).completed
        alice_id, bob_id = str(nodes["alice"].node_id), str(nodes["bob"].node_id)
        for rnd in (1, 2):
            replies = _replies(tmp_path / "r1.json", rnd)
            assert replies[alice_id]["owner"] == "alice"
            assert replies[bob_id]["error-code"] == 5  # ErrorCode.NODE_UNAVAILABLE

        # A SuperNode without an auth key comes back under a new node id.
        bob = deployment.restart("bob")
        assert bob.node_id != nodes["bob"].node_id

        # A graceful stop deactivates the node at once: the error reply needs no heartbeat.
        run2 = deployment.submit(harness_dir, run_config={
            **common, "result-path": str(tmp_path / "r2.json"), "num-rounds": 1})
        _wait_for_clientapp(deployment, "alice")
        deployment.stop("alice")
        assert deployment.wait(run2, timeout_s=300).completed
        replies = _replies(tmp_path / "r2.json", 1)
        assert replies[alice_id]["error-code"] == 5
        assert replies[str(bob.node_id)]["owner"] == "bob"
        alice = deployment.restart("alice")

        # A ClientApp exception reaches the ServerApp as an error reply; the run completes.
        result = deployment.run(harness_dir, run_config={
            "result-path": str(tmp_path / "r4.json"), "expected-nodes": 2, "num-rounds": 1,
            "client-raise-owner": "alice"}, timeout_s=300)
        assert result.completed
        replies = _replies(tmp_path / "r4.json", 1)
        assert replies[str(alice.node_id)]["error-code"] == 2  # CLIENT_APP_RAISED_EXCEPTION
        assert "asked to raise" in replies[str(alice.node_id)]["error-reason"]
        assert replies[str(bob.node_id)]["sum"] == 6.0

        # The SuperLink comes back on its port with its state; the SuperNodes reconnect.
        again = deployment.restart(SUPERLINK)
        assert again.port == link.port
        result = deployment.run(harness_dir, run_config={
            "result-path": str(tmp_path / "r3.json"), "expected-nodes": 2, "num-rounds": 1,
            "node-wait-s": 120.0}, timeout_s=300)
        assert result.completed
        replies = _replies(tmp_path / "r3.json", 1)
        assert {r["owner"] for r in replies.values()} == {"alice", "bob"}
        assert set(replies) == {str(alice.node_id), str(bob.node_id)}
        deployment_id = deployment.deployment_id
    assert_no_processes_left(deployment_id, workdir, set())
