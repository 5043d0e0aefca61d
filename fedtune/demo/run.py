"""The demo from start to end: build the deployment, run a session, report, verify the audit log."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from crypto.atomicfile import atomic_write_bytes
from enclave.attest import SIMULATED_WARNING
from fedtune.audit import LogReader, SqliteAuditStore, VerifyReport, verify_log
from fedtune.datasets import label_counts
from fedtune.demo.errors import DemoError
from fedtune.demo.scenario import MODEL_NAME, MODEL_VERSION, DemoScenario
from fedtune.demo.world import DemoWorld, sandbox_threads
from fedtune.federated.deployment import RunResult
from fedtune.federated.report_model import SessionReport
from fedtune.orchestrator.deployment import DeploymentPaths
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.terms import DifferentialPrivacy, LoraSettings, SessionTerms
from fedtune.owner import JoinSpec, OwnerAgent
from fedtune.sandbox_client import SandboxClient

_log = logging.getLogger(__name__)
DEMO_LOG = "demo.log"


@dataclass
class DemoResult:
    """What the demo produced and where it put it."""

    root: Path
    session_id: str
    report: SessionReport
    audit: VerifyReport
    audit_vkey: str
    report_html: Path
    report_png: Path
    report_json: Path
    sealed_model: Path
    sealed_adapters: list[Path]
    logs: list[Path]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True when the session ran every round."""
        return self.report.status == "finished"


class _Phases:
    """One progress line per phase; the current one shows the step it is on."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._total = total
        self._index = 0
        self._task: TaskID | None = None
        self._started = 0.0
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._index += 1
        label = f"[{self._index}/{self._total}] {name}"
        self._task = self._progress.add_task(label, total=None, step="")
        self._started = time.monotonic()
        _log.info("phase %s started", name)
        try:
            yield
        except BaseException:
            self._progress.update(self._task, description=f"[red]✗[/] {label}", step="failed")
            self._progress.stop_task(self._task)
            raise
        seconds = time.monotonic() - self._started
        self.timings[name] = seconds
        self._progress.update(self._task, description=f"[green]✓[/] {label}", step="",
                              total=1, completed=1)
        self._progress.stop_task(self._task)
        _log.info("phase %s done in %.1f s", name, seconds)

    def step(self, text: str) -> None:
        """Show what the current phase is doing."""
        _log.debug("step: %s", text)
        if self._task is not None:
            self._progress.update(self._task, step=text)


_CHATTY = ("matplotlib", "PIL")


def _quiet_third_party(record: logging.LogRecord) -> bool:
    """Drop plotting libraries' debug chatter (font scans), keep everything else."""
    return record.levelno >= logging.INFO or not record.name.startswith(_CHATTY)


