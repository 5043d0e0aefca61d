"""``fedtune session run`` end to end: the operator's command starts its own TLS SuperLink,
admits the owners' signed SuperNode keys, runs one secure-aggregation round and shows the
report; ``fedtune session report`` reads it back."""

from __future__ import annotations

import socket
import threading

import pytest
from typer.testing import CliRunner

from fedtune.cli.main import app as cli

from .session_world import SessionWorld

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_operator_command_runs_a_session(session_world: SessionWorld) -> None:
    terms = session_world.new_session(rounds=1)
    port = _free_port()
    # The sandboxes must be started from this (long-lived) thread; the command runs beside.
    agents = session_world.agents(terms, superlink=f"127.0.0.1:{port}")
    workdir = session_world.short / "cli-run"
    outcome: list[object] = []

    def operator() -> None:
        outcome.append(CliRunner().invoke(cli, [
            "session", "run", terms.session_id, "--dir", str(session_world.root),
            "--workdir", str(workdir), "--host", "127.0.0.1", "--port", str(port),
            "--key-wait", "120", "--timeout", "900",
        ]))

    command = threading.Thread(target=operator, daemon=True)
    command.start()
    try:
        for agent in agents:
            agent.start_supernode()  # retries until the command admitted its key
        command.join(timeout=900)
    finally:
        for agent in agents:
            agent.close()
    assert not command.is_alive()
    (result,) = outcome
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    output = result.output  # type: ignore[attr-defined]
    assert "admitted 3 owner SuperNode(s)" in output
    assert (workdir / "results" / terms.session_id / "report.png").is_file()
    report = session_world.runner.report(terms.session_id)  # type: ignore[union-attr]
    assert report.status == "finished" and len(report.rounds) == 1
