"""The aggregator's side of a session: evaluation, the rounds (SecAgg+ or CKKS), the record.

One :class:`SessionDriver` runs a whole session over an :class:`~.transport.Exchange`:

1. **Evaluate before**: every owner's sandbox reports its status (adapter length and layout)
   and its held-out metrics for the initial adapter.
2. **Rounds** 1..``rounds``: sample owners (``sample_fraction`` of those online, never fewer
   than ``min_participants``), then
   - *secagg* (default): ONE message per owner trains from the global adapter and answers
     the SecAgg+ setup; then share_keys, collect_masked_vectors and unmask, each one
     exchange (``crypto.secagg.SecAggServer`` drives them). The server learns the weighted
     average of the survivors' updates (FedAvg, weights = example counts, or 1 with DP) and
     commits it: the next round's global adapter is the initial one plus the committed
     averages, which is all the aggregator sends (``PlainDelta``). Dropouts up to
     ``n - threshold`` still give the correct sum; more fail the round (and the session).
   - *ckks*: ONE message per owner applies the encrypted aggregates it has not applied yet,
     trains, and answers its weighted update encrypted under the session's CKKS key. The
     aggregator adds the ciphertexts with the public context and never sees a sum; fewer
     valid ciphertexts than ``min_participants`` fail the round.
3. **Evaluate after** with the final global adapter.

Everything the aggregator sees happen goes on the audit log through a :class:`Recorder`:
round start and finish, every dropout and exclusion with its reason, the digest of every
committed aggregate, every evaluation, and the DP epsilon spent. The result is a
``SessionReport``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from google.protobuf.message import DecodeError

from crypto.atomicfile import atomic_write_bytes
from crypto.errors import CkksError, RoundFailedError
from crypto.secagg import ExclusionReason, RoundParams, SecAggServer
from crypto.secagg.params import (
    DEFAULT_CLIP,
    DEFAULT_MAX_WEIGHT,
    MIN_PARTICIPANTS,
    default_degree,
    default_threshold,
)
from enclave._proto import sandbox_pb2
from enclave.sandbox.convert import adapter_to_proto
from enclave.sandbox.training import AdapterSource, CkksAggregates, InitialAdapter, PlainDelta
from fedtune.federated.errors import FederatedError
from fedtune.federated.messages import CallBatch, CallReplies
from fedtune.federated.report_model import Exclusion, OwnerMetrics, RoundRecord, SessionReport
from fedtune.federated.transport import Dropped, Exchange, Outcome, Stage, online_ids
from fedtune.orchestrator.rounds import RoundEvent, RoundEventKind
from fedtune.orchestrator.terms import SessionTerms

__all__ = [
    "DriverSettings",
    "Owner",
    "Recorder",
    "SessionDriver",
    "SessionFailed",
    "aggregate_digest",
    "round_params",
]

_MAX_REASON = 1000


class Recorder(Protocol):
    """Where the aggregator's round events go (the orchestrator's audit log)."""

    def record(self, events: Sequence[RoundEvent]) -> None:
        """Put the events on the record, in order; raise if they cannot be."""
        ...


@dataclass(frozen=True)
class Owner:
    """A data owner taking part: its identity fingerprint and its Flower node."""

    fingerprint: str
    node_id: int
    name: str = ""


@dataclass(frozen=True)
class DriverSettings:
    """Deadlines per stage and what to keep; the session terms decide everything else."""

    train_timeout_s: float = 900.0
    stage_timeout_s: float = 120.0
    evaluate_timeout_s: float = 600.0
    node_wait_s: float = 60.0
    aggregates_dir: Path | None = None
    """Secure aggregation only: write each committed round average (the plaintext the
    aggregator learns anyway) as ``round-<r>.f32`` there. For audits and tests; off by default
    because the global adapter is the parties' joint result (DESIGN promise 4)."""

    def __post_init__(self) -> None:
        for name in ("train_timeout_s", "stage_timeout_s", "evaluate_timeout_s", "node_wait_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds")
            if not 0 < value <= 24 * 3600:
                raise ValueError(f"{name} must be in (0, 86400] seconds, got {value}")
        if self.aggregates_dir is not None and not isinstance(self.aggregates_dir, Path):
            raise TypeError("aggregates_dir must be a pathlib.Path or None")


