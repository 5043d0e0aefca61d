"""The simulated TEE: evidence signed by a per-install platform key, for development and CI only.

It protects nothing from the machine's owner: whoever can read the platform key can sign any
measurement. A release policy accepts it only with ``allow_simulated: true``, and every tool
then warns. Its measurement is the sandbox runtime's own code digest
(:func:`enclave.attest.measurement.runtime_measurement`), so changing that code changes it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError, field_validator

from crypto.canonical import CanonicalModel
from crypto.errors import SignatureError
from crypto.identity import Identity, PublicIdentity
from enclave.attest.evidence import REPORT_DATA_SIZE, Claims, Evidence, EvidenceKind
from enclave.attest.measurement import MEASUREMENT_SIZE, runtime_measurement
from enclave.attest.verdict import Check
from enclave.errors import MalformedEvidence

FORMAT = "fedtune.simulated-evidence/v1"
FORMAT_VERSION = 1
SIGNING_CONTEXT = "simulated-evidence"
SIMULATED_WARNING = "simulated TEE: no protection from the machine's owner; development only"
PLATFORM_KEY_DIR = "simulated-tee"
PLATFORM_KEY_FILE = "platform.pem"
DEFAULT_HOME = Path("~/.fedtune")


class SimulatedReport(CanonicalModel):
    """What the simulated platform signs: measurement, report data, time and its own key."""

    format: Literal["fedtune.simulated-evidence/v1"] = FORMAT
    simulated: Literal[True] = True
    measurement: bytes
    report_data: bytes
    timestamp: datetime
    platform_key: bytes  # raw Ed25519 public key of the signing platform

    @field_validator("measurement")
    @classmethod
    def _measurement_size(cls, value: bytes) -> bytes:
        if len(value) != MEASUREMENT_SIZE:
            raise ValueError(f"measurement must be {MEASUREMENT_SIZE} bytes, got {len(value)}")
        return value

    @field_validator("report_data")
    @classmethod
    def _report_data_size(cls, value: bytes) -> bytes:
        if len(value) != REPORT_DATA_SIZE:
            raise ValueError(f"report_data must be {REPORT_DATA_SIZE} bytes, got {len(value)}")
        return value

    @field_validator("platform_key")
    @classmethod
    def _key_size(cls, value: bytes) -> bytes:
        if len(value) != 32:
            raise ValueError(f"platform_key must be a 32-byte Ed25519 key, got {len(value)}")
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # pydantic turns only ValueError into a validation error.
            raise ValueError("timestamp lies outside the years 1-9999 in UTC") from None


class SignedSimulatedReport(CanonicalModel):
    """The simulated evidence as it travels: the report and the platform's signature over it."""

    report: SimulatedReport
    signature: bytes


def platform_key_path(home: Path | None = None) -> Path:
    """Where the per-install platform key lives: ``<home>/simulated-tee/platform.pem``.

    ``home`` is the party's fedtune home (``FEDTUNE_HOME``; fedtune passes its settings'
    ``home``); without it, ``~/.fedtune``.
    """
    base = DEFAULT_HOME.expanduser() if home is None else Path(home)
    return base / PLATFORM_KEY_DIR / PLATFORM_KEY_FILE


