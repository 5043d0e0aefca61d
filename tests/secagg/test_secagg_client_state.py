"""A client exported and restored between every stage (a process per message) still aggregates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crypto.errors import ClientStateError, SecAggMessageError, StageOrderError
from crypto.secagg import ClientStage, SecAggClient

from .secagg_harness import SESSION, STAGES, Round


def _restore_all(rnd: Round) -> None:
    for client_id, client in list(rnd.clients.items()):
        state = client.export_state()
        rnd.clients[client_id] = SecAggClient.restore(
            state, client_id, session_id=SESSION, round_number=rnd.params.round_number
        )


def test_round_with_every_client_restored_before_every_stage() -> None:
    rnd = Round.make(7, 300, seed=4)
    gone = rnd.params.participants[3]
    result = None
    for name in STAGES:
        _restore_all(rnd)
        result = rnd.stage(name, drop={gone} if name == "collect_masked_vectors" else ())
    _restore_all(rnd)
    assert all(c.stage is ClientStage.DONE for c in rnd.clients.values() if c.client_id != gone)
    expected, _ = rnd.plaintext_fedavg(set(rnd.params.participants) - {gone})
    assert result is not None
    assert np.abs(result.average - expected).max() <= result.error_bound


def _state_after_share_keys() -> tuple[Round, int, bytes]:
    rnd = Round.make(5, 10, seed=5)
    rnd.stage("setup")
    rnd.stage("share_keys")
    me = rnd.params.participants[0]
    return rnd, me, rnd.clients[me].export_state()


@pytest.mark.parametrize(
    ("client_id", "session", "round_number"),
    [(1007, SESSION, 1), (1000, b"other-session", 1), (1000, SESSION, 2)],
)
def test_state_of_another_client_session_or_round_is_refused(
    client_id: int, session: bytes, round_number: int
) -> None:
    _, me, state = _state_after_share_keys()
    assert me == 1000
    with pytest.raises(ClientStateError, match="another client, session or round"):
        SecAggClient.restore(state, client_id, session_id=session, round_number=round_number)


def _edit(state: bytes, change) -> bytes:
    doc = json.loads(state)
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(stage="failed"),
        lambda d: d.update(extra=1),
        lambda d: d.pop("mask_key"),
        lambda d: d["holder_keys"].update({"5": ["AAAA", "AAAA"]}),
    ],
    ids=["version", "failed-stage", "extra-field", "missing-field", "short-key"],
)
def test_malformed_state_is_refused(change) -> None:
    _, me, state = _state_after_share_keys()
    with pytest.raises(ClientStateError, match="malformed"):
        SecAggClient.restore(_edit(state, change), me, session_id=SESSION, round_number=1)


def test_state_with_keys_swapped_is_refused() -> None:
    rnd, me, state = _state_after_share_keys()
    other = rnd.clients[rnd.params.participants[1]].export_state()
    stolen = json.loads(other)["mask_key"]
    with pytest.raises(ClientStateError, match="inconsistent"):
        SecAggClient.restore(
            _edit(state, lambda d: d.update(mask_key=stolen)),
            me,
            session_id=SESSION,
            round_number=1,
        )
    with pytest.raises(ClientStateError):
        SecAggClient.restore(b"not json", me, session_id=SESSION, round_number=1)


def test_a_failed_client_has_no_state_and_a_done_one_cannot_unmask_again() -> None:
    rnd = Round.make(5, 10, seed=6)
    for name in STAGES:
        rnd.stage(name)
    me = rnd.params.participants[0]
    restored = SecAggClient.restore(
        rnd.clients[me].export_state(), me, session_id=SESSION, round_number=1
    )
    with pytest.raises(StageOrderError):
        restored.unmask(rnd.requests["unmask"][me])
    broken = SecAggClient(me, session_id=SESSION, round_number=1)
    with pytest.raises(SecAggMessageError):
        broken.setup(b"garbage")
    assert broken.stage is ClientStage.FAILED
    with pytest.raises(StageOrderError):
        broken.export_state()
