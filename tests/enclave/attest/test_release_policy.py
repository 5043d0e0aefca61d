"""Release policies: validation, signing by the issuer, and refusal of altered or foreign ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from crypto.identity import Identity
from enclave.attest.evidence import EvidenceKind
from enclave.attest.policy import AllowedMeasurement, ReleasePolicy, SignedReleasePolicy
from enclave.errors import PolicyError

ISSUED = datetime(2025, 1, 1, tzinfo=UTC)
M = b"\x11" * 48


def _policy(signer: Identity, **overrides) -> ReleasePolicy:
    fields = {
        "name": "acme/base-v1",
        "version": 3,
        "issuer": signer.fingerprint,
        "issued_at": ISSUED,
        "allowed_kinds": [EvidenceKind.SEV_SNP],
        "allowed_measurements": [
            AllowedMeasurement(kind=EvidenceKind.SEV_SNP, values={"measurement": M})
        ],
        "min_tcb": {EvidenceKind.SEV_SNP: {"snp": 8, "microcode": 115}},
    }
    fields.update(overrides)
    return ReleasePolicy(**fields)


def test_defaults_are_the_safe_ones():
    policy = _policy(Identity.generate())
    assert policy.allow_debug is False
    assert policy.allow_simulated is False
    assert policy.max_evidence_age_s == 300
    assert policy.report_data_binding == "sha512(nonce || public_key)"


def test_sign_and_verify():
    issuer = Identity.generate()
    signed = _policy(issuer).sign(issuer)
    assert signed.verify([issuer.public]) == signed.policy
    assert signed.verify([issuer.fingerprint]) == signed.policy
    assert signed.signature_problem() is None
    assert signed.digest.startswith("sha256:") and len(signed.digest) == 71


def test_round_trip_through_json_keeps_the_signature_valid(tmp_path):
    issuer = Identity.generate()
    signed = _policy(issuer, expires_at=ISSUED + timedelta(days=30)).sign(issuer)
    path = tmp_path / "policy.json"
    path.write_text(signed.model_dump_json(indent=2))
    loaded = SignedReleasePolicy.load(path)
    assert loaded == signed
    assert loaded.verify([issuer.public]) == signed.policy


def test_signing_with_another_key_than_the_issuer_is_refused():
    issuer, other = Identity.generate(), Identity.generate()
    with pytest.raises(ValueError, match="issuer"):
        _policy(issuer).sign(other)


def test_altered_policy_is_refused():
    issuer = Identity.generate()
    signed = _policy(issuer).sign(issuer)
    altered = signed.model_copy(
        update={"policy": signed.policy.model_copy(update={"allow_debug": True})}
    )
    assert "altered" in altered.signature_problem()
    with pytest.raises(PolicyError, match="altered"):
        altered.verify([issuer.public])


def test_untrusted_issuer_is_refused():
    issuer = Identity.generate()
    signed = _policy(issuer).sign(issuer)
    with pytest.raises(PolicyError, match="not a trusted policy issuer"):
        signed.verify([Identity.generate().public])
    with pytest.raises(PolicyError, match="not a trusted policy issuer"):
        signed.verify([])


def test_a_key_swapped_in_is_refused():
    # Someone re-signs the policy with their own key but keeps the issuer's name.
    issuer, mallory = Identity.generate(), Identity.generate()
    policy = _policy(issuer)
    forged = SignedReleasePolicy(
        policy=policy,
        public_key=mallory.public.raw,
        signature=mallory.sign(policy.canonical_bytes(), context="release-policy"),
    )
    assert "names issuer" in forged.signature_problem()


def test_a_signature_for_another_document_kind_is_refused():
    issuer = Identity.generate()
    policy = _policy(issuer)
    wrong_context = SignedReleasePolicy(
        policy=policy,
        public_key=issuer.public.raw,
        signature=issuer.sign(policy.canonical_bytes(), context="manifest"),
    )
    assert wrong_context.signature_problem() is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 0}, "greater than or equal to 1"),
        ({"name": ""}, "at least 1 character"),
        ({"issuer": "ed25519:xyz"}, "not a key fingerprint"),
        ({"issued_at": datetime(2025, 1, 1)}, "timezone"),
        ({"expires_at": ISSUED - timedelta(seconds=1)}, "later than issued_at"),
        ({"max_evidence_age_s": 0}, "greater than 0"),
        ({"allowed_kinds": [EvidenceKind.SIMULATED]}, "allow_simulated is false"),
        ({"min_tcb": {EvidenceKind.SEV_SNP: {"snp": -1}}}, "negative"),
        ({"simulated_platform_keys": ["nope"]}, "not a key fingerprint"),
        ({"report_data_binding": "sha256(nonce)"}, "sha512"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_policies_are_refused(overrides, message):
    with pytest.raises(ValidationError, match=message):
        _policy(Identity.generate(), **overrides)


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        (EvidenceKind.SEV_SNP, {}, "must pin measurement"),
        (EvidenceKind.SEV_SNP, {"measurement": b"\x00" * 32}, "48 bytes"),
        (EvidenceKind.TDX, {"mrtd": M}, "must pin rtmr0, rtmr1, rtmr2"),
        (EvidenceKind.TDX, {"mrtd": M, "rtmr0": M, "rtmr1": M, "rtmr2": M, "rtmr9": M}, "unknown"),
        (EvidenceKind.SIMULATED, {"mrtd": M, "measurement": M}, "unknown"),
    ],
)
def test_allow_list_entries_must_pin_every_required_measurement(kind, values, message):
    with pytest.raises(ValidationError, match=message):
        AllowedMeasurement(kind=kind, values=values)


def test_tdx_entry_with_rtmr3_is_accepted():
    entry = AllowedMeasurement(
        kind=EvidenceKind.TDX,
        values={"mrtd": M, "rtmr0": M, "rtmr1": M, "rtmr2": M, "rtmr3": M},
        label="td 1.2",
    )
    assert set(entry.values) == {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}


def test_load_reports_what_is_wrong(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        SignedReleasePolicy.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"policy": {}}')
    with pytest.raises(PolicyError, match="not a signed release policy"):
        SignedReleasePolicy.load(bad)
