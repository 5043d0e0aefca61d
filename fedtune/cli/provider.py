"""``fedtune provider``: seal a model directory into a signed artifact; verify an artifact."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from crypto.hazmat.stream import MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE
from crypto.identity import PublicIdentity
from crypto.payload import payload_size
from fedtune.provider.modeldir import scan_model_dir
from fedtune.provider.seal import (
    data_keys_dir,
    identity_path,
    load_or_create_identity,
    open_manifest,
    seal_model_dir,
    verify_artifact,
)
from fedtune.settings import load_settings

app = typer.Typer(
    help="Provider tools: seal a model directory for upload, verify a sealed artifact.",
    no_args_is_help=True,
)

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6}
_UNITS |= {"mib": 1 << 20}


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def parse_size(text: str) -> int:
    """Parse a byte count such as ``1048576``, ``64KiB`` or ``1MiB``."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise typer.BadParameter(f"{text!r} is not a size (examples: 65536, 64KiB, 1MiB)")
    return int(match.group(1)) * _UNITS[unit]


def human_size(n: int) -> str:
    """Render a byte count with a binary unit."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _home(home: Path | None) -> Path:
    return home if home is not None else load_settings().home


@contextmanager
def byte_progress(
    description: str, total: int, *, console: Console
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over ``total`` bytes; yields the callback that advances it."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@app.command("seal")
def seal_command(
    model_dir: Annotated[
        Path,
        typer.Argument(help="A model directory with *.safetensors weights.", show_default=False),
    ],
    name: Annotated[str, typer.Option("--name", help="Model name, e.g. acme/base.")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write model.sealed and manifest.json to.")
    ],
    version: Annotated[str, typer.Option("--version", help="Model version label.")] = "1",
    segment_size: Annotated[
        str, typer.Option("--segment-size", help="Plaintext bytes per sealed segment.")
    ] = "1MiB",
    home: Annotated[
        Path | None, typer.Option("--home", help="fedtune home (default: $FEDTUNE_HOME).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an artifact already in --out.")
    ] = False,
) -> None:
    """Seal a safetensors model directory: encrypted blob + signed manifest; the key stays here."""
    segment = parse_size(segment_size)
    if not MIN_SEGMENT_SIZE <= segment <= MAX_SEGMENT_SIZE:
        raise typer.BadParameter(
            f"segment size must be between {MIN_SEGMENT_SIZE} B and {human_size(MAX_SEGMENT_SIZE)}",
            param_hint="--segment-size",
        )
    out_console, err = _out(), _err()
    root = _home(home)
    identity, created = load_or_create_identity(root)
    if created:
        err.print(
            f"[yellow]Created a new provider identity[/] at {identity_path(root)} "
            f"(fingerprint {identity.fingerprint}). It signs your manifests: back it up, keep it "
            "private; share its public key with your partners ('fedtune provider identity')."
        )
    model = scan_model_dir(model_dir)
    if model.skipped:
        err.print(f"[dim]left out (hidden or symlinked directories): {', '.join(model.skipped)}[/]")
    total = payload_size([(f.name, f.size) for f in model.files])
    with byte_progress(f"sealing {name}", total, console=err) as advance:
        artifact = seal_model_dir(
            model,
            out,
            name=name,
            version=version,
            identity=identity,
            keys_dir=data_keys_dir(root),
            segment_size=segment,
            overwrite=force,
            progress=advance,
        )
    manifest = artifact.signed.manifest
    rate = manifest.plaintext_size / artifact.seconds / 1e6 if artifact.seconds > 0 else 0.0
    table = Table(title=f"sealed {manifest.model_name} (version {manifest.model_version})")
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("files", f"{len(manifest.files)} ({model.tensor_count} tensors)"),
        ("plaintext", human_size(manifest.plaintext_size)),
        ("sealed", f"{human_size(manifest.sealed_size)} in {artifact.blob_path}"),
        ("segments", f"{manifest.segment_count} × {human_size(manifest.segment_size)}"),
        (f"ciphertext {manifest.digest_algorithm.upper()}", manifest.ciphertext_digest),
        ("manifest", f"{artifact.manifest_path} (signed by {identity.fingerprint})"),
        ("data key file", f"{artifact.key_path} (mode 0600, never leaves this machine)"),
        ("time", f"{artifact.seconds:.2f} s ({rate:.0f} MB/s)"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    out_console.print(table)
    out_console.print(f"data key id: {manifest.data_key_id}")


@app.command("verify")
def verify_command(
    artifact: Annotated[
        Path, typer.Argument(help="A sealed artifact directory (manifest.json + blob).")
    ],
    provider: Annotated[
        Path | None,
        typer.Option(
            "--provider",
            help="The provider's public key (PEM) to pin (default: the manifest's own key).",
        ),
    ] = None,
) -> None:
    """Check a sealed artifact without its key: manifest signature, blob size and digest."""
    out_console, err = _out(), _err()
    trusted = PublicIdentity.load(provider) if provider is not None else None
    signed, _ = open_manifest(artifact)
    with byte_progress("hashing", signed.manifest.sealed_size, console=err) as advance:
        report = verify_artifact(artifact, trusted=trusted, progress=advance)
    manifest = report.verified.manifest
    table = Table(title=f"{manifest.model_name} (version {manifest.model_version}): intact")
    table.add_column("check", style="bold")
    table.add_column("result")
    signer = report.verified.signer.fingerprint
    how = "pinned key" if report.verified.pinned else "key embedded in the manifest"
    table.add_row("manifest signature", f"[green]valid[/] ({how} {signer})")
    table.add_row("manifest sums", "[green]consistent[/] (sizes, segment count, files)")
    table.add_row("blob header", f"[green]matches[/] (key id {manifest.data_key_id[:16]}...)")
    table.add_row("blob size", f"[green]{human_size(report.blob.sealed_size)}[/]")
    table.add_row(
        f"ciphertext {report.blob.digest_algorithm.upper()}",
        f"[green]{report.blob.ciphertext_digest}[/]",
    )
    table.add_row("created", manifest.created_at.isoformat())
    out_console.print(table)
    if not report.verified.pinned:
        err.print(
            "[yellow]warning:[/] no --provider key given: the signature proves the artifact is "
            f"intact, not who made it. Compare {signer} with the provider's published "
            "fingerprint, or pass --provider PROVIDER.pem."
        )


@app.command("identity")
def identity_command(
    home: Annotated[
        Path | None, typer.Option("--home", help="fedtune home (default: $FEDTUNE_HOME).")
    ] = None,
    export_public: Annotated[
        Path | None,
        typer.Option("--export-public", help="Write the public key (PEM) here, for partners."),
    ] = None,
) -> None:
    """Show this provider's identity fingerprint (creating the identity on first use)."""
    root = _home(home)
    identity, created = load_or_create_identity(root)
    if created:
        _err().print(f"[yellow]Created a new provider identity[/] at {identity_path(root)}")
    _out().print(f"fingerprint: {identity.fingerprint}")
    if export_public is not None:
        identity.public.save(export_public)
        _out().print(f"public key written to {export_public}")


# The orchestrator-side commands (upload, policy set) register themselves on this app.
from fedtune.cli import provider_upload as _provider_upload  # noqa: E402, F401
