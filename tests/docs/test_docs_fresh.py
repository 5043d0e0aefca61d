"""The generated references in docs/ match the code, and the docs' local links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_generated_references_are_fresh() -> None:
    done = subprocess.run(
        [sys.executable, str(DOCS / "generate.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_cli_reference_lists_every_command() -> None:
    import click
    import typer

    from fedtune.cli.main import app

    text = (DOCS / "cli-reference.md").read_text(encoding="utf-8")

    def walk(command: click.Command, path: str) -> list[str]:
        names = [path]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                names += walk(sub, f"{path} {name}")
        return names

    for name in walk(typer.main.get_command(app), "fedtune"):
        assert f"`{name}`" in text, f"{name} is missing from docs/cli-reference.md"


def test_check_fails_when_stale(tmp_path: Path) -> None:
    # --check must fail (exit 1, naming the file) when a generated file was edited by hand.
    sys.path.insert(0, str(DOCS))
    try:
        import generate
    finally:
        sys.path.remove(str(DOCS))
    target = tmp_path / "cli-reference.md"
    target.write_text(generate.cli_reference() + "\nhand edit\n", encoding="utf-8")
    original = generate.CLI_FILE, generate.CONFIG_FILE
    generate.CLI_FILE = target
    generate.CONFIG_FILE = tmp_path / "config-reference.md"
    generate.CONFIG_FILE.write_text(generate.config_reference(), encoding="utf-8")
    try:
        assert generate.main(["--check"]) == 1
        assert target.read_text(encoding="utf-8").endswith("hand edit\n")  # --check writes nothing
        assert generate.main([]) == 0
        assert generate.main(["--check"]) == 0
    finally:
        generate.CLI_FILE, generate.CONFIG_FILE = original


def test_local_links_resolve() -> None:
    link = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")
    for page in [*DOCS.glob("*.md"), ROOT / "README.md", *(ROOT / "examples").glob("*/README.md"),
                 ROOT / "examples" / "README.md"]:
        for target, _ in link.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}"
