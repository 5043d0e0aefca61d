"""``fedtune audit``: verify the tamper-evident audit log, and review its timeline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

app = typer.Typer(
    help="Verify the tamper-evident audit log and review who did what.", no_args_is_help=True
)

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="HOST:PORT of a standalone audit service (plaintext channel). Without --server "
        "and --db: the orchestrator you enrolled with, over your mutual-TLS identity.",
    ),
]
DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="Read a local audit store file directly (operator on this host)."),
]
OriginOpt = Annotated[
    str | None,
    typer.Option("--origin", help="The log's origin line (default: the log key's name)."),
]
SinceOpt = Annotated[
    Path | None,
    typer.Option(
        "--since-checkpoint",
        help="The checkpoint saved by your last successful verify (default: one file per log "
        "under $FEDTUNE_HOME/audit/).",
    ),
]


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@contextlib.contextmanager
def _source(server: str | None, db: Path | None) -> Iterator[tuple[object, str]]:
    """The log to read: the enrolled orchestrator (mTLS), a standalone service, or a store file."""
    if server is not None and db is not None:
        raise typer.BadParameter("give at most one of --server HOST:PORT or --db PATH")
    if server is None and db is None:
        # The orchestrator hosts the audit service on its API port, behind mutual TLS: use the
        # identity this party enrolled with ($FEDTUNE_HOME).
        from fedtune.audit.client import AuditClient
        from fedtune.orchestrator.client import ClientConfig
        from fedtune.orchestrator.client.api import mtls_channel
        from fedtune.settings import load_settings

        config = ClientConfig.load(load_settings().home)
        with AuditClient(config.server, channel=mtls_channel(config)) as client:
            yield client, f"orchestrator at {config.server} (as {config.role.value} {config.name})"
        return
    if server is not None:
        from fedtune.audit.client import AuditClient

        with AuditClient(server) as client:
            yield client, f"audit service at {server}"
    else:
        from fedtune.audit import LogReader, SqliteAuditStore

        assert db is not None
        with SqliteAuditStore(db, readonly=True) as store:
            yield LogReader(store), f"store file {db}"


def _load_key(value: str, *, origin: str | None, source: object) -> object:
    """A ``NoteVerifier`` from a vkey (``name+id+key``), a file holding one, or a PEM public key."""
    from crypto.errors import KeyFileError, MalformedVerifierKeyError, NoteError
    from crypto.identity import PublicIdentity
    from crypto.note import Checkpoint, NoteVerifier, parse_note

    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--log-key"
        ) from None
    if text.startswith("-----BEGIN"):
        try:
            public = PublicIdentity.from_pem(text.encode("ascii"))
        except (KeyFileError, UnicodeEncodeError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--log-key") from None
        if origin is None:
            # A PEM key has no name; the log's key name is its origin line (C2SP). Taking that
            # line unverified is safe: the signature only verifies under our key with the right
            # name, so a wrong name fails verification rather than passing it.
            try:
                origin = Checkpoint.from_text(parse_note(source.checkpoint())[0]).origin  # type: ignore[attr-defined]
            except NoteError as exc:
                raise typer.BadParameter(f"the log's checkpoint is malformed: {exc}") from None
        try:
            return NoteVerifier.from_public(origin, public)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--origin") from None
    try:
        return NoteVerifier.from_vkey(text)
    except MalformedVerifierKeyError as exc:
        raise typer.BadParameter(
            f"{exc} (expected NAME+KEYID+BASE64, a file holding it, or a PEM public key)",
            param_hint="--log-key",
        ) from None


@contextlib.contextmanager
def _progress() -> Iterator[object]:
    """A progress callback for long downloads, drawn on stderr."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err(), transient=True) as bar:
        tasks: dict[str, object] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]

        yield update