@contextlib.contextmanager
def _file_logging(path: Path, level: int) -> Iterator[None]:
    """Send this process's log records to ``path`` for the duration of the demo."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(level)
    handler.addFilter(_quiet_third_party)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(min(level, previous) if previous else level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def run_demo(
    root: Path,
    scenario: DemoScenario | None = None,
    *,
    console: Console | None = None,
    log_level: int = logging.INFO,
) -> DemoResult:
    """Build a deployment under ``root``, run one fine-tuning session on it, report and audit."""
    if not isinstance(root, Path):
        raise TypeError("root must be a pathlib.Path")
    scenario = DemoScenario() if scenario is None else scenario
    if not isinstance(scenario, DemoScenario):
        raise TypeError("scenario must be a DemoScenario")
    if not isinstance(log_level, int) or isinstance(log_level, bool):
        raise TypeError("log_level must be a logging level (int)")
    console = console or Console(stderr=True, highlight=False)
    root = root.resolve()
    columns = (
        SpinnerColumn(finished_text=" "),
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[step]}"),
    )
    with _file_logging(root / "logs" / DEMO_LOG, log_level), Progress(
        *columns, console=console, transient=False
    ) as progress:
        phases = _Phases(progress, 8)
        return _run(root, scenario, phases, console)


def _run(root: Path, scenario: DemoScenario, phases: _Phases, console: Console) -> DemoResult:
    started = time.monotonic()
    world = DemoWorld(root, scenario, progress=phases.step)
    try:
        with phases.phase("orchestrator: CA, SQLite state, blob folder, audit log"):
            world.start_orchestrator()
            world.enrol_parties()
        with phases.phase("provider: seal and upload the pretrained MiniLM, release policy"):
            world.seal_and_upload()
            console.print(f"[yellow]warning:[/] the release policy accepts the {SIMULATED_WARNING}")
        with phases.phase(f"{scenario.owners} data owners: non-IID stdlib-docstring records"):
            world.write_owner_data()
        console.print(_split_table(world))
        with phases.phase("session: terms proposed, signed by every owner, started"):
            terms = _open_session(world)
            world.start_superlink()
        with phases.phase("owners: sandboxes attest, get the key, load the sealed model"):
            agents = _prepare_agents(world, terms, phases)
        try:
            with phases.phase(f"federated rounds ({scenario.rounds}, {scenario.aggregation}"
                              + (", DP" if scenario.dp else "") + ")"):
                report = _run_rounds(world, terms, agents, phases)
                if report.status != "finished":
                    raise DemoError("rounds", f"the session {report.status}: {report.reason}")
            with phases.phase("results: sealed adapter, report"):
                adapters = _seal_adapters(world, terms, agents, phases)
        finally:
            for agent in agents:
                agent.close()
        vkey = world.require_server().audit_log.verifier.vkey
    finally:
        world.close()
    with phases.phase("audit verify: every signature and hash of the log"):
        audit = verify_audit(world.paths.orchestrator, vkey,
                             checkpoint=world.paths.audit_checkpoint)
    html, png, saved = _write_report(world, report, audit)
    phases.timings["total"] = time.monotonic() - started
    logs = sorted(
        {*root.rglob("*.log")} | {DeploymentPaths(world.paths.orchestrator).audit_log}
    )
    return DemoResult(
        root=root, session_id=terms.session_id, report=report, audit=audit, audit_vkey=vkey,
        report_html=html, report_png=png, report_json=saved,
        sealed_model=world.paths.sealed_model, sealed_adapters=adapters, logs=logs,
        timings=dict(phases.timings),
    )


def _split_table(world: DemoWorld) -> Table:
    """Records per label per owner: each owner holds a different, skewed slice."""
    split = world.split
    assert split is not None
    table = Table(title="owners' records (train + held-out) per label: non-IID",
                  title_justify="left")
    table.add_column("owner")
    for label in split.labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    for shard in split.owners:
        counts = label_counts([*shard.train, *shard.eval], split.labels)
        table.add_row(shard.name, *map(str, counts.values()), str(sum(counts.values())))
    return table


def _open_session(world: DemoWorld) -> SessionTerms:
    """The provider proposes terms and invites; every owner signs them; the session starts."""
    s = world.scenario
    provider = world.require_provider()
    sid = f"demo-{uuid.uuid4().hex[:8]}"
    n = len(world.owners)
    terms = SessionTerms(
        session_id=sid, model_name=MODEL_NAME, model_version=MODEL_VERSION,
        provider_fingerprint=provider.fingerprint,
        invited_owners=sorted(o.fingerprint for o in world.owners),
        rounds=s.rounds, aggregation=s.aggregation, min_participants=n,
        secagg_threshold=max(2, n - 1) if s.aggregation == "secagg" else None,
        dp=DifferentialPrivacy(
            enabled=True, clip_norm=s.dp_clip_norm, noise_multiplier=s.dp_noise_multiplier,
            delta=s.dp_delta,
        ) if s.dp else DifferentialPrivacy(),
        lora=LoraSettings(rank=s.lora_rank, alpha=s.lora_alpha),
        local_epochs=s.local_epochs, learning_rate=s.learning_rate, batch_size=s.batch_size,
        max_length=s.max_length, task="classification", labels=s.labels,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    world.progress("the provider proposes the terms")
    provider.client.create_session(
        terms, provider.identity, [o.identity.public.raw for o in world.owners]
    )
    provider.client.invite(terms, provider.identity)
    for owner in world.owners:
        world.progress(f"{owner.name} signs the terms")
        owner.client.accept(sid, owner.identity)
    provider.client.start_session(sid, "demo")
    world.pin_current_build()
    return terms


def _prepare_agents(world: DemoWorld, terms: SessionTerms, phases: _Phases) -> list[OwnerAgent]:
    """Each owner's agent: sandbox launched and attested, key released, model loaded."""
    runner = world.runner
    assert runner is not None and runner.deployment is not None
    s = world.scenario
    threads = s.threads_per_sandbox or sandbox_threads(len(world.owners))
    agents: list[OwnerAgent] = []
    for index, (owner, data) in enumerate(zip(world.owners, world.owner_data, strict=True)):
        spec = JoinSpec(
            session_id=terms.session_id, data_dir=data.data_dir,
            train_file="train.jsonl", eval_file="eval.jsonl",
            work_dir=world.paths.owner_work(index),
            superlink_address=runner.deployment.superlink_address,
            platform_key=world.platform, num_threads=threads,
        )
        agents.append(OwnerAgent(
            owner.config, spec, progress=lambda text, n=owner.name: phases.step(f"{n}: {text}")
        ))
    try:
        for agent in agents:
            agent.prepare()
        phases.step("the operator admits the owners' SuperNode keys")
        runner.admit_owners(terms.session_id)
        for agent in agents:
            agent.start_supernode()
    except BaseException:
        for agent in agents:
            agent.close()
        raise
    return agents


