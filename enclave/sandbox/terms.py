"""The training terms a sandbox accepts in Configure: what it trains, and what it lets leave.

Configure carries the session terms document every party signed (format
``fedtune.session-terms/v1``, the orchestrator's ``SessionTerms``), the provider's signature
and this owner's acceptance signature. The runtime verifies both signatures itself and derives
its ``SandboxTerms`` from that document (``verify_session_terms``): nobody between the parties
and the sandbox (the owner's agent, the Flower relay) can change the rounds, the threshold, the
DP settings or the aggregation mode it enforces. It reads the document as JSON with a view of
the fields it needs, so the runtime still depends on nothing outside ``crypto`` and ``enclave``.

Besides the training settings the derived terms carry the limits the runtime enforces on the
aggregation server: the number of rounds, the least secure-aggregation threshold and
participant count it will mask for, and the fixed-point clip and weight bound. The session
terms name no clip or weight bound, so every sandbox uses the protocol defaults
(``crypto.secagg.params``), and the training seed is derived from the session id, so every
owner starts from the same initial adapter.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from crypto.canonical import CanonicalModel
from crypto.errors import SignatureError
from crypto.identity import PublicIdentity
from crypto.secagg.params import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT
from enclave.sandbox.errors import TermsError, TermsSignatureError

TERMS_FORMAT = "fedtune.sandbox-terms/v1"
SESSION_TERMS_FORMAT = "fedtune.session-terms/v1"
SESSION_TERMS_CONTEXT = "session-terms"
"""The signing context of session terms (``fedtune.orchestrator.terms.SIGNING_CONTEXT``)."""
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*@[A-Za-z0-9][A-Za-z0-9._+-]*$")
MAX_TERMS_SIZE = 64 * 1024


class SandboxLora(CanonicalModel):
    """LoRA settings; ``target_modules`` None picks the architecture's default."""

    rank: int = Field(default=8, ge=1, le=1024)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = None


class SandboxDp(CanonicalModel):
    """Client-level DP: clip each update to ``clip_norm`` and add this client's noise share.

    ``num_clients`` is the n the noise is calibrated for (``crypto.dp.noise_std``): the least
    number of clients whose noise reaches the sum, i.e. the secure-aggregation threshold or the
    least participant count. With DP on, every client weighs 1 (see ``crypto.dp``).
    """

    enabled: bool = False
    clip_norm: float = Field(default=1.0, gt=0)
    noise_multiplier: float = Field(default=0.0, ge=0)
    num_clients: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _noise(self) -> SandboxDp:
        if self.enabled and self.noise_multiplier <= 0:
            raise ValueError("DP enabled needs a positive noise_multiplier")
        return self


