"""Evidence: what a TEE (or the simulated one) says about a sandbox, raw and parsed into claims."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from crypto.canonical import CanonicalModel


class EvidenceKind(StrEnum):
    """The kinds of evidence fedtune produces and verifies."""

    SEV_SNP = "sev-snp"
    TDX = "tdx"
    SIMULATED = "simulated"


REPORT_DATA_SIZE = 64


class Claims(CanonicalModel):
    """What the evidence asserts, parsed field by field. Trust it only after verification."""

    # Named measurements: SNP {"measurement"}, TDX {"mrtd", "rtmr0".."rtmr3"},
    # simulated {"measurement"}.
    measurements: dict[str, bytes]
    report_data: bytes
    # TCB / security-version numbers by name (SNP: "bootloader", "tee", "snp", "microcode",
    # and "fmc" on Turin; TDX: "tee_tcb_svn.<i>", "pce_svn", ...).
    tcb: dict[str, int] = Field(default_factory=dict)
    debug: bool
    # Raw guest policy (SNP) or TD attributes (TDX); None for simulated evidence.
    policy_bits: int | None = None
    platform_id: bytes | None = None
    signed_at: datetime | None = None
    format_version: int


class Evidence(CanonicalModel):
    """Evidence as it travels: kind, the raw report/quote, its certificates and collateral."""

    kind: EvidenceKind
    raw: bytes
    # DER certificates, leaf first (SNP: VCEK, ASK, ARK; TDX: PCK chain when not embedded).
    certificates: list[bytes] = Field(default_factory=list)
    # Verifier collateral as JSON text (TDX: TCB info, QE identity, CRLs), when supplied.
    collateral: str | None = None
    # Parsed on production; a verifier re-parses ``raw`` and never trusts this field.
    claims: Claims | None = None
