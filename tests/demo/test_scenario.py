"""The demo's scenario, paths and CLI options, checked without starting a deployment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fedtune.cli.main import app
from fedtune.demo import DemoError, DemoScenario, DemoWorld, minilm_dir, sandbox_threads


def test_defaults_are_the_measured_budget() -> None:
    s = DemoScenario()
    assert (s.rounds, s.owners, s.aggregation, s.dp) == (3, 3, "secagg", False)
    assert (s.local_epochs, s.lora_rank, s.max_length, s.batch_size) == (1, 8, 64, 16)
    assert 5e-3 <= s.learning_rate <= 6e-3
    assert s.max_train_per_owner <= 128
    assert s.labels == sorted(s.families) and len(s.labels) >= 2


@pytest.mark.parametrize(
    "change",
    [{"rounds": 0}, {"owners": 1}, {"aggregation": "fedavg"}, {"learning_rate": 0},
     {"families": {"only": ("json",)}}, {"unknown": 1}],
)
def test_bad_scenarios_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DemoScenario(**change)  # type: ignore[arg-type]


def test_sandboxes_share_the_cores() -> None:
    assert sandbox_threads(3, cores=2) == 1
    assert sandbox_threads(2, cores=16) == 8
    assert sandbox_threads(5, cores=4) == 1


def test_the_model_is_the_installed_pretrained_minilm() -> None:
    model = minilm_dir()
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()


def test_world_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        DemoWorld(str(tmp_path), DemoScenario())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DemoWorld(tmp_path, {"rounds": 1})  # type: ignore[arg-type]
    # A sandbox's Unix socket path must fit in 107 bytes: a too-deep directory is refused
    # before anything is created.
    deep = tmp_path / ("x" * 90)
    with pytest.raises(DemoError, match="shorter --dir"):
        DemoWorld(deep, DemoScenario())
    assert not deep.exists()


def _text(output: str) -> str:
    """The CLI's message with rich's box drawing and line wrapping removed."""
    return " ".join(output.replace("│", " ").split())


def test_cli_refuses_bad_options_before_building_anything(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["demo", "--aggregation", "fedavg", "--dir", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "secagg or ckks" in _text(bad.output)
    assert not (tmp_path / "a").exists()
    assert runner.invoke(app, ["demo", "--rounds", "0"]).exit_code == 2
    assert runner.invoke(app, ["demo", "--owners", "1"]).exit_code == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    refused = runner.invoke(app, ["demo", "--dir", str(busy)])
    assert refused.exit_code == 2 and "is not empty" in _text(refused.output)
