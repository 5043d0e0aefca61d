"""Every example runs to the end at its smallest settings and produces what its README says."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from .runner import EXAMPLES, read_json, run_example

EXPECTED = {"provider_upload", "owner_join", "ckks_session", "causal_lm_session",
            "auditor_review"}


def test_every_example_has_a_readme_and_a_script() -> None:
    found = {p.name for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert found >= EXPECTED
    for name in found - {"__pycache__"}:
        readme = (EXAMPLES / name / "README.md").read_text(encoding="utf-8")
        assert f"examples/{name}/run.py" in readme, f"{name}/README.md does not say how to run it"
        assert (EXAMPLES / name / "run.py").is_file()


def test_examples_use_only_the_public_packages() -> None:
    # Examples are what users copy: they may not lean on the test suite's helpers.
    for script in EXAMPLES.rglob("*.py"):
        text = script.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+tests\b", text, re.MULTILINE), script


def test_provider_upload(tmp_path: Path) -> None:
    run_example("provider_upload", tmp_path, timeout_s=300)
    summary = read_json(tmp_path / "summary.json")
    assert summary["model"] == "acme/tiny-bert"
    assert summary["policy_allows_simulated"] is True
    assert re.fullmatch(r"[0-9a-f]{64}", summary["data_key_id"])
    assert summary["segments"] >= 1 and summary["sealed_size"] > 0
    events = summary["audit_events"]
    # The log recorded the provider's enrolment, the upload and the key registration, in order.
    assert events[0] == "enrol:ok"
    assert "upload:ok" in events
    assert events.index("key-register:ok") > events.index("upload:ok")
    assert not [e for e in events if not e.endswith(":ok")]


def test_auditor_review(tmp_path: Path) -> None:
    stdout = run_example("auditor_review", tmp_path, timeout_s=300)
    summary = read_json(tmp_path / "summary.json")
    # The second review saw a longer log and accepted it as an extension of the checkpoint.
    assert summary["second_size"] > summary["first_size"] >= 10
    assert "refusal:refused" in summary["events"]
    # The rewritten copy was refused, naming the entry that was changed.
    assert summary["tampered_refused"] is True
    assert "entry 1" in summary["tampered_error"]
    html = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "refusal" in html
    assert "refusal" in stdout


@pytest.mark.slow
def test_owner_join(tmp_path: Path) -> None:
    run_example("owner_join", tmp_path, timeout_s=600)
    summary = read_json(tmp_path / "summary.json")
    assert summary["owner_policy_ok"] is True
    # The sandbox configured itself for this session from the signed terms and staged records.
    assert summary["sandbox_session"] == summary["session"]
    assert summary["adapter_parameters"] > 0
    assert summary["train_examples"] > 0 and summary["eval_examples"] > 0
    assert summary["supernode_key"].startswith("ecdsa-sha2-nistp384")
    events = summary["audit_events"]
    for expected in ("session-start:ok", "attestation-verdict:ok", "key-release:ok", "join:ok"):
        assert expected in events, events
    assert events.index("key-release:ok") > events.index("attestation-verdict:ok")


def _check_report(report: dict, *, aggregation: str, task: str, owners: int) -> None:
    assert report["status"] == "finished", report.get("reason")
    assert report["aggregation"] == aggregation and report["task"] == task
    assert len(report["rounds"]) == 1
    assert len(report["rounds"][0]["participants"]) == owners
    assert len(report["before"]) == owners and len(report["after"]) == owners
    for metrics in report["after"]:
        assert math.isfinite(metrics["metrics"]["loss"])


@pytest.mark.slow
@pytest.mark.deployment
def test_ckks_session(tmp_path: Path) -> None:
    run_example("ckks_session", tmp_path, timeout_s=900)
    report = read_json(tmp_path / "report.json")
    _check_report(report, aggregation="ckks", task="classification", owners=2)
    assert {"accuracy", "macro_f1"} <= set(report["after"][0]["metrics"])


@pytest.mark.slow
@pytest.mark.deployment
def test_causal_lm_session(tmp_path: Path) -> None:
    run_example("causal_lm_session", tmp_path, timeout_s=900)
    report = read_json(tmp_path / "report.json")
    _check_report(report, aggregation="secagg", task="causal-lm", owners=3)
    for side in ("before", "after"):
        for owner in report[side]:
            metrics = owner["metrics"]
            # Perplexity is exp(per-token loss); a tiny random Llama starts near the vocab size.
            assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-3)
    assert report["rounds"][0]["aggregate_digest"]
