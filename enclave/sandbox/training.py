"""The configured session inside the sandbox: the owner's records, the task model, its adapter.

Built by Configure, all or nothing: the records are loaded and validated first (a bad record
fails with ``RecordError`` naming file, line and field before any model is built), then the
model is built from the unsealed files in memory and wrapped with LoRA.

Global adapter per round. With secure aggregation the server learns each round's average
update, and only that: it sends the sum of the averages committed so far (``PlainDelta``),
which the sandbox adds to the initial adapter it derives from the session seed (the server
never needs, or learns, the initial adapter). ``PlainAdapter`` carries a whole global vector
instead (tools and tests). With CKKS the server never sees an aggregate in the clear: it sends
the encrypted aggregates of past rounds, and the sandbox keeps the global vector, applying each
round's decrypted average exactly once, in order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from enclave.sandbox.errors import AdapterSourceError, DataPathError, InvalidRequest
from enclave.sandbox.terms import SandboxTerms

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class InitialAdapter:
    """Start from the adapter every owner derives from the session seed."""


@dataclass(frozen=True)
class PlainAdapter:
    """Secure-aggregation mode: the global adapter vector, little-endian float32 bytes."""

    data: bytes


@dataclass(frozen=True)
class PlainDelta:
    """Secure-aggregation mode: the committed averages summed so far, little-endian float32 bytes.

    The global adapter is the initial adapter plus this delta.
    """

    data: bytes


@dataclass(frozen=True)
class CkksAggregates:
    """CKKS mode: encrypted aggregates ``(round, blob)`` not applied yet, in round order."""

    aggregates: tuple[tuple[int, bytes], ...]


AdapterSource = InitialAdapter | PlainAdapter | PlainDelta | CkksAggregates


@dataclass(frozen=True)
class TrainOutcome:
    """What Train reports: the example count and loss metrics (the update stays inside)."""

    round: int
    num_examples: int
    metrics: dict[str, float]


def resolve_record_file(data_root: Path, name: str, *, field: str = "train_file") -> Path:
    """The file ``name`` inside ``data_root``; DataPathError when it escapes or is missing."""
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if not name:
        raise InvalidRequest(field, "name the record file inside the data directory")
    parts = PurePosixPath(name).parts
    if (
        PurePosixPath(name).is_absolute()
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", ".") for part in parts)
    ):
        raise DataPathError(name, "must be a plain path relative to the data directory")
    root = data_root.resolve()
    path = (data_root / name).resolve()
    if not path.is_relative_to(root):
        raise DataPathError(name, "resolves outside the data directory")
    if not path.is_file():
        raise DataPathError(name, "no such file in the data directory")
    return path


def round_seed(seed: int, round_number: int) -> int:
    """The training seed of one round: shuffling and dropout differ per round, same everywhere."""
    digest = hashlib.sha256(f"fedtune/round-seed/v1:{seed}:{round_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (MAX_SEED + 1)


class TrainingSession:
    """The model, tokenizer and records of one configured session, and the adapter state."""

    def __init__(
        self,
        terms: SandboxTerms,
        files: Mapping[str, bytes | memoryview],
        data_root: Path,
        *,
        train_file: str,
        eval_file: str | None,
        num_threads: int,
    ) -> None:
        # Imported here: the ML stack is heavy, and the runtime answers Attest without it.
        from enclave.ml.data import (
            OwnerData,
            RecordFormat,
            RecordLimits,
            parse_records,
            split_train_eval,
        )
        from enclave.ml.lora import LoraSettings, adapter_spec, add_lora, get_adapter_vector
        from enclave.ml.model import build_model

        self.terms = terms
        self.num_threads = num_threads
        labels = list(terms.labels) or None

        limits = RecordLimits()

        def records(name: str, field: str) -> list:
            path = resolve_record_file(data_root, name, field=field)
            fmt = RecordFormat.from_path(Path(name))
            with path.open("rb") as handle:
                # One byte past the limit, so parse_records refuses an over-limit file.
                data = handle.read(limits.max_file_bytes + 1)
            # Errors name the file as the owner named it, not by its path inside the sandbox.
            return parse_records(
                data, source=name, fmt=fmt, task=terms.task, labels=labels, limits=limits
            )

        train = records(train_file, "train_file")
        if eval_file:
            data = OwnerData(train=tuple(train), eval=tuple(records(eval_file, "eval_file")))
        else:
            data = split_train_eval(train, eval_fraction=terms.eval_fraction)
        self.data = data

        loaded = build_model(dict(files), task=terms.task, labels=labels, seed=terms.seed)
        settings = LoraSettings(
            rank=terms.lora.rank,
            alpha=terms.lora.alpha,
            dropout=terms.lora.dropout,
            target_modules=tuple(terms.lora.target_modules) if terms.lora.target_modules else None,
        )
        self.model = add_lora(loaded.model, settings, task=terms.task, seed=terms.seed)
        self.tokenizer = loaded.tokenizer
        self.spec = adapter_spec(self.model)
        self.initial = get_adapter_vector(self.model)
        self.ckks_global = self.initial.copy()
        self.ckks_applied_round = 0

    @property
    def adapter_length(self) -> int:
        """Length of the flat adapter vector."""
        return int(self.spec.size)

    @property
    def adapter_fingerprint(self) -> str:
        """Fingerprint of the adapter layout; equal on every owner of the session."""
        return self.spec.fingerprint

    def start_vector(self, source: AdapterSource, ckks_context: bytes | None) -> np.ndarray:
        """The global adapter a call starts from (CKKS aggregates are applied, once each)."""
        if isinstance(source, InitialAdapter):
            return self.initial.copy()
        if isinstance(source, PlainAdapter):
            if self.terms.aggregation != "secagg":
                raise AdapterSourceError(
                    "a plaintext global adapter is refused in a CKKS session (the server "
                    "cannot know it); send the encrypted aggregates"
                )
            return self._plain(source.data)
        if isinstance(source, PlainDelta):
            if self.terms.aggregation != "secagg":
                raise AdapterSourceError(
                    "a plaintext adapter delta is refused in a CKKS session (the server "
                    "cannot know it); send the encrypted aggregates"
                )
            return (self.initial + self._plain(source.data)).astype(np.float32)
        if isinstance(source, CkksAggregates):
            if self.terms.aggregation != "ckks":
                raise AdapterSourceError(
                    "CKKS aggregates were sent to a secure-aggregation session"
                )
            return self._apply_ckks(source.aggregates, ckks_context)
        raise TypeError("source must be an AdapterSource")

    def _plain(self, data: bytes) -> np.ndarray:
        expected = self.adapter_length * 4
        if len(data) != expected:
            raise AdapterSourceError(
                f"{len(data)} bytes, expected {expected} ({self.adapter_length} float32 values)"
            )
        vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.isfinite(vector).all():
            raise AdapterSourceError("the vector holds NaN or infinite values")
        return vector

    def _apply_ckks(
        self, aggregates: tuple[tuple[int, bytes], ...], context: bytes | None
    ) -> np.ndarray:
        pending = [(r, b) for r, b in aggregates if r > self.ckks_applied_round]
        if not pending:
            return self.ckks_global.copy()
        if context is None:
            raise AdapterSourceError(
                "no CKKS secret context is installed; install it (InstallKey) to apply aggregates"
            )
        from crypto.ckks import decrypt_average

        vector, applied = self.ckks_global.copy(), self.ckks_applied_round
        for round_number, blob in pending:
            if round_number != applied + 1:
                raise AdapterSourceError(
                    f"the aggregate of round {applied + 1} is missing (got round {round_number}); "
                    "send every aggregate after the last one applied, in order"
                )
            average, _ = decrypt_average(context, blob, max_weight=self.terms.max_weight)
            if average.shape != (self.adapter_length,):
                raise AdapterSourceError(
                    f"the round {round_number} aggregate holds {average.shape[0]} values, "
                    f"expected {self.adapter_length}"
                )
            if not np.isfinite(average).all():
                raise AdapterSourceError(f"the round {round_number} aggregate is not finite")
            vector = (vector + average.astype(np.float32)).astype(np.float32)
            applied = round_number
        self.ckks_global, self.ckks_applied_round = vector, applied
        return vector.copy()

    def train(self, round_number: int, start: np.ndarray) -> tuple[TrainOutcome, np.ndarray]:
        """Train one round from ``start``; the outcome and the update ``new - start``."""
        from enclave.ml.train import local_update

        terms = self.terms
        update = local_update(
            self.model,
            self.tokenizer,
            self.data.train,
            start,
            epochs=terms.local_epochs,
            learning_rate=terms.learning_rate,
            seed=round_seed(terms.seed, round_number),
            batch_size=terms.batch_size,
            max_length=terms.max_length,
            num_threads=self.num_threads,
        )
        result = update.train
        metrics = {
            "mean_loss": result.mean_loss,
            "first_loss": result.losses[0],
            "last_loss": result.losses[-1],
            "steps": float(result.steps),
            "seconds": result.seconds,
        }
        outcome = TrainOutcome(round=round_number, num_examples=update.num_examples,
                               metrics=metrics)
        return outcome, update.delta

    def evaluate(self, start: np.ndarray) -> dict[str, float]:
        """Metrics of the adapter ``start`` on the held-out split."""
        from enclave.ml.lora import set_adapter_vector
        from enclave.ml.train import evaluate

        set_adapter_vector(self.model, start)
        return evaluate(
            self.model,
            self.tokenizer,
            self.data.eval,
            batch_size=max(self.terms.batch_size, 32),
            max_length=self.terms.max_length,
            num_threads=self.num_threads,
        )


def default_threads() -> int:
    """The CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))
