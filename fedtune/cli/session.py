"""``fedtune session``: create, invite, accept, start, cancel and watch fine-tuning sessions."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from fedtune.orchestrator.client import OrchestratorClient

app = typer.Typer(
    help="Fine-tuning sessions: terms, invitations, acceptance, status.", no_args_is_help=True
)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="fedtune home (default: $FEDTUNE_HOME).")
]
_STATES = {1: "created", 2: "open", 3: "running", 4: "finished", 5: "failed", 6: "cancelled"}


def _client(home: Path | None) -> tuple[OrchestratorClient, Path]:
    from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
    from fedtune.settings import load_settings

    root = home if home is not None else load_settings().home
    return OrchestratorClient(ClientConfig.load(root)), root


def _owner_key(value: str) -> bytes:
    """A data owner's public key: a PEM file, or 64 hex digits as 'fedtune enrol' printed it."""
    from crypto.identity import PublicIdentity

    path = Path(value)
    if path.is_file():
        return PublicIdentity.load(path).raw
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a PEM file nor a hex public key") from None
    if len(raw) != 32:
        raise typer.BadParameter(f"{value!r}: an Ed25519 public key is 32 bytes (64 hex digits)")
    return raw


def _fingerprint(raw: bytes) -> str:
    from crypto.identity import PublicIdentity

    return PublicIdentity.from_bytes(raw).fingerprint


def _render(info: object) -> Group:
    from fedtune.orchestrator.terms import SessionTerms

    terms = SessionTerms.model_validate_json(info.terms.canonical)  # type: ignore[attr-defined]
    head = Table(show_header=False, box=None)
    head.add_row("session", f"[bold]{info.session_id}[/]")  # type: ignore[attr-defined]
    head.add_row("state", f"[bold]{_STATES.get(info.state, '?')}[/]  {info.reason}")  # type: ignore[attr-defined]
    head.add_row("model", f"{terms.model_name}@{terms.model_version}")
    head.add_row("rounds", f"{terms.rounds}  ({terms.aggregation}, min {terms.min_participants})")
    head.add_row("DP", "on" if terms.dp.enabled else "off")
    people = Table(title="participants")
    people.add_column("role")
    people.add_column("identity")
    people.add_column("accepted")
    for p in info.participants:  # type: ignore[attr-defined]
        people.add_row(p.role, p.fingerprint[:24] + "...", "[green]yes[/]" if p.accepted else "no")
    moves = Table(title="transitions")
    moves.add_column("at")
    moves.add_column("to")
    moves.add_column("by")
    moves.add_column("reason")
    for t in info.transitions:  # type: ignore[attr-defined]
        moves.add_row(
            t.at.ToDatetime().isoformat(timespec="seconds"),
            _STATES.get(t.to_state, "?"),
            t.actor[:20] + "...",
            t.reason,
        )
    return Group(head, people, moves)


