"""``fedtune enrol``: join a deployment with a one-time token; saves the client configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def enrol(
    server: Annotated[str, typer.Option(help="The enrolment address HOST:PORT.")],
    token: Annotated[str, typer.Option(help="The one-time token from the operator.")],
    ca_fingerprint: Annotated[
        str, typer.Option(help="The deployment CA's fingerprint (sha256:...), from the operator.")
    ],
    home: Annotated[
        Path | None, typer.Option("--home", help="fedtune home (default: $FEDTUNE_HOME).")
    ] = None,
) -> None:
    """Pin the CA, prove your Ed25519 identity, get a client certificate for your role."""
    from fedtune.orchestrator.client.enrol import enrol as do_enrol
    from fedtune.settings import load_settings

    root = home if home is not None else load_settings().home
    config = do_enrol(server, token, ca_fingerprint, root)
    identity = config.load_identity()
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold green]enrolled[/] as {config.role.value} {config.name!r}")
    out.print(f"identity     {config.fingerprint}")
    out.print(f"public key   {identity.public.raw.hex()}  (give this to session creators)")
    out.print(f"API server   {config.server}")
    out.print(f"config       {config.path_in(root)}")
