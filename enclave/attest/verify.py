"""The one verify(): authenticity checks per evidence kind, then the release policy: a Verdict."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta

from cryptography import x509

from crypto.identity import PublicIdentity
from enclave.attest.amd_certs import AmdRoots
from enclave.attest.evidence import REPORT_DATA_SIZE, Claims, Evidence, EvidenceKind
from enclave.attest.policy import ReleasePolicy, SignedReleasePolicy, issuer_fingerprints
from enclave.attest.simulated import SIMULATED_WARNING, verify_simulated
from enclave.attest.snp import verify_snp
from enclave.attest.verdict import Check, CheckStatus, Verdict
from enclave.errors import MalformedEvidence

# How far in the future a simulated timestamp may lie before it is refused (clock skew).
MAX_CLOCK_SKEW = timedelta(seconds=60)

_PREFIX = {
    EvidenceKind.SEV_SNP: "snp",
    EvidenceKind.TDX: "tdx",
    EvidenceKind.SIMULATED: "simulated",
}
_NO_TIMESTAMP = {
    EvidenceKind.SEV_SNP: "SEV-SNP reports",
    EvidenceKind.TDX: "TDX quotes",
}

Authenticity = tuple[Claims | None, list[Check]]


def verify(
    evidence: Evidence,
    policy: SignedReleasePolicy | None = None,
    expected_report_data: bytes | None = None,
    *,
    trusted_policy_issuers: Collection[PublicIdentity | str] = (),
    now: datetime | None = None,
    snp_roots: AmdRoots | None = None,
    tdx_root: x509.Certificate | None = None,
    simulated_platform_keys: Collection[PublicIdentity | str] = (),
) -> Verdict:
    """Verify evidence (and, when given, a signed release policy); every check is in the verdict.

    Authenticity comes first (signatures, certificate chains to pinned vendor roots, TCB
    consistency); then the policy: its own signature and issuer, and its rules (kind, simulated,
    measurement, minimum TCB, debug, age). When ``expected_report_data`` is given, the report
    data must equal it exactly (the caller computes it with ``report_data_for(nonce, key)``);
    with a policy it is required, since it is what makes evidence fresh. The verdict is ok only
    when nothing failed. ``now`` defaults to the current time; roots default to the pinned ones.
    """
    if not isinstance(evidence, Evidence):
        raise TypeError("evidence must be an Evidence")
    if policy is not None and not isinstance(policy, SignedReleasePolicy):
        raise TypeError("policy must be a SignedReleasePolicy (an unsigned policy proves nothing)")
    if expected_report_data is not None:
        if not isinstance(expected_report_data, bytes):
            raise TypeError("expected_report_data must be bytes")
        if len(expected_report_data) != REPORT_DATA_SIZE:
            raise ValueError(
                f"expected_report_data must be {REPORT_DATA_SIZE} bytes, "
                f"got {len(expected_report_data)}"
            )
    if now is None:
        now = datetime.now(UTC)
    elif not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    issuers = issuer_fingerprints(trusted_policy_issuers)

    checks: list[Check] = []
    warnings: list[str] = []

    # The policy document first: whether it is trusted decides which of its rules apply.
    trusted_policy: ReleasePolicy | None = None
    if policy is not None:
        doc_checks, trusted_policy = _policy_document_checks(policy, issuers, now)
        checks.extend(doc_checks)
        if policy.policy.allow_simulated:
            warnings.append(SIMULATED_WARNING)
    if evidence.kind is EvidenceKind.SIMULATED and SIMULATED_WARNING not in warnings:
        warnings.append(SIMULATED_WARNING)

    sim_keys = list(simulated_platform_keys)
    if trusted_policy is not None:
        sim_keys.extend(trusted_policy.simulated_platform_keys)
    claims, auth_checks = _authenticity(
        evidence, now=now, snp_roots=snp_roots, tdx_root=tdx_root, simulated_keys=sim_keys
    )
    checks[:0] = auth_checks
    authentic = claims is not None and not any(c.status is CheckStatus.FAILED for c in auth_checks)

    if policy is not None:
        checks.extend(_policy_rule_checks(evidence.kind, claims, trusted_policy, authentic, now))
    checks.append(_binding_check(claims, expected_report_data, policy is not None, authentic))
    return Verdict(
        kind=evidence.kind.value,
        checks=checks,
        evaluated_at=now,
        policy_fingerprint=policy.digest if policy is not None else None,
        warnings=warnings,
    )


def _authenticity(
    evidence: Evidence,
    *,
    now: datetime,
    snp_roots: AmdRoots | None,
    tdx_root: x509.Certificate | None,
    simulated_keys: Collection[PublicIdentity | str],
) -> Authenticity:
    prefix = _PREFIX.get(evidence.kind)
    verifier: Callable[[], Authenticity]
    if evidence.kind is EvidenceKind.SEV_SNP:

        def verifier() -> Authenticity:
            return verify_snp(evidence, now=now, roots=snp_roots)
    elif evidence.kind is EvidenceKind.TDX:
        try:
            # Imported here so this module works while the TDX verifier is absent.
            from enclave.attest.tdx import verify_tdx
        except ImportError as exc:
            return None, [
                Check.failed("tdx.verifier", f"the TDX verifier is not available ({exc})")
            ]

        def verifier() -> Authenticity:
            return verify_tdx(evidence, now=now, root_ca=tdx_root)
    elif evidence.kind is EvidenceKind.SIMULATED:

        def verifier() -> Authenticity:
            return verify_simulated(evidence, now=now, trusted_keys=simulated_keys)
    else:  # pragma: no cover - EvidenceKind is closed, but fail closed if it grows
        return None, [Check.failed("evidence.kind", f"unknown evidence kind {evidence.kind!r}")]

    try:
        claims, checks = verifier()
    except MalformedEvidence as exc:
        field = exc.field if exc.field.startswith(f"{prefix}.") else f"{prefix}.{exc.field}"
        return None, [Check.failed(field, f"malformed evidence: {exc.reason}")]
    if not checks:
        # A verifier that checked nothing has proven nothing.
        checks = [Check.failed(f"{prefix}.verifier", "the verifier reported no checks")]
    return claims, checks


def _policy_document_checks(
    signed: SignedReleasePolicy, issuers: set[str], now: datetime
) -> tuple[list[Check], ReleasePolicy | None]:
    policy = signed.policy
    checks = []
    problem = signed.signature_problem()
    if problem:
        checks.append(Check.failed("policy.signature", problem))
    else:
        checks.append(
            Check.passed(
                "policy.signature",
                f"policy {policy.name!r} v{policy.version} is signed by {policy.issuer}",
            )
        )
    if not issuers:
        checks.append(
            Check.failed(
                "policy.issuer",
                "no trusted policy issuer was given, so no policy can be trusted",
                got=policy.issuer,
            )
        )
    elif policy.issuer not in issuers:
        checks.append(
            Check.failed(
                "policy.issuer",
                "the policy's issuer is not a trusted policy issuer",
                expected=", ".join(sorted(issuers)),
                got=policy.issuer,
            )
        )
    else:
        checks.append(Check.passed("policy.issuer", f"{policy.issuer} is a trusted issuer"))
    # issued_at is not compared with now: checking old evidence (verify(..., now=past))
    # against a policy issued since is a legitimate question.
    if policy.expires_at is not None and now >= policy.expires_at:
        checks.append(
            Check.failed(
                "policy.validity",
                "the policy has expired",
                expected=f"now < {policy.expires_at.isoformat()}",
                got=now.isoformat(),
            )
        )
    else:
        until = policy.expires_at.isoformat() if policy.expires_at else "no expiry"
        checks.append(
            Check.passed(
                "policy.validity", f"issued {policy.issued_at.isoformat()}, valid until {until}"
            )
        )
    trusted = all(c.status is CheckStatus.PASSED for c in checks)
    return checks, policy if trusted else None


_RULES = (
    "policy.kind",
    "policy.simulated",
    "policy.measurement",
    "policy.tcb",
    "policy.debug",
    "policy.age",
)


def _policy_rule_checks(
    kind: EvidenceKind,
    claims: Claims | None,
    policy: ReleasePolicy | None,
    authentic: bool,
    now: datetime,
) -> list[Check]:
    if policy is None:
        return [
            Check.not_applicable(name, "not evaluated: the policy itself is not trusted")
            for name in _RULES
        ]
    checks = [_kind_check(kind, policy), _simulated_check(kind, policy)]
    if claims is None or not authentic:
        # Rules about claims mean nothing when the claims may be forged.
        return checks + [
            Check.not_applicable(name, "not evaluated: the evidence is not authentic")
            for name in _RULES[2:]
        ]
    checks.append(_measurement_check(kind, claims, policy))
    checks.extend(_tcb_checks(kind, claims, policy))
    checks.append(_debug_check(claims, policy))
    checks.append(_age_check(kind, claims, policy, now))
    return checks


def _kind_check(kind: EvidenceKind, policy: ReleasePolicy) -> Check:
    allowed = [k.value for k in policy.allowed_kinds]
    if not allowed:
        return Check.failed("policy.kind", "the policy allows no evidence kind: it refuses all")
    if kind not in policy.allowed_kinds:
        return Check.failed(
            "policy.kind",
            f"{kind.value} evidence is not allowed by the policy",
            expected=", ".join(allowed),
            got=kind.value,
        )
    return Check.passed("policy.kind", f"{kind.value} is an allowed kind")


def _simulated_check(kind: EvidenceKind, policy: ReleasePolicy) -> Check:
    if kind is not EvidenceKind.SIMULATED:
        return Check.not_applicable("policy.simulated", f"{kind.value} is hardware evidence")
    if not policy.allow_simulated:
        return Check.failed(
            "policy.simulated",
            "a production policy (allow_simulated: false) refuses simulated evidence",
        )
    return Check.passed(
        "policy.simulated", f"the policy allows simulated evidence ({SIMULATED_WARNING})"
    )


def _measurement_check(kind: EvidenceKind, claims: Claims, policy: ReleasePolicy) -> Check:
    entries = [m for m in policy.allowed_measurements if m.kind is kind]
    if not entries:
        return Check.failed(
            "policy.measurement",
            f"the policy lists no {kind.value} measurement: an empty allow-list refuses all",
        )
    for entry in entries:
        if all(
            name in claims.measurements and hmac.compare_digest(claims.measurements[name], value)
            for name, value in entry.values.items()
        ):
            label = f" ({entry.label})" if entry.label else ""
            names = ", ".join(sorted(entry.values))
            return Check.passed("policy.measurement", f"{names} match an allowed entry{label}")
    got = ", ".join(f"{n}={v.hex()}" for n, v in sorted(claims.measurements.items()))
    return Check.failed(
        "policy.measurement",
        f"the measurement matches none of the policy's {len(entries)} allowed "
        f"{kind.value} entr{'y' if len(entries) == 1 else 'ies'}",
        expected="; ".join(
            ", ".join(f"{n}={v.hex()}" for n, v in sorted(e.values.items())) for e in entries
        ),
        got=got,
    )


def _tcb_checks(kind: EvidenceKind, claims: Claims, policy: ReleasePolicy) -> list[Check]:
    minimums = policy.min_tcb.get(kind, {})
    if not minimums:
        return [
            Check.not_applicable("policy.tcb", f"the policy sets no minimum TCB for {kind.value}")
        ]
    checks = []
    for name, minimum in sorted(minimums.items()):
        check_name = f"policy.tcb.{name}"
        value = claims.tcb.get(name)
        if value is None:
            checks.append(
                Check.failed(
                    check_name,
                    f"the evidence reports no {name!r} TCB component",
                    expected=f">= {minimum}",
                )
            )
        elif value < minimum:
            checks.append(
                Check.failed(
                    check_name,
                    f"{name} is below the policy's minimum: the platform needs updating",
                    expected=f">= {minimum}",
                    got=str(value),
                )
            )
        else:
            checks.append(Check.passed(check_name, f"{name}={value} >= {minimum}"))
    return checks


def _debug_check(claims: Claims, policy: ReleasePolicy) -> Check:
    if not claims.debug:
        return Check.passed("policy.debug", "debugging is off")
    if policy.allow_debug:
        return Check.passed(
            "policy.debug", "debugging is on, and the policy allows it (allow_debug)"
        )
    return Check.failed(
        "policy.debug",
        "the guest allows debugging, so the host can read its memory; the policy forbids it",
        expected="debug off",
        got="debug on",
    )


def _age_check(kind: EvidenceKind, claims: Claims, policy: ReleasePolicy, now: datetime) -> Check:
    if claims.signed_at is None:
        what = _NO_TIMESTAMP.get(kind, f"{kind.value} evidence")
        return Check.not_applicable(
            "policy.age",
            f"{what} carry no timestamp; freshness comes from the nonce bound in report data",
        )
    age = now - claims.signed_at
    limit = timedelta(seconds=policy.max_evidence_age_s)
    if age < -MAX_CLOCK_SKEW:
        return Check.failed(
            "policy.age",
            "the evidence is dated in the future (clock skew or forgery)",
            expected=f"signed_at <= {(now + MAX_CLOCK_SKEW).isoformat()}",
            got=claims.signed_at.isoformat(),
        )
    if age > limit:
        return Check.failed(
            "policy.age",
            "the evidence is stale",
            expected=f"age <= {policy.max_evidence_age_s} s",
            got=f"{int(age.total_seconds())} s",
        )
    seconds = max(0, int(age.total_seconds()))
    return Check.passed("policy.age", f"{seconds} s old, limit {policy.max_evidence_age_s} s")


def _binding_check(
    claims: Claims | None, expected: bytes | None, with_policy: bool, authentic: bool
) -> Check:
    if expected is None:
        if with_policy:
            return Check.failed(
                "policy.report_data",
                "no expected report data was given: without it the evidence could be a replay",
            )
        return Check.not_applicable(
            "policy.report_data", "no expected report data given (authenticity only)"
        )
    if claims is None:
        return Check.not_applicable("policy.report_data", "not evaluated: no claims to compare")
    if not authentic:
        return Check.not_applicable(
            "policy.report_data", "not evaluated: the evidence is not authentic"
        )
    if not hmac.compare_digest(claims.report_data, expected):
        return Check.failed(
            "policy.report_data",
            "the report data is not SHA-512(nonce || public key) for this challenge: "
            "a replayed or foreign report",
            expected=expected.hex(),
            got=claims.report_data.hex(),
        )
    return Check.passed("policy.report_data", "report data equals the expected binding")