@app.command("create")
def create_command(
    model: Annotated[str, typer.Option(help="NAME@VERSION of a registered model.")],
    owner: Annotated[list[str], typer.Option(help="Invited data owner's public key. Repeatable.")],
    rounds: Annotated[int, typer.Option(min=1)] = 3,
    aggregation: Annotated[str, typer.Option(help="secagg or ckks.")] = "secagg",
    min_participants: Annotated[int | None, typer.Option(help="Default: every owner.")] = None,
    fraction: Annotated[
        float, typer.Option(help="Share of the online owners sampled each round (0, 1].")
    ] = 1.0,
    threshold: Annotated[int | None, typer.Option(help="SecAgg threshold (default: min).")] = None,
    dp: Annotated[bool, typer.Option(help="Client-level differential privacy.")] = False,
    clip_norm: Annotated[float, typer.Option()] = 1.0,
    noise_multiplier: Annotated[float, typer.Option()] = 0.0,
    delta: Annotated[float, typer.Option()] = 1e-5,
    lora_rank: Annotated[int, typer.Option()] = 8,
    lora_alpha: Annotated[float, typer.Option()] = 16.0,
    local_epochs: Annotated[int, typer.Option()] = 1,
    learning_rate: Annotated[float, typer.Option()] = 1e-4,
    batch_size: Annotated[int, typer.Option()] = 8,
    max_length: Annotated[int, typer.Option()] = 128,
    task: Annotated[str, typer.Option(help="classification or causal-lm.")] = "classification",
    label: Annotated[list[str] | None, typer.Option(help="Class label. Repeatable.")] = None,
    eval_fraction: Annotated[float, typer.Option()] = 0.2,
    reattest_s: Annotated[int, typer.Option(help="Re-attestation interval, seconds.")] = 3600,
    session_id: Annotated[str | None, typer.Option(help="Default: a random id.")] = None,
    key_broker_dir: Annotated[
        Path | None,
        typer.Option(help="Your standalone key broker ('fedtune provider broker init')."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Propose signed terms for a session on a registered model (state: created)."""
    from fedtune.orchestrator.terms import (
        DifferentialPrivacy,
        EvaluationSplit,
        LoraSettings,
        SessionTerms,
    )

    name, sep, version = model.rpartition("@")
    if not sep:
        raise typer.BadParameter("--model must be NAME@VERSION")
    keys = [_owner_key(o) for o in owner]
    client, _ = _client(home)
    with client:
        described = client.describe_model(name)
        n = min_participants or len(keys)
        terms = SessionTerms(
            session_id=session_id or uuid.uuid4().hex[:16],
            model_name=name,
            model_version=version,
            provider_fingerprint=described.owner_fingerprint,
            invited_owners=sorted(_fingerprint(k) for k in keys),
            rounds=rounds,
            aggregation=_literal(aggregation, ("secagg", "ckks"), "--aggregation"),
            min_participants=n,
            sample_fraction=fraction,
            secagg_threshold=(threshold or n) if aggregation == "secagg" else None,
            dp=DifferentialPrivacy(
                enabled=dp, clip_norm=clip_norm, noise_multiplier=noise_multiplier, delta=delta
            ),
            lora=LoraSettings(rank=lora_rank, alpha=lora_alpha),
            local_epochs=local_epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            task=_literal(task, ("classification", "causal-lm"), "--task"),
            labels=label or [],
            evaluation=EvaluationSplit(fraction=eval_fraction),
            reattestation_interval_s=reattest_s,
            key_broker=_broker_ref(key_broker_dir),
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        info = client.create_session(terms, client.config.load_identity(), keys)
        Console(highlight=False).print(_render(info))
        Console(highlight=False).print(
            f"next: 'fedtune session invite {terms.session_id}' sends the invitations"
        )


def _broker_ref(directory: Path | None) -> object:
    if directory is None:
        return None
    from fedtune.orchestrator.standalone import load_broker_info

    return load_broker_info(directory).ref


def _literal(value: str, allowed: tuple[str, ...], option: str) -> Literal["secagg", "ckks"]:
    if value not in allowed:
        raise typer.BadParameter(f"{option} must be one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]


@app.command("invite")
def invite_command(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    owner: Annotated[
        list[str] | None, typer.Option(help="Add this owner's key. Repeatable.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Send the invitations (optionally adding owners first): created -> open."""
    from fedtune.orchestrator.terms import SessionTerms

    keys = [_owner_key(o) for o in owner or []]
    client, _ = _client(home)
    with client:
        info = client.get_session(session_id)
        terms = SessionTerms.model_validate_json(info.terms.canonical)
        owners = sorted(set(terms.invited_owners) | {_fingerprint(k) for k in keys})
        amended = terms.model_copy(update={"invited_owners": owners})
        amended = SessionTerms.model_validate(amended.model_dump())
        info = client.invite(amended, client.config.load_identity(), keys)
        Console(highlight=False).print(_render(info))


@app.command("accept")
def accept_command(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    home: HomeOption = None,
) -> None:
    """Show the terms and sign them (your acceptance)."""
    client, _ = _client(home)
    with client:
        info = client.get_session(session_id)
        console = Console(highlight=False)
        console.print(_render(info))
        console.print_json(info.terms.canonical.decode())
        if not yes and not typer.confirm("Sign these terms?"):
            raise typer.Exit(1)
        info = client.accept(session_id, client.config.load_identity())
        console.print("[bold green]accepted[/]")


@app.command("start")
def start_command(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    reason: Annotated[str, typer.Option()] = "started",
    home: HomeOption = None,
) -> None:
    """open -> running (every invited party accepted)."""
    client, _ = _client(home)
    with client:
        Console(highlight=False).print(_render(client.start_session(session_id, reason)))


@app.command("cancel")
def cancel_command(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    reason: Annotated[str, typer.Option(help="Why (recorded and audited).")],
    home: HomeOption = None,
) -> None:
    """Cancel a session that has not ended."""
    client, _ = _client(home)
    with client:
        Console(highlight=False).print(_render(client.cancel_session(session_id, reason)))


@app.command("status")
def status_command(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow changes live until it ends.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Show a session; with --watch, a live view fed by the server's status stream."""
    client, _ = _client(home)
    console = Console(highlight=False)
    with client:
        if not watch:
            console.print(_render(client.get_session(session_id)))
            return
        with Live(console=console, auto_refresh=False) as live:
            for info in client.watch_session(session_id):
                live.update(_render(info), refresh=True)


@app.command("run")
def run_command(
    session_id: Annotated[str, typer.Argument(help="The session (running, owners joined).")],
    deployment_dir: Annotated[
        Path, typer.Option("--dir", help="The orchestrator's deployment directory (its CA).")
    ],
    workdir: Annotated[
        Path | None,
        typer.Option(help="SuperLink state, logs and results (default: DIR/flower-runs)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address the SuperLink binds.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="The SuperLink's port (owners dial it).")] = 9092,
    public_host: Annotated[
        list[str] | None,
        typer.Option(help="A name owners dial the SuperLink by, for its certificate (default: "
                     "the deployment's hosts). Repeatable."),
    ] = None,
    key_wait: Annotated[
        float, typer.Option(help="Seconds to wait for the owners' SuperNode keys.")
    ] = 600.0,
    timeout: Annotated[float, typer.Option(help="Seconds the whole run may take.")] = 6 * 3600.0,
    keep_aggregates: Annotated[
        bool,
        typer.Option(help="Secure aggregation: keep each round's committed average (which the "
                     "aggregator learns anyway) in the results directory, for audits."),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write the per-round plot here (default: report.png in the results "
                     "directory)."),
    ] = None,
) -> None:
    """Run a session's rounds on Flower: SuperLink, the owners' SuperNodes, the ServerApp."""
    import threading

    from rich.status import Status

    from fedtune.federated.report import show_report
    from fedtune.federated.runner import RunnerSpec, SessionRunner
    from fedtune.federated.server_app import SessionFailedError
    from fedtune.orchestrator.deployment import load_info

    console = Console(highlight=False)
    spec = RunnerSpec(
        deployment_dir=deployment_dir, workdir=workdir or deployment_dir / "flower-runs",
        host=host, port=port,
        public_hosts=tuple(public_host or load_info(deployment_dir).hosts),
        key_wait_s=key_wait, run_timeout_s=timeout, keep_aggregates=keep_aggregates,
    )
    with Status("starting", console=console) as status, SessionRunner(
        spec, progress=lambda text: status.update(text)
    ) as runner:
        info = runner.start_superlink()
        console.print(f"SuperLink on [bold]{info.address}[/] (TLS, registered SuperNodes only)")
        admitted = runner.admit_owners(session_id)
        console.print(f"admitted {len(admitted)} owner SuperNode(s)")
        run_id = runner.submit(session_id)
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(runner.wait(run_id)), daemon=True)
        waiter.start()
        log = spec.workdir / "flower" / "runs" / f"{run_id}.log"
        marker = f"session {session_id}: "
        while waiter.is_alive():
            waiter.join(timeout=1.0)
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            steps = [line.split(marker, 1)[1] for line in lines if marker in line]
            status.update(f"run {run_id}: {steps[-1] if steps else 'starting the ServerApp'}")
        report = runner.report(session_id)
    destination = plot or runner.results_dir(session_id) / "report.png"
    show_report(report, png=destination, console=console)
    if report.status != "finished":
        raise SessionFailedError(session_id, report.reason)


@app.command("report")
def report_command(
    session_id: Annotated[str, typer.Argument(help="The session.")],
    plot: Annotated[Path | None, typer.Option(help="Write the per-round plot (PNG).")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an HTML report.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Save the report's JSON here.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Show the report the aggregator stored: before/after per owner, rounds, privacy."""
    from fedtune.federated.report import show_report
    from fedtune.federated.report_model import SessionReport

    client, _ = _client(home)
    with client:
        document = client.get_session_report(session_id)
    report = SessionReport.model_validate_json(document.report)
    if json_out is not None:
        report.save(json_out)
    show_report(report, png=plot, html=html, console=Console(highlight=False))


@app.command("approve-export")
def approve_export_command(
    session_id: Annotated[str, typer.Argument(help="The finished session.")],
    home: HomeOption = None,
) -> None:
    """Sign your approval to export the session's sealed adapter (exactly the stored bytes)."""
    from fedtune.owner.export import approve_export

    console = Console(highlight=False)
    client, _ = _client(home)
    with client:
        status = approve_export(client, session_id)
    table = Table(title=f"export approvals, session {session_id}")
    table.add_column("party")
    table.add_column("identity")
    table.add_column("approved")
    for role, fingerprint in status.approved:
        table.add_row(role, fingerprint, "[green]yes[/]")
    for role, fingerprint in status.missing:
        table.add_row(role, fingerprint, "[red]missing[/]")
    console.print(table)
    console.print(f"you approved exporting {status.adapter_sha256}"
                  + ("; every party approved" if not status.missing
                     else f"; {len(status.missing)} approval(s) still missing"))


@app.command("export")
def export_command(
    session_id: Annotated[str, typer.Argument(help="The finished session.")],
    out: Annotated[Path, typer.Option("--out", help="A new directory for the PEFT adapter.")],
    home: HomeOption = None,
) -> None:
    """Write the fine-tuned adapter as a PEFT directory, once every party approved."""
    from fedtune.owner.export import export_adapter

    client, _ = _client(home)
    with client:
        exported = export_adapter(client, session_id, out)
    Console(highlight=False).print(
        f"exported the adapter of {session_id} to {exported.path} "
        f"({', '.join(exported.files)}); load it with "
        "peft.PeftModel.from_pretrained(base_model, path)"
    )