def aggregate_digest(data: bytes) -> str:
    """The digest the audit log and the report name a committed aggregate by."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def round_params(
    session_id: str, round_number: int, participants: Sequence[int], vector_length: int,
    *, min_threshold: int,
) -> RoundParams:
    """SecAgg+ parameters for a round: the default graph, the threshold at least the terms'."""
    n = len(participants)
    if n < MIN_PARTICIPANTS:
        raise ValueError(f"secure aggregation needs at least {MIN_PARTICIPANTS} owners, got {n}")
    degree = default_degree(n)
    threshold = max(default_threshold(degree), min_threshold)
    # A higher threshold needs more holders per secret: widen the graph until it fits.
    while threshold > degree + 1 or (n * degree) % 2:
        if degree + 1 > n - 1:
            raise ValueError(f"threshold {min_threshold} cannot be met with {n} owners")
        degree += 1
        threshold = max(default_threshold(degree), min_threshold)
    return RoundParams.create(
        session_id.encode("utf-8"), round_number, participants, vector_length,
        degree=degree, threshold=threshold, clip=DEFAULT_CLIP, max_weight=DEFAULT_MAX_WEIGHT,
    )


@dataclass
class _Round:
    """What one round collected, for its events and its report row."""

    number: int
    started_at: dt.datetime
    sampled: list[Owner]
    trained: dict[int, tuple[int, dict[str, float]]] = field(default_factory=dict)
    dropped: dict[int, tuple[str, str]] = field(default_factory=dict)  # node -> (stage, reason)
    excluded: dict[int, tuple[str, str]] = field(default_factory=dict)
    contributors: list[int] = field(default_factory=list)
    total_weight: float = 0.0
    digest: str | None = None
    epsilon: float | None = None
    failure: str = ""


