"""The Flower app of bench/secagg_deployment.py: plain FedAvg vs our SecAgg+ on synthetic updates.

Travels inside the FAB (copied into the app directory), so it imports only installed packages.
Every node's update for round r is the same deterministic float32 vector in both modes
(``update_for``), so the two aggregates can be compared: the ServerApp checks that the secure
aggregate equals the plain average within the fixed-point bound.

Plain FedAvg: one message per node and round; the ClientApp answers its update as an
``ArrayRecord`` with its weight; the server averages. Ours: ``crypto.secagg`` over its four
stages, each one exchange; the ClientApp keeps its ``SecAggClient`` state between the
per-message processes in ``context.state`` (there is no sandbox in this benchmark; in fedtune
the sandbox holds that state and it never leaves it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from crypto.secagg import RoundParams, SecAggClient, SecAggServer
from crypto.secagg.messages import MessageKind

RUN_CONFIG = {
    "result-path": "",
    "nodes": 5,
    "length": 1_000_000,
    "rounds": 1,
    "node-wait-s": 120.0,
    "stage-timeout-s": 300.0,
    "poll-interval-s": 0.1,
}
SESSION = b"bench-deployment"


def update_for(node_id: int, round_number: int, length: int) -> tuple[np.ndarray, float]:
    """The synthetic update and weight of a node in a round (identical in both modes)."""
    rng = np.random.default_rng([node_id % (1 << 63), round_number])
    return rng.normal(0.0, 0.01, length).astype(np.float32), float(10 + node_id % 7)


# -- ClientApp ------------------------------------------------------------------------------------

clientapp = ClientApp()


@clientapp.train()
def plain(message: Message, context: Context) -> Message:
    """Plain FedAvg: the update itself and its weight."""
    config = message.content.config_records["bench"]
    update, weight = update_for(context.node_id, int(config["round"]), int(config["length"]))
    return Message(RecordDict({
        "update": ArrayRecord({"x": Array(update)}),
        "bench": ConfigRecord({"weight": weight}),
    }), reply_to=message)


@clientapp.query()
def secure(message: Message, context: Context) -> Message:
    """One SecAgg+ stage; the client state waits in context.state between messages."""
    config = message.content.config_records["bench"]
    request = bytes(config["request"])
    round_number, length = int(config["round"]), int(config["length"])
    # The stage is the message kind (header byte 5); the stage methods re-check the header.
    kind = MessageKind(request[5])
    if kind is MessageKind.SETUP_REQUEST:
        client = SecAggClient(context.node_id, session_id=SESSION, round_number=round_number)
    else:
        saved = bytes(context.state.config_records["secagg"]["state"])
        client = SecAggClient.restore(saved, context.node_id, session_id=SESSION,
                                      round_number=round_number)
    if kind is MessageKind.SETUP_REQUEST:
        reply = client.setup(request)
    elif kind is MessageKind.SHARE_KEYS_REQUEST:
        reply = client.share_keys(request)
    elif kind is MessageKind.COLLECT_REQUEST:
        update, weight = update_for(context.node_id, round_number, length)
        reply = client.collect_masked_vector(request, update, weight)
    else:
        reply = client.unmask(request)
    context.state["secagg"] = ConfigRecord({"state": client.export_state()})
    return Message(RecordDict({"bench": ConfigRecord({"reply": reply})}), reply_to=message)


# -- ServerApp ------------------------------------------------------------------------------------

serverapp = ServerApp()


def _exchange(grid: Grid, contents: dict[int, RecordDict], kind: str, round_number: int,
              timeout_s: float, poll_s: float) -> dict[int, RecordDict]:
    messages = [Message(c, dst_node_id=n, message_type=kind, group_id=str(round_number),
                        ttl=timeout_s + 60) for n, c in contents.items()]
    ids = list(grid.push_messages(messages))
    where = dict(zip(ids, contents, strict=True))
    pending, replies = set(ids), {}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for reply in grid.pull_messages(list(pending)):
            pending.discard(reply.metadata.reply_to_message_id)
            if reply.has_error():
                raise RuntimeError(f"node {where[reply.metadata.reply_to_message_id]}: "
                                   f"{reply.error.reason}")
            replies[where[reply.metadata.reply_to_message_id]] = reply.content
        if pending:
            time.sleep(poll_s)
    if pending:
        raise RuntimeError(f"{len(pending)} node(s) did not answer within {timeout_s} s")
    return replies


def _plain_round(grid: Grid, nodes: list[int], r: int, m: int, timeout: float,
                 poll: float) -> np.ndarray:
    contents = {n: RecordDict({"bench": ConfigRecord({"round": r, "length": m})}) for n in nodes}
    replies = _exchange(grid, contents, MessageType.TRAIN, r, timeout, poll)
    total = np.zeros(m, dtype=np.float64)
    weights = 0.0
    for content in replies.values():
        weight = float(content.config_records["bench"]["weight"])
        total += weight * content.array_records["update"]["x"].numpy()
        weights += weight
    return total / weights


def _secure_round(grid: Grid, nodes: list[int], r: int, m: int, timeout: float,
                  poll: float) -> tuple[np.ndarray, float]:
    server = SecAggServer(RoundParams.create(SESSION, r, nodes, m))

    def stage(requests: dict[int, bytes]) -> dict[int, bytes]:
        contents = {n: RecordDict({"bench": ConfigRecord({"round": r, "length": m,
                                                          "request": q})})
                    for n, q in requests.items()}
        replies = _exchange(grid, contents, MessageType.QUERY, r, timeout, poll)
        return {n: bytes(c.config_records["bench"]["reply"]) for n, c in replies.items()}

    server.receive_setup(stage(server.setup_requests()))
    server.receive_share_keys(stage(server.share_keys_requests()))
    server.receive_masked_vectors(stage(server.collect_requests()))
    result = server.receive_unmask(stage(server.unmask_requests()))
    return result.average, result.error_bound


@serverapp.main()
def main(grid: Grid, context: Context) -> None:
    """Interleave plain and secure rounds on the same updates; write the timings."""
    cfg = context.run_config
    expected, m, rounds = int(cfg["nodes"]), int(cfg["length"]), int(cfg["rounds"])
    timeout, poll = float(cfg["stage-timeout-s"]), float(cfg["poll-interval-s"])
    deadline = time.monotonic() + float(cfg["node-wait-s"])
    while len(nodes := sorted(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {expected} nodes connected")
        time.sleep(0.2)
    out: dict[str, object] = {"nodes": len(nodes), "length": m, "plain_s": [], "secagg_s": [],
                              "max_error": [], "bound": []}
    for r in range(1, rounds + 1):
        for mode in ("plain", "secagg") if r % 2 else ("secagg", "plain"):
            started = time.perf_counter()
            if mode == "plain":
                plain = _plain_round(grid, nodes, r, m, timeout, poll)
            else:
                secure, bound = _secure_round(grid, nodes, r, m, timeout, poll)
            out[f"{mode}_s"].append(time.perf_counter() - started)  # type: ignore[union-attr]
        out["max_error"].append(float(np.abs(secure - plain).max()))  # type: ignore[union-attr]
        out["bound"].append(float(bound))  # type: ignore[union-attr]
    path = Path(str(cfg["result-path"]))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
