"""``fedtune owner``: a data owner joins a session (its policy, its sandbox, its SuperNode)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fedtune.orchestrator.client import OrchestratorClient
    from fedtune.orchestrator.terms import SessionTerms
    from fedtune.owner.participation import Outcome

app = typer.Typer(
    help="Data owner: write owner.toml, join a session with your records.", no_args_is_help=True
)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="fedtune home (default: $FEDTUNE_HOME).")
]
SESSION_POLL_S = 2.0


def _home(home: Path | None) -> Path:
    from fedtune.settings import load_settings

    return home if home is not None else load_settings().home


@app.command("init")
def init_command(
    out: Annotated[Path, typer.Argument(help="Where to write the starter owner.toml.")] = Path(
        "owner.toml"
    ),
    superlink: Annotated[
        str, typer.Option(help="HOST:PORT of the operator's SuperLink.")
    ] = "127.0.0.1:9092",
    simulated: Annotated[
        bool, typer.Option(help="Accept the simulated TEE (development only).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter owner.toml pinning the sandbox build installed here."""
    from crypto.atomicfile import atomic_write_bytes
    from enclave.attest import runtime_measurement
    from fedtune.owner.config import starter_config

    if out.exists() and not force:
        raise typer.BadParameter(f"{out} exists; pass --force to overwrite it")
    text = starter_config(superlink=superlink, measurement=runtime_measurement(),
                          simulated=simulated, label="installed build")
    atomic_write_bytes(out, text.encode("utf-8"), mode=0o644)
    Console().print(f"wrote {out}: review [bold]\\[policy][/] (re-measure the build you reviewed "
                    "with 'fedtune sandbox measure') before joining a session")


def _terms_table(terms: SessionTerms) -> Table:
    table = Table(title=f"session {terms.session_id}", show_header=False)
    table.add_row("model", f"{terms.model_name}@{terms.model_version}")
    table.add_row("provider", terms.provider_fingerprint)
    table.add_row("owners", str(len(terms.invited_owners)))
    table.add_row("rounds", f"{terms.rounds} ({terms.aggregation}, min {terms.min_participants})")
    table.add_row("task", f"{terms.task}  labels: {', '.join(terms.labels) or '-'}")
    table.add_row("DP", f"on (clip {terms.dp.clip_norm}, noise {terms.dp.noise_multiplier})"
                  if terms.dp.enabled else "off")
    table.add_row("re-attestation", f"every {terms.reattestation_interval_s} s")
    return table


def accept_terms(
    client: OrchestratorClient,
    session_id: str,
    *,
    console: Console,
    yes: bool,
    wait_s: float,
) -> SessionTerms:
    """Verify the terms (invited, the provider signed them), sign acceptance, wait until running."""
    from crypto.errors import SignatureError
    from crypto.identity import PublicIdentity
    from fedtune.orchestrator.terms import SIGNING_CONTEXT, SessionTerms
    from fedtune.owner.errors import JoinError
    from fedtune.owner.participation import STATES

    identity = client.config.load_identity()
    info = client.get_session(session_id)
    canonical = bytes(info.terms.canonical)
    terms = SessionTerms.model_validate_json(canonical)
    if terms.session_id != session_id or terms.canonical_bytes() != canonical:
        raise JoinError("terms", "the orchestrator's terms are not the session's canonical terms")
    if identity.fingerprint not in terms.invited_owners:
        raise JoinError("terms", f"you ({identity.fingerprint}) are not invited to {session_id}")
    people = {p.fingerprint: p for p in info.participants}
    provider = people.get(terms.provider_fingerprint)
    try:
        if provider is None or not provider.accepted:
            raise SignatureError("the provider has not signed the terms")
        signer = PublicIdentity.from_bytes(bytes(provider.public_key))
        if signer.fingerprint != terms.provider_fingerprint:
            raise SignatureError("the provider's listed key is someone else's")
        signer.verify(bytes(provider.acceptance_signature), canonical, context=SIGNING_CONTEXT)
    except SignatureError as exc:
        raise JoinError("terms", f"the provider's signature over the terms is not valid: {exc}; "
                        "do not join") from None
    me = people.get(identity.fingerprint)
    if me is None or not me.accepted:
        console.print(_terms_table(terms))
        if not yes:
            typer.confirm("Accept these terms (your signature goes on the record)?", abort=True)
        client.accept(session_id, identity)
        console.print("[green]signed[/] your acceptance of the terms")
    deadline = time.monotonic() + wait_s
    with console.status("waiting for the session to start") as status:
        while True:
            state = STATES.get(client.get_session(session_id).state, "unknown")
            if state == "running":
                return terms
            if state not in ("created", "open"):
                raise JoinError("session", f"session {session_id} is {state}; nothing to join")
            if time.monotonic() > deadline:
                raise JoinError("session", f"session {session_id} did not start within "
                                f"{wait_s:.0f} s (limits.session_wait_s)")
            status.update(f"waiting for the session to start ({state})")
            time.sleep(SESSION_POLL_S)


