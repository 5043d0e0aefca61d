"""A full secure-aggregation session on 127.0.0.1: real SuperLink, 3 SuperNodes, 3 sandboxes.

Tiny BERT, non-IID owners, 2 rounds. Checks that the adapter moved, the metrics before and
after reach the report, the audit log holds every round event and verifies, and that what the
aggregator committed is the plaintext FedAvg of the owners' updates (recomputed here) within
the fixed-point bound.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from crypto.quantize import FixedPoint
from crypto.secagg.params import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT
from fedtune.cli.main import app as cli

from .session_world import SessionRun, SessionWorld

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


@pytest.fixture(scope="module")
def secagg_run(session_world: SessionWorld) -> SessionRun:
    terms = session_world.new_session(aggregation="secagg", rounds=2)
    run = session_world.run(terms, run_config={"keep-aggregates": True})
    for agent in run.agents:
        agent.close()
    return run


def test_the_session_finishes_and_the_report_shows_before_and_after(
    secagg_run: SessionRun, session_world: SessionWorld
) -> None:
    report = secagg_run.report
    assert secagg_run.result.completed, secagg_run.result.details
    assert (report.status, report.aggregation) == ("finished", "secagg")
    owners = {o.fingerprint for o in session_world.owners}
    assert {m.owner for m in report.before} == owners == {m.owner for m in report.after}
    assert [r.round for r in report.rounds] == [1, 2]
    for record in report.rounds:
        assert set(record.participants) == owners and not record.dropped and not record.excluded
        assert record.aggregate_digest and record.aggregate_digest.startswith("sha256:")
        assert record.train_loss is not None and math.isfinite(record.train_loss)
    # The global adapter moved: every owner's held-out loss changed.
    before = {m.owner: m.metrics["loss"] for m in report.before}
    after = {m.owner: m.metrics["loss"] for m in report.after}
    assert all(abs(after[o] - before[o]) > 1e-4 for o in owners), (before, after)
    # The report the ServerApp wrote next to the run is the one the orchestrator keeps.
    saved = (secagg_run.results_dir / "report.json").read_text()
    assert saved and report.session_id == secagg_run.session_id


def test_every_round_is_on_the_audit_log_and_the_log_verifies(
    secagg_run: SessionRun, session_world: SessionWorld, tmp_path, monkeypatch
) -> None:
    events = session_world.events(secagg_run.session_id)
    actions = [(e.action.value, e.objects.round) for e in events]
    for number in (1, 2):
        assert ("round-start", number) in actions
        assert ("round-finish", number) in actions
        assert ("aggregate-commit", number) in actions
    evaluations = [e for e in events if e.action.value == "evaluation"]
    assert len(evaluations) == 6  # 3 owners, before and after
    assert {e.details["stage"] for e in evaluations} == {"evaluate-before", "evaluate-after"}
    commits = [e for e in events if e.action.value == "aggregate-commit"]
    assert [e.objects.artifact for e in commits] == [
        r.aggregate_digest for r in secagg_run.report.rounds
    ]
    assert events[-1].action.value == "session-finish" and events[-1].outcome.value == "ok"
    # Every party can verify the whole log on its own.
    monkeypatch.setenv("FEDTUNE_HOME", str(tmp_path))
    vkey = session_world.server.audit_log.verifier.vkey
    db = session_world.root / "audit" / "log.sqlite"
    result = CliRunner().invoke(cli, ["audit", "verify", "--db", str(db), "--log-key", vkey])
    assert result.exit_code == 0, result.output


def test_the_committed_aggregate_is_plaintext_fedavg(
    secagg_run: SessionRun, session_world: SessionWorld
) -> None:
    """Round 1 recomputed outside: each owner's update from the same model, records, seed."""
    data = (secagg_run.results_dir / "aggregates" / "round-1.f32").read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest == secagg_run.report.rounds[0].aggregate_digest
    committed = np.frombuffer(data, dtype="<f4").astype(np.float64)
    updates = [session_world.replay_update(secagg_run.terms, o.fingerprint, None, 1)
               for o in session_world.owners]
    total = sum(n for _, n in updates)
    expected = sum(d.astype(np.float64) * n for d, n in updates) / total
    assert secagg_run.report.rounds[0].num_examples == total
    code = FixedPoint(DEFAULT_CLIP, DEFAULT_MAX_WEIGHT, len(updates))
    bound = code.average_error_bound(num_summed=len(updates), total_weight=float(total))
    assert np.abs(expected).max() > 100 * bound  # the updates are not ~0
    assert np.abs(committed - expected).max() <= bound + 1e-6


def test_session_report_shows_the_stored_report(
    secagg_run: SessionRun, session_world: SessionWorld, tmp_path
) -> None:
    owner = session_world.owners[0].party
    plot = tmp_path / "rounds.png"
    saved = tmp_path / "report.json"
    result = CliRunner().invoke(cli, [
        "session", "report", secagg_run.session_id, "--home", str(owner.home),
        "--plot", str(plot), "--json", str(saved),
    ])
    assert result.exit_code == 0, result.output
    assert secagg_run.session_id in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert saved.read_bytes() and "finished" in saved.read_text()
