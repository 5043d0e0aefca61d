"""The app directory generator, checked against Flower's own parsers and FAB builder."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.cli.config_utils import load_and_validate
from flwr.common.config import (
    get_fused_config_from_dir,
    get_metadata_from_config,
    parse_config_args,
)

from fedtune.federated.appdir import (
    AppDir,
    config_toml,
    read_app_dir,
    toml_value,
    write_app_dir,
)

from . import harness_app
from .conftest import HERE, make_harness_app

TRICKY = {
    "plain": "alice",
    "spaces and = signs": "a b=c",
    "quotes": "say \"hi\" and 'bye'",
    "backslash": "C:\\path\\to",
    "newline-tab": "one\ntwo\tthree",
    "unicode": "Zoë ✓ 🌼",
    "control": "bell\x07del\x7f",
}


@pytest.mark.parametrize(("value", "expected"), [
    (True, "true"),
    (False, "false"),
    (0, "0"),
    (-42, "-42"),
    (2**63 - 1, "9223372036854775807"),
    (1.5, "1.5"),
    (1e-05, "1e-05"),
    (1e16, "1e+16"),
    ("x", '"x"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("line\nnext", '"line\\u000Anext"'),
])
def test_toml_value_known_answers(value: object, expected: str) -> None:
    assert toml_value(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "error"), [
    (float("nan"), ValueError),
    (float("inf"), ValueError),
    (2**63, ValueError),
    (-(2**63) - 1, ValueError),
    (None, TypeError),
    (b"bytes", TypeError),
    ([1, 2], TypeError),
])
def test_toml_value_refuses(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        toml_value(value)  # type: ignore[arg-type]


def test_config_file_reads_back_through_flowers_parser(tmp_path: Path) -> None:
    """The TOML we hand to --run-config/--node-config means to Flower what we meant."""
    values = {**{f"s-{i}": v for i, v in enumerate(TRICKY.values())},
              "n": 7, "f": 0.25, "b": True, "nested.key": "dotted"}
    path = tmp_path / "cfg.toml"
    path.write_text(config_toml(values), encoding="utf-8")
    assert parse_config_args([str(path)]) == values


@pytest.mark.parametrize("key", ["", "has space", "a..b", ".lead", "trail.", "ü", "a=b"])
def test_config_keys_are_checked(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        config_toml({key: 1})


def test_written_app_passes_flowers_validation(tmp_path: Path) -> None:
    app = make_harness_app(tmp_path / "harness")
    config, warnings = load_and_validate(app.path / "pyproject.toml", check_module=True)
    assert warnings == []
    assert get_metadata_from_config(config) == ("fedtune/harness", "1.0.0")
    components = config["tool"]["flwr"]["app"]["components"]
    assert components == {"serverapp": "harness_app:serverapp",
                          "clientapp": "harness_app:clientapp"}
    # The defaults the ServerApp and ClientApps will see, fused by Flower itself.
    assert get_fused_config_from_dir(app.path, {}) == harness_app.RUN_CONFIG
    assert get_fused_config_from_dir(app.path, {"num-rounds": 5})["num-rounds"] == 5


def test_fab_carries_the_module_and_config(tmp_path: Path) -> None:
    app = make_harness_app(tmp_path / "harness")
    with zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app.path))) as fab:
        names = set(fab.namelist())
        assert {"pyproject.toml", "harness_app.py", ".info/CONTENT"} <= names
        assert fab.read("harness_app.py") == (HERE / "harness_app.py").read_bytes()
        bundled = tomllib.loads(fab.read("pyproject.toml").decode())
    assert bundled["tool"]["flwr"]["app"]["config"]["result-path"] == ""


def test_installed_package_components_need_no_modules(tmp_path: Path) -> None:
    """fedtune's own apps point at the installed package; the directory holds one file."""
    app = write_app_dir(tmp_path / "relay", "relay-test", "fedtune.federated.deployment:x",
                        "fedtune.federated.appdir:y")
    assert sorted(p.name for p in app.path.iterdir()) == ["pyproject.toml"]
    config, _ = load_and_validate(app.path / "pyproject.toml", check_module=False)
    assert get_metadata_from_config(config) == ("fedtune/relay-test", "1.0.0")


def test_read_app_dir_round_trip(harness_dir: AppDir) -> None:
    again = read_app_dir(harness_dir.path)
    assert again == harness_dir
    assert again.fab_id == "fedtune/harness"


def test_read_app_dir_refuses_non_apps(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no pyproject\.toml"):
        read_app_dir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(ValueError, match="lacks"):
        read_app_dir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("not = [toml")
    with pytest.raises(ValueError, match="not valid TOML"):
        read_app_dir(tmp_path)


def test_check_run_config(harness_dir: AppDir) -> None:
    harness_dir.check_run_config({"num-rounds": 3, "result-path": "/tmp/r.json"})
    with pytest.raises(ValueError, match="num-round"):
        harness_dir.check_run_config({"num-round": 3})
    with pytest.raises(TypeError):
        harness_dir.check_run_config({"num-rounds": None})
    with pytest.raises(TypeError):
        harness_dir.check_run_config([("num-rounds", 3)])  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": "1abc"}, ValueError, "name"),
    ({"name": "a_b"}, ValueError, "name"),
    ({"name": "a" * 33}, ValueError, "name"),
    ({"name": 5}, TypeError, "name"),
    ({"publisher": "fed/tune"}, ValueError, "publisher"),
    ({"serverapp": "module"}, ValueError, "serverapp"),
    ({"clientapp": "mod:"}, ValueError, "clientapp"),
    ({"clientapp": "mod:attr-x"}, ValueError, "clientapp"),
    ({"version": "v1"}, ValueError, "version"),
    ({"config": {"bad key": 1}}, ValueError, "key"),
    ({"config": {"x": float("nan")}}, ValueError, "finite"),
    ({"modules": {"test_app.py": HERE / "harness_app.py"}}, ValueError, "test_"),
    ({"modules": {"app_test.py": HERE / "harness_app.py"}}, ValueError, "test"),
    ({"modules": {"/abs.py": HERE / "harness_app.py"}}, ValueError, "relative"),
    ({"modules": {"../up.py": HERE / "harness_app.py"}}, ValueError, "relative"),
    ({"modules": {"notes.txt": HERE / "harness_app.py"}}, ValueError, ".py"),
    ({"modules": {"lib/x.py": HERE / "harness_app.py"}}, ValueError, "lib"),
    ({"modules": {"x.py": HERE / "missing.py"}}, ValueError, "not a file"),
    ({"modules": {"x.py": "harness_app.py"}}, TypeError, "Path"),
])
def test_write_app_dir_refuses(tmp_path: Path, kwargs: dict[str, object],
                               error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"name": "harness", "serverapp": "a:b", "clientapp": "c:d"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        write_app_dir(tmp_path / "app", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "app").exists()


def test_write_app_dir_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "stale.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="not an empty directory"):
        write_app_dir(tmp_path / "app", "harness", "a:b", "c:d")
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == ["stale.py"]
