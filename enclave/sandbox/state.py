"""The runtime's in-memory state machine: attested -> key installed -> model loaded -> configured.

Every operation validates, does its work on the side, and commits only when it succeeded, so a
failed call (a wrong key, a forged manifest, a tampered segment, a bad record) leaves the state
exactly as it was and the call can be retried. Mutating calls run one at a time (a lock);
``status()`` reads a snapshot and never waits for a long Train.

Phases, in order (each call names the phase it needs):

- ``started``: the runtime serves; only Attest and Status are useful.
- ``attested``: evidence was produced at least once; secrets can be installed.
- ``key-installed``: the model data key is installed (reinstalling replaces it).
- ``model-loaded``: the unsealed model directory sits in memory.
- ``configured``: records loaded, task model built; the plaintext files are wiped. Train,
  Evaluate and ExportUpdate work from here on.

The final adapter: each Evaluate whose global adapter follows a trained round (secure
aggregation: this sandbox trained a round; CKKS: an aggregate was applied) keeps that adapter
vector; at the end of a session that is the final global adapter of the evaluation after the
last round. ``SealAdapter`` seals it under the session key (``adapter_seal``): it never leaves
in plaintext.

Configure is the last step of the owner agent's set-up and locks it: from then on InstallKey,
LoadModel and Configure are refused (``ConfigurationLocked``), so code that reaches the socket
later (the Flower relay) can use the sandbox only as the signed terms allow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import numpy as np

from crypto.hpke import Kem, RecipientPrivateKey
from crypto.identity import PublicIdentity
from enclave.attest.binding import NONCE_SIZE, report_data_for
from enclave.attest.evidence import Evidence
from enclave.attest.provider import EvidenceProvider
from enclave.sandbox.adapter_seal import SealedAdapter, seal_adapter
from enclave.sandbox.aggregation import RoundExport
from enclave.sandbox.errors import (
    AdapterNotReady,
    ConfigurationLocked,
    InvalidRequest,
    KeyMismatch,
    RoundError,
    TermsError,
    WrongPhase,
    WrongSession,
)
from enclave.sandbox.isolation import IsolationReport
from enclave.sandbox.keys import (
    InstalledCkksContext,
    InstalledKey,
    SecretKind,
    open_ckks_context,
    open_data_key,
)
from enclave.sandbox.model_loading import (
    ModelSummary,
    UnsealedModel,
    check_manifest,
    parse_manifest,
    unseal_model,
)
from enclave.sandbox.terms import SandboxTerms, SignedSessionTerms, verify_session_terms
from enclave.sandbox.training import AdapterSource, InitialAdapter, TrainingSession, TrainOutcome


class Phase(StrEnum):
    """Where the runtime is in its life (see the module doc)."""

    STARTED = "started"
    ATTESTED = "attested"
    KEY_INSTALLED = "key-installed"
    MODEL_LOADED = "model-loaded"
    CONFIGURED = "configured"


_ORDER = list(Phase)
_T = TypeVar("_T")


@dataclass(frozen=True)
class AttestResult:
    """What Attest returns: evidence bound to the nonce and the ephemeral public key."""

    evidence: Evidence
    ephemeral_public_key: bytes
    measurement: bytes
    isolation: IsolationReport


@dataclass(frozen=True)
class ConfigureResult:
    """What Configure returns: the adapter's shape and how many records each split holds."""

    session_id: str
    task: str
    adapter_length: int
    adapter_fingerprint: str
    train_examples: int
    eval_examples: int
    rounds: int = 0


@dataclass(frozen=True)
class ExportResult:
    """One ExportUpdate answer."""

    reply: bytes
    stage: str
    done: bool


@dataclass(frozen=True)
class Snapshot:
    """What Status reports; replaced whole after every call."""

    phase: Phase
    isolation: IsolationReport
    measurement: bytes
    evidence_kind: str
    model: ModelSummary | None = None
    session_id: str = ""
    aggregation: str = ""
    rounds_trained: int = 0
    last_round: int = 0
    ckks_rounds_applied: int = 0
    update_pending: bool = False
    secrets: tuple[str, ...] = field(default_factory=tuple)
    adapter_length: int = 0
    adapter_fingerprint: str = ""
    rounds: int = 0
    locked: bool = False
    adapter_ready: bool = False
    adapter_after_round: int = 0


