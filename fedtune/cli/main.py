"""The root of the ``fedtune`` command: registers each area's sub-commands and renders errors."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from crypto.errors import CryptoError
from enclave.errors import EnclaveError
from fedtune.errors import FedtuneError

app = typer.Typer(
    name="fedtune",
    help="Privacy-preserving model collaboration: sealed weights, attested sandboxes, "
    "federated fine-tuning with secure aggregation, and a tamper-evident audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# (command name, module holding a typer.Typer named ``app``). Each area owns its module;
# heavy imports (torch, transformers, flwr) stay inside command functions so --help is fast.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("attest", "fedtune.cli.attest"),
    ("provider", "fedtune.cli.provider"),
    ("orchestrator", "fedtune.cli.orchestrator"),
    ("session", "fedtune.cli.session"),
    ("audit", "fedtune.cli.audit"),
    ("sandbox", "fedtune.cli.sandbox"),
    ("owner", "fedtune.cli.owner"),
]

# (command name, module, function) for single commands at the top level.
COMMANDS: list[tuple[str, str, str]] = [
    ("demo", "fedtune.cli.demo", "demo"),
    ("enrol", "fedtune.cli.enrol", "enrol"),
]

for _name, _module in SUBCOMMANDS:
    app.add_typer(importlib.import_module(_module).app, name=_name)
for _name, _module, _func in COMMANDS:
    app.command(name=_name)(getattr(importlib.import_module(_module), _func))

_DOMAIN_ERRORS = (CryptoError, EnclaveError, FedtuneError)


def main() -> None:
    """Run the CLI; a domain error becomes one red line naming what was wrong, and exit code 1."""
    err = Console(stderr=True)
    try:
        app()
    except _DOMAIN_ERRORS as exc:
        # The exception's own message is written for people (STYLE: the edge says a lot).
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
        sys.exit(1)
