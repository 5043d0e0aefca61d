"""Release policies: which evidence an owner accepts before a key is released, signed by them."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from crypto.canonical import CanonicalModel
from crypto.errors import SignatureError
from crypto.identity import FINGERPRINT_PREFIX, Identity, PublicIdentity
from enclave.attest.binding import BINDING_RULE
from enclave.attest.evidence import EvidenceKind
from enclave.errors import PolicyError

POLICY_FORMAT = "fedtune.release-policy/v1"
SIGNING_CONTEXT = "release-policy"
DEFAULT_MAX_EVIDENCE_AGE_S = 300

# The measurement names an allow-list entry must pin, per kind. Leaving one out would let any
# value through, so an entry that omits one is refused (fail closed). TDX's RTMR3 is extended
# at run time by the workload and is optional.
REQUIRED_MEASUREMENTS: Mapping[EvidenceKind, frozenset[str]] = {
    EvidenceKind.SEV_SNP: frozenset({"measurement"}),
    EvidenceKind.TDX: frozenset({"mrtd", "rtmr0", "rtmr1", "rtmr2"}),
    EvidenceKind.SIMULATED: frozenset({"measurement"}),
}
KNOWN_MEASUREMENTS: Mapping[EvidenceKind, frozenset[str]] = {
    EvidenceKind.SEV_SNP: frozenset({"measurement"}),
    EvidenceKind.TDX: frozenset({"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}),
    EvidenceKind.SIMULATED: frozenset({"measurement"}),
}


class AllowedMeasurement(CanonicalModel):
    """One acceptable build: every named measurement must equal the evidence's value."""

    kind: EvidenceKind
    values: dict[str, bytes]
    label: str = ""  # for people: "sandbox 0.3.1 on OVMF 2024.02"

    @model_validator(mode="after")
    def _complete(self) -> AllowedMeasurement:
        names = set(self.values)
        missing = REQUIRED_MEASUREMENTS[self.kind] - names
        if missing:
            raise ValueError(
                f"a {self.kind.value} entry must pin {', '.join(sorted(missing))} "
                "(an unpinned measurement would let any value through)"
            )
        unknown = names - KNOWN_MEASUREMENTS[self.kind]
        if unknown:
            names_text = ", ".join(sorted(unknown))
            raise ValueError(f"unknown {self.kind.value} measurement(s): {names_text}")
        for name, value in self.values.items():
            if len(value) != 48:
                raise ValueError(f"{name} must be 48 bytes (SHA-384), got {len(value)}")
        return self