class SandboxState:
    """The runtime's state and the operations the gRPC service maps onto."""

    def __init__(
        self,
        provider: EvidenceProvider,
        *,
        evidence_kind: str,
        measurement: bytes,
        isolation: IsolationReport,
        data_root: Path,
        num_threads: int,
        kem: Kem = Kem.MLKEM768_X25519,
    ) -> None:
        if not isinstance(provider, EvidenceProvider):
            raise TypeError("provider must be an EvidenceProvider")
        if not isinstance(measurement, bytes):
            raise TypeError("measurement must be bytes")
        if len(measurement) != 48:
            raise ValueError("measurement must be a 48-byte SHA-384 digest")
        if not isinstance(isolation, IsolationReport):
            raise TypeError("isolation must be an IsolationReport")
        if not isinstance(kem, Kem):
            raise TypeError("kem must be a crypto.hpke.Kem")
        if not isinstance(num_threads, int) or isinstance(num_threads, bool):
            raise TypeError("num_threads must be an int")
        if num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        self._provider = provider
        self._measurement = measurement
        self._isolation = isolation
        self._evidence_kind = evidence_kind
        self._data_root = Path(data_root)
        self._num_threads = num_threads
        # One ephemeral key pair per runtime lifetime: every Attest binds it with a fresh
        # nonce, so separate releases (data key, CKKS context) all reach the same sandbox.
        self._ephemeral = RecipientPrivateKey.generate(kem)
        self._lock = threading.Lock()
        self._phase = Phase.STARTED
        self._data_key: InstalledKey | None = None
        self._ckks: InstalledCkksContext | None = None
        self._session_key: InstalledKey | None = None
        # The adapter of the last Evaluate that followed a trained round, and that round.
        self._final: tuple[np.ndarray, int] | None = None
        self._unsealed: UnsealedModel | None = None
        self._summary: ModelSummary | None = None
        self._terms: SandboxTerms | None = None
        self._session: TrainingSession | None = None
        self._export: RoundExport | None = None
        self._rounds_trained = 0
        self._last_round = 0
        self._locked = False
        self._snapshot = self._make_snapshot()

    # -- helpers -----------------------------------------------------------------------------

    def _make_snapshot(self) -> Snapshot:
        secrets = []
        if self._data_key is not None:
            secrets.append(SecretKind.MODEL_DATA_KEY.value)
        if self._ckks is not None:
            secrets.append(SecretKind.CKKS_SECRET_CONTEXT.value)
        if self._session_key is not None:
            secrets.append(SecretKind.SESSION_KEY.value)
        return Snapshot(
            phase=self._phase,
            isolation=self._isolation,
            measurement=self._measurement,
            evidence_kind=self._evidence_kind,
            model=self._summary,
            session_id=self._terms.session_id if self._terms else "",
            aggregation=self._terms.aggregation if self._terms else "",
            rounds_trained=self._rounds_trained,
            last_round=self._last_round,
            ckks_rounds_applied=self._session.ckks_applied_round if self._session else 0,
            update_pending=self._export is not None and self._export.pending,
            secrets=tuple(secrets),
            adapter_length=self._session.adapter_length if self._session else 0,
            adapter_fingerprint=self._session.adapter_fingerprint if self._session else "",
            rounds=self._terms.rounds if self._terms else 0,
            locked=self._locked,
            adapter_ready=self._final is not None,
            adapter_after_round=self._final[1] if self._final is not None else 0,
        )

    def _run(self, step: Callable[[], _T]) -> _T:
        with self._lock:
            try:
                return step()
            finally:
                self._snapshot = self._make_snapshot()

    def _need(self, operation: str, phase: Phase, *, before: Phase | None = None) -> None:
        index = _ORDER.index(self._phase)
        if index < _ORDER.index(phase):
            raise WrongPhase(operation, phase=self._phase.value, needs=f"phase {phase.value}")
        if before is not None and index >= _ORDER.index(before):
            raise WrongPhase(
                operation, phase=self._phase.value, needs=f"a phase before {before.value}"
            )

    def _unlocked(self, operation: str) -> None:
        if self._locked:
            raise ConfigurationLocked(operation)

    def _advance(self, phase: Phase) -> None:
        if _ORDER.index(phase) > _ORDER.index(self._phase):
            self._phase = phase

    # -- operations --------------------------------------------------------------------------

    def status(self) -> Snapshot:
        """The state as of the last finished call (never blocks)."""
        return self._snapshot

    def attest(self, nonce: bytes) -> AttestResult:
        """Fresh evidence whose report data is SHA-512(nonce || ephemeral public key)."""
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
            raise InvalidRequest("nonce", f"must be {NONCE_SIZE} bytes from the key broker")

        def step() -> AttestResult:
            public = self._ephemeral.public_key().to_bytes()
            evidence = self._provider.get_evidence(report_data_for(nonce, public))
            self._evidence_kind = evidence.kind.value
            self._advance(Phase.ATTESTED)
            return AttestResult(evidence, public, self._measurement, self._isolation)

        return self._run(step)

    def install_key(
        self,
        kind: SecretKind,
        wrapped: bytes,
        *,
        model_id: str,
        session_id: str,
        sealed_secret: bytes = b"",
    ) -> str:
        """Unwrap a released secret with the ephemeral key; returns the key's public id."""
        if not isinstance(kind, SecretKind):
            raise InvalidRequest(
                "kind", "name the secret: model data key, CKKS secret context or session key"
            )
        if not wrapped:
            raise InvalidRequest("wrapped_key", "empty; send the key broker's wrapped secret")

        def step() -> str:
            self._unlocked("InstallKey")
            if kind is SecretKind.MODEL_DATA_KEY:
                self._need("InstallKey(model data key)", Phase.ATTESTED, before=Phase.MODEL_LOADED)
                if sealed_secret:
                    raise InvalidRequest("sealed_secret", "a data key comes without one")
                installed = open_data_key(
                    wrapped, self._ephemeral, model_id=model_id, session_id=session_id
                )
                if self._ckks is not None and self._ckks.session_id != session_id:
                    raise KeyMismatch("session_id", expected=self._ckks.session_id, got=session_id)
                self._data_key = installed
                self._advance(Phase.KEY_INSTALLED)
                return installed.key.key_id
            if kind is SecretKind.SESSION_KEY:
                self._need("InstallKey(session key)", Phase.ATTESTED)
                if sealed_secret:
                    raise InvalidRequest("sealed_secret", "a session key comes without one")
                session_key = open_data_key(
                    wrapped, self._ephemeral, model_id=model_id, session_id=session_id
                )
                for bound in (self._data_key, self._ckks):
                    if bound is None:
                        continue
                    if bound.session_id != session_id:
                        raise KeyMismatch(
                            "session_id", expected=bound.session_id, got=session_id
                        )
                    if bound.model_id != model_id:
                        raise KeyMismatch("model_id", expected=bound.model_id, got=model_id)
                self._session_key = session_key
                return session_key.key.key_id
            self._need("InstallKey(CKKS secret context)", Phase.ATTESTED)
            context = open_ckks_context(
                wrapped, sealed_secret, self._ephemeral, model_id=model_id, session_id=session_id
            )
            for bound, field_name, value in (
                (self._data_key.session_id if self._data_key else None, "session_id", session_id),
                (self._data_key.model_id if self._data_key else None, "model_id", model_id),
            ):
                if bound is not None and bound != value:
                    raise KeyMismatch(field_name, expected=bound, got=value)
            self._ckks = context
            return context.key_id

        return self._run(step)

    def load_model(
        self, signed_manifest: bytes, trusted: PublicIdentity | str, chunks: Iterator[bytes]
    ) -> ModelSummary:
        """Verify the manifest, unseal the streamed blob into memory, keep it for Configure."""

        def step() -> ModelSummary:
            self._unlocked("LoadModel")
            self._need("LoadModel", Phase.KEY_INSTALLED, before=Phase.MODEL_LOADED)
            assert self._data_key is not None
            manifest = check_manifest(parse_manifest(signed_manifest), trusted, self._data_key)
            unsealed = unseal_model(manifest, chunks, self._data_key)
            self._unsealed = unsealed
            self._summary = unsealed.summary
            self._advance(Phase.MODEL_LOADED)
            return unsealed.summary

        return self._run(step)

    def configure(
        self, signed: SignedSessionTerms, *, train_file: str, eval_file: str | None = None
    ) -> ConfigureResult:
        """Verify the signed terms, load the records, build the model; wipe the files; lock."""
        if not isinstance(signed, SignedSessionTerms):
            raise TypeError("signed must be SignedSessionTerms")

        def step() -> ConfigureResult:
            self._unlocked("Configure")
            self._need("Configure", Phase.MODEL_LOADED, before=Phase.CONFIGURED)
            assert self._data_key is not None and self._unsealed is not None
            terms = verify_session_terms(signed)
            for name, bound, value in (
                ("session_id", self._data_key.session_id, terms.session_id),
                ("model_id", self._data_key.model_id, terms.model_id),
            ):
                if bound != value:
                    raise TermsError(
                        name, f"{value!r}, but the installed model key is for {bound!r}"
                    )
            session = TrainingSession(
                terms,
                self._unsealed.files,
                self._data_root,
                train_file=train_file,
                eval_file=eval_file or None,
                num_threads=self._num_threads,
            )
            # The model holds its own tensors now: the unsealed files are not needed any more.
            self._unsealed.wipe()
            self._unsealed = None
            self._terms, self._session = terms, session
            self._advance(Phase.CONFIGURED)
            self._locked = True
            return ConfigureResult(
                session_id=terms.session_id,
                task=terms.task,
                adapter_length=session.adapter_length,
                adapter_fingerprint=session.adapter_fingerprint,
                train_examples=len(session.data.train),
                eval_examples=len(session.data.eval),
                rounds=terms.rounds,
            )

        return self._run(step)

    def _session_is(self, session_id: str) -> None:
        assert self._terms is not None
        if session_id != self._terms.session_id:
            raise WrongSession(expected=self._terms.session_id, got=session_id)

    def train(self, round_number: int, source: AdapterSource, *, session_id: str) -> TrainOutcome:
        """Train one round from the given global adapter; the update waits for ExportUpdate."""
        if not isinstance(round_number, int) or round_number < 1:
            raise InvalidRequest("round", "must be a positive round number")

        def step() -> TrainOutcome:
            self._need("Train", Phase.CONFIGURED)
            self._session_is(session_id)
            session = self._session
            assert session is not None and self._terms is not None
            if round_number <= self._last_round:
                raise RoundError("rounds must increase", expected=f"> {self._last_round}",
                                 got=round_number)
            if round_number > self._terms.rounds:
                raise RoundError("the signed terms allow no more rounds",
                                 expected=f"<= {self._terms.rounds}", got=round_number)
            start = session.start_vector(source, self._ckks.context if self._ckks else None)
            outcome, delta = session.train(round_number, start)
            if self._export is not None:
                self._export.wipe()  # an update never exported is discarded for the new one
            self._export = RoundExport(
                round_number, delta, outcome.num_examples, self._terms,
                privatize=self._privatizer(self._terms),
            )
            self._rounds_trained += 1
            self._last_round = round_number
            return outcome

        return self._run(step)

    @staticmethod
    def _privatizer(terms: SandboxTerms) -> Callable[[np.ndarray], np.ndarray] | None:
        if not terms.dp.enabled:
            return None
        dp = terms.dp

        def privatize(vector: np.ndarray) -> np.ndarray:
            from crypto.dp import privatize as dp_privatize

            return dp_privatize(
                vector, clip_norm=dp.clip_norm, noise_multiplier=dp.noise_multiplier,
                num_clients=dp.num_clients,
            )

        return privatize

    def evaluate(
        self, source: AdapterSource, *, session_id: str, split: str = "eval"
    ) -> dict[str, float]:
        """Metrics of the given global adapter on the owner's held-out split."""
        if split != "eval":
            raise InvalidRequest(
                "split", f"only the held-out split 'eval' is evaluated, not {split!r}"
            )

        def step() -> dict[str, float]:
            self._need("Evaluate", Phase.CONFIGURED)
            self._session_is(session_id)
            session = self._session
            assert session is not None and self._terms is not None
            start = session.start_vector(source, self._ckks.context if self._ckks else None)
            metrics = session.evaluate(start)
            follows = (
                session.ckks_applied_round
                if self._terms.aggregation == "ckks"
                else self._last_round
            )
            if follows >= 1 and not isinstance(source, InitialAdapter):
                self._final = (start.astype(np.float32, copy=True), follows)
            return metrics

        return self._run(step)

    def export_secagg(self, message: bytes) -> ExportResult:
        """Answer one secure-aggregation stage request for the last trained round."""

        def step() -> ExportResult:
            self._need("ExportUpdate", Phase.CONFIGURED)
            export = self._current_export()
            assert self._session is not None
            reply, stage, done = export.secagg(message, adapter_length=self._session.adapter_length)
            return ExportResult(reply, stage, done)

        return self._run(step)

    def export_ckks(self, round_number: int, *, session_id: str) -> ExportResult:
        """The last trained round's update, CKKS-encrypted."""

        def step() -> ExportResult:
            self._need("ExportUpdate", Phase.CONFIGURED)
            self._session_is(session_id)
            export = self._current_export()
            blob = export.ckks(round_number, self._ckks.context if self._ckks else None)
            return ExportResult(blob, "ckks", True)

        return self._run(step)

    def seal_adapter(self, *, session_id: str) -> SealedAdapter:
        """The final adapter as a PEFT directory, sealed under the session key."""

        def step() -> SealedAdapter:
            self._need("SealAdapter", Phase.CONFIGURED)
            self._session_is(session_id)
            session, terms = self._session, self._terms
            assert session is not None and terms is not None
            if self._session_key is None:
                raise AdapterNotReady(
                    "the session key is not installed (the owner's agent installs it, released "
                    "by the key broker on attestation, before Configure)"
                )
            if self._final is None:
                raise AdapterNotReady(
                    "no global adapter after a trained round was evaluated yet; the aggregator "
                    "evaluates the final adapter after the last round"
                )
            from enclave.ml.lora import export_adapter, set_adapter_vector

            vector, after_round = self._final
            set_adapter_vector(session.model, vector)
            files = export_adapter(session.model, base_model_name=terms.model_id)
            return seal_adapter(
                files,
                self._session_key.key,
                session_id=terms.session_id,
                after_round=after_round,
                adapter_fingerprint=session.adapter_fingerprint,
            )

        return self._run(step)

    def _current_export(self) -> RoundExport:
        if self._export is None:
            raise RoundError("no round was trained yet", expected="a trained round", got=0)
        return self._export