class SandboxTerms(CanonicalModel):
    """Everything the runtime needs to train for one session, and the limits it enforces."""

    format: Literal["fedtune.sandbox-terms/v1"] = TERMS_FORMAT
    session_id: str
    model_id: str = Field(description="name@version of the sealed model")
    task: Literal["classification", "causal-lm"]
    labels: list[str] = Field(default_factory=list)
    lora: SandboxLora = Field(default_factory=SandboxLora)
    local_epochs: int = Field(default=1, ge=1, le=1000)
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    batch_size: int = Field(default=8, ge=1, le=65536)
    max_length: int = Field(default=128, ge=2, le=65536)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    aggregation: Literal["secagg", "ckks"] = "secagg"
    rounds: int = Field(default=1, ge=1, le=100_000, description="Train refuses later rounds")
    min_participants: int = Field(default=3, ge=1)
    secagg_min_threshold: int | None = Field(default=None, ge=2)
    update_clip: float = Field(
        default=DEFAULT_CLIP, gt=0, description="per-value clip of the update"
    )
    max_weight: float = Field(
        default=DEFAULT_MAX_WEIGHT, gt=0, description="bound on a client's weight"
    )
    dp: SandboxDp = Field(default_factory=SandboxDp)

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str) -> str:
        if not _SESSION_ID.match(value):
            raise ValueError("session_id must be 1-64 of [A-Za-z0-9._-], starting alphanumeric")
        return value

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if not _MODEL_ID.match(value):
            raise ValueError("model_id must be 'name@version'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SandboxTerms:
        if self.task == "classification":
            if len(self.labels) < 2:
                raise ValueError("a classification task needs at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels must be distinct")
        elif self.labels:
            raise ValueError("a causal-lm task takes no labels")
        if self.aggregation == "secagg":
            if self.secagg_min_threshold is None:
                raise ValueError("secagg needs secagg_min_threshold")
            if self.secagg_min_threshold > self.min_participants:
                raise ValueError("secagg_min_threshold cannot exceed min_participants")
        elif self.secagg_min_threshold is not None:
            raise ValueError("secagg_min_threshold applies only to aggregation 'secagg'")
        return self


def parse_terms(data: bytes) -> SandboxTerms:
    """Parse terms from their canonical JSON; TermsError names the field that is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("terms must be bytes")
    data = bytes(data)
    if not data:
        raise TermsError("document", "empty; send the canonical JSON of SandboxTerms")
    if len(data) > MAX_TERMS_SIZE:
        raise TermsError("document", f"larger than {MAX_TERMS_SIZE} bytes")
    try:
        terms = SandboxTerms.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise TermsError(where, first["msg"]) from None
    # One encoding only, as for every document fedtune hashes or signs.
    if terms.canonical_bytes() != data:
        raise TermsError("encoding", "not in canonical JSON form (use .canonical_bytes())")
    return terms


# -- signed session terms ------------------------------------------------------------------------

MAX_SESSION_TERMS_SIZE = 256 * 1024


@dataclass(frozen=True)
class PartySignature:
    """A party's raw Ed25519 public key and its signature over the session terms."""

    public_key: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedSessionTerms:
    """The session terms as every party signed them, with the two signatures the sandbox checks.

    ``provider`` is the model provider's acceptance (its signature when it proposed the terms,
    or when it accepted terms the operator proposed), ``owner`` this data owner's acceptance.
    """

    document: bytes
    provider: PartySignature
    owner: PartySignature


class _View(BaseModel):
    """The fields of a session terms document the sandbox relies on (others are ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class _DpView(_View):
    enabled: bool = False
    clip_norm: float = 1.0
    noise_multiplier: float = 0.0


class _LoraView(_View):
    rank: int = 8
    alpha: float = 16.0
    target_modules: list[str] | None = None


class _EvaluationView(_View):
    fraction: float = 0.2


class SessionTermsView(_View):
    """A session terms document (``fedtune.session-terms/v1``) as the sandbox reads it."""

    format: Literal["fedtune.session-terms/v1"]
    session_id: str
    model_name: str
    model_version: str
    provider_fingerprint: str
    invited_owners: list[str]
    rounds: int
    aggregation: Literal["secagg", "ckks"]
    min_participants: int
    secagg_threshold: int | None = None
    dp: _DpView = Field(default_factory=_DpView)
    lora: _LoraView = Field(default_factory=_LoraView)
    local_epochs: int = 1
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_length: int = 128
    task: Literal["classification", "causal-lm"]
    labels: list[str] = Field(default_factory=list)
    evaluation: _EvaluationView = Field(default_factory=_EvaluationView)


def session_seed(session_id: str) -> int:
    """The training seed of a session: the same on every owner, different for every session."""
    if not isinstance(session_id, str):
        raise TypeError("session_id must be a str")
    digest = hashlib.sha256(f"fedtune/session-seed/v1:{session_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def parse_session_terms(document: bytes) -> SessionTermsView:
    """Read a session terms document; TermsError names the first field that is wrong."""
    if not isinstance(document, bytes | bytearray | memoryview):
        raise TypeError("document must be bytes")
    document = bytes(document)
    if not document:
        raise TermsError("session_terms", "empty; send the signed session terms document")
    if len(document) > MAX_SESSION_TERMS_SIZE:
        raise TermsError("session_terms", f"larger than {MAX_SESSION_TERMS_SIZE} bytes")
    try:
        value = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        raise TermsError("session_terms", "not JSON") from None
    try:
        return SessionTermsView.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise TermsError(f"session_terms.{where}", first["msg"]) from None


def derive_sandbox_terms(view: SessionTermsView) -> SandboxTerms:
    """The sandbox terms a signed session terms document implies (the one derivation rule)."""
    if not isinstance(view, SessionTermsView):
        raise TypeError("view must be a SessionTermsView")
    secagg = view.aggregation == "secagg"
    # DP noise is calibrated for the least number of clients whose noise reaches a sum the
    # round accepts: the secure-aggregation threshold, or the least participant count.
    calibrated = (view.secagg_threshold or view.min_participants) if secagg else (
        view.min_participants
    )
    values = {
        "session_id": view.session_id,
        "model_id": f"{view.model_name}@{view.model_version}",
        "task": view.task,
        "labels": list(view.labels),
        "lora": {
            "rank": view.lora.rank,
            "alpha": view.lora.alpha,
            "target_modules": view.lora.target_modules,
        },
        "local_epochs": view.local_epochs,
        "learning_rate": view.learning_rate,
        "batch_size": view.batch_size,
        "max_length": view.max_length,
        "seed": session_seed(view.session_id),
        "eval_fraction": view.evaluation.fraction,
        "aggregation": view.aggregation,
        "rounds": view.rounds,
        "min_participants": view.min_participants,
        "secagg_min_threshold": view.secagg_threshold if secagg else None,
        "dp": (
            {
                "enabled": True,
                "clip_norm": view.dp.clip_norm,
                "noise_multiplier": view.dp.noise_multiplier,
                "num_clients": calibrated,
            }
            if view.dp.enabled
            else {"enabled": False}
        ),
    }
    try:
        return SandboxTerms.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise TermsError(f"session_terms.{where}", first["msg"]) from None


def _identity(field: str, raw: bytes) -> PublicIdentity:
    try:
        return PublicIdentity.from_bytes(bytes(raw))
    except (TypeError, ValueError):
        raise TermsError(field, "must be a 32-byte raw Ed25519 public key") from None


def verify_session_terms(signed: SignedSessionTerms) -> SandboxTerms:
    """Check the provider's and the owner's signatures over the terms; derive the sandbox terms.

    Fails closed: the provider key must be the one the terms name, the owner key one the terms
    invite, and both signatures must verify over the exact document bytes in context
    ``session-terms`` (TermsSignatureError otherwise).
    """
    if not isinstance(signed, SignedSessionTerms):
        raise TypeError("signed must be SignedSessionTerms")
    view = parse_session_terms(signed.document)
    provider = _identity("provider.public_key", signed.provider.public_key)
    owner = _identity("owner.public_key", signed.owner.public_key)
    if provider.fingerprint != view.provider_fingerprint:
        raise TermsSignatureError(
            "provider", f"the key is {provider.fingerprint}, the terms name the provider "
            f"{view.provider_fingerprint}"
        )
    if owner.fingerprint not in view.invited_owners:
        raise TermsSignatureError(
            "owner", f"{owner.fingerprint} is not among the owners these terms invite"
        )
    for role, identity, signature in (
        ("provider", provider, signed.provider.signature),
        ("owner", owner, signed.owner.signature),
    ):
        try:
            identity.verify(bytes(signature), bytes(signed.document), context=SESSION_TERMS_CONTEXT)
        except SignatureError:
            raise TermsSignatureError(
                role, f"the {role}'s signature does not verify over these terms"
            ) from None
    return derive_sandbox_terms(view)
