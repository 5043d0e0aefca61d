"""Faults in deployment mode: dropouts within and beyond the threshold, a corrupted vector.

3 owners, threshold 2, one round each. Within the threshold (one sandbox stops right after
it trained) the round commits the FedAvg of the two survivors and the dropout is on the
record. Beyond it (two stop) the round, and the session, fail cleanly with the reason on the
record and no aggregate. A ClientApp that cuts one owner's masked vector short gets that
owner excluded with the reason on the record; the sum of the others is still exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto.quantize import FixedPoint
from crypto.secagg.params import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT
from fedtune.federated.appdir import write_app_dir
from fedtune.federated.runner import CLIENTAPP, SERVERAPP
from fedtune.federated.server_app import RUN_CONFIG

from . import corrupting_app
from .conftest import HERE
from .session_world import SessionRun, SessionWorld, kill_when_trained

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def _survivors_fedavg(world: SessionWorld, run: SessionRun, owners: list[str]) -> None:
    """The committed round-1 aggregate is the FedAvg of ``owners`` (recomputed), in bound."""
    data = (run.results_dir / "aggregates" / "round-1.f32").read_bytes()
    committed = np.frombuffer(data, dtype="<f4").astype(np.float64)
    updates = [world.replay_update(run.terms, fp, None, 1) for fp in owners]
    total = sum(n for _, n in updates)
    expected = sum(d.astype(np.float64) * n for d, n in updates) / total
    code = FixedPoint(DEFAULT_CLIP, DEFAULT_MAX_WEIGHT, 3)
    bound = code.average_error_bound(num_summed=len(owners), total_weight=float(total))
    assert np.abs(committed - expected).max() <= bound + 1e-6
    # ... and not the average over all three owners.
    assert run.report.rounds[0].num_examples == total


def test_a_dropout_within_the_threshold_still_commits_the_correct_sum(
    session_world: SessionWorld,
) -> None:
    terms = session_world.new_session(rounds=1)
    run = session_world.run(terms, run_config={"keep-aggregates": True},
                            during=kill_when_trained([0]))
    for agent in run.agents:
        agent.close()
    assert run.killed == [session_world.owners[0].fingerprint]
    assert run.result.completed, run.result.details
    (record,) = run.report.rounds
    gone = session_world.owners[0].fingerprint
    assert record.dropped == [gone]
    survivors = sorted(o.fingerprint for o in session_world.owners[1:])
    assert sorted(record.participants) == survivors
    dropouts = [e for e in session_world.events(run.session_id) if e.action.value == "dropout"]
    stages = {e.details["stage"]: e for e in dropouts}
    assert {(e.objects.party, e.outcome.value) for e in dropouts} == {(gone, "failed")}
    # Gone during the round (after training, at the next stage), and so also at the end.
    assert set(stages) - {"evaluate-after"} <= {"setup", "share_keys"}
    assert "evaluate-after" in stages and len(stages) == 2
    round_dropout = next(e for s, e in stages.items() if s != "evaluate-after")
    assert "Unavailable" in (round_dropout.reason or "")  # the relay found no sandbox
    _survivors_fedavg(session_world, run, survivors)


def test_dropouts_beyond_the_threshold_fail_the_session_cleanly(
    session_world: SessionWorld,
) -> None:
    terms = session_world.new_session(rounds=1)
    run = session_world.run(terms, run_config={"keep-aggregates": True},
                            during=kill_when_trained([0, 1]))
    for agent in run.agents:
        agent.close()
    assert sorted(run.killed) == sorted(o.fingerprint for o in session_world.owners[:2])
    assert not run.result.completed  # the run fails, saying why
    assert "failed" in run.result.details
    report = run.report
    assert report.status == "failed" and "NotEnoughSurvivors" in report.reason
    assert report.rounds == [] and report.after == []
    assert not (run.results_dir / "aggregates" / "round-1.f32").exists()  # no sum, ever
    events = session_world.events(run.session_id)
    failed = [e for e in events if e.action.value == "round-finish"]
    assert len(failed) == 1 and failed[0].outcome.value == "failed"
    assert "NotEnoughSurvivors" in (failed[0].reason or "")
    assert not [e for e in events if e.action.value == "aggregate-commit"]
    assert events[-1].action.value == "session-finish" and events[-1].outcome.value == "failed"
    info = session_world.operator.client.get_session(run.session_id)
    assert info.state == 5  # failed


@pytest.mark.parametrize("mode", ["wrong-length", "malformed"])
def test_a_corrupted_masked_vector_is_excluded_and_the_sum_stays_correct(
    session_world: SessionWorld, tmp_path, mode: str
) -> None:
    # fedtune's ServerApp, this test's ClientApp.
    app = write_app_dir(
        tmp_path / "corrupting", "fedtune-corrupting", SERVERAPP, "corrupting_app:app",
        config={**RUN_CONFIG, **corrupting_app.EXTRA_CONFIG},
        modules={"corrupting_app.py": HERE / "corrupting_app.py"},
    )
    assert app.clientapp != CLIENTAPP
    bad = session_world.owners[2].fingerprint
    terms = session_world.new_session(rounds=1)
    run = session_world.run(terms, app=app, run_config={
        "keep-aggregates": True, "corrupt-owner": bad, "corrupt-mode": mode})
    for agent in run.agents:
        agent.close()
    assert run.result.completed, run.result.details
    (record,) = run.report.rounds
    assert [(x.owner, x.stage) for x in record.excluded] == [(bad, "collect_masked_vectors")]
    assert record.excluded[0].reason.startswith(mode)
    exclusions = [e for e in session_world.events(run.session_id)
                  if e.action.value == "dropout" and e.outcome.value == "refused"]
    assert [(e.objects.party, e.reason.split(":")[0]) for e in exclusions] == [(bad, mode)]
    survivors = sorted(o.fingerprint for o in session_world.owners[:2])
    assert sorted(record.participants) == survivors
    _survivors_fedavg(session_world, run, survivors)