class SessionFailed(FederatedError):
    """The session cannot go on (a round without an aggregate, too few owners); says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SessionDriver:
    """Runs one session's evaluation and rounds over an exchange, recording every step."""

    def __init__(
        self,
        terms: SessionTerms,
        owners: Sequence[Owner],
        exchange: Exchange,
        recorder: Recorder,
        *,
        settings: DriverSettings | None = None,
        public_context: bytes | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(terms, SessionTerms):
            raise TypeError("terms must be SessionTerms")
        owners = list(owners)
        if not owners or not all(isinstance(o, Owner) for o in owners):
            raise TypeError("owners must be a non-empty sequence of Owner")
        if len({o.node_id for o in owners}) != len(owners):
            raise ValueError("two owners share a node")
        unknown = {o.fingerprint for o in owners} - set(terms.invited_owners)
        if unknown:
            raise ValueError(f"owners not invited by the terms: {sorted(unknown)}")
        if terms.aggregation == "ckks" and not public_context:
            raise ValueError("a CKKS session needs the session's public context")
        self.terms = terms
        self.session_id = terms.session_id
        self.owners = owners
        self._by_node = {o.node_id: o for o in owners}
        self._exchange = exchange
        self._recorder = recorder
        self.settings = settings or DriverSettings()
        self._public = public_context
        self._clock = clock
        self._progress = progress or (lambda _: None)
        self._random = secrets.SystemRandom()
        self.adapter_length = 0
        self._eligible: list[Owner] = []
        self._global_delta: np.ndarray | None = None  # secagg: committed averages, summed
        self._aggregates: list[tuple[int, bytes]] = []  # ckks: (round, encrypted aggregate)
        self._applied: dict[int, int] = {}  # ckks: node -> last aggregate round it applied
        self._zero: bytes | None = None
        self._accountant = None
        if terms.dp.enabled:
            from fedtune.federated.accounting import DpFedAvgAccountant

            self._accountant = DpFedAvgAccountant(len(terms.invited_owners))

    # -- requests -------------------------------------------------------------------------------

    def _adapter(self, node: int) -> AdapterSource:
        if self.terms.aggregation == "ckks":
            applied = self._applied.get(node, 0)
            return CkksAggregates(tuple((r, b) for r, b in self._aggregates if r > applied))
        if self._global_delta is None:
            return InitialAdapter()
        return PlainDelta(self._global_delta.astype("<f4").tobytes())

    def _train(self, round_number: int, node: int) -> bytes:
        return sandbox_pb2.SandboxTrainRequest(
            round=round_number, adapter=adapter_to_proto(self._adapter(node)),
            session_id=self.session_id,
        ).SerializeToString()

    def _evaluate(self, node: int) -> bytes:
        return sandbox_pb2.SandboxEvaluateRequest(
            split="eval", adapter=adapter_to_proto(self._adapter(node)),
            session_id=self.session_id,
        ).SerializeToString()

    @staticmethod
    def _secagg(message: bytes) -> bytes:
        return sandbox_pb2.SandboxExportUpdateRequest(secagg=message).SerializeToString()

    def _ckks_export(self, round_number: int) -> bytes:
        return sandbox_pb2.SandboxExportUpdateRequest(
            ckks=sandbox_pb2.SandboxCkksExport(round=round_number, session_id=self.session_id)
        ).SerializeToString()

    def _batch(self, methods: Sequence[str], requests: Sequence[bytes]) -> CallBatch:
        return CallBatch(self.session_id, tuple(methods), tuple(requests))

    # -- recording ------------------------------------------------------------------------------

    def _record(self, *events: RoundEvent) -> None:
        if events:
            self._recorder.record(list(events))

    def _event(self, kind: RoundEventKind, round_number: int, **values: object) -> RoundEvent:
        reason = str(values.pop("reason", ""))[:_MAX_REASON]
        return RoundEvent(kind=kind, round=round_number, reason=reason, **values)  # type: ignore[arg-type]

    def _answers(
        self, node: int, outcome: Outcome | None, batch: CallBatch
    ) -> tuple[list[bytes] | None, str]:
        """The replies of a fully answered batch, or None and why it was not."""
        if outcome is None:
            return None, "no reply"
        if isinstance(outcome, Dropped):
            return None, outcome.reason
        assert isinstance(outcome, CallReplies)
        if outcome.failure is not None:
            return None, outcome.failure.describe()
        if not outcome.answered(batch):
            return None, "the relay answered other calls than those sent"
        return list(outcome.replies), ""

    # -- the session ----------------------------------------------------------------------------

    def run(self) -> SessionReport:
        """Evaluate, run every round, evaluate again; the report (status failed on a failure)."""
        started = self._clock()
        rounds: list[RoundRecord] = []
        status, reason = "finished", ""
        before: list[OwnerMetrics] = []
        after: list[OwnerMetrics] = []
        last = 0
        try:
            before = self._evaluate_before()
            for number in range(1, self.terms.rounds + 1):
                last = number
                record = self._round(number)
                rounds.append(record)
        except SessionFailed as failure:
            status, reason = "failed", failure.reason
        if status == "finished" or self._global_delta is not None or self._aggregates:
            after = self._evaluate_after(max(last, 1))
        epsilon = self._accountant.epsilon(self.terms.dp.delta) if self._accountant else None
        return SessionReport(
            session_id=self.session_id,
            model=f"{self.terms.model_name}@{self.terms.model_version}",
            aggregation=self.terms.aggregation,
            task=self.terms.task,
            status=status,
            reason=reason,
            started_at=started,
            finished_at=self._clock(),
            before=before,
            after=after,
            rounds=rounds,
            dp_delta=self.terms.dp.delta if self.terms.dp.enabled else None,
            dp_epsilon=epsilon if self.terms.dp.enabled and math.isfinite(epsilon or 0) else None,
        )

    def _evaluation_events(
        self, stage: Stage, round_number: int, outcomes: Mapping[int, Outcome],
        batches: Mapping[int, CallBatch], *, with_status: bool,
    ) -> tuple[list[OwnerMetrics], dict[int, sandbox_pb2.SandboxStatus]]:
        metrics: list[OwnerMetrics] = []
        statuses: dict[int, sandbox_pb2.SandboxStatus] = {}
        events = []
        for node, batch in batches.items():
            owner = self._by_node[node]
            replies, why = self._answers(node, outcomes.get(node), batch)
            try:
                if replies is not None:
                    if with_status:
                        statuses[node] = sandbox_pb2.SandboxStatus.FromString(replies[0])
                    result = sandbox_pb2.SandboxEvaluateResponse.FromString(replies[-1])
            except DecodeError:
                replies, why = None, "the sandbox's answer does not parse"
            if replies is None:
                events.append(self._event(RoundEventKind.DROPOUT, round_number,
                                          party=owner.fingerprint, stage=stage.value, reason=why))
                continue
            values = {k: float(v) for k, v in result.metrics.items() if math.isfinite(v)}
            metrics.append(OwnerMetrics(owner=owner.fingerprint, name=owner.name,
                                        num_examples=int(result.num_examples), metrics=values))
            shown = dict(sorted(values.items())[:16])
            events.append(self._event(
                RoundEventKind.EVALUATION, round_number, party=owner.fingerprint,
                stage=stage.value, metrics=shown,
                details={"examples": str(int(result.num_examples))},
            ))
        self._record(*events)
        return metrics, statuses

    def _evaluate_before(self) -> list[OwnerMetrics]:
        self._progress("evaluating the initial adapter")
        status = sandbox_pb2.SandboxStatusRequest().SerializeToString()
        batches = {o.node_id: self._batch(("Status", "Evaluate"), (status, self._evaluate(
            o.node_id))) for o in self.owners}
        outcomes = self._exchange.exchange(
            Stage.EVALUATE_BEFORE, batches, round_number=0,
            timeout_s=self.settings.evaluate_timeout_s,
        )
        metrics, statuses = self._evaluation_events(
            Stage.EVALUATE_BEFORE, 0, outcomes, batches, with_status=True
        )
        layouts = {
            n: (s.adapter_length, s.adapter_fingerprint)
            for n, s in statuses.items()
            if s.session_id == self.session_id and s.adapter_length > 0
        }
        if not layouts:
            raise SessionFailed("no sandbox answered the evaluation before round 1")
        counts: dict[tuple[int, str], int] = {}
        for layout in layouts.values():
            counts[layout] = counts.get(layout, 0) + 1
        agreed = max(counts, key=lambda k: (counts[k], k))
        self.adapter_length = int(agreed[0])
        exclusions = []
        for node in statuses:
            if layouts.get(node) == agreed:
                continue
            owner = self._by_node[node]
            exclusions.append(self._event(
                RoundEventKind.EXCLUSION, 1, party=owner.fingerprint,
                stage=Stage.EVALUATE_BEFORE.value,
                reason="its adapter layout or session differs from the other sandboxes' "
                f"({layouts.get(node, (0, 'unconfigured'))[1]} vs {agreed[1]}); left out of "
                "the session",
            ))
        self._record(*exclusions)
        # Owners that did not answer stay eligible: they may be back for round 1.
        self._eligible = [o for o in self.owners
                          if o.node_id not in statuses or layouts.get(o.node_id) == agreed]
        return metrics

    def _evaluate_after(self, round_number: int) -> list[OwnerMetrics]:
        self._progress("evaluating the final adapter")
        batches = {o.node_id: self._batch(("Evaluate",), (self._evaluate(o.node_id),))
                   for o in self._eligible}
        outcomes = self._exchange.exchange(
            Stage.EVALUATE_AFTER, batches, round_number=round_number,
            timeout_s=self.settings.evaluate_timeout_s,
        )
        metrics, _ = self._evaluation_events(
            Stage.EVALUATE_AFTER, round_number, outcomes, batches, with_status=False
        )
        return metrics

    # -- a round --------------------------------------------------------------------------------

    def _sample(self, number: int) -> list[Owner]:
        import time

        need = self.terms.min_participants
        deadline = time.monotonic() + self.settings.node_wait_s
        while True:
            online = online_ids(self._exchange.nodes())
            available = [o for o in self._eligible if o.node_id in online]
            if len(available) >= need or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        if len(available) < need:
            raise SessionFailed(
                f"round {number}: {len(available)} owner(s) online, the terms need "
                f"{need} (min_participants)"
            )
        count = max(need, math.ceil(self.terms.sample_fraction * len(available)))
        return sorted(self._random.sample(available, min(count, len(available))),
                      key=lambda o: o.node_id)

    def _round(self, number: int) -> RoundRecord:
        try:
            sampled = self._sample(number)
        except SessionFailed as failure:
            self._record(self._event(RoundEventKind.ROUND_FAILED, number, reason=failure.reason))
            raise
        state = _Round(number, self._clock(), sampled)
        self._progress(f"round {number}: {len(sampled)} owners")
        self._record(self._event(
            RoundEventKind.ROUND_START, number,
            details={"sampled": str(len(sampled)), "aggregation": self.terms.aggregation},
        ))
        try:
            if self.terms.aggregation == "ckks":
                self._ckks_round(state)
            else:
                self._secagg_round(state)
        except SessionFailed as failure:
            state.failure = failure.reason
            self._record_round_end(state)
            raise
        self._record_round_end(state)
        return self._round_record(state)

    def _record_round_end(self, state: _Round) -> None:
        events = []
        for node, (stage, why) in sorted(state.dropped.items()):
            events.append(self._event(RoundEventKind.DROPOUT, state.number,
                                      party=self._by_node[node].fingerprint, stage=stage,
                                      reason=why))
        for node, (stage, why) in sorted(state.excluded.items()):
            events.append(self._event(RoundEventKind.EXCLUSION, state.number,
                                      party=self._by_node[node].fingerprint, stage=stage,
                                      reason=why))
        if state.failure:
            events.append(self._event(RoundEventKind.ROUND_FAILED, state.number,
                                      reason=state.failure))
            self._record(*events)
            return
        assert state.digest is not None
        events.append(self._event(
            RoundEventKind.AGGREGATE_COMMIT, state.number, digest=state.digest,
            details={"contributors": str(len(state.contributors)),
                     "aggregation": self.terms.aggregation},
        ))
        metrics = {"total_weight": float(state.total_weight),
                   "contributors": float(len(state.contributors))}
        loss = self._train_loss(state)
        if loss is not None:
            metrics["train_loss"] = loss
        if state.epsilon is not None and math.isfinite(state.epsilon):
            metrics["epsilon"] = state.epsilon
            metrics["delta"] = self.terms.dp.delta
        events.append(self._event(
            RoundEventKind.ROUND_FINISH, state.number, metrics=metrics,
            details={"dropped": str(len(state.dropped)), "excluded": str(len(state.excluded))},
        ))
        self._record(*events)

    def _train_loss(self, state: _Round) -> float | None:
        """The contributors' mean local training loss, weighted by their example counts."""
        losses = [
            (examples, metrics["mean_loss"])
            for examples, metrics in (state.trained[n] for n in state.contributors
                                      if n in state.trained)
            if examples > 0 and math.isfinite(metrics.get("mean_loss", math.nan))
        ]
        if not losses:
            return None
        return sum(n * v for n, v in losses) / sum(n for n, _ in losses)

    def _round_record(self, state: _Round) -> RoundRecord:
        fp = {n: o.fingerprint for n, o in self._by_node.items()}
        return RoundRecord(
            round=state.number,
            started_at=state.started_at,
            finished_at=self._clock(),
            participants=[fp[n] for n in state.contributors],
            dropped=[fp[n] for n in sorted(state.dropped)],
            excluded=[Exclusion(owner=fp[n], stage=s, reason=r)
                      for n, (s, r) in sorted(state.excluded.items())],
            num_examples=round(state.total_weight),
            train_loss=self._train_loss(state),
            aggregate_digest=state.digest,
            epsilon=state.epsilon,
        )

    def _train_replies(
        self, state: _Round, outcomes: Mapping[int, Outcome], batches: Mapping[int, CallBatch]
    ) -> dict[int, bytes]:
        """The export replies of nodes that trained; dropouts noted with their reason."""
        exports = {}
        for node, batch in batches.items():
            replies, why = self._answers(node, outcomes.get(node), batch)
            if replies is not None:
                try:
                    train = sandbox_pb2.SandboxTrainResponse.FromString(replies[0])
                    export = sandbox_pb2.SandboxExportUpdateResponse.FromString(replies[1])
                except DecodeError:
                    replies, why = None, "the sandbox's answer does not parse"
            if replies is None:
                state.dropped[node] = (self._failed_stage(outcomes.get(node)), why)
                continue
            state.trained[node] = (int(train.num_examples), dict(train.metrics))
            exports[node] = bytes(export.reply)
        return exports

    def _failed_stage(self, outcome: Outcome | None) -> str:
        """Where a train message failed: training, or the aggregation step sent with it."""
        if (
            isinstance(outcome, CallReplies)
            and outcome.failure is not None
            and outcome.failure.method == "ExportUpdate"
        ):
            return "setup" if self.terms.aggregation == "secagg" else "encrypt"
        return Stage.TRAIN.value

    def _account(self, state: _Round) -> None:
        if self._accountant is None:
            return
        dp = self.terms.dp
        calibrated = (
            (self.terms.secagg_threshold or self.terms.min_participants)
            if self.terms.aggregation == "secagg" else self.terms.min_participants
        )
        # The noise of every contributor reached the released sum; dropped ones' did not.
        self._accountant.record_round(
            dp.noise_multiplier, sampled=len(state.sampled), calibrated_for=calibrated,
            noised=len(state.contributors),
        )
        state.epsilon = self._accountant.epsilon(dp.delta)

    # -- secure aggregation ---------------------------------------------------------------------

    def _secagg_round(self, state: _Round) -> None:
        ids = [o.node_id for o in state.sampled]
        try:
            params = round_params(
                self.session_id, state.number, ids, self.adapter_length,
                min_threshold=self.terms.secagg_threshold or 2,
            )
        except ValueError as exc:
            raise SessionFailed(f"round {state.number}: {exc}") from None
        server = SecAggServer(params)
        notes: dict[int, tuple[str, str]] = {}

        def stage(step: Stage, requests: Mapping[int, bytes], timeout: float) -> dict[int, bytes]:
            batches = {n: self._batch(("ExportUpdate",), (self._secagg(r),))
                       for n, r in requests.items()}
            outcomes = self._exchange.exchange(step, batches, round_number=state.number,
                                               timeout_s=timeout)
            answers = {}
            for node, batch in batches.items():
                replies, why = self._answers(node, outcomes.get(node), batch)
                try:
                    if replies is not None:
                        reply = sandbox_pb2.SandboxExportUpdateResponse.FromString(replies[0])
                        answers[node] = bytes(reply.reply)
                        continue
                except DecodeError:
                    why = "the sandbox's answer does not parse"
                notes[node] = (step.value, why)
            return answers

        try:
            self._progress(f"round {state.number}: training + setup")
            setup = server.setup_requests()
            batches = {n: self._batch(("Train", "ExportUpdate"),
                                      (self._train(state.number, n), self._secagg(setup[n])))
                       for n in ids}
            outcomes = self._exchange.exchange(Stage.TRAIN, batches, round_number=state.number,
                                               timeout_s=self.settings.train_timeout_s)
            answers = self._train_replies(state, outcomes, batches)
            notes.update(state.dropped)
            server.receive_setup(answers)
            timeout = self.settings.stage_timeout_s
            self._progress(f"round {state.number}: share keys")
            server.receive_share_keys(stage(Stage.SHARE_KEYS, server.share_keys_requests(),
                                            timeout))
            self._progress(f"round {state.number}: collect masked vectors")
            server.receive_masked_vectors(stage(Stage.COLLECT, server.collect_requests(),
                                                timeout))
            self._progress(f"round {state.number}: unmask")
            result = server.receive_unmask(stage(Stage.UNMASK, server.unmask_requests(), timeout))
        except RoundFailedError as exc:
            self._note_exclusions(state, server, notes)
            raise SessionFailed(
                f"round {state.number} failed, no aggregate: {type(exc).__name__}: {exc}"
            ) from None
        self._note_exclusions(state, server, notes)
        committed = np.asarray(result.average, dtype="<f4")
        data = committed.tobytes()
        state.digest = aggregate_digest(data)
        state.contributors = list(result.contributors)
        state.total_weight = float(result.total_weight)
        delta = committed.astype(np.float64)
        self._global_delta = delta if self._global_delta is None else self._global_delta + delta
        if self.settings.aggregates_dir is not None:
            atomic_write_bytes(self.settings.aggregates_dir / f"round-{state.number}.f32", data)
        self._account(state)

    def _note_exclusions(
        self, state: _Round, server: SecAggServer, notes: Mapping[int, tuple[str, str]]
    ) -> None:
        for exclusion in server.exclusions:
            node = exclusion.client_id
            if node not in self._by_node or node in state.dropped or node in state.excluded:
                continue
            if exclusion.reason is ExclusionReason.NO_RESPONSE:
                stage, why = notes.get(node, (exclusion.stage.value, "no response"))
                state.dropped[node] = (stage, why)
            else:
                detail = f": {exclusion.detail}" if exclusion.detail else ""
                state.excluded[node] = (
                    exclusion.stage.value, f"{exclusion.reason.value}{detail}"[:_MAX_REASON]
                )

    # -- CKKS -----------------------------------------------------------------------------------

    def _zero_blob(self) -> bytes:
        if self._zero is None:
            from crypto.ckks import encrypt_vector

            self._zero = encrypt_vector(self._public, np.zeros(self.adapter_length + 1))
        return self._zero

    def _ckks_round(self, state: _Round) -> None:
        from crypto.ckks import add_encrypted

        ids = [o.node_id for o in state.sampled]
        self._progress(f"round {state.number}: training + encrypting")
        batches = {n: self._batch(("Train", "ExportUpdate"),
                                  (self._train(state.number, n), self._ckks_export(state.number)))
                   for n in ids}
        outcomes = self._exchange.exchange(Stage.TRAIN, batches, round_number=state.number,
                                           timeout_s=self.settings.train_timeout_s)
        blobs = self._train_replies(state, outcomes, batches)
        valid: dict[int, bytes] = {}
        for node, blob in sorted(blobs.items()):
            # The sandbox applied every aggregate it was sent before training.
            self._applied[node] = state.number - 1
            try:
                # Summing with an encryption of zeros of the agreed length checks the blob
                # parses, holds ciphertexts, and has the length every update must have.
                add_encrypted(self._public, [self._zero_blob(), blob])
            except (CkksError, TypeError, ValueError) as exc:
                state.excluded[node] = (Stage.TRAIN.value,
                                        f"malformed-ciphertext: {exc}"[:_MAX_REASON])
                continue
            valid[node] = blob
        need = self.terms.min_participants
        if len(valid) < need:
            raise SessionFailed(
                f"round {state.number} failed, no aggregate: {len(valid)} valid encrypted "
                f"update(s), the terms need {need} (min_participants)"
            )
        aggregate = add_encrypted(self._public, [valid[n] for n in sorted(valid)])
        self._aggregates.append((state.number, aggregate))
        state.digest = aggregate_digest(aggregate)
        state.contributors = sorted(valid)
        state.total_weight = float(sum(state.trained[n][0] for n in valid))
        self._account(state)
