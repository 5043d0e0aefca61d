"""``fedtune demo``: a whole deployment on this machine, one fine-tuning session, its report."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from fedtune.demo import DemoResult

_LEVELS = ("debug", "info", "warning")


def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Build the deployment in this (new or empty) directory instead of a fresh "
            "temp dir. Either way it is kept afterwards, for the report and the logs.",
        ),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=50, help="Federated rounds.")] = 3,
    owners: Annotated[
        int, typer.Option("--owners", min=2, max=8, help="Data owners (each gets a sandbox).")
    ] = 3,
    aggregation: Annotated[
        str, typer.Option("--aggregation", help="secagg (secure aggregation) or ckks (HE).")
    ] = "secagg",
    dp: Annotated[
        bool, typer.Option("--dp/--no-dp", help="Client-level differential privacy.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="Level of the demo's log file: debug, info, warning.")
    ] = "info",
) -> None:
    """Run the whole flow on this machine: provider, three data owners, a federated session.

    Creates a throw-away deployment (CA, orchestrator with SQLite and a blob folder, SuperLink),
    seals and uploads the pretrained MiniLM as the provider, gives each owner non-IID records
    from the standard library's docstrings, fine-tunes over rounds with secure aggregation in
    attested sandboxes, then prints the before/after table, verifies the audit log and writes
    an HTML report. Needs no network and no flags.
    """
    if aggregation not in ("secagg", "ckks"):
        raise typer.BadParameter("choose secagg or ckks", param_hint="--aggregation")
    if log_level not in _LEVELS:
        raise typer.BadParameter(f"choose one of {', '.join(_LEVELS)}", param_hint="--log-level")
    # The model comes from an installed package; nothing may be fetched from the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fedtune.demo import DemoScenario, run_demo
    from fedtune.federated.report import render_console

    scenario = DemoScenario(rounds=rounds, owners=owners, aggregation=aggregation, dp=dp)  # type: ignore[arg-type]
    if directory is None:
        root = Path(tempfile.mkdtemp(prefix="fedtune-demo-"))
    else:
        root = directory.expanduser()
        if root.exists() and any(root.iterdir()):
            raise typer.BadParameter(f"{root} is not empty; give a new or empty directory",
                                     param_hint="--dir")
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    err.print(f"fedtune demo: deployment in [bold]{root}[/]")
    result = run_demo(root, scenario, console=err, log_level=getattr(logging, log_level.upper()))
    out.print(render_console(result.report))
    out.print(_audit_panel(result))
    out.print(_where(result))
    # Printed whole (never wrapped) so it can be copied and run.
    audit_db = result.root / "orchestrator" / "audit" / "log.sqlite"
    out.print(
        f"verify again: fedtune audit verify --db {audit_db} --log-key '{result.audit_vkey}'",
        soft_wrap=True, markup=False,
    )
    out.print(f"[dim]The deployment is kept; remove it with: rm -rf {root}[/]")


def _audit_panel(result: DemoResult) -> Panel:
    audit = result.audit
    events = [e for _, e in audit.events if e.session == result.session_id]
    lines = Text()
    lines.append("✓ verified ", style="bold green")
    lines.append(f"{audit.origin} (fedtune audit verify)\n")
    lines.append(f"  entries   {audit.entries_checked} (every hash recomputed)\n")
    lines.append(f"  root      {audit.root_hash.hex()}\n")
    lines.append(f"  session   {len(events)} events of {result.session_id} on the log")
    return Panel(lines, title="audit log", border_style="green", expand=False)


def _where(result: DemoResult) -> Table:
    table = Table(title="where everything is", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    root = result.root
    audit_db = root / "orchestrator" / "audit" / "log.sqlite"
    rows = [
        ("deployment", str(root)),
        ("HTML report", str(result.report_html)),
        ("plot", str(result.report_png)),
        ("report JSON", str(result.report_json)),
        ("sealed model", str(result.sealed_model)),
        *(("sealed adapter", str(p)) for p in result.sealed_adapters),
        ("audit log", str(audit_db)),
        ("logs", "\n".join(str(p.relative_to(root)) for p in result.logs if p.suffix == ".log")),
        ("time", ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table
