"""Follow one joined session to its end: progress, re-attestation, reconnects, the results.

:func:`follow` runs beside the owner's SuperNode (started by ``OwnerAgent.start_supernode``)
and polls, every ``poll_s``: the session's state at the orchestrator and the owner's own
sandbox (the last round it trained). It re-attests the sandbox every
``terms.reattestation_interval_s`` seconds (the key broker's policy and the owner's own), and
restarts the SuperNode when its process ended while the session still runs (a dropped
connection), at most ``reconnect_attempts`` times with doubling back-off. When the session
finished, the sandbox seals the final adapter (stored with the orchestrator; plaintext exists
nowhere else) and the owner's before/after metrics are read from the session report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from enclave.sandbox.adapter_seal import SealedAdapter
from fedtune.federated.errors import ProcessStartError
from fedtune.federated.report_model import OwnerMetrics, SessionReport
from fedtune.orchestrator.client import OrchestratorClient
from fedtune.orchestrator.errors import RemoteError
from fedtune.owner.agent import OwnerAgent
from fedtune.owner.errors import JoinError, ParticipationStopped
from fedtune.sandbox_client import SandboxClient

__all__ = ["Outcome", "follow"]

STATES = {1: "created", 2: "open", 3: "running", 4: "finished", 5: "failed", 6: "cancelled"}
ENDED = frozenset({"finished", "failed", "cancelled"})

RoundProgress = Callable[[int, int], None]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How the owner's participation ended, and what it produced."""

    session_id: str
    state: str
    reason: str
    rounds_trained: int
    report: SessionReport | None
    before: OwnerMetrics | None
    after: OwnerMetrics | None
    sealed: SealedAdapter | None
    sealed_path: Path | None
    reattestations: int
    restarts: int


def _state(client: OrchestratorClient, session_id: str) -> tuple[str, str]:
    info = client.get_session(session_id)
    return STATES.get(info.state, "unknown"), info.reason


def follow(
    agent: OwnerAgent,
    *,
    on_round: RoundProgress | None = None,
    poll_s: float = 1.0,
    timeout_s: float = 6 * 3600.0,
    reconnect_attempts: int = 5,
    reconnect_backoff_s: float = 5.0,
) -> Outcome:
    """Serve the session until it ends (bounded by ``timeout_s``); its outcome for this owner."""
    if not isinstance(agent, OwnerAgent):
        raise TypeError("agent must be an OwnerAgent")
    for name, value in (("poll_s", poll_s), ("timeout_s", timeout_s),
                        ("reconnect_backoff_s", reconnect_backoff_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds")
    if isinstance(reconnect_attempts, bool) or not isinstance(reconnect_attempts, int) or (
        reconnect_attempts < 0
    ):
        raise ValueError("reconnect_attempts must be an int >= 0")
    if agent.prepared is None or agent.sandbox is None or agent.deployment is None:
        raise JoinError("follow", "prepare() and start_supernode() first")
    session_id = agent.spec.session_id
    terms = agent.prepared.session.terms
    interval = float(terms.reattestation_interval_s)
    deadline = time.monotonic() + timeout_s
    next_attest = time.monotonic() + interval
    reattestations = 0
    trained = 0
    with OrchestratorClient(agent.config) as client:
        while True:
            state, reason = _state(client, session_id)
            with SandboxClient(agent.sandbox.socket_path, timeout=10) as sandbox:
                trained = max(trained, sandbox.status().last_round)
            if on_round is not None:
                on_round(trained, terms.rounds)
            if state in ENDED:
                break
            now = time.monotonic()
            if now >= deadline:
                raise ParticipationStopped(
                    "timeout", f"the session is still {state} after {timeout_s:.0f} s"
                )
            if now >= next_attest:
                agent.reattest()
                reattestations += 1
                next_attest = time.monotonic() + interval
            if not agent.supernode_running():
                if agent.restarts >= reconnect_attempts:
                    raise ParticipationStopped(
                        "supernode",
                        f"the SuperNode stopped {agent.restarts + 1} times; gave up after "
                        f"{reconnect_attempts} reconnect(s) (its log: "
                        f"{agent.spec.work_dir / 'flower' / 'logs'})",
                    )
                time.sleep(min(reconnect_backoff_s * 2 ** agent.restarts,
                               max(0.0, deadline - time.monotonic())))
                try:
                    agent.restart_supernode()
                except ProcessStartError as exc:
                    # Still unreachable (or the SuperLink still holds the old connection):
                    # the attempt counts, the next one waits twice as long.
                    _log.warning("restarting the SuperNode failed: %s", exc)
                continue
            time.sleep(poll_s)
        sealed = sealed_path = None
        report = None
        try:
            report = SessionReport.model_validate_json(
                client.get_session_report(session_id).report
            )
        except RemoteError:
            report = None  # the aggregator stored none (it failed before the end)
    if state == "finished":
        sealed, sealed_path = agent.seal_adapter()
    me = agent.config.fingerprint

    def mine(metrics: list[OwnerMetrics]) -> OwnerMetrics | None:
        return next((m for m in metrics if m.owner == me), None)

    return Outcome(
        session_id=session_id, state=state, reason=reason, rounds_trained=trained,
        report=report,
        before=mine(report.before) if report else None,
        after=mine(report.after) if report else None,
        sealed=sealed, sealed_path=sealed_path, reattestations=reattestations,
        restarts=agent.restarts,
    )