def _run_rounds(
    world: DemoWorld, terms: SessionTerms, agents: list[OwnerAgent], phases: _Phases
) -> SessionReport:
    """Submit the session app, follow its log until it ends, fetch the stored report."""
    runner = world.runner
    assert runner is not None
    run_id = runner.submit(terms.session_id)
    finished: list[object] = []
    waiter = threading.Thread(target=lambda: finished.append(runner.wait(run_id)), daemon=True)
    waiter.start()
    log = world.paths.flower / "flower" / "runs" / f"{run_id}.log"
    marker = f"session {terms.session_id}: "
    deadline = time.monotonic() + world.scenario.timeout_s + 60
    while waiter.is_alive() and time.monotonic() < deadline:
        waiter.join(timeout=1.0)
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        steps = [line.split(marker, 1)[1] for line in lines if marker in line]
        phases.step(steps[-1] if steps else "starting the ServerApp")
    if waiter.is_alive():
        raise DemoError("rounds", f"the run did not end within {world.scenario.timeout_s:.0f} s; "
                        f"see {log}")
    for agent in agents:
        agent.stop_supernode()
    result = finished[0]
    assert isinstance(result, RunResult)
    try:
        return runner.report(terms.session_id)
    except RemoteError as exc:
        if exc.code != "NOT_FOUND":
            raise
        tail = _last_error(result.log_path)
        raise DemoError(
            "rounds", f"the Flower run ended ({result.status}) without a session report"
            + (f": {tail}" if tail else "") + f"; the ServerApp's log is {result.log_path}"
        ) from exc


def _last_error(log: Path) -> str:
    """The last line of a run log that names an exception (what a user needs first)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line.strip() for line in lines if re.match(r"^\s*[\w.]+(Error|Exception): ", line)]
    return errors[-1][:300] if errors else ""


def _seal_adapters(
    world: DemoWorld, terms: SessionTerms, agents: list[OwnerAgent], phases: _Phases
) -> list[Path]:
    """Each sandbox seals the final adapter; the registry stores it; a copy lands on disk."""
    world.paths.adapters.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for owner, agent in zip(world.owners, agents, strict=True):
        if agent.sandbox is None:
            continue
        phases.step(f"{owner.name}: sealing the final adapter in its sandbox")
        with SandboxClient(agent.sandbox.socket_path) as sandbox:
            sealed = sandbox.seal_adapter(session_id=terms.session_id)
        owner.client.put_sealed_adapter(sealed)
        if not written:
            target = world.paths.adapters / f"{terms.session_id}.sealed"
            atomic_write_bytes(target, sealed.sealed)
            written.append(target)
    return written


def verify_audit(deployment_dir: Path, vkey: str, *, checkpoint: Path | None) -> VerifyReport:
    """``fedtune audit verify --db`` on the deployment's audit store, pinned to ``vkey``."""
    from crypto.note import NoteVerifier

    verifier = NoteVerifier.from_vkey(vkey)
    with SqliteAuditStore(DeploymentPaths(deployment_dir).audit_log, readonly=True) as store:
        return verify_log(
            LogReader(store), verifier, saved_checkpoint=checkpoint, origin=verifier.name,
            keep_events=True,
        )


def _write_report(
    world: DemoWorld, report: SessionReport, audit: VerifyReport
) -> tuple[Path, Path, Path]:
    """The HTML page (plot inline, audit facts), the PNG plot and the report's JSON."""
    from fedtune.federated.report import plot_png_bytes, write_html

    out = world.paths.report
    out.mkdir(parents=True, exist_ok=True)
    image = plot_png_bytes(report)
    png = out / "report.png"
    atomic_write_bytes(png, image)
    html = write_html(report, out / "report.html", audit_summary=audit, png=image)
    saved = out / "report.json"
    report.save(saved)
    return html, png, saved
