"""``fedtune sandbox``: measure the sandbox runtime, check its isolation, run one for debugging."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    help="The sandbox runtime: its measurement, an isolation check, a debugging launch.",
    no_args_is_help=True,
)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _warn(message: str) -> None:
    _err().print(Panel(Text(message, style="bold yellow"), title="WARNING", border_style="yellow"))


def _home(home: Path | None) -> Path:
    from fedtune.settings import load_settings

    return home if home is not None else load_settings().home


@app.command("measure")
def measure_command(
    checkout: Annotated[
        Path | None,
        typer.Option(help="A source checkout to measure (its crypto/ and enclave/ folders) "
                     "instead of the installed packages."),
    ] = None,
) -> None:
    """Print the runtime measurement a simulated-TEE sandbox reports, and how it was computed."""
    from enclave.sandbox.measure import checkout_roots, measure

    try:
        info = measure(checkout_roots(checkout) if checkout is not None else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--checkout") from None
    out = _out()
    typer.echo(info.hex)  # unwrapped, so it can be copied into a release policy
    table = Table(show_header=False, box=None)
    table.add_row("algorithm", "SHA-384 over length-prefixed (name, SHA-384(file)) entries "
                  "sorted by name (enclave/attest/measurement.py)")
    table.add_row("roots", "\n".join(str(root) for root in info.roots))
    table.add_row("files", f"{info.file_count} ({', '.join(info.suffixes)}; __pycache__ skipped)")
    out.print(table)


@app.command("check")
def check_command(
    data: Annotated[Path, typer.Option(help="The data directory to mount read-only.")],
    work: Annotated[
        Path | None, typer.Option(help="Work directory (socket dir); default: a temporary one.")
    ] = None,
    allow_weak_isolation: Annotated[
        bool, typer.Option(help="Probe the plain-process fallback when bubblewrap is unusable.")
    ] = False,
) -> None:
    """Try, from inside a sandbox built like the runtime's, what the sandbox must forbid."""
    import tempfile

    from enclave.sandbox.bwrap import SANDBOX_TMP
    from enclave.sandbox.launcher import SandboxLauncher

    inside_tmp = f"{SANDBOX_TMP}/.fedtune-probe"
    with contextlib.ExitStack() as stack:
        work_dir = work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        port = listener.getsockname()[1]
        launcher = SandboxLauncher(data, work_dir=work_dir,
                                   allow_weak_isolation=allow_weak_isolation)
        # Files of the host that exist here and must not be readable inside.
        secrets = [_home(None) / "simulated-tee" / "platform.pem", Path("/etc/passwd"),
                   *(Path.home() / name for name in (".bashrc", ".profile", ".ssh"))]
        writes = ["/data/.fedtune-probe", "/usr/.fedtune-probe", "/.fedtune-probe",
                  "/opt/fedtune/code/enclave/.fedtune-probe", inside_tmp]
        reads = ["/data", *(str(p) for p in secrets if p.exists())]
        result = launcher.run_probe(
            ["--connect", f"127.0.0.1:{port}", "--connect", "1.1.1.1:443",
             *[a for p in writes for a in ("--write", p)],
             *[a for p in reads for a in ("--read", p)]],
        )
    # (what, target, allowed?) — allowed: only the private tmpfs and the data mount.
    expected = {("write", inside_tmp): True, ("read", "/data"): True}
    table = Table(title=f"sandbox isolation check ({result['mode']})")
    for column in ("attempt", "target", "expected", "got", ""):
        table.add_column(column)
    failures = 0
    for what in ("connect", "write", "read"):
        for item in result[what]:  # type: ignore[attr-defined]
            want = expected.get((what, item["target"]), False)
            ok = item["ok"] == want
            failures += not ok
            table.add_row(
                what, item["target"], "allowed" if want else "refused",
                "allowed" if item["ok"] else f"refused ({item['error']})",
                "[green]ok[/]" if ok else "[bold red]NOT ISOLATED[/]",
            )
    _out().print(table)
    _out().print(f"interfaces seen inside: {', '.join(result['interfaces']) or 'none'}")  # type: ignore[arg-type]
    if result["mode"] != "bubblewrap":
        _warn("the check ran in a plain child process: the sandbox would give WEAKER isolation")
    if failures:
        raise typer.Exit(1)


@app.command("run")
def run_command(
    data: Annotated[Path, typer.Option(help="The owner's data directory (mounted read-only).")],
    work: Annotated[Path, typer.Option(help="Work directory: the socket and the runtime log.")],
    tee: Annotated[str, typer.Option(help="simulated or configfs (a real SEV-SNP/TDX guest).")]
    = "simulated",
    threads: Annotated[int | None, typer.Option(help="Torch threads in the runtime.")] = None,
    allow_weak_isolation: Annotated[
        bool, typer.Option(help="Run as a plain child process when bubblewrap is unusable.")
    ] = False,
    home: Annotated[
        Path | None, typer.Option(help="fedtune home holding the simulated platform key.")
    ] = None,
) -> None:
    """Start a sandbox runtime for debugging and keep it running until Ctrl-C."""
    from enclave.sandbox.isolation import SIMULATED_TEE_WARNING
    from enclave.sandbox.launcher import launch_sandbox

    if tee not in ("simulated", "configfs"):
        raise typer.BadParameter("must be 'simulated' or 'configfs'", param_hint="--tee")
    handle = launch_sandbox(
        data, work_dir=work, tee=tee,  # type: ignore[arg-type]
        home=_home(home), num_threads=threads, allow_weak_isolation=allow_weak_isolation,
    )
    with handle:
        report = handle.isolation
        table = Table(title="sandbox running", show_header=False)
        table.add_row("socket", str(handle.socket_path))
        table.add_row("pid", str(handle.pid))
        table.add_row("log", str(handle.log_path))
        table.add_row("measurement", handle.measurement.hex())
        table.add_row("isolation", report.mode.value + (" [bold red](WEAKER)[/]" if report.weaker
                                                       else ""))
        table.add_row("namespaces", ", ".join(report.namespaces) or "none")
        table.add_row("network", "loopback only" if report.network_isolated
                      else ", ".join(report.interfaces))
        table.add_row("dumpable / core", f"{report.dumpable} / {report.core_limit}")
        _out().print(table)
        for warning in report.warnings:
            _warn(warning)
        if report.tee == "simulated" and SIMULATED_TEE_WARNING not in report.warnings:
            _warn(SIMULATED_TEE_WARNING)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(1.0):
            if not handle.alive():
                _err().print(f"[bold red]the runtime exited[/]\n{handle.log_tail()}")
                raise typer.Exit(1)
    _err().print("sandbox stopped")
