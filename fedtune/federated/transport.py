"""One stage of a round over Flower's Grid: push a batch to each node, pull replies by a deadline.

Flower's ``Grid.send_and_receive`` sleeps 3 s between pulls; fedtune pushes with
``push_messages`` and polls ``pull_messages`` at its own pace (DEPLOYMENT-NOTES.md section 3).
Every stage has a deadline: a node whose reply has not arrived by then, or whose reply is a
Flower error (a dead SuperNode reports ``NODE_UNAVAILABLE``, a ClientApp that raised reports
``CLIENT_APP_RAISED_EXCEPTION``), has dropped for this stage; the outcome says why, so the
aggregator can put the reason on the record.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from fedtune.federated.messages import CallBatch, CallReplies, MessageFormatError

__all__ = [
    "Dropped",
    "Exchange",
    "FlowerExchange",
    "NodeView",
    "Outcome",
    "Stage",
    "online_ids",
]

# A message outlives its stage by this much: long enough to be delivered to a slow node, short
# enough that a stale one does not wait in the SuperLink for Flower's default 12 hours.
TTL_MARGIN_S = 60.0


class Stage(enum.StrEnum):
    """A stage of a session, named as the audit log names it."""

    EVALUATE_BEFORE = "evaluate-before"
    TRAIN = "train"  # train + the first aggregation stage (secagg setup, or CKKS encryption)
    SHARE_KEYS = "share_keys"
    COLLECT = "collect_masked_vectors"
    UNMASK = "unmask"
    EVALUATE_AFTER = "evaluate-after"


@dataclass(frozen=True)
class Dropped:
    """No usable reply from a node at a stage; ``reason`` says what happened instead."""

    reason: str
    malformed: bool = False  # a reply came, but not a fedtune reply


Outcome = CallReplies | Dropped


@dataclass(frozen=True)
class NodeView:
    """A SuperNode as the SuperLink lists it: id, authentication public key (PEM), name."""

    node_id: int
    public_key: bytes
    name: str
    online: bool


class Exchange(Protocol):
    """Carries one stage's batches to the owners' relays and their replies back."""

    def nodes(self) -> list[NodeView]:
        """The SuperNodes the SuperLink knows, online or not."""
        ...

    def exchange(
        self,
        stage: Stage,
        batches: Mapping[int, CallBatch],
        *,
        round_number: int,
        timeout_s: float,
    ) -> dict[int, Outcome]:
        """Send each node its batch; every node of ``batches`` gets an outcome by the deadline."""
        ...


def _message_type(stage: Stage) -> str:
    from flwr.app import MessageType

    if stage is Stage.TRAIN:
        return MessageType.TRAIN
    if stage in (Stage.EVALUATE_BEFORE, Stage.EVALUATE_AFTER):
        return MessageType.EVALUATE
    return MessageType.QUERY


class FlowerExchange:
    """An :class:`Exchange` over a ServerApp's ``Grid`` (push, then poll at ``poll_interval_s``)."""

    def __init__(self, grid: object, *, poll_interval_s: float = 0.2) -> None:
        if isinstance(poll_interval_s, bool) or not isinstance(poll_interval_s, int | float):
            raise TypeError("poll_interval_s must be a number of seconds")
        if not 0.01 <= poll_interval_s <= 10:
            raise ValueError("poll_interval_s must be in [0.01, 10] seconds")
        self._grid = grid
        self._poll = float(poll_interval_s)

    def nodes(self) -> list[NodeView]:
        """Every node of the SuperLink, with its registered key and whether it is online."""
        online = set(self._grid.get_node_ids())  # type: ignore[attr-defined]
        views = []
        for info in self._grid.get_nodes():  # type: ignore[attr-defined]
            views.append(
                NodeView(int(info.node_id), bytes(info.public_key), str(info.name),
                         int(info.node_id) in online)
            )
        known = {v.node_id for v in views}
        # get_nodes lists online nodes; a node id may be online before its info shows.
        views += [NodeView(n, b"", "", True) for n in sorted(online - known)]
        return views

    def exchange(
        self,
        stage: Stage,
        batches: Mapping[int, CallBatch],
        *,
        round_number: int,
        timeout_s: float,
    ) -> dict[int, Outcome]:
        """Push every batch, pull until all replied or ``timeout_s`` passed."""
        from flwr.app import Message

        if not batches:
            return {}
        if not 0 < timeout_s <= 24 * 3600:
            raise ValueError("timeout_s must be in (0, 86400]")
        kind = _message_type(stage)
        nodes = list(batches)
        messages = [
            Message(batches[n].to_content(), dst_node_id=n, message_type=kind,
                    group_id=str(round_number), ttl=timeout_s + TTL_MARGIN_S)
            for n in nodes
        ]
        started = time.monotonic()
        ids = list(self._grid.push_messages(messages))  # type: ignore[attr-defined]
        destination = dict(zip(ids, nodes, strict=True))
        outcomes: dict[int, Outcome] = {}
        pending = set(ids)
        deadline = started + timeout_s
        while pending and time.monotonic() < deadline:
            for reply in self._grid.pull_messages(list(pending)):  # type: ignore[attr-defined]
                message_id = reply.metadata.reply_to_message_id
                if message_id not in pending:
                    continue
                pending.discard(message_id)
                outcomes[destination[message_id]] = _outcome(reply)
            if pending:
                time.sleep(self._poll)
        for message_id in pending:
            outcomes[destination[message_id]] = Dropped(
                f"no reply within {timeout_s:.0f} s at stage {stage.value}"
            )
        return outcomes


def _outcome(reply: object) -> Outcome:
    from flwr.common.constant import ErrorCode

    if reply.has_error():  # type: ignore[attr-defined]
        error = reply.error  # type: ignore[attr-defined]
        names = {v: k for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, int)}
        name = names.get(int(error.code), "UNKNOWN")
        return Dropped(f"Flower error {error.code} ({name}): {str(error.reason)[:500]}")
    try:
        return CallReplies.from_content(reply.content)  # type: ignore[attr-defined]
    except MessageFormatError as exc:
        return Dropped(f"the relay's reply is malformed: {exc}", malformed=True)


def online_ids(nodes: Iterable[NodeView]) -> set[int]:
    """The ids of the online nodes."""
    return {n.node_id for n in nodes if n.online}
