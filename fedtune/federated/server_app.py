"""The ServerApp: runs a fedtune session's rounds on Flower's Deployment Engine, as the operator.

Started by ``flwr run`` on the SuperLink's machine (``fedtune session run`` submits it). From
the run config it takes the session id, the operator's fedtune home (its orchestrator client
configuration) and where to write results. Then it

1. fetches the session from the orchestrator and verifies, itself, that the provider and every
   invited owner signed these exact terms and that each owner signed its SuperNode key
   (``participants.verify_session``);
2. maps owners to Flower nodes by the key the SuperLink admitted each node with, never by what
   a node says about itself, waiting (bounded) for the owners' SuperNodes to come online;
3. for CKKS sessions fetches the session's public context from the key broker (no secret);
4. runs the session (``aggregator.SessionDriver``), putting every round event on the audit log
   (``RecordRoundEvents``), stores the ``SessionReport`` (``report.json`` in the results
   directory and ``PutSessionReport``) and moves the session to finished or failed with the
   reason (``FinishSession``).

A failed session makes the run fail too (``flwr ls`` shows ``finished:failed`` with the reason).

Threat model note: in secure-aggregation mode the aggregator learns each round's average
update, hence the global adapter (FedAvg needs no less); it never sees one owner's update
unmasked. In CKKS mode it learns nothing about the updates, not even the sum.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedtune.federated.aggregator import DriverSettings, Owner, SessionDriver
from fedtune.federated.appdir import ConfigValue
from fedtune.federated.errors import FederatedError
from fedtune.federated.participants import VerifiedSession, match_nodes, verify_session
from fedtune.federated.report_model import SessionReport
from fedtune.federated.transport import Exchange, FlowerExchange
from fedtune.orchestrator.rounds import RoundEvent

__all__ = [
    "RUN_CONFIG",
    "OrchestratorRecorder",
    "RunSettings",
    "SessionFailedError",
    "app",
    "run_session",
]

_log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
AGGREGATES_DIR = "aggregates"

RUN_CONFIG: dict[str, ConfigValue] = {
    "session-id": "",
    "orchestrator-home": "",
    "results-dir": "",
    "train-timeout-s": 900.0,
    "stage-timeout-s": 120.0,
    "evaluate-timeout-s": 600.0,
    "node-wait-s": 120.0,
    "poll-interval-s": 0.2,
    "keep-aggregates": False,
}
"""Run-config keys of the session app, with their defaults (``appdir.write_app_dir``)."""


class SessionFailedError(FederatedError):
    """The session ended without finishing its rounds; the reason is on the audit log."""

    def __init__(self, session_id: str, reason: str) -> None:
        self.session_id = session_id
        self.reason = reason
        super().__init__(f"session {session_id} failed: {reason}")


@dataclass(frozen=True)
class RunSettings:
    """The run config of one session run, checked."""

    session_id: str
    orchestrator_home: Path
    results_dir: Path
    driver: DriverSettings
    poll_interval_s: float

    @classmethod
    def from_run_config(cls, config: Mapping[str, ConfigValue]) -> RunSettings:
        """Read and check the run config (ValueError names the key that is wrong)."""
        values = {**RUN_CONFIG, **dict(config)}
        session = str(values["session-id"])
        if not session:
            raise ValueError("run config session-id is empty: name the session to run")
        paths = {}
        for key in ("orchestrator-home", "results-dir"):
            path = Path(str(values[key]))
            if not str(values[key]) or not path.is_absolute():
                raise ValueError(f"run config {key} must be an absolute path, got {path!s}")
            paths[key] = path
        numbers = {}
        for key in ("train-timeout-s", "stage-timeout-s", "evaluate-timeout-s", "node-wait-s",
                    "poll-interval-s"):
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"run config {key} must be a number, got {value!r}")
            numbers[key] = float(value)
        keep = values["keep-aggregates"]
        if not isinstance(keep, bool):
            raise ValueError("run config keep-aggregates must be true or false")
        results = paths["results-dir"]
        return cls(
            session_id=session,
            orchestrator_home=paths["orchestrator-home"],
            results_dir=results,
            driver=DriverSettings(
                train_timeout_s=numbers["train-timeout-s"],
                stage_timeout_s=numbers["stage-timeout-s"],
                evaluate_timeout_s=numbers["evaluate-timeout-s"],
                node_wait_s=numbers["node-wait-s"],
                aggregates_dir=results / AGGREGATES_DIR if keep else None,
            ),
            poll_interval_s=numbers["poll-interval-s"],
        )


class OrchestratorRecorder:
    """Sends the aggregator's round events to the orchestrator (one audit entry each)."""

    def __init__(self, client: object, session_id: str) -> None:
        self._client = client
        self._session_id = session_id

    def record(self, events: Sequence[RoundEvent]) -> None:
        """``RecordRoundEvents`` for these events, in order."""
        from fedtune._proto import sessions_pb2
        from fedtune.orchestrator.services.sessions import EVENT_KIND_TO_PROTO

        messages = [
            sessions_pb2.RoundEvent(
                kind=EVENT_KIND_TO_PROTO[e.kind], round=e.round, party=e.party, stage=e.stage,
                reason=e.reason, digest=e.digest, metrics=dict(e.metrics),
                details=dict(e.details),
            )
            for e in events
        ]
        self._client.record_round_events(self._session_id, messages)  # type: ignore[attr-defined]


