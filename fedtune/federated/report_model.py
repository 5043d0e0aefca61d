"""The session report: what a finished (or failed) federated session measured, round by round."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from crypto.atomicfile import atomic_write_bytes


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OwnerMetrics(_Frozen):
    """One owner's evaluation on its held-out split (only metrics ever leave a sandbox)."""

    owner: str  # identity fingerprint
    name: str = ""  # display name (the SuperNode's registered name), if known
    num_examples: int
    metrics: dict[str, float]  # e.g. loss, accuracy, macro_f1 / loss, perplexity


class Exclusion(_Frozen):
    """A client left out of a round, and why (also recorded in the audit log)."""

    owner: str
    stage: str
    reason: str


class RoundRecord(_Frozen):
    """One federated round as the aggregator saw it."""

    round: int  # 1-based
    started_at: datetime
    finished_at: datetime
    participants: list[str]  # owners whose update entered the aggregate
    dropped: list[str] = Field(default_factory=list)
    excluded: list[Exclusion] = Field(default_factory=list)
    num_examples: int  # total weight of the aggregate
    train_loss: float | None = None  # example-weighted mean of the owners' local training loss
    aggregate_digest: str | None = None  # hex SHA-256 of the committed aggregate bytes
    epsilon: float | None = None  # DP: cumulative epsilon after this round, for ``delta``


class SessionReport(_Frozen):
    """Everything the session report shows: before/after per owner, per-round curve, privacy."""

    session_id: str
    model: str
    aggregation: str  # "secagg" | "ckks"
    task: str  # "classification" | "causal-lm"
    status: str  # "finished" | "failed" | "cancelled"
    reason: str = ""
    started_at: datetime
    finished_at: datetime
    before: list[OwnerMetrics] = Field(default_factory=list)
    after: list[OwnerMetrics] = Field(default_factory=list)
    rounds: list[RoundRecord] = Field(default_factory=list)
    dp_delta: float | None = None
    dp_epsilon: float | None = None  # total epsilon spent, None when DP is off

    def save(self, path: str | Path) -> None:
        """Write the report as JSON atomically."""
        atomic_write_bytes(path, self.model_dump_json(indent=2).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> SessionReport:
        """Read a report written by ``save``."""
        return cls.model_validate_json(Path(path).read_bytes())
