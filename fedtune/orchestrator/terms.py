"""Session terms: the one document a provider and every invited data owner sign to run a session."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from crypto.canonical import CanonicalModel
from crypto.identity import FINGERPRINT_PREFIX

SIGNING_CONTEXT = "session-terms"
TERMS_FORMAT = "fedtune.session-terms/v1"

_FINGERPRINT = re.compile(r"^" + re.escape(FINGERPRINT_PREFIX) + r"[0-9a-f]{64}$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _check_fingerprint(value: str) -> str:
    if not _FINGERPRINT.match(value):
        raise ValueError(f"{value!r} is not an identity fingerprint (ed25519:<64 hex digits>)")
    return value


class DifferentialPrivacy(CanonicalModel):
    """Client-level DP-FedAvg settings (adaptive clipping is not part of v1)."""

    enabled: bool = False
    clip_norm: float = Field(default=1.0, gt=0)
    noise_multiplier: float = Field(default=0.0, ge=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _noise(self) -> DifferentialPrivacy:
        if self.enabled and self.noise_multiplier <= 0:
            raise ValueError("DP enabled needs a positive noise_multiplier")
        return self


class LoraSettings(CanonicalModel):
    """The LoRA adapter every participant trains."""

    rank: int = Field(default=8, ge=1, le=1024)
    alpha: float = Field(default=16.0, gt=0)
    target_modules: list[str] | None = None


class EvaluationSplit(CanonicalModel):
    """How each owner carves its held-out evaluation split (same rule everywhere)."""

    rule: Literal["hash-fraction"] = "hash-fraction"
    fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0


class KeyBrokerRef(CanonicalModel):
    """A key broker the provider runs at its own site, named in the terms so owners consent to it.

    Without one, the orchestrator's embedded broker holds the session's keys.
    """

    address: str = Field(min_length=3, max_length=255, description="HOST:PORT of its mTLS port")
    tls_sha256: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="its pinned certificate")
    public_key_sha256: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="its HPKE key, to which data keys are wrapped"
    )


class SessionTerms(CanonicalModel):
    """Everything a party agrees to by signing: model, participants, aggregation, DP, training."""

    format: Literal["fedtune.session-terms/v1"] = TERMS_FORMAT
    session_id: str
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    provider_fingerprint: str
    invited_owners: list[str] = Field(min_length=1)
    rounds: int = Field(ge=1, le=100_000)
    aggregation: Literal["secagg", "ckks"] = "secagg"
    min_participants: int = Field(ge=1)
    sample_fraction: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="share of the online owners sampled each round (never fewer than "
        "min_participants)",
    )
    secagg_threshold: int | None = Field(default=None, ge=1)
    dp: DifferentialPrivacy = Field(default_factory=DifferentialPrivacy)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    local_epochs: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    batch_size: int = Field(default=8, ge=1)
    max_length: int = Field(default=128, ge=1)
    task: Literal["classification", "causal-lm"] = "classification"
    labels: list[str] = Field(default_factory=list)
    evaluation: EvaluationSplit = Field(default_factory=EvaluationSplit)
    reattestation_interval_s: int = Field(default=3600, ge=1)
    key_broker: KeyBrokerRef | None = None
    created_at: dt.datetime

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str) -> str:
        if not _SESSION_ID.match(value):
            raise ValueError("session_id must be 1-64 of [A-Za-z0-9._-], starting alphanumeric")
        return value

    @field_validator("provider_fingerprint")
    @classmethod
    def _provider(cls, value: str) -> str:
        return _check_fingerprint(value)

    @field_validator("invited_owners")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_fingerprint(item)
        if len(set(value)) != len(value):
            raise ValueError("invited_owners lists an owner twice")
        if value != sorted(value):
            # One order only, so the same set of owners always encodes to the same bytes.
            raise ValueError("invited_owners must be sorted")
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must carry a timezone")
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _consistent(self) -> SessionTerms:
        n = len(self.invited_owners)
        if self.provider_fingerprint in self.invited_owners:
            raise ValueError("the provider cannot also be an invited data owner")
        if self.min_participants > n:
            raise ValueError(
                f"min_participants ({self.min_participants}) exceeds the invited owners ({n})"
            )
        if self.aggregation == "secagg":
            if self.secagg_threshold is None:
                raise ValueError("secagg needs secagg_threshold")
            if not 2 <= self.secagg_threshold <= self.min_participants:
                raise ValueError(
                    "secagg_threshold must be between 2 and min_participants "
                    f"({self.min_participants}), got {self.secagg_threshold}"
                )
        elif self.secagg_threshold is not None:
            raise ValueError("secagg_threshold applies only to aggregation 'secagg'")
        if self.task == "classification" and len(self.labels) < 2:
            raise ValueError("a classification task needs at least two labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        return self
