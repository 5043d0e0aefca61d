"""A full CKKS session on 127.0.0.1: the aggregator adds ciphertexts it cannot read.

The broker made the session's CKKS secret context when the session started and released it
only to the attested sandboxes; the aggregator got the public context. The adapters still
move, and the metrics and the audit trail are there.
"""

from __future__ import annotations

import pytest

from fedtune.orchestrator.errors import RemoteError

from .session_world import SessionRun, SessionWorld

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


@pytest.fixture(scope="module")
def ckks_run(session_world: SessionWorld) -> SessionRun:
    terms = session_world.new_session(aggregation="ckks", rounds=2)
    run = session_world.run(terms)
    for agent in run.agents:
        agent.close()
    return run


def test_a_ckks_session_trains_with_encrypted_aggregates(
    ckks_run: SessionRun, session_world: SessionWorld
) -> None:
    report = ckks_run.report
    assert ckks_run.result.completed, ckks_run.result.details
    assert (report.status, report.aggregation) == ("finished", "ckks")
    owners = {o.fingerprint for o in session_world.owners}
    assert [r.round for r in report.rounds] == [1, 2]
    assert all(set(r.participants) == owners for r in report.rounds)
    before = {m.owner: m.metrics["loss"] for m in report.before}
    after = {m.owner: m.metrics["loss"] for m in report.after}
    assert set(before) == set(after) == owners
    assert all(abs(after[o] - before[o]) > 1e-4 for o in owners), (before, after)
    # The aggregator kept no plaintext, and the digests name ciphertext sums.
    assert not (ckks_run.results_dir / "aggregates").exists()
    events = session_world.events(ckks_run.session_id)
    commits = [e for e in events if e.action.value == "aggregate-commit"]
    assert [e.objects.artifact for e in commits] == [r.aggregate_digest for r in report.rounds]
    assert all(e.details.get("aggregation") == "ckks" for e in commits)


def test_the_secret_context_went_only_to_attested_sandboxes(
    ckks_run: SessionRun, session_world: SessionWorld
) -> None:
    events = session_world.events(ckks_run.session_id)
    generated = [e for e in events if e.action.value == "key-register"]
    # The CKKS secret, and the session key the final adapter is sealed under.
    assert sorted(e.details["kind"] for e in generated) == ["session-ckks-secret", "session-key"]
    releases = [e for e in events if e.action.value == "key-release"]
    kinds = sorted(e.details["object"].split()[0] for e in releases)
    assert kinds == ["model-data-key"] * 3 + ["session-ckks-secret"] * 3 + ["session-key"] * 3
    assert all(e.outcome.value == "ok" and e.role.value == "data-owner" for e in releases)
    # Each release followed an attestation verdict that passed the provider's policy.
    assert all(e.verdict and e.verdict.get("ok") is True for e in releases), releases[0].verdict
    # The session is over: nobody, the operator included, gets even the public context now.
    with pytest.raises(RemoteError) as caught:
        session_world.operator.client.public_context(ckks_run.session_id)
    assert caught.value.code == "FAILED_PRECONDITION"
