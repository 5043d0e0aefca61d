"""``fedtune audit verify`` and ``fedtune audit show`` on real stores and a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crypto.identity import Identity
from fedtune.audit import AuditLog, EntryMismatchError, ObjectIds, default_checkpoint_path
from fedtune.cli.audit import app

ORIGIN = "fedtune.test/audit"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("FEDTUNE_HOME", str(home))
    return home


@pytest.fixture
def story(db_path: Path, log_identity: Identity, parties, event_factory):
    """A small session: an upload, a refused attestation, a key release, two rounds, a dropout."""
    provider, owner = parties["provider"], parties["owner"]
    audit_log = AuditLog.open(db_path, log_identity, ORIGIN)
    events = [
        event_factory(
            0,
            actor=provider.fingerprint,
            role="provider",
            action="upload",
            session=None,
            objects=ObjectIds(model="acme/base@1"),
        ),
        event_factory(
            1,
            action="attestation-verdict",
            outcome="refused",
            reason="measurement <b>not</b> in the allow-list",
            verdict={"kind": "simulated", "ok": False},
            objects=ObjectIds(party=owner.fingerprint),
        ),
        event_factory(2, action="key-release", objects=ObjectIds(party=owner.fingerprint)),
        event_factory(3, actor=owner.fingerprint, role="data-owner", action="join"),
        event_factory(4, action="round-start", objects=ObjectIds(round=1)),
        event_factory(
            5,
            action="dropout",
            outcome="failed",
            reason="owner timed out",
            objects=ObjectIds(round=1, party=owner.fingerprint),
        ),
        event_factory(6, action="round-finish", session="sess-2", objects=ObjectIds(round=1)),
    ]
    for e in events:
        audit_log.append(e)
    yield audit_log
    audit_log.close()


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=True)


def test_verify_saves_then_checks_against_the_saved_checkpoint(story, db_path, home, event_factory):
    vkey = story.verifier.vkey
    first = _invoke("verify", "--db", str(db_path), "--log-key", vkey)
    assert first.exit_code == 0, first.output
    assert "verified" in first.output and "first verification" in first.output
    saved = default_checkpoint_path(ORIGIN, home)
    assert saved.read_text() == story.checkpoint()

    story.append(event_factory(7))
    second = _invoke("verify", "--db", str(db_path), "--log-key", vkey)
    assert second.exit_code == 0, second.output
    assert "consistent with your checkpoint of size 7" in second.output


def test_verify_over_grpc_with_a_pem_key_file(story, home, tmp_path, remote, log_identity):
    pem = tmp_path / "log.pub"
    log_identity.public.save(pem)
    since = tmp_path / "mine.checkpoint"
    with remote(story) as client:
        target = client._target
        result = _invoke(
            "verify", "--server", target, "--log-key", str(pem), "--since-checkpoint", str(since)
        )
    assert result.exit_code == 0, result.output
    assert since.read_text() == story.checkpoint()


def test_verify_names_the_first_bad_entry(story, db_path, home, tampering, event_factory):
    vkey = story.verifier.vkey
    assert _invoke("verify", "--db", str(db_path), "--log-key", vkey).exit_code == 0
    with tampering(db_path) as conn:
        conn.execute(
            "UPDATE leaves SET leaf = ? WHERE idx = 4", (event_factory(4, action="export").leaf(),)
        )
    result = _invoke("verify", "--db", str(db_path), "--log-key", vkey)
    assert result.exit_code != 0
    assert isinstance(result.exception, EntryMismatchError)
    assert result.exception.index == 4


def test_the_real_command_exits_1_with_one_red_line(story, db_path, home, tampering, event_factory):
    with tampering(db_path) as conn:
        conn.execute("DELETE FROM leaves WHERE idx = 2")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fedtune.cli.main import main; main()",
            "audit",
            "verify",
            "--db",
            str(db_path),
            "--log-key",
            story.verifier.vkey,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "FEDTUNE_HOME": str(home), "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "EntryMissingError" in proc.stderr
    assert "entry 2 is missing" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-key", "not-a-key"], "expected NAME+KEYID+BASE64"),
        (["--log-key", "x+00000000+AAAA"], "key ID"),
    ],
)
def test_bad_log_keys_are_usage_errors(story, db_path, home, args, message):
    result = _invoke("verify", "--db", str(db_path), *args)
    assert result.exit_code == 2
    assert message in re.sub(r"\s+", " ", result.output)


def test_at_most_one_source_and_the_default_needs_an_enrolment(story, db_path, home):
    vkey = story.verifier.vkey
    both = _invoke("verify", "--db", str(db_path), "--server", "127.0.0.1:1", "--log-key", vkey)
    assert both.exit_code == 2
    assert "at most one of --server" in re.sub(r"\s+", " ", both.output)
    # Neither: the orchestrator this party enrolled with; this home never enrolled.
    neither = _invoke("verify", "--log-key", vkey)
    assert neither.exit_code != 0
    assert "enrol first" in re.sub(r"\s+", " ", str(neither.exception) + neither.output)


def test_show_renders_the_timeline_with_refusals(story, db_path, home, parties):
    result = _invoke("show", "--db", str(db_path), "--log-key", story.verifier.vkey)
    assert result.exit_code == 0, result.output
    out = result.output
    for word in ("upload", "attestation-verdict", "key-release", "REFUSED", "FAILED"):
        assert word in out
    assert "2 refused or failed" in out
    assert not default_checkpoint_path(ORIGIN, home).exists()  # show never moves the checkpoint

    only_owner = _invoke(
        "show", "--db", str(db_path), "--actor", parties["owner"].fingerprint[8:24]
    )
    assert only_owner.exit_code == 0, only_owner.output
    assert "NOT verified" in only_owner.output
    assert "join" in only_owner.output and "upload" not in only_owner.output

    session2 = _invoke("show", "--db", str(db_path), "--session", "sess-2")
    assert "round-finish" in session2.output and "round-start" not in session2.output


def test_show_writes_a_self_contained_html_report(story, db_path, home, tmp_path):
    report = tmp_path / "out" / "report.html"
    result = _invoke(
        "show", "--db", str(db_path), "--log-key", story.verifier.vkey, "--html", str(report)
    )
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    # Self-contained: no scripts, no external resources of any kind.
    for forbidden in ("<script", "src=", "href=", "http://", "https://", "@import", "url("):
        assert forbidden not in page
    assert page.count('class="refused"') == 1 and page.count('class="failed"') == 1
    assert "verified</span> with log key" in page
    # Content is escaped, never interpreted.
    assert "&lt;b&gt;not&lt;/b&gt;" in page and "<b>not</b>" not in page