def wait_for_owners(
    exchange: Exchange, session: VerifiedSession, *, wait_s: float, poll_s: float = 1.0
) -> list[Owner]:
    """The owners whose SuperNode (by signed key) is online, waiting up to ``wait_s`` for all."""
    deadline = time.monotonic() + wait_s
    expected = [o for o in session.owners if o.node_key]
    while True:
        found = {fp: node for fp, node in match_nodes(exchange.nodes(), expected).items()
                 if node.online}
        if len(found) == len(expected) or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    # The node's registered name is the owner's fingerprint: no display name to add.
    return sorted((Owner(fp, node.node_id, "" if node.name == fp else node.name)
                   for fp, node in found.items()), key=lambda o: o.node_id)


def run_session(grid: Grid, config: Mapping[str, ConfigValue]) -> SessionReport:
    """Verify the session, run it over ``grid``, record everything; the report."""
    from fedtune.orchestrator.client import ClientConfig, OrchestratorClient

    settings = RunSettings.from_run_config(config)
    client_config = ClientConfig.load(settings.orchestrator_home)
    with OrchestratorClient(client_config) as client:
        session = verify_session(client.get_session(settings.session_id))
        if session.state != "running":
            raise SessionFailedError(session.session_id, f"the session is {session.state}, "
                                     "not running: start it ('fedtune session start') first")
        started = dt.datetime.now(dt.UTC)
        try:
            report = _run(grid, settings, session, client, client_config)
        except SessionFailedError as exc:
            report = _failed_report(session, exc.reason, started)
        except BaseException as exc:
            # Never leave a session running for a run that is gone; the cause is in the log.
            _log.exception("the aggregator failed")
            reason = f"the aggregator failed: {type(exc).__name__}: {exc}"[:1000]
            try:
                client.finish_session(settings.session_id, failed=True, reason=reason)
            except Exception:  # logged; the original error is what matters
                _log.exception("could not mark session %s failed", settings.session_id)
            raise
        report.save(settings.results_dir / REPORT_NAME)
        client.put_session_report(settings.session_id, report.model_dump_json().encode())
        client.finish_session(
            settings.session_id, failed=report.status == "failed",
            reason=report.reason or f"{len(report.rounds)} round(s) done",
        )
    if report.status == "failed":
        raise SessionFailedError(settings.session_id, report.reason)
    return report


def _failed_report(session: VerifiedSession, reason: str, started: dt.datetime) -> SessionReport:
    terms = session.terms
    return SessionReport(
        session_id=session.session_id, model=f"{terms.model_name}@{terms.model_version}",
        aggregation=terms.aggregation, task=terms.task, status="failed", reason=reason,
        started_at=started, finished_at=dt.datetime.now(dt.UTC),
        dp_delta=terms.dp.delta if terms.dp.enabled else None,
    )


def _run(
    grid: Grid, settings: RunSettings, session: VerifiedSession, client: object,
    client_config: object,
) -> SessionReport:
    terms = session.terms
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    if settings.driver.aggregates_dir is not None:
        if terms.aggregation != "secagg":
            raise ValueError("keep-aggregates applies to secure aggregation only (in a CKKS "
                             "session the aggregator has no plaintext to keep)")
        settings.driver.aggregates_dir.mkdir(parents=True, exist_ok=True)
    exchange = FlowerExchange(grid, poll_interval_s=settings.poll_interval_s)
    owners = wait_for_owners(exchange, session, wait_s=settings.driver.node_wait_s)
    public = None
    if terms.aggregation == "ckks":
        public = _public_context(client, client_config, session)
    recorder = OrchestratorRecorder(client, session.session_id)
    if len(owners) < terms.min_participants:
        missing = sorted({o.fingerprint for o in session.owners} - {o.fingerprint for o in owners})
        raise SessionFailedError(
            session.session_id,
            f"{len(owners)} owner SuperNode(s) online after {settings.driver.node_wait_s:.0f} s, "
            f"the terms need {terms.min_participants}; missing: {', '.join(missing)}",
        )
    _log.info("session %s: %d owners on nodes %s", session.session_id, len(owners),
              [o.node_id for o in owners])
    driver = SessionDriver(
        terms, owners, exchange, recorder, settings=settings.driver, public_context=public,
        progress=lambda text: _log.info("session %s: %s", session.session_id, text),
    )
    return driver.run()


def _public_context(client: object, client_config: object, session: VerifiedSession) -> bytes:
    """The CKKS public context from the broker the terms name, checked to hold no secret key."""
    from crypto.ckks import load_context

    ref = session.terms.key_broker
    if ref is None:
        reply = client.public_context(session.session_id)  # type: ignore[attr-defined]
    else:
        from fedtune.orchestrator.standalone import broker_client

        with broker_client(client_config, ref) as broker:  # type: ignore[arg-type]
            reply = broker.public_context(session.session_id)
    context = bytes(reply.context)
    load_context(context, secret=False)  # CkksContextError if the secret key came along
    return context


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the session the run config names."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_session(grid, context.run_config)
