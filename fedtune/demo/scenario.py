"""The demo's scenario: every choice ``fedtune demo`` makes, with embedded defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedtune.datasets import DEFAULT_FAMILIES

MODEL_NAME = "demo/all-minilm-l6-v2"
MODEL_VERSION = "1"


class DemoScenario(BaseModel):
    """What the demo deployment runs; the defaults finish in minutes on two CPU cores.

    The ML settings aim at the 5-minute budget on 2 cores with the pretrained MiniLM-L6: one
    local epoch per round, LoRA rank 8, 64-token inputs, at most 96 training and 32 held-out
    records per owner, one torch thread per sandbox (the cores are shared between sandboxes).
    Most of a round's time is Flower starting a ClientApp process per message (four exchanges
    per secure-aggregation round), not training.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rounds: int = Field(default=3, ge=1, le=50, description="Federated rounds.")
    owners: int = Field(default=3, ge=2, le=8, description="Data owners (secagg needs two).")
    aggregation: Literal["secagg", "ckks"] = "secagg"
    dp: bool = Field(default=False, description="Client-level differential privacy.")
    dp_clip_norm: float = Field(default=1.0, gt=0)
    dp_noise_multiplier: float = Field(default=0.3, gt=0)
    dp_delta: float = Field(default=1e-5, gt=0, lt=1)
    learning_rate: float = Field(default=6e-3, gt=0)
    lora_rank: int = Field(default=8, ge=1, le=256)
    lora_alpha: float = Field(default=16.0, gt=0)
    local_epochs: int = Field(default=1, ge=1, le=20)
    batch_size: int = Field(default=16, ge=1, le=512)
    max_length: int = Field(default=64, ge=8, le=512)
    max_train_per_owner: int = Field(default=96, ge=4)
    max_eval_per_owner: int = Field(default=32, ge=2)
    records_per_label: int = Field(
        default=96, ge=10, description="Corpus records drawn per label before the split."
    )
    families: Mapping[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_FAMILIES),
        description="Label -> stdlib packages whose docstrings carry that label.",
    )
    skew_alpha: float = Field(
        default=0.5, gt=0, description="Dirichlet alpha of the owners' label skew (lower: more)."
    )
    seed: int = Field(default=20261121, ge=0)
    threads_per_sandbox: int | None = Field(
        default=None, ge=1, description="Torch threads per sandbox (default: cores // owners)."
    )
    timeout_s: float = Field(default=1800.0, gt=0, description="Bound on the federated run.")

    @model_validator(mode="after")
    def _families(self) -> DemoScenario:
        if len(self.families) < 2:
            raise ValueError("families must name at least two labels")
        return self

    @property
    def labels(self) -> list[str]:
        """The session's class labels, sorted."""
        return sorted(self.families)
