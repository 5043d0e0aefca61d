"""``fedtune orchestrator``: create, serve, invite parties, publish the audit log key."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedtune.orchestrator.authz import Role

app = typer.Typer(
    help="Run the control plane: create a deployment, serve it, invite parties.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Deployment directory (default: $FEDTUNE_ORCHESTRATOR_DIR)."),
]


def _dir(value: Path | None) -> Path:
    from fedtune.orchestrator.settings import OrchestratorSettings

    return value if value is not None else OrchestratorSettings().dir


@app.command("init")
def init_command(
    directory: DirOption = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Host name or IP the server certificate covers. Repeatable."),
    ] = None,
    name: Annotated[str, typer.Option(help="Deployment name (in the CA's name).")] = "fedtune",
    port: Annotated[int, typer.Option(help="API port (mutual TLS).")] = 7443,
    enrol_port: Annotated[int, typer.Option(help="Enrolment port (server-only TLS).")] = 7444,
) -> None:
    """Create the deployment CA, server certificate, broker keys, audit identity and operator."""
    from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment

    root = _dir(directory)
    hosts = host or ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    info = init_deployment(root, hosts=hosts, name=name, api_port=port, enrol_port=enrol_port)
    paths = DeploymentPaths(root)
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold green]deployment created[/] in {root}")
    # Values people copy are printed whole, never wrapped or truncated.
    out.print(f"CA fingerprint  [bold]{info.ca_fingerprint}[/]")
    out.print(f"hosts           {', '.join(info.hosts)}")
    out.print(f"API port        {info.api_port}")
    out.print(f"enrolment port  {info.enrol_port}")
    out.print(f"operator home   {paths.operator_home}")
    out.print(
        "Give parties the CA fingerprint with their token; they pin it at 'fedtune enrol'.\n"
        f"Run the operator's commands with FEDTUNE_HOME={paths.operator_home}."
    )


@app.command("serve")
def serve_command(
    directory: DirOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="API port (0: any free).")] = None,
    enrol_port: Annotated[int | None, typer.Option(help="Enrolment port (0: any free).")] = None,
) -> None:
    """Serve the registry, key broker, sessions and audit log until SIGINT/SIGTERM."""
    from fedtune.orchestrator.server import OrchestratorServer
    from fedtune.orchestrator.settings import OrchestratorSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides: dict[str, object] = {"dir": _dir(directory)}
    for key, value in (("host", host), ("port", port), ("enrol_port", enrol_port)):
        if value is not None:
            overrides[key] = value
    settings = OrchestratorSettings(**overrides)
    server = OrchestratorServer(settings)
    api, enrol = server.start()
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # One machine-readable line, so scripts and tests can find ports chosen with 0.
    print(f"listening api={settings.host}:{api} enrol={settings.host}:{enrol}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        print("stopped", flush=True)
        sys.stdout.flush()


@app.command("invite")
def invite_command(
    role: Annotated[Role, typer.Option(help="The role the token enrols.")],
    name: Annotated[str, typer.Option(help="The party's name (in its certificate).")],
    directory: DirOption = None,
    ttl_hours: Annotated[float, typer.Option(help="Hours until the token expires.")] = 24.0,
) -> None:
    """Print a one-time, expiring enrolment token (stored hashed) for one party."""
    from fedtune.orchestrator.deployment import DeploymentPaths, load_info
    from fedtune.orchestrator.enrolment import create_token
    from fedtune.orchestrator.store.sqlite import SqliteRepository

    root = _dir(directory)
    info = load_info(root)
    repository = SqliteRepository(DeploymentPaths(root).database)
    try:
        token = create_token(
            repository, role, name, ttl=dt.timedelta(hours=ttl_hours), now=dt.datetime.now(dt.UTC)
        )
    finally:
        repository.close()
    out = Console(highlight=False, soft_wrap=True)
    host = info.hosts[0]
    out.print(f"[bold]token[/] for {role.value} {name!r} (single use, {ttl_hours:g} h):")
    print(token)
    out.print(
        "The party runs:\n  fedtune enrol "
        f"--server {host}:{info.enrol_port} --token {token} --ca-fingerprint {info.ca_fingerprint}"
    )


@app.command("log-key")
def log_key_command(
    directory: DirOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the key to this file.")
    ] = None,
) -> None:
    """Print the audit log's verifier key: publish it so parties can run `fedtune audit verify`."""
    from crypto.atomicfile import atomic_write_bytes
    from crypto.identity import Identity
    from crypto.note import NoteVerifier
    from fedtune.orchestrator.deployment import DeploymentPaths, load_info
    from fedtune.orchestrator.server import audit_origin

    root = _dir(directory)
    paths = DeploymentPaths(root)
    identity = Identity.load(paths.audit_identity)
    vkey = NoteVerifier.from_public(audit_origin(load_info(root).name), identity.public).vkey
    print(vkey)
    if out is not None:
        atomic_write_bytes(out, vkey.encode() + b"\n")
