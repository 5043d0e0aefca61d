"""A direct message loop between one SecAggServer and its SecAggClients, with hooks for faults."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from crypto.errors import SecAggError
from crypto.secagg import AggregateResult, RoundParams, SecAggClient, SecAggServer

STAGES = ("setup", "share_keys", "collect_masked_vectors", "unmask")
SESSION = b"session-under-test"

Hook = Callable[[int, bytes], bytes | None]


@dataclass
class Round:
    """One round's parties, inputs and what crossed the wire."""

    params: RoundParams
    updates: dict[int, np.ndarray]
    weights: dict[int, float]
    server: SecAggServer = field(init=False)
    clients: dict[int, SecAggClient] = field(init=False)
    requests: dict[str, dict[int, bytes]] = field(default_factory=dict)
    responses: dict[str, dict[int, bytes]] = field(default_factory=dict)
    client_errors: dict[int, SecAggError] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = SecAggServer(self.params)
        self.clients = {
            c: SecAggClient(
                c, session_id=self.params.session_id, round_number=self.params.round_number
            )
            for c in self.params.participants
        }

    @classmethod
    def make(
        cls,
        n: int,
        m: int,
        *,
        seed: int = 0,
        round_number: int = 1,
        session: bytes = SESSION,
        ids: Iterable[int] | None = None,
        **params: object,
    ) -> Round:
        rng = np.random.default_rng(seed)
        ids = list(ids) if ids is not None else [1000 + 7 * i for i in range(n)]
        p = RoundParams.create(session, round_number, ids, m, **params)  # type: ignore[arg-type]
        updates = {c: rng.uniform(-p.clip, p.clip, m).astype(np.float32) for c in ids}
        weights = {c: float(rng.integers(1, int(p.max_weight))) for c in ids}
        return cls(p, updates, weights)

    def stage(
        self,
        name: str,
        *,
        drop: Iterable[int] = (),
        tamper_request: Hook | None = None,
        tamper_response: Hook | None = None,
    ) -> dict[int, bytes]:
        """Run one stage: requests out, client answers (minus drops), responses in."""
        requests = getattr(self.server, _REQUESTS[name])()
        self.requests[name] = requests
        dropped = set(drop)
        responses: dict[int, bytes] = {}
        for client_id, request in requests.items():
            if client_id in dropped:
                continue
            if tamper_request is not None:
                request = tamper_request(client_id, request)
                if request is None:
                    continue
            client = self.clients[client_id]
            try:
                if name == "collect_masked_vectors":
                    response = client.collect_masked_vector(
                        request, self.updates[client_id], self.weights[client_id]
                    )
                else:
                    response = getattr(client, _CLIENT[name])(request)
            except SecAggError as exc:  # a refusing client answers nothing
                self.client_errors[client_id] = exc
                continue
            if tamper_response is not None:
                response = tamper_response(client_id, response)
                if response is None:
                    continue
            responses[client_id] = response
        self.responses[name] = responses
        return getattr(self.server, _RECEIVE[name])(responses)

    def run(
        self,
        *,
        drop: dict[str, Iterable[int]] | None = None,
        tamper_request: dict[str, Hook] | None = None,
        tamper_response: dict[str, Hook] | None = None,
    ) -> AggregateResult:
        drop = drop or {}
        tamper_request = tamper_request or {}
        tamper_response = tamper_response or {}
        result = None
        for name in STAGES:
            result = self.stage(
                name,
                drop=drop.get(name, ()),
                tamper_request=tamper_request.get(name),
                tamper_response=tamper_response.get(name),
            )
        assert isinstance(result, AggregateResult)
        return result

    def plaintext_fedavg(self, ids: Iterable[int]) -> tuple[np.ndarray, float]:
        """Plain FedAvg over ``ids`` with clipped values and weights, in float64."""
        ids = list(ids)
        w = {c: min(self.weights[c], self.params.max_weight) for c in ids}
        clip = self.params.clip
        total = sum(w.values())
        avg = sum(w[c] * np.clip(self.updates[c].astype(np.float64), -clip, clip) for c in ids)
        return avg / total, total


_REQUESTS = {
    "setup": "setup_requests",
    "share_keys": "share_keys_requests",
    "collect_masked_vectors": "collect_requests",
    "unmask": "unmask_requests",
}
_RECEIVE = {
    "setup": "receive_setup",
    "share_keys": "receive_share_keys",
    "collect_masked_vectors": "receive_masked_vectors",
    "unmask": "receive_unmask",
}
_CLIENT = {"setup": "setup", "share_keys": "share_keys", "unmask": "unmask"}