class ReleasePolicy(CanonicalModel):
    """What evidence an owner accepts before releasing a key (see DESIGN.md, key flow 2)."""

    format: Literal["fedtune.release-policy/v1"] = POLICY_FORMAT
    name: str = Field(min_length=1, description="What the policy guards, e.g. a model name.")
    # Increases with every change, so a holder of a newer policy can refuse an older one.
    version: int = Field(ge=1)
    issuer: str = Field(description="Fingerprint of the key that signs this policy.")
    issued_at: datetime
    expires_at: datetime | None = None
    allowed_kinds: list[EvidenceKind]
    allowed_measurements: list[AllowedMeasurement]
    # Minimum security version numbers per kind, by Claims.tcb name (SEV-SNP "bootloader",
    # "tee", "snp", "microcode", "fmc"; TDX "tee_tcb_svn.<i>", ...).
    min_tcb: dict[EvidenceKind, dict[str, int]] = Field(default_factory=dict)
    allow_debug: bool = False
    max_evidence_age_s: int = Field(default=DEFAULT_MAX_EVIDENCE_AGE_S, gt=0)
    allow_simulated: bool = False
    simulated_platform_keys: list[str] = Field(default_factory=list)
    report_data_binding: Literal["sha512(nonce || public_key)"] = BINDING_RULE

    @field_validator("issuer")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        _check_fingerprint(value, "issuer")
        return value

    @field_validator("simulated_platform_keys")
    @classmethod
    def _fingerprints(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_fingerprint(item, "simulated_platform_keys")
        return value

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("times must carry a timezone")
        try:
            return value.astimezone(UTC) if value is not None else None
        except OverflowError:
            # pydantic turns only ValueError into a validation error.
            raise ValueError("times must lie within the years 1-9999 in UTC") from None

    @field_validator("min_tcb")
    @classmethod
    def _svns(cls, value: dict[EvidenceKind, dict[str, int]]) -> dict[EvidenceKind, dict[str, int]]:
        for kind, levels in value.items():
            for name, level in levels.items():
                if level < 0:
                    raise ValueError(f"min_tcb[{kind.value}][{name}] must not be negative")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ReleasePolicy:
        if self.expires_at is not None and self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be later than issued_at")
        if EvidenceKind.SIMULATED in self.allowed_kinds and not self.allow_simulated:
            raise ValueError("allowed_kinds lists simulated but allow_simulated is false")
        return self

    def sign(self, identity: Identity) -> SignedReleasePolicy:
        """Sign this policy with the issuer's identity (context ``release-policy``)."""
        if not isinstance(identity, Identity):
            raise TypeError("identity must be a crypto.identity.Identity")
        if identity.fingerprint != self.issuer:
            raise ValueError(
                f"the policy names issuer {self.issuer}, but the signing key is "
                f"{identity.fingerprint}"
            )
        return SignedReleasePolicy(
            policy=self,
            public_key=identity.public.raw,
            signature=identity.sign(self.canonical_bytes(), context=SIGNING_CONTEXT),
        )


def _check_fingerprint(value: str, where: str) -> None:
    hexpart = value.removeprefix(FINGERPRINT_PREFIX)
    if (
        not value.startswith(FINGERPRINT_PREFIX)
        or len(hexpart) != 64
        or any(c not in "0123456789abcdef" for c in hexpart)
    ):
        raise ValueError(f"{where}: {value!r} is not a key fingerprint (ed25519:<64 hex digits>)")


class SignedReleasePolicy(CanonicalModel):
    """A release policy with its issuer's public key and signature, as stored and shipped."""

    policy: ReleasePolicy
    public_key: bytes
    signature: bytes

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical signed document; names this exact policy."""
        return "sha256:" + hashlib.sha256(self.canonical_bytes()).hexdigest()

    @property
    def signer(self) -> PublicIdentity:
        """The public key that claims to have signed the policy (trusted only after verify)."""
        try:
            return PublicIdentity.from_bytes(self.public_key)
        except ValueError as exc:
            raise PolicyError(f"the policy's public key is unusable: {exc}") from exc

    def signature_problem(self) -> str | None:
        """None when the signature verifies and matches the named issuer, else what is wrong."""
        try:
            signer = self.signer
        except PolicyError as exc:
            return str(exc)
        if signer.fingerprint != self.policy.issuer:
            return (
                f"signed by {signer.fingerprint}, but the policy names issuer {self.policy.issuer}"
            )
        try:
            signer.verify(self.signature, self.policy.canonical_bytes(), context=SIGNING_CONTEXT)
        except SignatureError:
            return "the signature does not verify: the policy was altered after signing"
        return None

    def verify(self, trusted_issuers: Collection[PublicIdentity | str]) -> ReleasePolicy:
        """The policy, if its signature verifies and its issuer is trusted; else PolicyError."""
        problem = self.signature_problem()
        if problem:
            raise PolicyError(f"release policy {self.policy.name!r}: {problem}")
        if self.policy.issuer not in issuer_fingerprints(trusted_issuers):
            raise PolicyError(
                f"release policy {self.policy.name!r} is signed by {self.policy.issuer}, "
                "which is not a trusted policy issuer"
            )
        return self.policy

    @classmethod
    def load(cls, path: Path) -> SignedReleasePolicy:
        """Read a signed policy JSON file; PolicyError when it does not parse."""
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except FileNotFoundError as exc:
            raise PolicyError(f"policy file {path} does not exist") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise PolicyError(
                f"policy file {path} is not a signed release policy: {where}: {first['msg']}"
            ) from None


def issuer_fingerprints(issuers: Collection[PublicIdentity | str]) -> set[str]:
    """Normalise trusted issuers (keys or fingerprint strings) to fingerprints."""
    if isinstance(issuers, str | PublicIdentity):
        raise TypeError("trusted issuers must be a collection of keys or fingerprints")
    prints = set()
    for issuer in issuers:
        if isinstance(issuer, PublicIdentity):
            prints.add(issuer.fingerprint)
        elif isinstance(issuer, str):
            _check_fingerprint(issuer, "trusted issuer")
            prints.add(issuer)
        else:
            raise TypeError("trusted issuers must be PublicIdentity objects or fingerprint strings")
    return prints
