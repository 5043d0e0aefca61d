"""A small real Flower app for the deployment harness tests: arrays out, owners and sums back.

The ServerApp waits for ``expected-nodes`` SuperNodes, then for ``num-rounds`` rounds sends
each node the array ``arange(array-size) * round`` and collects, per node, what the
ClientApp reports: its owner (node config), ``sum(array) * scale`` (node config), and facts
about the process it ran in (pid, parent, cwd, an environment variable, its call count kept
in ``context.state``). The result goes to the JSON file named by ``result-path``.

This module travels inside the FAB (its name must not match ``test_*.py``, which Flower
leaves out of FABs).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

RUN_CONFIG = {
    "result-path": "",
    "num-rounds": 2,
    "expected-nodes": 3,
    "array-size": 4,
    "node-wait-s": 60.0,
    "round-timeout-s": 120.0,
    # 0 uses Grid.send_and_receive (which sleeps 3 s between pulls); > 0 polls
    # Grid.pull_messages at that interval.
    "poll-interval-s": 0.2,
    "fail-at-round": 0,
    "client-sleep-s": 0.0,
    # The ClientApp of this owner raises instead of answering.
    "client-raise-owner": "",
    "env-probe": "FEDTUNE_HARNESS_PROBE",
}

clientapp = ClientApp()


@clientapp.query()
def answer(msg: Message, context: Context) -> Message:
    """Report owner, scaled sum and where this ClientApp process runs."""
    started = time.time()
    owner = str(context.node_config.get("owner", ""))
    if owner and owner == context.run_config["client-raise-owner"]:
        raise RuntimeError(f"harness ClientApp of {owner} asked to raise")
    x = msg.content.array_records["x"]["x"].numpy()
    scale = float(context.node_config.get("scale", 1.0))
    sleep_s = float(context.run_config["client-sleep-s"])
    if sleep_s > 0:
        time.sleep(sleep_s)
    # Context.state survives between the per-message processes only if Flower carries it.
    counter = context.state.config_records.get("harness", ConfigRecord({"calls": 0}))
    counter["calls"] = int(counter["calls"]) + 1
    context.state["harness"] = counter
    probe = str(context.run_config["env-probe"])
    socket_path = str(context.node_config.get("socket-path", ""))
    info = ConfigRecord({
        "owner": owner,
        "socket-path": socket_path,
        "socket-reply": _ask_unix_socket(socket_path, f"{owner} {x.sum() * scale}"),
        "env-probe": os.environ.get(probe, "<unset>"),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "sys-path-0": sys.path[0],
        "calls": int(counter["calls"]),
        "node-id": str(context.node_id),
        "started-at": started,
    })
    metrics = MetricRecord({"sum": float(x.sum()) * scale, "n": int(x.size)})
    return Message(RecordDict({"info": info, "metrics": metrics}), reply_to=msg)


def _ask_unix_socket(path: str, line: str) -> str:
    """Send one line to a Unix socket named by node config; return its one-line answer."""
    if not path:
        return ""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5.0)
        conn.connect(path)
        conn.sendall(line.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode().strip()


serverapp = ServerApp()


@serverapp.main()
def main(grid: Grid, context: Context) -> None:
    """Send arrays to every node for a few rounds and write what came back."""
    cfg = context.run_config
    result_path = Path(str(cfg["result-path"]))
    if not result_path.is_absolute():
        raise ValueError(f"result-path must be absolute, got {result_path!s}")
    expected = int(cfg["expected-nodes"])
    deadline = time.monotonic() + float(cfg["node-wait-s"])
    while len(node_ids := sorted(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(node_ids)} of {expected} nodes connected")
        time.sleep(0.2)
    nodes = {n.node_id: n for n in grid.get_nodes()}
    out = {
        "run-config": dict(cfg),
        "server": {"pid": os.getpid(), "cwd": os.getcwd(),
                   "env-probe": os.environ.get(str(cfg["env-probe"]), "<unset>"),
                   "run-id": grid.run.run_id},
        "nodes": [{"node-id": str(i), "name": nodes[i].name if i in nodes else "",
                   "status": nodes[i].status if i in nodes else ""} for i in node_ids],
        "rounds": [],
    }
    for rnd in range(1, int(cfg["num-rounds"]) + 1):
        if rnd == int(cfg["fail-at-round"]):
            raise RuntimeError(f"harness app asked to fail at round {rnd}")
        x = np.arange(int(cfg["array-size"]), dtype=np.float64) * rnd
        messages = [
            Message(RecordDict({"x": ArrayRecord({"x": Array(x)})}), dst_node_id=node_id,
                    message_type=MessageType.QUERY, group_id=str(rnd))
            for node_id in node_ids
        ]
        started = time.monotonic()
        replies, missing = _exchange(grid, messages, float(cfg["round-timeout-s"]),
                                     float(cfg["poll-interval-s"]))
        elapsed = time.monotonic() - started
        out["rounds"].append({"round": rnd, "seconds": elapsed, "sent-sum": float(x.sum()),
                              "replies": replies, "missing": missing})
    tmp = result_path.with_name(result_path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, result_path)


def _exchange(grid: Grid, messages: list[Message], timeout_s: float,
              poll_s: float) -> tuple[list[dict[str, object]], list[str]]:
    """Send, then collect replies (or error replies) until all are in or time runs out."""
    destination = {}
    if poll_s <= 0:
        for m in messages:
            destination[m.object_id] = m.metadata.dst_node_id
        got = [(m, time.time()) for m in grid.send_and_receive(messages, timeout=timeout_s)]
        pending = set(destination) - {m.metadata.reply_to_message_id for m, _ in got}
    else:
        ids = list(grid.push_messages(messages))
        destination = {i: m.metadata.dst_node_id for i, m in zip(ids, messages, strict=True)}
        pending = set(ids)
        got: list[tuple[Message, float]] = []
        end = time.monotonic() + timeout_s
        while pending and time.monotonic() < end:
            for reply in grid.pull_messages(list(pending)):
                pending.discard(reply.metadata.reply_to_message_id)
                got.append((reply, time.time()))
            if pending:
                time.sleep(poll_s)
    replies = []
    for reply, received_at in got:
        node = destination.get(reply.metadata.reply_to_message_id, 0)
        if reply.has_error():
            replies.append({"node-id": str(node), "error-code": int(reply.error.code),
                            "error-reason": reply.error.reason, "received-at": received_at})
            continue
        record = {k: v for k, v in reply.content.config_records["info"].items()}
        record.update(reply.content.metric_records["metrics"])
        record["src-node-id"] = str(reply.metadata.src_node_id)
        record["received-at"] = received_at
        replies.append(record)
    return replies, sorted(str(destination[i]) for i in pending)