def _results(console: Console, outcome: Outcome) -> None:
    table = Table(title=f"your metrics, session {outcome.session_id}")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    before = outcome.before.metrics if outcome.before else {}
    after = outcome.after.metrics if outcome.after else {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        table.add_row(name, "-" if b is None else f"{b:.4f}", "-" if a is None else f"{a:.4f}")
    console.print(table)
    if outcome.sealed is not None:
        console.print(
            f"final adapter (after round {outcome.sealed.after_round}) sealed under the session "
            f"key: {outcome.sealed_path}\n  stored with the orchestrator as "
            f"{outcome.sealed.sealed_sha256}\n  it is exported only when the provider and every "
            f"owner approved: fedtune session approve-export {outcome.session_id}"
        )


def run_join(
    session_id: str,
    data: Path,
    config_path: Path,
    *,
    home: Path | None = None,
    yes: bool = False,
    jail: bool = True,
    console: Console | None = None,
) -> Outcome:
    """``fedtune owner join``: the whole join, from the terms to the sealed adapter."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from enclave.attest.simulated import load_or_create_platform_key, platform_key_path
    from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
    from fedtune.owner.agent import JoinSpec, OwnerAgent
    from fedtune.owner.config import OwnerConfig
    from fedtune.owner.errors import JailError, JoinError
    from fedtune.owner.jail import bubblewrap_available
    from fedtune.owner.participation import follow
    from fedtune.owner.records import check_records

    if not isinstance(data, Path) or not isinstance(config_path, Path):
        raise TypeError("data and config_path must be pathlib.Path")
    console = console or Console(highlight=False)
    root = _home(home)
    owner = OwnerConfig.load(config_path)
    client_config = ClientConfig.load(root)
    with OrchestratorClient(client_config) as client:
        terms = accept_terms(client, session_id, console=console, yes=yes,
                             wait_s=owner.limits.session_wait_s)
    # Every record is checked (file, line, field) before a sandbox exists.
    counts = check_records(data, owner.data.train, owner.data.eval, task=terms.task,
                           labels=terms.labels or None)
    console.print(f"records: {counts.train} in {owner.data.train}"
                  + (f", {counts.eval} in {owner.data.eval}" if counts.eval is not None else ""))
    if jail:
        why = bubblewrap_available()
        if why is not None:
            raise JailError(f"{why}; install bubblewrap, or pass --no-jail to run the SuperNode "
                            "unconfined (its ClientApp could then read your files)")
    else:
        console.print("[yellow]warning:[/] the SuperNode runs without a jail (--no-jail)")
    tee = owner.policy.tee
    platform = (load_or_create_platform_key(platform_key_path(root))
                if tee == "simulated" else None)
    spec = JoinSpec(
        session_id=session_id, data_dir=data.absolute(), train_file=owner.data.train,
        eval_file=owner.data.eval,
        work_dir=(owner.work_dir or root / "owner") / session_id[:16],
        superlink_address=owner.superlink.address, superlink_ca=owner.superlink.ca,
        tee="simulated" if tee == "simulated" else "configfs", platform_key=platform,
        num_threads=owner.limits.threads, sandbox_start_timeout_s=owner.limits.sandbox_start_s,
        supernode_wait_s=owner.limits.supernode_wait_s, policy=owner.policy, jail=jail,
        protected=(root.absolute(),),
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=False) as progress:
        step = progress.add_task("joining", total=None)
        rounds = progress.add_task("rounds trained", total=terms.rounds, visible=False)

        def note(text: str) -> None:
            progress.update(step, description=text)

        def on_round(done: int, total: int) -> None:
            progress.update(rounds, completed=min(done, total), visible=True)

        with OwnerAgent(client_config, spec, progress=note) as agent:
            agent.prepare()
            agent.start_supernode()
            note("serving the session's rounds")
            outcome = follow(
                agent, on_round=on_round, timeout_s=6 * 3600.0,
                reconnect_attempts=owner.limits.reconnect_attempts,
                reconnect_backoff_s=owner.limits.reconnect_backoff_s,
            )
            progress.update(step, description=f"session {outcome.state}", total=1, completed=1)
    _results(console, outcome)
    if outcome.state != "finished":
        raise JoinError("session", f"the session ended {outcome.state}: {outcome.reason}")
    return outcome


@app.command("join")
def join_command(
    session_id: Annotated[str, typer.Argument(help="The session you were invited to.")],
    data: Annotated[Path, typer.Option("--data", help="Your records directory.")],
    config: Annotated[
        Path, typer.Option("--config", help="owner.toml (write one with 'fedtune owner init').")
    ] = Path("owner.toml"),
    home: HomeOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Accept the terms without asking.")] = False,
    jail: Annotated[
        bool, typer.Option(help="Run the SuperNode in a bubblewrap jail (default).")
    ] = True,
) -> None:
    """Join a session: check the sandbox, stage your records, serve the rounds, seal results.

    Records: JSONL objects {"text": ..., "label": ...} or CSV with the header text,label.
    A label must be one of the session's labels; causal-LM sessions take "text" only.
    Every record is checked first: a bad one is named by file, line and field.
    """
    run_join(session_id, data, config, home=home, yes=yes, jail=jail)