@app.command()
def verify(
    log_key: Annotated[
        str,
        typer.Option(
            "--log-key",
            help="The log's verifier key: NAME+KEYID+BASE64 (note vkey), a file holding it, or "
            "a PEM Ed25519 public key file.",
        ),
    ],
    server: ServerOpt = None,
    db: DbOpt = None,
    since_checkpoint: SinceOpt = None,
    origin: OriginOpt = None,
) -> None:
    """Check signatures, recompute the tree from every entry, and compare with your last checkpoint.

    Exits non-zero naming the first bad entry (or the fork/truncation) when anything is off;
    on success saves the new checkpoint for next time.
    """
    from crypto.note import NoteVerifier
    from fedtune.audit import default_checkpoint_path, verify_log
    from fedtune.settings import load_settings

    with _source(server, db) as (source, where):
        verifier = _load_key(log_key, origin=origin, source=source)
        assert isinstance(verifier, NoteVerifier)
        log_origin = origin or verifier.name
        saved = since_checkpoint or default_checkpoint_path(log_origin, load_settings().home)
        with _progress() as progress:
            report = verify_log(
                source,  # type: ignore[arg-type]
                verifier,
                saved_checkpoint=saved,
                origin=log_origin,
                progress=progress,  # type: ignore[arg-type]
            )
    if report.previous_size is None:
        history = "first verification: no earlier checkpoint to compare with"
    elif report.previous_size == report.size:
        history = f"unchanged since your checkpoint of size {report.previous_size}"
    else:
        history = (
            f"consistent with your checkpoint of size {report.previous_size} "
            f"(+{report.size - report.previous_size} entries)"
        )
    lines = Text()
    lines.append("✓ verified ", style="bold green")
    lines.append(f"{report.origin} from {where}\n")
    lines.append(f"  entries   {report.entries_checked} (every hash recomputed)\n")
    lines.append(f"  root      {report.root_hash.hex()}\n")
    lines.append(f"  history   {history}\n")
    lines.append(f"  saved     {report.saved_to}")
    _out().print(Panel(lines, title="audit log", border_style="green", expand=False))


@app.command()
def show(
    server: ServerOpt = None,
    db: DbOpt = None,
    log_key: Annotated[
        str | None,
        typer.Option("--log-key", help="Verify before showing (strongly recommended)."),
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only this actor (fingerprint or hex prefix).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")
    ] = None,
    since_checkpoint: SinceOpt = None,
    origin: OriginOpt = None,
) -> None:
    """Show the log as a timeline of who did what; refusals are highlighted."""
    from crypto.note import NoteVerifier
    from fedtune.audit import default_checkpoint_path, read_events, verify_log
    from fedtune.audit.report import ReportHeader, filter_events, timeline_table, write_html
    from fedtune.settings import load_settings

    with _source(server, db) as (source, where):
        if log_key is not None:
            verifier = _load_key(log_key, origin=origin, source=source)
            assert isinstance(verifier, NoteVerifier)
            log_origin = origin or verifier.name
            saved = since_checkpoint or default_checkpoint_path(log_origin, load_settings().home)
            with _progress() as progress:
                report = verify_log(
                    source,  # type: ignore[arg-type]
                    verifier,
                    saved_checkpoint=saved,
                    origin=log_origin,
                    update_saved=False,  # showing is read-only; `verify` moves the checkpoint
                    keep_events=True,
                    progress=progress,  # type: ignore[arg-type]
                )
            events = list(report.events)
            header = ReportHeader(
                report.origin, report.size, report.root_hash, True, verifier.vkey, where
            )
        else:
            _err().print(
                Panel(
                    Text(
                        "NOT verified: pass --log-key to check signatures and every hash "
                        "before trusting this timeline.",
                        style="bold yellow",
                    ),
                    border_style="yellow",
                )
            )
            with _progress() as progress:
                checkpoint, events = read_events(source, progress=progress)  # type: ignore[arg-type]
            header = ReportHeader(
                checkpoint.origin, checkpoint.size, checkpoint.root_hash, False, None, where
            )
    try:
        shown = filter_events(events, session=session, actor=actor)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--actor") from None
    title = f"{header.origin}: {len(shown)} of {header.size} events"
    if session:
        title += f", session {session}"
    console = _out()
    console.print(timeline_table(shown, title=title))
    refused = sum(1 for _, e in shown if e.refused)
    if refused:
        console.print(Text(f"{refused} refused or failed", style="bold red"))
    if html is not None:
        write_html(html, shown, header)
        console.print(f"HTML report written to {html}")