def load_or_create_platform_key(path: Path) -> Identity:
    """Load the platform key at ``path``, creating it (mode 0600) the first time."""
    path = Path(path)
    if path.exists():
        return Identity.load(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Write under a temporary name, then link it into place: link() refuses to replace an
    # existing file, so two processes racing to create the key end up sharing one.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    Identity.generate().save(tmp)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Identity.load(path)


class SimulatedTee:
    """An evidence provider for development: signs the runtime measurement with a local key."""

    def __init__(self, platform_key: Identity, *, measurement: bytes | None = None) -> None:
        if not isinstance(platform_key, Identity):
            raise TypeError("platform_key must be a crypto.identity.Identity")
        if measurement is not None:
            if not isinstance(measurement, bytes):
                raise TypeError("measurement must be bytes")
            if len(measurement) != MEASUREMENT_SIZE:
                raise ValueError(f"measurement must be {MEASUREMENT_SIZE} bytes")
        self._key = platform_key
        self._measurement = measurement

    @classmethod
    def load_or_create(
        cls, home: Path | None = None, *, runtime_roots: Sequence[Path] | None = None
    ) -> SimulatedTee:
        """The install's simulated TEE: its platform key under ``home``, created on first use."""
        key = load_or_create_platform_key(platform_key_path(home))
        measurement = runtime_measurement(runtime_roots) if runtime_roots is not None else None
        return cls(key, measurement=measurement)

    @property
    def public_key(self) -> PublicIdentity:
        """The platform's public key; verifiers pin its fingerprint."""
        return self._key.public

    @property
    def measurement(self) -> bytes:
        """The measurement this platform reports (the runtime's code digest unless given)."""
        if self._measurement is None:
            self._measurement = runtime_measurement()
        return self._measurement

    def get_evidence(self, report_data: bytes, *, now: datetime | None = None) -> Evidence:
        """Sign evidence carrying ``report_data`` (64 bytes) and the runtime measurement."""
        if not isinstance(report_data, bytes):
            raise TypeError("report_data must be bytes")
        if len(report_data) != REPORT_DATA_SIZE:
            raise ValueError(
                f"report_data must be {REPORT_DATA_SIZE} bytes, got {len(report_data)}"
            )
        if now is not None and (not isinstance(now, datetime) or now.tzinfo is None):
            raise TypeError("now must be a timezone-aware datetime")
        report = SimulatedReport(
            measurement=self.measurement,
            report_data=report_data,
            timestamp=now or datetime.now(UTC),
            platform_key=self._key.public.raw,
        )
        signed = SignedSimulatedReport(
            report=report,
            signature=self._key.sign(report.canonical_bytes(), context=SIGNING_CONTEXT),
        )
        return Evidence(
            kind=EvidenceKind.SIMULATED,
            raw=signed.canonical_bytes(),
            claims=report_claims(report),
        )


def parse_simulated(raw: bytes) -> SignedSimulatedReport:
    """Parse simulated evidence bytes; MalformedEvidence when they are not the canonical form."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    try:
        signed = SignedSimulatedReport.model_validate_json(bytes(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise MalformedEvidence(where, first["msg"]) from None
    # One encoding only: anything else (reordered keys, extra spaces) is not what was signed.
    if signed.canonical_bytes() != bytes(raw):
        raise MalformedEvidence("encoding", "simulated evidence is not in canonical JSON form")
    return signed


def report_claims(report: SimulatedReport) -> Claims:
    """The generic claims of a simulated report."""
    return Claims(
        measurements={"measurement": report.measurement},
        report_data=report.report_data,
        tcb={},
        # A simulated TEE has no debug switch; its lack of protection is what a policy's
        # allow_simulated consents to, and the verdict warns about it separately.
        debug=False,
        policy_bits=None,
        platform_id=report.platform_key,
        signed_at=report.timestamp,
        format_version=FORMAT_VERSION,
    )


def _fingerprints(keys: Collection[PublicIdentity | str]) -> set[str]:
    prints = set()
    for key in keys:
        if isinstance(key, PublicIdentity):
            prints.add(key.fingerprint)
        elif isinstance(key, str):
            prints.add(key)
        else:
            raise TypeError("trusted keys must be PublicIdentity objects or fingerprint strings")
    return prints


def verify_simulated(
    evidence: Evidence,
    *,
    now: datetime,
    trusted_keys: Collection[PublicIdentity | str] = (),
) -> tuple[Claims | None, list[Check]]:
    """Check simulated evidence: its signature, and that the platform key is a pinned one.

    An unpinned platform key fails ``simulated.platform_key``: anyone can make a key and sign
    any measurement with it, so a signature from a key nobody pinned proves nothing. Freshness
    (``signed_at`` against ``now``) is a policy check, done by :func:`enclave.attest.verify`.
    """
    if not isinstance(evidence, Evidence):
        raise TypeError("evidence must be an Evidence")
    if evidence.kind is not EvidenceKind.SIMULATED:
        raise ValueError(f"verify_simulated got {evidence.kind.value} evidence")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    pinned = _fingerprints(trusted_keys)

    signed = parse_simulated(evidence.raw)
    report = signed.report
    platform = PublicIdentity.from_bytes(report.platform_key)
    checks: list[Check] = []
    try:
        platform.verify(signed.signature, report.canonical_bytes(), context=SIGNING_CONTEXT)
    except SignatureError:
        checks.append(
            Check.failed(
                "simulated.signature",
                f"the signature does not verify under the platform key it names "
                f"({platform.short_fingerprint}): the evidence was altered",
            )
        )
    else:
        checks.append(
            Check.passed(
                "simulated.signature",
                f"Ed25519 signature by platform key {platform.short_fingerprint} verifies",
            )
        )
    if platform.fingerprint in pinned:
        checks.append(
            Check.passed("simulated.platform_key", "the platform key is one of the pinned keys")
        )
    else:
        checks.append(
            Check.failed(
                "simulated.platform_key",
                "the platform key is not pinned: pin its fingerprint (policy "
                "simulated_platform_keys, or --simulated-key) to accept its evidence"
                if not pinned
                else "the platform key is not one of the pinned simulated platform keys",
                expected=", ".join(sorted(pinned)) or None,
                got=platform.fingerprint,
            )
        )
    return report_claims(report), checks
