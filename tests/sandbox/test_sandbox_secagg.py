"""ExportUpdate drives secure aggregation: the sandbox is one client of a real SecAgg+ round.

The sandbox's update never leaves in the clear, yet the aggregate the server decodes equals the
weighted average of the sandbox's update (recomputed here by training the same model on the
same records with the same seed) and the other clients' updates.
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from crypto.secagg import RoundParams, SecAggClient, SecAggServer
from enclave.ml.modeldir import read_model_dir
from enclave.sandbox.training import TrainingSession
from fedtune.sandbox_client import SandboxCallError, plain_adapter

from ._support import SESSION_ID, ProviderSide, Trained, derived_terms

SANDBOX_ID = 1001
PEERS = (1002, 1003)


def _run_round(trained: Trained, params: RoundParams, peers: dict[int, tuple[np.ndarray, float]]):
    client = trained.running.client
    server = SecAggServer(params)
    local = {
        pid: SecAggClient(pid, session_id=params.session_id, round_number=params.round_number)
        for pid in peers
    }
    stages = []

    def answer(requests: dict[int, bytes], call) -> dict[int, bytes]:
        replies = {}
        for cid, request in requests.items():
            if cid == SANDBOX_ID:
                reply = client.export_secagg(request)
                stages.append((reply.stage, reply.done))
                replies[cid] = reply.reply
            else:
                replies[cid] = call(local[cid], request)
        return replies

    server.receive_setup(answer(server.setup_requests(), lambda c, r: c.setup(r)))
    server.receive_share_keys(answer(server.share_keys_requests(), lambda c, r: c.share_keys(r)))
    server.receive_masked_vectors(answer(
        server.collect_requests(),
        lambda c, r: c.collect_masked_vector(r, peers[c.client_id][0], peers[c.client_id][1]),
    ))
    result = server.receive_unmask(answer(server.unmask_requests(), lambda c, r: c.unmask(r)))
    return result, stages


def test_secure_aggregation_round_through_the_sandbox(
    trained: Trained, provider_side: ProviderSide
) -> None:
    running = trained.running
    length = trained.configured.adapter_length
    round_number = running.client.status().last_round + 1
    trained_round = running.client.train(round_number)  # from the initial adapter
    rng = np.random.default_rng(5)
    peers = {pid: (rng.normal(0, 0.01, length).astype(np.float32), float(w))
             for pid, w in zip(PEERS, (7, 11), strict=True)}
    params = RoundParams.create(SESSION_ID.encode(), round_number, [SANDBOX_ID, *PEERS], length)
    assert running.client.status().update_pending

    result, stages = _run_round(trained, params, peers)

    assert stages == [("setup", False), ("share_keys", False),
                      ("collect_masked_vectors", False), ("unmask", True)]
    assert not running.client.status().update_pending  # wiped once it left masked

    # The same training, outside: same model, records, terms, seed and thread count.
    session = TrainingSession(
        derived_terms(provider_side.identity), read_model_dir(provider_side.model_dir),
        running.data_dir,
        train_file="train.jsonl", eval_file=None,
        num_threads=max(1, len(os.sched_getaffinity(0))),
    )
    assert session.adapter_fingerprint == trained.configured.adapter_fingerprint
    _, delta = session.train(round_number, session.initial)
    weight = float(trained_round.num_examples)
    expected = (delta * weight + sum(u * w for u, w in peers.values())) / (
        weight + sum(w for _, w in peers.values()))
    assert result.total_weight == pytest.approx(weight + 18, abs=1e-3)
    assert np.abs(result.average - expected).max() <= result.error_bound + 1e-6
    assert np.abs(delta).max() > 100 * result.error_bound  # the update is not ~0

    # The stages are over for this round: nothing more leaves.
    with pytest.raises(SandboxCallError) as caught:
        running.client.export_secagg(server_setup(params))
    assert caught.value.error_type == "RoundError"


def server_setup(params: RoundParams) -> bytes:
    return SecAggServer(params).setup_requests()[SANDBOX_ID]


def test_a_setup_that_breaks_the_terms_is_refused_and_ends_the_round(trained: Trained) -> None:
    client = trained.running.client
    length = trained.configured.adapter_length
    start = plain_adapter(np.zeros(length, dtype=np.float32))
    round_number = client.status().last_round + 1
    client.train(round_number, start)
    ids = [SANDBOX_ID, *PEERS]

    # A share_keys request before any setup is refused without ending the round.
    with pytest.raises(SandboxCallError) as caught:
        client.export_secagg(_share_keys_request(round_number, ids, length))
    assert caught.value.error_type == "StageOrderError"
    assert client.status().update_pending

    wrong_clip = RoundParams.create(SESSION_ID.encode(), round_number, ids, length, clip=4.0)
    with pytest.raises(SandboxCallError) as caught:
        client.export_secagg(server_setup(wrong_clip))
    assert (caught.value.code, caught.value.error_type) == (grpc.StatusCode.PERMISSION_DENIED,
                                                            "ExportRefused")
    assert "clip" in caught.value.message
    assert not client.status().update_pending

    good = RoundParams.create(SESSION_ID.encode(), round_number, ids, length)
    with pytest.raises(SandboxCallError) as caught:
        client.export_secagg(server_setup(good))
    assert caught.value.error_type == "RoundError"


def _share_keys_request(round_number: int, ids: list[int], length: int) -> bytes:
    """A well-formed share_keys request for the sandbox, from a round it never set up."""
    params = RoundParams.create(SESSION_ID.encode(), round_number, ids, length)
    server = SecAggServer(params)
    clients = {
        c: SecAggClient(c, session_id=params.session_id, round_number=round_number)
        for c in ids
    }
    server.receive_setup({c: clients[c].setup(r) for c, r in server.setup_requests().items()})
    return server.share_keys_requests()[SANDBOX_ID]


def test_requests_for_another_session_or_round_are_refused(trained: Trained) -> None:
    client = trained.running.client
    length = trained.configured.adapter_length
    status = client.status()
    ids = [SANDBOX_ID, *PEERS]
    other = RoundParams.create(b"another-session", status.last_round, ids, length)
    with pytest.raises(SandboxCallError) as caught:
        client.export_secagg(server_setup(other))
    assert caught.value.error_type == "ExportRefused"
    later = RoundParams.create(SESSION_ID.encode(), status.last_round + 5, ids, length)
    with pytest.raises(SandboxCallError) as caught:
        client.export_secagg(server_setup(later))
    assert caught.value.error_type == "RoundError"
    with pytest.raises(SandboxCallError) as caught:
        client.export_secagg(b"not a secagg message")
    assert caught.value.error_type == "InvalidRequest"
