"""``fedtune sandbox``: the measurement an owner reproduces, and the isolation check."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from enclave.attest.measurement import runtime_measurement
from fedtune.cli.main import app

from ._support import write_records

REPO = Path(__file__).resolve().parents[2]


def test_measure_prints_what_the_runtime_reports() -> None:
    result = CliRunner().invoke(app, ["sandbox", "measure"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == runtime_measurement().hex()


def test_measure_a_checkout_copy_and_see_a_change(tmp_path: Path) -> None:
    for name in ("crypto", "enclave"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    runner = CliRunner()
    same = runner.invoke(app, ["sandbox", "measure", "--checkout", str(tmp_path)])
    assert same.exit_code == 0, same.output
    assert same.output.splitlines()[0] == runtime_measurement().hex()
    with (tmp_path / "enclave" / "sandbox" / "runtime.py").open("a") as handle:
        handle.write("# one more line\n")
    changed = runner.invoke(app, ["sandbox", "measure", "--checkout", str(tmp_path)])
    assert changed.output.splitlines()[0] != runtime_measurement().hex()
    missing = runner.invoke(app, ["sandbox", "measure", "--checkout", str(tmp_path / "nope")])
    assert missing.exit_code != 0


def test_check_reports_every_attempt_refused(tmp_path: Path, require_bwrap: None) -> None:
    write_records(tmp_path / "data")
    result = CliRunner().invoke(
        app, ["sandbox", "check", "--data", str(tmp_path / "data"), "--work",
              str(tmp_path / "work")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "bubblewrap" in result.output
    assert "NOT ISOLATED" not in result.output
    assert "interfaces seen inside: lo" in result.output
