"""Drive Flower's stock fit workflows (SecAgg+, plain FedAvg) in one process, without network.

``DirectGrid`` is a ``flwr.serverapp.grid.Grid`` whose ``send_and_receive`` hands every
message straight to the destination node's ``ClientApp`` (with its own persistent
``Context``, as a SuperNode keeps it) and returns the replies: no SuperLink, no sleeps,
no serialisation of the message envelope. Each delivered message gets its own copy of
the config records, as it would after crossing the wire (``secaggplus_mod`` pops keys
from the incoming ConfigRecord, and the workflow sends one shared RecordDict to all
nodes); array records are shared read-only.

What runs is Flower's code as shipped: ``SecAggPlusWorkflow`` (or
``default_fit_workflow``) with a ``FedAvg`` strategy on the server, and a ``ClientApp``
built from a ``NumPyClient`` (with ``secaggplus_mod`` for secure aggregation) on each node.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.server_config import ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.default_workflows import default_fit_workflow
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

RUN_ID = 1


class _FixedUpdateClient(NumPyClient):
    """A client whose 'training' returns a precomputed update and example count."""

    def __init__(self, update: np.ndarray, num_examples: int) -> None:
        self.update = update
        self.num_examples = num_examples

    def fit(self, parameters, config):  # Flower's NumPyClient signature
        return [self.update], self.num_examples, {}


def _copy_for_delivery(message: Message, message_id: str) -> Message:
    """The message as the node would receive it: own metadata and own config records."""
    content = message.content
    records: dict[str, object] = {}
    for name, record in content.array_records.items():
        records[name] = record
    for name, record in content.config_records.items():
        records[name] = ConfigRecord(dict(record))
    for name, record in content.metric_records.items():
        records[name] = record
    metadata = copy.copy(message.metadata)
    metadata.__dict__["_message_id"] = message_id
    metadata.__dict__["_run_id"] = RUN_ID
    return Message(content=RecordDict(records), metadata=metadata)


class DirectGrid(Grid):
    """A Grid that delivers each message synchronously to an in-process ClientApp."""

    def __init__(self, nodes: Mapping[int, tuple[ClientApp, Context]]) -> None:
        self._nodes = dict(nodes)
        self._run = Run.create_empty(RUN_ID)
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            app, context = self._nodes[message.metadata.dst_node_id]
            reply = app(_copy_for_delivery(message, message_id), context)
            self._replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def _client_fn(update: np.ndarray, weight: int):
    def client_fn(context: Context):
        return _FixedUpdateClient(update, weight).to_client()

    return client_fn


def _nodes(
    updates: Mapping[int, np.ndarray], weights: Mapping[int, int], *, secure: bool
) -> dict[int, tuple[ClientApp, Context]]:
    nodes = {}
    for node_id, update in updates.items():
        client_fn = _client_fn(update, int(weights[node_id]))
        app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod] if secure else [])
        context = Context(
            run_id=RUN_ID, node_id=node_id, node_config={}, state=RecordDict(), run_config={}
        )
        nodes[node_id] = (app, context)
    return nodes


class FlowerRound:
    """One fit round of Flower's stock workflow over in-process nodes, ready to run."""

    def __init__(
        self,
        updates: Mapping[int, np.ndarray],
        weights: Mapping[int, int],
        *,
        secure: bool,
        num_shares: int = 0,
        threshold: int = 0,
    ) -> None:
        n = len(updates)
        # What Flower's ServerApp runtime sets before running a workflow (server/compat/app.py).
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = RUN_ID
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        self.grid = DirectGrid(_nodes(updates, weights, secure=secure))
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=n,
            min_available_clients=n,
            accept_failures=False,
        )
        base = Context(run_id=RUN_ID, node_id=0, node_config={}, state=RecordDict(), run_config={})
        self.context = LegacyContext(
            base,
            config=ServerConfig(num_rounds=1),
            strategy=strategy,
            client_manager=SimpleClientManager(),
        )
        for node_id in updates:
            self.context.client_manager.register(GridClientProxy(node_id, self.grid, RUN_ID))
        self.context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WorkflowKey.CURRENT_ROUND: 1, WorkflowKey.START_TIME: 0.0}
        )
        # The global model sent with each FitIns is a single float: the clients ignore it,
        # and a large one would charge Flower for a broadcast our protocol does not model.
        initial = ndarrays_to_parameters([np.zeros(1, dtype=np.float32)])
        self.context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            initial, keep_input=True
        )
        if secure:
            self.workflow = SecAggPlusWorkflow(num_shares, threshold)
        else:
            self.workflow = default_fit_workflow

    def run(self) -> np.ndarray:
        """Run the round; return the aggregated vector Flower stored as the new global model."""
        self.workflow(self.grid, self.context)
        record: ArrayRecord = self.context.state.array_records[MAIN_PARAMS_RECORD]
        params = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, keep_input=True))
        return np.asarray(params[0])
