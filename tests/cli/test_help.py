"""``--help`` of every fedtune command and sub-command exits 0 and describes it.

The commands are enumerated from the click command tree typer builds, so a command added
later is covered without touching this file.
"""

from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

from fedtune.cli.main import app


def _paths(command: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _paths(command.commands[name], (*prefix, name))
    return found


ROOT = typer.main.get_command(app)
COMMANDS = _paths(ROOT)


def test_the_tree_holds_every_area() -> None:
    # Guards the enumeration itself: an empty or flattened tree would make the help test vacuous.
    top = {path[0] for path in COMMANDS if path}
    assert {"demo", "provider", "session", "audit", "orchestrator", "attest", "sandbox"} <= top
    assert len(COMMANDS) > 20
    assert any(len(path) == 2 for path in COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "fedtune")
def test_help_exits_zero(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = ROOT
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    # Every command says what it does in its help (its docstring's first line).
    summary = (command.help or command.short_help or "").strip().splitlines()
    assert summary and summary[0], f"{' '.join(path)} has no help text"
    assert summary[0].split()[0] in result.output
