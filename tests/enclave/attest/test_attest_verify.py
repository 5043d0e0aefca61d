"""verify(): authenticity and release-policy checks together, on real and simulated evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crypto.identity import Identity
from enclave.attest import verify
from enclave.attest.binding import report_data_for
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.policy import AllowedMeasurement, ReleasePolicy, SignedReleasePolicy
from enclave.attest.simulated import SIMULATED_WARNING, SimulatedTee
from enclave.attest.tdx import parse_tdx_quote
from enclave.attest.verdict import AttestationFailed, CheckStatus, Verdict

from .snp_helpers import (
    DATA,
    GSG_MEASUREMENT,
    NOW,
    VIRTEE_MEASUREMENT,
    VIRTEE_REPORT_DATA,
    gsg_evidence,
    virtee_evidence,
)

ISSUER = Identity.generate()
SNP_TCB = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}  # virtee's VCEK


def _signed(**overrides) -> SignedReleasePolicy:
    fields = {
        "name": "acme/base-v1",
        "version": 1,
        "issuer": ISSUER.fingerprint,
        "issued_at": datetime(2025, 1, 1, tzinfo=UTC),
        "allowed_kinds": [EvidenceKind.SEV_SNP],
        "allowed_measurements": [
            AllowedMeasurement(
                kind=EvidenceKind.SEV_SNP,
                values={"measurement": VIRTEE_MEASUREMENT},
                label="virtee sample guest",
            )
        ],
        "min_tcb": {EvidenceKind.SEV_SNP: SNP_TCB},
    }
    fields.update(overrides)
    return ReleasePolicy(**fields).sign(ISSUER)


def _verify(evidence: Evidence, policy: SignedReleasePolicy | None, expected, **kw) -> Verdict:
    kw.setdefault("trusted_policy_issuers", [ISSUER.public])
    kw.setdefault("now", NOW)
    return verify(evidence, policy, expected, **kw)


def _status(verdict: Verdict, name: str) -> CheckStatus:
    return next(c.status for c in verdict.checks if c.name == name)


def _failed(verdict: Verdict) -> set[str]:
    assert not verdict.ok
    return {c.name for c in verdict.failures}


def test_real_snp_report_satisfies_a_policy():
    verdict = _verify(virtee_evidence(), _signed(), VIRTEE_REPORT_DATA)
    assert verdict.ok, verdict.failures
    verdict.raise_for_failure()
    for name in (
        "policy.signature",
        "policy.issuer",
        "policy.validity",
        "policy.kind",
        "policy.measurement",
        "policy.tcb.snp",
        "policy.tcb.microcode",
        "policy.debug",
        "policy.report_data",
    ):
        assert _status(verdict, name) is CheckStatus.PASSED, name
    age = next(c for c in verdict.checks if c.name == "policy.age")
    assert age.status is CheckStatus.NOT_APPLICABLE
    assert "nonce" in age.reason
    assert _status(verdict, "policy.simulated") is CheckStatus.NOT_APPLICABLE
    assert verdict.policy_fingerprint == _signed().digest
    assert verdict.warnings == []
    assert verdict.kind == "sev-snp" and verdict.evaluated_at == NOW


def test_every_check_is_listed_with_a_reason():
    verdict = _verify(virtee_evidence(), _signed(), VIRTEE_REPORT_DATA)
    assert all(c.reason for c in verdict.checks)
    assert len({c.name for c in verdict.checks}) == len(verdict.checks)


def test_replayed_nonce_fails():
    # The evidence is bound to an old challenge; the verifier now expects the new one.
    key = b"\x02" * 32
    old, new = b"\x01" * 32, b"\x03" * 32
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    evidence = tee.get_evidence(report_data_for(old, key), now=NOW)
    policy = _dev_policy(tee)
    assert _verify(evidence, policy, report_data_for(old, key)).ok
    verdict = _verify(evidence, policy, report_data_for(new, key))
    assert _failed(verdict) == {"policy.report_data"}


def test_real_report_bound_to_other_data_fails():
    verdict = _verify(virtee_evidence(), _signed(), report_data_for(b"\x00" * 32, b"key"))
    assert _failed(verdict) == {"policy.report_data"}
    with pytest.raises(AttestationFailed, match=r"policy\.report_data"):
        verdict.raise_for_failure()


def test_a_policy_without_expected_report_data_fails_closed():
    assert _failed(_verify(virtee_evidence(), _signed(), None)) == {"policy.report_data"}


def test_measurement_not_allowed_fails():
    entry = AllowedMeasurement(kind=EvidenceKind.SEV_SNP, values={"measurement": GSG_MEASUREMENT})
    verdict = _verify(virtee_evidence(), _signed(allowed_measurements=[entry]), VIRTEE_REPORT_DATA)
    assert _failed(verdict) == {"policy.measurement"}
    failure = verdict.failures[0]
    assert failure.got == f"measurement={VIRTEE_MEASUREMENT.hex()}"


def test_empty_measurement_allow_list_refuses():
    verdict = _verify(virtee_evidence(), _signed(allowed_measurements=[]), VIRTEE_REPORT_DATA)
    assert _failed(verdict) == {"policy.measurement"}
    assert "empty allow-list" in verdict.failures[0].reason


def test_empty_kind_list_refuses():
    verdict = _verify(virtee_evidence(), _signed(allowed_kinds=[]), VIRTEE_REPORT_DATA)
    assert "policy.kind" in _failed(verdict)


@pytest.mark.parametrize("component", sorted(SNP_TCB))
def test_tcb_below_minimum_fails(component):
    minimum = dict(SNP_TCB, **{component: SNP_TCB[component] + 1})
    policy = _signed(min_tcb={EvidenceKind.SEV_SNP: minimum})
    verdict = _verify(virtee_evidence(), policy, VIRTEE_REPORT_DATA)
    assert _failed(verdict) == {f"policy.tcb.{component}"}


def test_unknown_tcb_component_fails():
    policy = _signed(min_tcb={EvidenceKind.SEV_SNP: {"fmc": 1}})  # Milan has no FMC
    assert _failed(_verify(virtee_evidence(), policy, VIRTEE_REPORT_DATA)) == {"policy.tcb.fmc"}


def test_no_minimum_tcb_is_not_applicable():
    verdict = _verify(virtee_evidence(), _signed(min_tcb={}), VIRTEE_REPORT_DATA)
    assert verdict.ok
    assert _status(verdict, "policy.tcb") is CheckStatus.NOT_APPLICABLE


def test_debug_guest_is_refused_unless_allowed():
    # go-sev-guest's sample report has POLICY.DEBUG set.
    entry = AllowedMeasurement(kind=EvidenceKind.SEV_SNP, values={"measurement": GSG_MEASUREMENT})
    gsg_data = bytes([1, 2, 3, 4, 5]) + bytes(59)
    common = {"allowed_measurements": [entry], "min_tcb": {}}
    verdict = _verify(gsg_evidence(), _signed(**common), gsg_data)
    assert _failed(verdict) == {"policy.debug"}
    assert _verify(gsg_evidence(), _signed(allow_debug=True, **common), gsg_data).ok


def test_kind_not_allowed_fails():
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    policy = _dev_policy(tee, allowed_kinds=[EvidenceKind.SIMULATED])
    verdict = _verify(virtee_evidence(), policy, VIRTEE_REPORT_DATA)
    assert "policy.kind" in _failed(verdict)


def test_altered_policy_is_not_applied():
    signed = _signed()
    loosened = signed.model_copy(
        update={"policy": signed.policy.model_copy(update={"allow_debug": True})}
    )
    verdict = _verify(virtee_evidence(), loosened, VIRTEE_REPORT_DATA)
    assert _failed(verdict) == {"policy.signature"}
    rules = [c for c in verdict.checks if c.name in ("policy.measurement", "policy.debug")]
    assert all(c.status is CheckStatus.NOT_APPLICABLE for c in rules)


def test_untrusted_issuer_fails():
    verdict = _verify(
        virtee_evidence(),
        _signed(),
        VIRTEE_REPORT_DATA,
        trusted_policy_issuers=[Identity.generate().public],
    )
    assert _failed(verdict) == {"policy.issuer"}


def test_no_trusted_issuer_fails_closed():
    verdict = _verify(virtee_evidence(), _signed(), VIRTEE_REPORT_DATA, trusted_policy_issuers=[])
    assert _failed(verdict) == {"policy.issuer"}


def test_expired_policy_fails():
    expired = _signed(expires_at=NOW - timedelta(days=1))
    assert _failed(_verify(virtee_evidence(), expired, VIRTEE_REPORT_DATA)) == {"policy.validity"}
    # Old evidence may be checked against a policy issued since.
    newer = _signed(issued_at=NOW + timedelta(days=1))
    assert _verify(virtee_evidence(), newer, VIRTEE_REPORT_DATA).ok


def test_unauthentic_evidence_skips_claim_rules():
    evidence = virtee_evidence()
    raw = bytearray(evidence.raw)
    raw[0x90] ^= 1  # measurement
    verdict = _verify(
        evidence.model_copy(update={"raw": bytes(raw)}), _signed(), VIRTEE_REPORT_DATA
    )
    assert _failed(verdict) == {"snp.signature"}
    skipped = {c.name for c in verdict.checks if c.status is CheckStatus.NOT_APPLICABLE}
    assert {"policy.measurement", "policy.debug", "policy.report_data"} <= skipped


def test_unsigned_policy_is_a_type_error():
    with pytest.raises(TypeError, match="SignedReleasePolicy"):
        verify(virtee_evidence(), _signed().policy, VIRTEE_REPORT_DATA, now=NOW)


def test_argument_validation():
    with pytest.raises(ValueError, match="64 bytes"):
        verify(virtee_evidence(), None, b"short", now=NOW)
    with pytest.raises(TypeError):
        verify(virtee_evidence(), now=datetime(2025, 1, 1))
    with pytest.raises(TypeError):
        verify(b"raw bytes")  # type: ignore[arg-type]


def test_unknown_kind_refused():
    with pytest.raises(ValueError, match="kind"):
        Evidence(kind="sgx", raw=b"x")


def test_authenticity_only_without_policy():
    verdict = verify(virtee_evidence(), now=NOW)
    assert verdict.ok
    assert _status(verdict, "policy.report_data") is CheckStatus.NOT_APPLICABLE
    assert not any(
        c.name.startswith("policy.") and c.name != "policy.report_data" for c in verdict.checks
    )
    assert verify(virtee_evidence(), None, VIRTEE_REPORT_DATA, now=NOW).ok
    assert not verify(virtee_evidence(), None, bytes(64), now=NOW).ok


# --- simulated evidence under policies ---------------------------------------------------------


def _dev_policy(tee: SimulatedTee, **overrides) -> SignedReleasePolicy:
    fields = {
        "allowed_kinds": [EvidenceKind.SIMULATED],
        "allowed_measurements": [
            AllowedMeasurement(kind=EvidenceKind.SIMULATED, values={"measurement": tee.measurement})
        ],
        "min_tcb": {},
        "allow_simulated": True,
        "simulated_platform_keys": [tee.public_key.fingerprint],
    }
    fields.update(overrides)
    return _signed(**fields)


def test_simulated_evidence_under_production_policy_fails():
    tee = SimulatedTee(Identity.generate(), measurement=VIRTEE_MEASUREMENT)
    data = bytes(range(64))
    evidence = tee.get_evidence(data, now=NOW)
    # A production policy, even one listing the same measurement and the platform key as pinned
    # by the caller.
    verdict = _verify(evidence, _signed(), data, simulated_platform_keys=[tee.public_key])
    assert {"policy.simulated", "policy.kind"} <= _failed(verdict)
    assert "production policy" in next(
        c.reason for c in verdict.failures if c.name == "policy.simulated"
    )


def test_simulated_evidence_under_dev_policy_passes_with_a_warning():
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    data = bytes(range(64))
    verdict = _verify(tee.get_evidence(data, now=NOW), _dev_policy(tee), data)
    assert verdict.ok, verdict.failures
    assert verdict.warnings == [SIMULATED_WARNING]
    assert _status(verdict, "policy.age") is CheckStatus.PASSED
    assert _status(verdict, "simulated.platform_key") is CheckStatus.PASSED


def test_dev_policy_warns_even_for_hardware_evidence():
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    policy = _dev_policy(tee, allowed_kinds=[EvidenceKind.SEV_SNP, EvidenceKind.SIMULATED])
    verdict = _verify(virtee_evidence(), policy, VIRTEE_REPORT_DATA)
    assert SIMULATED_WARNING in verdict.warnings


def test_stale_simulated_evidence_fails():
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    data = bytes(range(64))
    evidence = tee.get_evidence(data, now=NOW - timedelta(seconds=301))
    verdict = _verify(evidence, _dev_policy(tee), data)
    assert _failed(verdict) == {"policy.age"}
    assert "stale" in verdict.failures[0].reason
    assert _verify(evidence, _dev_policy(tee, max_evidence_age_s=600), data).ok


def test_simulated_evidence_from_the_future_fails():
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    data = bytes(range(64))
    slight = tee.get_evidence(data, now=NOW + timedelta(seconds=30))  # within clock skew
    assert _verify(slight, _dev_policy(tee), data).ok
    ahead = tee.get_evidence(data, now=NOW + timedelta(minutes=5))
    assert _failed(_verify(ahead, _dev_policy(tee), data)) == {"policy.age"}


def test_platform_key_not_listed_in_policy_fails():
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    data = bytes(range(64))
    policy = _dev_policy(tee, simulated_platform_keys=[])
    verdict = _verify(tee.get_evidence(data, now=NOW), policy, data)
    assert _failed(verdict) == {"simulated.platform_key"}


def test_untrusted_policy_does_not_pin_simulated_keys():
    # Keys listed in a policy count only once the policy itself is trusted.
    tee = SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)
    data = bytes(range(64))
    verdict = _verify(
        tee.get_evidence(data, now=NOW), _dev_policy(tee), data, trusted_policy_issuers=[]
    )
    assert {"policy.issuer", "simulated.platform_key"} <= _failed(verdict)


# --- TDX claims under a policy (the names agreed with the TDX verifier) -------------------------

TDX_DATA = DATA.parents[0] / "tdx"
TDX_AT = datetime(2025, 7, 1, tzinfo=UTC)  # inside the sample collateral's validity
# MRTD and RTMR0-2 of Phala's sample TD (dcap-qvl sample/tdx_quote), read from its TD report.
TDX_VALUES = {
    "mrtd": bytes.fromhex(
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b25"
        "38873118b7"
    ),
    "rtmr0": bytes.fromhex(
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf"
        "994b9bc9c0"
    ),
    "rtmr1": bytes.fromhex(
        "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d5"
        "4e579e9378"
    ),
    "rtmr2": bytes.fromhex(
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e"
        "01d48c3132"
    ),
}


def _tdx_evidence() -> Evidence:
    return Evidence(
        kind=EvidenceKind.TDX,
        raw=(TDX_DATA / "dcapqvl-quote-v4.bin").read_bytes(),
        collateral=(TDX_DATA / "dcapqvl-quote-v4-collateral.json").read_text(),
    )


def _tdx_policy(values: dict[str, bytes], **overrides) -> SignedReleasePolicy:
    fields = {
        "allowed_kinds": [EvidenceKind.TDX],
        "allowed_measurements": [AllowedMeasurement(kind=EvidenceKind.TDX, values=values)],
        "min_tcb": {EvidenceKind.TDX: {"tee_tcb_svn.0": 6, "tee_tcb_svn.2": 3}},
    }
    return _signed(**{**fields, **overrides})


def test_tdx_quote_satisfies_a_policy():
    evidence = _tdx_evidence()
    assert verify(evidence, now=TDX_AT).ok  # authenticity alone first
    report_data = parse_tdx_quote(evidence.raw).td_report.report_data
    verdict = _verify(evidence, _tdx_policy(TDX_VALUES), report_data, now=TDX_AT)
    assert verdict.ok, verdict.failures
    assert _status(verdict, "policy.tcb.tee_tcb_svn.0") is CheckStatus.PASSED
    assert "TDX quotes carry no timestamp" in next(
        c.reason for c in verdict.checks if c.name == "policy.age"
    )


@pytest.mark.parametrize("name", sorted(TDX_VALUES))
def test_tdx_each_pinned_register_is_compared(name):
    evidence = _tdx_evidence()
    report_data = parse_tdx_quote(evidence.raw).td_report.report_data
    values = dict(TDX_VALUES, **{name: b"\x00" * 48})
    verdict = _verify(evidence, _tdx_policy(values), report_data, now=TDX_AT)
    assert _failed(verdict) == {"policy.measurement"}


def test_tdx_svn_below_minimum_fails():
    evidence = _tdx_evidence()
    report_data = parse_tdx_quote(evidence.raw).td_report.report_data
    policy = _tdx_policy(TDX_VALUES, min_tcb={EvidenceKind.TDX: {"tee_tcb_svn.0": 7}})
    verdict = _verify(evidence, policy, report_data, now=TDX_AT)
    assert _failed(verdict) == {"policy.tcb.tee_tcb_svn.0"}
