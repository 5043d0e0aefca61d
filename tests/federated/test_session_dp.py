"""A secure-aggregation session with client-level DP: noise inside the sandboxes, epsilon reported.

Each sandbox clips its update and adds its share of the Gaussian noise (calibrated for the
threshold) before masking; the aggregator accounts the epsilon spent after every round with
Opacus' RDP accountant and puts it on the audit log and in the report.
"""

from __future__ import annotations

import math

import pytest

from fedtune.federated.accounting import DpFedAvgAccountant
from fedtune.orchestrator.terms import DifferentialPrivacy

from .session_world import SessionRun, SessionWorld

pytestmark = [pytest.mark.slow, pytest.mark.deployment]

NOISE, CLIP, DELTA = 1.1, 0.5, 1e-4


@pytest.fixture(scope="module")
def dp_run(session_world: SessionWorld) -> SessionRun:
    dp = DifferentialPrivacy(enabled=True, clip_norm=CLIP, noise_multiplier=NOISE, delta=DELTA)
    terms = session_world.new_session(aggregation="secagg", rounds=2, dp=dp)
    run = session_world.run(terms)
    for agent in run.agents:
        agent.close()
    return run


def test_epsilon_is_accounted_every_round_in_the_report_and_the_log(
    dp_run: SessionRun, session_world: SessionWorld
) -> None:
    report = dp_run.report
    assert dp_run.result.completed, dp_run.result.details
    assert report.status == "finished" and report.dp_delta == DELTA
    # Known answer: the same accountant, 3 sampled of 3, calibrated for the threshold 2,
    # all 3 noised (z_eff = z * sqrt(3/2)), two rounds.
    reference = DpFedAvgAccountant(3)
    expected = []
    for _ in report.rounds:
        reference.record_round(NOISE, sampled=3, calibrated_for=2, noised=3)
        expected.append(reference.epsilon(DELTA))
    got = [r.epsilon for r in report.rounds]
    assert got == pytest.approx(expected, rel=1e-9)
    assert 0 < got[0] < got[1] and math.isfinite(got[1])
    assert report.dp_epsilon == pytest.approx(expected[-1], rel=1e-9)
    finishes = [e for e in session_world.events(dp_run.session_id)
                if e.action.value == "round-finish"]
    assert [e.details["metric.epsilon"] for e in finishes] == pytest.approx(expected, rel=1e-9)
    assert all(e.details["metric.delta"] == DELTA for e in finishes)
    # With DP every owner weighs 1: the aggregate's total weight is the number of owners.
    assert [r.num_examples for r in report.rounds] == [3, 3]
