"""verify_tdx on real TDX quotes and collateral, and on mutated copies of every checked field."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from enclave.attest import _tdx_collateral as pcs
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.tdx import TcbStatus, parse_tdx_quote, verify_tdx
from enclave.attest.verdict import Check, CheckStatus, Verdict
from enclave.errors import MalformedEvidence

DATA = Path(__file__).resolve().parents[2] / "data" / "attestation" / "tdx"
QUOTE_V4 = (DATA / "dcapqvl-quote-v4.bin").read_bytes()
COLLATERAL_V4 = (DATA / "dcapqvl-quote-v4-collateral.json").read_text()
QUOTE_OUTDATED = (DATA / "dcapqvl-quote-outdated.bin").read_bytes()
COLLATERAL_OUTDATED = (DATA / "dcapqvl-quote-outdated-collateral.json").read_text()
TRUSTEE_V4 = (DATA / "trustee-quote-v4.dat").read_bytes()
TRUSTEE_V5 = (DATA / "trustee-quote-v5.dat").read_bytes()

# Inside every window of the v4 collateral (TCB info 2025-06-19T10:16Z .. 2025-07-19T10:16Z,
# PCK CRL 2025-06-19T10:00Z .. 2025-07-19T10:00Z) and of the outdated one (2026-02-18 ..
# 2026-03-20).
NOW_V4 = datetime(2025, 7, 1, tzinfo=UTC)
NOW_OUTDATED = datetime(2026, 3, 1, tzinfo=UTC)

# Spec offsets (Intel TDX DCAP Quoting Library API, app. 3) in a v4 quote.
BODY = 48  # TD report 1.0 follows the 48-byte header
SIGNATURE = 636  # ECDSA r || s, after the u32 signature data length at 632
ATTESTATION_KEY = 700
QE_REPORT = 770  # after the certification data type (u16) and size (u32) at 764
QE_REPORT_SIGNATURE = QE_REPORT + 384
QE_AUTH_DATA = QE_REPORT_SIGNATURE + 64 + 2  # after its u16 size


def _evidence(
    raw: bytes, collateral: str | None = None, certificates: list[bytes] | None = None
) -> Evidence:
    return Evidence(
        kind=EvidenceKind.TDX, raw=raw, collateral=collateral, certificates=certificates or []
    )


def _failed(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if c.status is CheckStatus.FAILED}


def _check(checks: list[Check], name: str) -> Check:
    (found,) = [c for c in checks if c.name == name]
    return found


def _flip(raw: bytes, offset: int, mask: int = 0x01) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ mask]) + raw[offset + 1 :]


def _set(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


# --- real vectors --------------------------------------------------------------------------


def test_real_v4_quote_with_collateral_is_up_to_date():
    claims, checks = verify_tdx(_evidence(QUOTE_V4, COLLATERAL_V4), now=NOW_V4)
    assert _failed(checks) == set()
    assert all(c.status is CheckStatus.PASSED for c in checks), checks
    # dcap-qvl's own test of this sample expects UpToDate with no advisories.
    status = _check(checks, "tdx.tcb.status")
    assert status.got == "UpToDate"
    assert "advisories" not in status.reason
    assert claims is not None
    assert claims.measurements["mrtd"].hex().startswith("91eb2b44d141d4ec")
    assert claims.measurements["rtmr0"].hex().startswith("44c0197b39157fdd")
    assert claims.measurements["rtmr3"] == bytes(48)
    assert set(claims.measurements) == {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}
    assert claims.report_data.hex().startswith("9a9d48e7f6799642")
    assert claims.debug is False
    assert claims.policy_bits == 0x1000_0000
    assert claims.tcb["tee_tcb_svn.0"] == 6 and claims.tcb["tee_tcb_svn.1"] == 1
    assert claims.tcb["tee_tcb_svn.2"] == 3 and claims.tcb["tee_tcb_svn.15"] == 0
    assert claims.tcb["pce_svn"] == 11 and claims.tcb["qe_svn"] == 6
    assert claims.platform_id is not None
    assert claims.platform_id.hex() == "811dca2a26b952e85bb6448b097ba4fd"
    assert claims.format_version == 4
    assert claims.signed_at is None
    assert Verdict(kind="tdx", checks=checks, evaluated_at=NOW_V4).ok


@pytest.mark.parametrize(
    ("raw", "now", "version"),
    [
        (QUOTE_V4, NOW_V4, 4),
        (QUOTE_OUTDATED, NOW_OUTDATED, 5),
        (TRUSTEE_V4, datetime(2025, 11, 1, tzinfo=UTC), 4),
        (TRUSTEE_V5, datetime(2025, 11, 1, tzinfo=UTC), 5),
    ],
    ids=["dcapqvl-v4", "dcapqvl-outdated-v5", "trustee-v4", "trustee-v5"],
)
def test_real_quotes_verify_without_collateral_and_say_so(raw: bytes, now: datetime, version: int):
    claims, checks = verify_tdx(_evidence(raw), now=now)
    assert _failed(checks) == set()
    assert claims is not None and claims.format_version == version
    for name in (
        "tdx.quote.signature",
        "tdx.pck.chain",
        "tdx.qe_report.signature",
        "tdx.qe_report.binding",
    ):
        assert _check(checks, name).status is CheckStatus.PASSED
    not_checked = [c for c in checks if c.status is CheckStatus.NOT_APPLICABLE]
    assert {c.name for c in not_checked} >= {
        "tdx.tcb.status",
        "tdx.collateral.tcb_info.signature",
        "tdx.collateral.qe_identity.match",
        "tdx.pck.crl",
    }
    assert (
        _check(checks, "tdx.tcb.status").reason
        == "no collateral given: TCB status and QE identity not checked"
    )


def test_outdated_sample_fails_tcb_status_and_nothing_else():
    # Everything about this quote is authentic and its collateral is current; only its TCB
    # is behind. Intel's QVL compares each SVN component (TcbLevelCheck isCpuSvnHigherOrEqual):
    # the PCK says SGX component 8 (SEAMLDR ACM) is 3 while every published level demands 5,
    # so no level matches at all, which Intel reports as TCB_NOT_SUPPORTED. (dcap-qvl names
    # the sample "outdated" because it compares the vectors lexicographically and lands on an
    # OutOfDate level.) Either way it must fail; OutOfDate itself is exercised below.
    claims, checks = verify_tdx(_evidence(QUOTE_OUTDATED, COLLATERAL_OUTDATED), now=NOW_OUTDATED)
    assert claims is None
    assert _failed(checks) == {"tdx.tcb.status"}
    status = _check(checks, "tdx.tcb.status")
    assert status.got == "NotSupported"
    assert "no SGX TCB level matches" in status.reason
    assert "[3, 3, 2, 2, 4, 1, 0, 3," in status.reason


def test_out_of_date_tdx_module_fails_with_its_advisory_context():
    # TEE_TCB_SVN[0] is the TDX module's ISVSVN: 6 -> 3 lands on TDX_01's OutOfDate level
    # (isvsvn 2) of the real, Intel-signed TCB info. The quote signature breaks too, as it
    # must: both failures are reported.
    raw = _set(QUOTE_V4, BODY, b"\x03")
    claims, checks = verify_tdx(_evidence(raw, COLLATERAL_V4), now=NOW_V4)
    assert claims is None
    assert _failed(checks) == {"tdx.quote.signature", "tdx.tcb.status"}
    status = _check(checks, "tdx.tcb.status")
    assert status.got == "OutOfDate"
    assert "TDX module TDX_01 ISVSVN 3 is OutOfDate" in status.reason


def _real_tcb_info(text: str, now: datetime) -> pcs.TcbInfo:
    """TCB info whose Intel signature verified (so the levels below are Intel's, not ours)."""
    _, checks = verify_tdx(_evidence(QUOTE_OUTDATED, text), now=now)
    assert _check(checks, "tdx.collateral.tcb_info.signature").status is CheckStatus.PASSED
    info = pcs.parse_collateral(text).tcb_info
    assert info is not None
    return info


def test_tcb_levels_out_of_date_with_advisories():
    # The outdated sample's platform with two SGX components moved so the walk lands on the
    # published OutOfDate level: component 8 raised to the 5 every level demands, component 5
    # dropped to 3, which only the lower levels allow.
    info = _real_tcb_info(COLLATERAL_OUTDATED, NOW_OUTDATED)
    evaluation = pcs.evaluate_tdx_tcb(
        info,
        sgx_components=(3, 3, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0),
        pce_svn=13,
        tee_tcb_svn=bytes([7, 1, 3]) + bytes(13),
        tee_tcb_svn2=None,
        quote_version=5,
        qe_status=TcbStatus.UP_TO_DATE,
    )
    assert evaluation.status is TcbStatus.OUT_OF_DATE
    assert evaluation.advisory_ids == (
        "INTEL-SA-01036",
        "INTEL-SA-01079",
        "INTEL-SA-01099",
        "INTEL-SA-01103",
        "INTEL-SA-01111",
    )


@pytest.mark.parametrize(
    ("tee_tcb_svn", "tee_tcb_svn2", "qe", "want"),
    [
        # Platform on the top level and module TDX_01 ISVSVN 7 >= 6: all current.
        ([7, 1, 3], None, TcbStatus.UP_TO_DATE, TcbStatus.UP_TO_DATE),
        # The QE's own TCB being out of date drags the verdict down (QVL convergence).
        ([7, 1, 3], None, TcbStatus.OUT_OF_DATE, TcbStatus.OUT_OF_DATE),
        ([7, 1, 3], None, TcbStatus.REVOKED, TcbStatus.REVOKED),
        ([7, 1, 3], None, TcbStatus.NOT_SUPPORTED, TcbStatus.NOT_SUPPORTED),
        # Module ISVSVN 4 is an OutOfDate module level.
        ([4, 1, 3], None, TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE),
        # ... but the module now running (TEE_TCB_SVN2) is current: relaunching the TD fixes it.
        ([4, 1, 2], [6, 1, 3], TcbStatus.UP_TO_DATE, TcbStatus.TD_RELAUNCH_ADVISED),
        # No identity TDX_02 in the TCB info.
        ([7, 2, 3], None, TcbStatus.UP_TO_DATE, TcbStatus.NOT_SUPPORTED),
        # Module ISVSVN 1 is below every TDX_01 level.
        ([1, 1, 3], None, TcbStatus.UP_TO_DATE, TcbStatus.NOT_SUPPORTED),
    ],
)
def test_tcb_status_convergence_on_real_levels(tee_tcb_svn, tee_tcb_svn2, qe, want):
    info = _real_tcb_info(COLLATERAL_OUTDATED, NOW_OUTDATED)
    evaluation = pcs.evaluate_tdx_tcb(
        info,
        sgx_components=(3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0),
        pce_svn=13,
        tee_tcb_svn=bytes(tee_tcb_svn) + bytes(13),
        tee_tcb_svn2=None if tee_tcb_svn2 is None else bytes(tee_tcb_svn2) + bytes(13),
        quote_version=5,
        qe_status=qe,
    )
    assert evaluation.status is want, evaluation.explanation


# --- every checked field, mutated ----------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    desc: str
    raw: bytes
    want: frozenset[str]


def _m(desc: str, raw: bytes, *want: str) -> Mutation:
    return Mutation(desc, raw, frozenset(want))


_TD_REPORT_FIELDS = [
    ("tee_tcb_svn", 0),
    ("mrseam", 16),
    ("mrsignerseam", 64),
    ("seamattributes", 112),
    ("tdattributes-debug", 120),
    ("xfam", 128),
    ("mrtd", 136),
    ("mrconfigid", 184),
    ("mrowner", 232),
    ("mrownerconfig", 280),
    ("rtmr0", 328),
    ("rtmr1", 376),
    ("rtmr2", 424),
    ("rtmr3", 472),
    ("reportdata", 520),
    ("reportdata-last-byte", 583),
]

MUTATIONS = [
    _m("header-version-3", _set(QUOTE_V4, 0, b"\x03"), "tdx.header.version"),
    _m("header-version-6", _set(QUOTE_V4, 0, b"\x06"), "tdx.header.version"),
    _m("header-att-key-type-3", _set(QUOTE_V4, 2, b"\x03"), "tdx.header.att_key_type"),
    _m("header-tee-type-sgx", _set(QUOTE_V4, 4, b"\x00"), "tdx.header.tee_type"),
    _m("header-qe-vendor-id", _flip(QUOTE_V4, 12), "tdx.header.qe_vendor_id"),
    _m("header-reserved", _flip(QUOTE_V4, 8), "tdx.quote.signature"),
    _m("header-user-data", _flip(QUOTE_V4, 28), "tdx.quote.signature"),
    *[
        _m(f"td-report-{name}", _flip(QUOTE_V4, BODY + offset), "tdx.quote.signature")
        for name, offset in _TD_REPORT_FIELDS
    ],
    _m("quote-signature-r", _flip(QUOTE_V4, SIGNATURE), "tdx.quote.signature"),
    _m("quote-signature-s", _flip(QUOTE_V4, SIGNATURE + 63), "tdx.quote.signature"),
    _m(
        "attestation-key",
        _flip(QUOTE_V4, ATTESTATION_KEY + 5),
        "tdx.quote.signature",
        "tdx.qe_report.binding",
    ),
    _m("qe-report-cpusvn", _flip(QUOTE_V4, QE_REPORT), "tdx.qe_report.signature"),
    _m("qe-report-attributes", _flip(QUOTE_V4, QE_REPORT + 48), "tdx.qe_report.signature"),
    _m("qe-report-mrsigner", _flip(QUOTE_V4, QE_REPORT + 128), "tdx.qe_report.signature"),
    _m("qe-report-isvsvn", _flip(QUOTE_V4, QE_REPORT + 258), "tdx.qe_report.signature"),
    _m(
        "qe-report-reportdata",
        _flip(QUOTE_V4, QE_REPORT + 320),
        "tdx.qe_report.signature",
        "tdx.qe_report.binding",
    ),
    _m(
        "qe-report-reportdata-zero-half",
        _flip(QUOTE_V4, QE_REPORT + 383),
        "tdx.qe_report.signature",
        "tdx.qe_report.binding",
    ),
    _m("qe-report-signature", _flip(QUOTE_V4, QE_REPORT_SIGNATURE + 10), "tdx.qe_report.signature"),
    _m("qe-auth-data", _flip(QUOTE_V4, QE_AUTH_DATA), "tdx.qe_report.binding"),
]


def test_mutation_offsets_hit_the_fields_they_name():
    quote = parse_tdx_quote(QUOTE_V4)
    assert QUOTE_V4[SIGNATURE : SIGNATURE + 64] == quote.signature
    assert QUOTE_V4[ATTESTATION_KEY : ATTESTATION_KEY + 64] == quote.attestation_key
    qe = quote.qe_certification
    assert QUOTE_V4[QE_REPORT : QE_REPORT + 384] == qe.qe_report_raw
    assert QUOTE_V4[QE_REPORT_SIGNATURE : QE_REPORT_SIGNATURE + 64] == qe.qe_report_signature
    assert QUOTE_V4[QE_AUTH_DATA : QE_AUTH_DATA + 32] == qe.qe_auth_data
    debug = parse_tdx_quote(_flip(QUOTE_V4, BODY + 120)).td_report
    assert debug.debug is True


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.desc for m in MUTATIONS])
def test_mutated_field_fails_the_check_naming_it(mutation: Mutation):
    claims, checks = verify_tdx(_evidence(mutation.raw), now=NOW_V4)
    assert claims is None
    assert _failed(checks) == mutation.want
    for name in mutation.want:
        assert _check(checks, name).reason


_PAST_HEADER = [m for m in MUTATIONS if not any(n.startswith("tdx.header.") for n in m.want)]


@pytest.mark.parametrize("mutation", _PAST_HEADER, ids=[m.desc for m in _PAST_HEADER])
def test_mutated_field_fails_with_collateral_too(mutation: Mutation):
    # With collateral the same failures are reported; QE report changes may add a QE
    # identity mismatch and TCB changes a TCB status, never hide the named failure.
    claims, checks = verify_tdx(_evidence(mutation.raw, COLLATERAL_V4), now=NOW_V4)
    assert claims is None
    assert mutation.want <= _failed(checks)


@pytest.mark.parametrize(
    ("desc", "raw", "check", "detail"),
    [
        (
            "qe-mrsigner",
            _flip(QUOTE_V4, QE_REPORT + 128),
            "tdx.collateral.qe_identity.match",
            "MRSIGNER",
        ),
        (
            "qe-isvprodid",
            _flip(QUOTE_V4, QE_REPORT + 256),
            "tdx.collateral.qe_identity.match",
            "ISVPRODID",
        ),
        (
            "qe-miscselect",
            _flip(QUOTE_V4, QE_REPORT + 16),
            "tdx.collateral.qe_identity.match",
            "MISCSELECT",
        ),
        (
            "qe-attributes",
            _flip(QUOTE_V4, QE_REPORT + 48),
            "tdx.collateral.qe_identity.match",
            "ATTRIBUTES",
        ),
        ("mrsignerseam", _flip(QUOTE_V4, BODY + 64), "tdx.tcb.tdx_module", "MRSIGNERSEAM"),
        ("seamattributes", _flip(QUOTE_V4, BODY + 112), "tdx.tcb.tdx_module", "SEAMATTRIBUTES"),
        ("tdx-module-major-2", _set(QUOTE_V4, BODY + 1, b"\x02"), "tdx.tcb.tdx_module", "TDX_02"),
    ],
)
def test_collateral_identity_checks_name_the_mismatched_field(
    desc: str, raw: bytes, check: str, detail: str
):
    _, checks = verify_tdx(_evidence(raw, COLLATERAL_V4), now=NOW_V4)
    failed = _check(checks, check)
    assert failed.status is CheckStatus.FAILED
    assert detail in failed.reason, failed


def test_quote_signature_failure_reason_is_specific():
    _, checks = verify_tdx(_evidence(_flip(QUOTE_V4, BODY + 136)), now=NOW_V4)
    assert (
        "does not verify with the attestation key" in _check(checks, "tdx.quote.signature").reason
    )


def test_binding_failure_shows_expected_and_got():
    _, checks = verify_tdx(_evidence(_flip(QUOTE_V4, QE_AUTH_DATA)), now=NOW_V4)
    binding = _check(checks, "tdx.qe_report.binding")
    assert binding.expected is not None and binding.got is not None
    assert binding.expected.endswith("00" * 32)
    assert binding.got == parse_tdx_quote(QUOTE_V4).qe_certification.qe_report.report_data.hex()


# --- collateral, mutated -------------------------------------------------------------------

_DCAP = json.loads(COLLATERAL_V4)


def _collateral(**changes: object) -> str:
    values = dict(_DCAP)
    for key, value in changes.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    return json.dumps(values)


def _flip_hex(text: str, index: int) -> str:
    return text[:index] + ("0" if text[index] != "0" else "1") + text[index + 1 :]


COLLATERAL_MUTATIONS = [
    _m(
        "tcb-info-body",
        _collateral(
            tcb_info=_DCAP["tcb_info"].replace(
                '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18'
            )
        ).encode(),
        "tdx.collateral.tcb_info.signature",
    ),
    _m(
        "tcb-info-status-promoted",
        _collateral(tcb_info=_DCAP["tcb_info"].replace('"OutOfDate"', '"UpToDate"', 1)).encode(),
        "tdx.collateral.tcb_info.signature",
    ),
    _m(
        "tcb-info-signature",
        _collateral(tcb_info_signature=_flip_hex(_DCAP["tcb_info_signature"], 10)).encode(),
        "tdx.collateral.tcb_info.signature",
    ),
    _m(
        "tcb-info-reserialised",
        _collateral(tcb_info=json.dumps(json.loads(_DCAP["tcb_info"]), indent=1)).encode(),
        "tdx.collateral.tcb_info.signature",
    ),
    _m(
        "qe-identity-body",
        _collateral(
            qe_identity=_DCAP["qe_identity"].replace('"isvprodid":2', '"isvprodid":3')
        ).encode(),
        "tdx.collateral.qe_identity.signature",
        "tdx.collateral.qe_identity.match",
    ),
    _m(
        "qe-identity-signature",
        _collateral(qe_identity_signature=_flip_hex(_DCAP["qe_identity_signature"], 70)).encode(),
        "tdx.collateral.qe_identity.signature",
    ),
    _m(
        "pck-crl-signature",
        # The last hex digit is inside the ECDSA signature's s.
        _collateral(pck_crl=_flip_hex(_DCAP["pck_crl"], len(_DCAP["pck_crl"]) - 1)).encode(),
        "tdx.pck.crl",
    ),
    _m(
        "root-ca-crl-signature",
        _collateral(
            root_ca_crl=_flip_hex(_DCAP["root_ca_crl"], len(_DCAP["root_ca_crl"]) - 1)
        ).encode(),
        "tdx.pck.crl",
    ),
    _m("pck-crl-missing", _collateral(pck_crl=None).encode(), "tdx.pck.crl"),
    _m("root-ca-crl-missing", _collateral(root_ca_crl=None).encode(), "tdx.pck.crl"),
    _m(
        "pck-crl-and-root-crl-swapped",
        _collateral(pck_crl=_DCAP["root_ca_crl"], root_ca_crl=_DCAP["pck_crl"]).encode(),
        "tdx.pck.crl",
    ),
    _m(
        "other-platforms-tcb-info",
        json.dumps(
            {
                **_DCAP,
                **{
                    k: v
                    for k, v in json.loads(COLLATERAL_OUTDATED).items()
                    if k.startswith("tcb_info")
                },
            }
        ).encode(),
        # Different FMSPC, and TCB info of 2026 is not yet issued at NOW_V4.
        "tdx.collateral.tcb_info.match",
        "tdx.collateral.tcb_info.validity",
        "tdx.tcb.status",
    ),
]


@pytest.mark.parametrize(
    "mutation", COLLATERAL_MUTATIONS, ids=[m.desc for m in COLLATERAL_MUTATIONS]
)
def test_mutated_collateral_fails_the_check_naming_it(mutation: Mutation):
    claims, checks = verify_tdx(_evidence(QUOTE_V4, mutation.raw.decode()), now=NOW_V4)
    assert claims is None
    assert _failed(checks) == mutation.want, [c for c in checks if c.status is CheckStatus.FAILED]


def test_collateral_without_crls_says_revocation_was_not_checked():
    text = _collateral(pck_crl=None, root_ca_crl=None, pck_crl_issuer_chain=None)
    claims, checks = verify_tdx(_evidence(QUOTE_V4, text), now=NOW_V4)
    assert claims is not None and _failed(checks) == set()
    crl = _check(checks, "tdx.pck.crl")
    assert crl.status is CheckStatus.NOT_APPLICABLE
    assert "revocation not checked" in crl.reason


def test_collateral_without_qe_identity_says_so():
    text = _collateral(qe_identity=None, qe_identity_signature=None, qe_identity_issuer_chain=None)
    claims, checks = verify_tdx(_evidence(QUOTE_V4, text), now=NOW_V4)
    assert claims is not None
    assert _check(checks, "tdx.collateral.qe_identity.match").status is CheckStatus.NOT_APPLICABLE
    assert "QE's own TCB is not part" in _check(checks, "tdx.tcb.status").reason


@pytest.mark.parametrize(
    ("now", "want"),
    [
        # Stale: past nextUpdate of TCB info (10:16:03), QE identity (10:32:27), PCK CRL.
        (
            datetime(2025, 7, 19, 10, 40, tzinfo=UTC),
            {
                "tdx.collateral.tcb_info.validity",
                "tdx.collateral.qe_identity.validity",
                "tdx.pck.crl",
            },
        ),
        # One second past TCB info's nextUpdate; the PCK CRL expired 15 minutes before.
        (
            datetime(2025, 7, 19, 10, 16, 4, tzinfo=UTC),
            {"tdx.collateral.tcb_info.validity", "tdx.pck.crl"},
        ),
        # Before issueDate: the collateral did not exist yet at the time asked about.
        (
            datetime(2025, 6, 19, 10, 10, tzinfo=UTC),
            {"tdx.collateral.tcb_info.validity", "tdx.collateral.qe_identity.validity"},
        ),
    ],
    ids=["stale", "just-stale", "not-yet-issued"],
)
def test_stale_collateral_fails_validity(now: datetime, want: set[str]):
    claims, checks = verify_tdx(_evidence(QUOTE_V4, COLLATERAL_V4), now=now)
    assert claims is None
    assert _failed(checks) == want
    if now > datetime(2025, 7, 1, tzinfo=UTC):
        assert "stale" in _check(checks, "tdx.collateral.tcb_info.validity").reason


def test_trustee_pcs_bodies_verify_byte_exact_and_are_matched_to_the_platform():
    # trustee's tcbInfo.json / enclaveIdentity.json are whole PCS response bodies, signed by
    # the same Intel TCB signing key; embedded unchanged they verify. They are for FMSPC
    # 00A06D080000, which is not this quote's platform, and that is caught.
    tcb_text = (DATA / "trustee-tcbInfo.json").read_text().strip()
    qe_text = (DATA / "trustee-enclaveIdentity.json").read_text().strip()
    text = (
        '{"tcb_info": ' + tcb_text + ', "tcb_info_issuer_chain": '
        + json.dumps(_DCAP["tcb_info_issuer_chain"]) + ', "qe_identity": ' + qe_text
        + ', "qe_identity_issuer_chain": ' + json.dumps(_DCAP["qe_identity_issuer_chain"]) + "}"
    )  # fmt: skip
    claims, checks = verify_tdx(_evidence(TRUSTEE_V5, text), now=datetime(2025, 11, 1, tzinfo=UTC))
    assert claims is None
    for name in (
        "tdx.collateral.tcb_info.signature",
        "tdx.collateral.tcb_info.validity",
        "tdx.collateral.qe_identity.signature",
        "tdx.collateral.qe_identity.match",
    ):
        assert _check(checks, name).status is CheckStatus.PASSED, name
    match = _check(checks, "tdx.collateral.tcb_info.match")
    assert match.status is CheckStatus.FAILED
    assert (match.expected, match.got) == ("90C06F000000", "00A06D080000")


# --- test PKI: a CA of our own, clearly not Intel's ----------------------------------------
# Used only where the behaviour under test (revocation, foreign roots) cannot be produced
# with Intel's real certificates. Nothing here imitates an Intel signature on Intel data.

TEST_ORG = "fedtune TEST CA - not Intel"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    extra: list[x509.ExtensionType] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for extension in extra or []:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    def pem_chain(self) -> bytes:
        return b"".join(
            c.public_bytes(Encoding.PEM) for c in (self.leaf, self.intermediate, self.root)
        )

    def crl(
        self, issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey, revoked: list[int]
    ) -> str:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(datetime(2025, 6, 1, tzinfo=UTC))
            .next_update(datetime(2025, 8, 1, tzinfo=UTC))
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(datetime(2025, 6, 15, tzinfo=UTC))
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER).hex()


def _real_pck_leaf() -> x509.Certificate:
    pem = parse_tdx_quote(QUOTE_V4).qe_certification.pck_chain_pem
    assert pem is not None
    return x509.load_pem_x509_certificates(pem)[0]


def _test_pki(*, leaf_cn: str = "Intel SGX PCK Certificate") -> Pki:
    """A three-level test PKI whose leaf carries the real PCK's SGX extensions (platform data)."""
    root_key, intermediate_key, leaf_key = _key(), _key(), _key()
    root_name = _name("fedtune TEST root")
    root = _certificate(root_name, root_key, root_name, root_key, ca=True)
    intermediate = _certificate(
        _name("fedtune TEST PCK CA"), intermediate_key, root_name, root_key, ca=True
    )
    sgx = _real_pck_leaf().extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.2.840.113741.1.13.1")
    )
    leaf = _certificate(
        _name(leaf_cn),
        leaf_key,
        intermediate.subject,
        intermediate_key,
        ca=False,
        extra=[sgx.value],
    )
    return Pki(root, root_key, intermediate, intermediate_key, leaf, leaf_key)


def _rebuild_v4(
    raw: bytes,
    *,
    qe_report_signature: bytes | None = None,
    inner_type: int | None = None,
    inner_data: bytes | None = None,
) -> bytes:
    """Re-encode a v4 quote's signature data with a new QE signature or certification data."""
    quote = parse_tdx_quote(raw)
    qe = quote.qe_certification
    data = qe.certification_data if inner_data is None else inner_data
    qe_cert = (
        qe.qe_report_raw
        + (qe.qe_report_signature if qe_report_signature is None else qe_report_signature)
        + struct.pack("<H", len(qe.qe_auth_data))
        + qe.qe_auth_data
        + struct.pack(
            "<HI", qe.certification_data_type if inner_type is None else inner_type, len(data)
        )
        + data
    )
    signature_data = (
        quote.signature + quote.attestation_key + struct.pack("<HI", 6, len(qe_cert)) + qe_cert
    )
    return quote.signed_data + struct.pack("<I", len(signature_data)) + signature_data


def _signed_by(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _quote_under(pki: Pki) -> bytes:
    """The real v4 quote with its QE report re-signed by the test PCK key and its chain."""
    qe_report = parse_tdx_quote(QUOTE_V4).qe_certification.qe_report_raw
    return _rebuild_v4(
        QUOTE_V4,
        qe_report_signature=_signed_by(pki.leaf_key, qe_report),
        inner_data=pki.pem_chain() + b"\x00",
    )


def test_rebuild_is_faithful():
    assert _rebuild_v4(QUOTE_V4) == QUOTE_V4[:4936]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return _test_pki()


def test_test_pki_chain_and_crls_pass_when_nothing_is_revoked(pki: Pki):
    text = json.dumps(
        {
            "root_ca_crl": pki.crl(pki.root, pki.root_key, []),
            "pck_crl": pki.crl(pki.intermediate, pki.intermediate_key, [pki.root.serial_number]),
        }
    )
    claims, checks = verify_tdx(_evidence(_quote_under(pki), text), now=NOW_V4, root_ca=pki.root)
    assert _failed(checks) == set()
    assert _check(checks, "tdx.pck.crl").status is CheckStatus.PASSED
    assert claims is not None


@pytest.mark.parametrize("which", ["leaf", "intermediate"])
def test_revoked_certificate_fails_crl(pki: Pki, which: str):
    revoked_leaf = [pki.leaf.serial_number] if which == "leaf" else []
    revoked_ca = [pki.intermediate.serial_number] if which == "intermediate" else []
    text = json.dumps(
        {
            "root_ca_crl": pki.crl(pki.root, pki.root_key, revoked_ca),
            "pck_crl": pki.crl(pki.intermediate, pki.intermediate_key, revoked_leaf),
        }
    )
    claims, checks = verify_tdx(_evidence(_quote_under(pki), text), now=NOW_V4, root_ca=pki.root)
    assert claims is None
    assert _failed(checks) == {"tdx.pck.crl"}
    assert "is revoked" in _check(checks, "tdx.pck.crl").reason


def test_crl_signed_by_another_ca_fails(pki: Pki):
    other = _test_pki()
    text = json.dumps(
        {
            "root_ca_crl": pki.crl(pki.root, pki.root_key, []),
            # Same issuer name, wrong key.
            "pck_crl": pki.crl(pki.intermediate, other.intermediate_key, []),
        }
    )
    _, checks = verify_tdx(_evidence(_quote_under(pki), text), now=NOW_V4, root_ca=pki.root)
    assert _failed(checks) == {"tdx.pck.crl"}
    assert "signature does not verify" in _check(checks, "tdx.pck.crl").reason


def test_real_quote_against_another_root_fails_chain(pki: Pki):
    claims, checks = verify_tdx(_evidence(QUOTE_V4), now=NOW_V4, root_ca=pki.root)
    assert claims is None
    assert _failed(checks) == {"tdx.pck.chain"}


def test_chain_with_look_alike_intel_root_fails(pki: Pki):
    # Swap the embedded Intel root for a self-signed certificate carrying Intel's root name.
    real = x509.load_pem_x509_certificates(
        parse_tdx_quote(QUOTE_V4).qe_certification.pck_chain_pem or b""
    )
    key = _key()
    fake_root = _certificate(real[2].subject, key, real[2].subject, key, ca=True)
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in (real[0], real[1], fake_root))
    claims, checks = verify_tdx(_evidence(_rebuild_v4(QUOTE_V4, inner_data=pem)), now=NOW_V4)
    assert claims is None
    assert _failed(checks) == {"tdx.pck.chain"}
    chain = _check(checks, "tdx.pck.chain")
    assert "not the pinned root" in chain.reason
    assert chain.got == fake_root.fingerprint(hashes.SHA256()).hex()


def test_chain_with_look_alike_intermediate_fails(pki: Pki):
    # A PCK chain whose intermediate carries Intel's name but a key Intel never certified.
    real = x509.load_pem_x509_certificates(
        parse_tdx_quote(QUOTE_V4).qe_certification.pck_chain_pem or b""
    )
    key = _key()
    fake_ca = _certificate(real[1].subject, key, real[2].subject, key, ca=True)
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in (real[0], fake_ca, real[2]))
    _, checks = verify_tdx(_evidence(_rebuild_v4(QUOTE_V4, inner_data=pem)), now=NOW_V4)
    assert _failed(checks) == {"tdx.pck.chain"}


def test_leaf_that_is_not_a_pck_certificate_fails():
    other = _test_pki(leaf_cn="Some Other Leaf")
    _, checks = verify_tdx(_evidence(_quote_under(other)), now=NOW_V4, root_ca=other.root)
    assert _failed(checks) == {"tdx.pck.chain"}
    assert _check(checks, "tdx.pck.chain").got == "Some Other Leaf"


def test_expired_chain_fails():
    # Intel SGX PCK Platform CA is valid until 2033-05-21.
    _, checks = verify_tdx(_evidence(QUOTE_V4), now=datetime(2033, 6, 1, tzinfo=UTC))
    assert _failed(checks) == {"tdx.pck.chain"}
    assert "not valid at validation time" in _check(checks, "tdx.pck.chain").reason


def test_chain_not_embedded_comes_from_evidence_certificates():
    real = x509.load_pem_x509_certificates(
        parse_tdx_quote(QUOTE_V4).qe_certification.pck_chain_pem or b""
    )
    # Certification data type 3 (PPID encrypted with RSA-3072): the quote names the platform
    # but does not carry the chain, so the evidence has to.
    raw = _rebuild_v4(QUOTE_V4, inner_type=3, inner_data=bytes(384 + 16 + 2 + 2))
    claims, checks = verify_tdx(
        _evidence(raw, certificates=[c.public_bytes(Encoding.DER) for c in real]), now=NOW_V4
    )
    assert _failed(checks) == set() and claims is not None
    claims, checks = verify_tdx(_evidence(raw), now=NOW_V4)
    assert claims is None
    assert _failed(checks) == {"tdx.pck.chain", "tdx.qe_report.signature"}
    assert "does not embed the PCK chain" in _check(checks, "tdx.pck.chain").reason


def test_tcb_info_signed_under_a_foreign_chain_fails():
    pki = _test_pki()
    signer = _certificate(
        _name("Intel SGX TCB Signing"), pki.leaf_key, pki.root.subject, pki.root_key, ca=False
    )
    body = _DCAP["tcb_info"].encode()
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in (signer, pki.root)).decode()
    text = _collateral(
        tcb_info_signature=_signed_by(pki.leaf_key, body).hex(), tcb_info_issuer_chain=chain
    )
    _, checks = verify_tdx(_evidence(QUOTE_V4, text), now=NOW_V4)
    assert _failed(checks) == {"tdx.collateral.tcb_info.signature"}
    assert "not the pinned root" in _check(checks, "tdx.collateral.tcb_info.signature").reason


def test_collateral_signed_by_a_non_tcb_signing_certificate_fails():
    # The PCK Platform CA is a real Intel certificate under the same root, but it is not the
    # key Intel signs TCB info with.
    text = _collateral(tcb_info_issuer_chain=_DCAP["pck_crl_issuer_chain"])
    _, checks = verify_tdx(_evidence(QUOTE_V4, text), now=NOW_V4)
    assert _failed(checks) == {"tdx.collateral.tcb_info.signature"}
    assert _check(checks, "tdx.collateral.tcb_info.signature").got == "Intel SGX PCK Platform CA"


# --- arguments and parse errors ------------------------------------------------------------


def test_parse_errors_raise_malformed_evidence():
    with pytest.raises(MalformedEvidence) as info:
        verify_tdx(_evidence(QUOTE_V4[:700]), now=NOW_V4)
    assert info.value.field.startswith("quote.signature_data")
    with pytest.raises(MalformedEvidence) as info:
        verify_tdx(_evidence(QUOTE_V4, "{not json"), now=NOW_V4)
    assert info.value.field == "collateral"
    for pem in (
        b"no certificates here",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ):
        with pytest.raises(MalformedEvidence) as info:
            verify_tdx(_evidence(_rebuild_v4(QUOTE_V4, inner_data=pem)), now=NOW_V4)
        assert info.value.field == "quote.pck_chain"
    with pytest.raises(MalformedEvidence) as info:
        raw = _rebuild_v4(QUOTE_V4, inner_type=3, inner_data=bytes(404))
        verify_tdx(_evidence(raw, certificates=[b"not DER"]), now=NOW_V4)
    assert info.value.field == "certificates"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"now": "2025-07-01"}, TypeError),
        ({"now": datetime(2025, 7, 1)}, ValueError),
        ({"now": NOW_V4, "root_ca": b"der"}, TypeError),
        ({"now": NOW_V4, "accepted_tcb_statuses": "UpToDate"}, TypeError),
        ({"now": NOW_V4, "accepted_tcb_statuses": []}, ValueError),
        ({"now": NOW_V4, "accepted_tcb_statuses": [TcbStatus.OUT_OF_DATE]}, ValueError),
        ({"now": NOW_V4, "accepted_tcb_statuses": ["Revoked"]}, ValueError),
        ({"now": NOW_V4, "accepted_tcb_statuses": ["TDRelaunchAdvised"]}, ValueError),
        ({"now": NOW_V4, "accepted_tcb_statuses": ["Fine"]}, ValueError),
    ],
)
def test_arguments_are_validated_first(kwargs: dict, error: type[Exception]):
    with pytest.raises(error):
        verify_tdx(_evidence(QUOTE_V4), **kwargs)


def test_wrong_evidence_kind_is_refused():
    with pytest.raises(ValueError):
        verify_tdx(Evidence(kind=EvidenceKind.SEV_SNP, raw=QUOTE_V4), now=NOW_V4)
    with pytest.raises(TypeError):
        verify_tdx(QUOTE_V4, now=NOW_V4)  # type: ignore[arg-type]


def test_configuration_needed_may_be_accepted_explicitly():
    # Accepting more statuses never changes which status a platform has.
    _, checks = verify_tdx(
        _evidence(QUOTE_V4, COLLATERAL_V4),
        now=NOW_V4,
        accepted_tcb_statuses=[TcbStatus.UP_TO_DATE, TcbStatus.CONFIGURATION_NEEDED],
    )
    assert _check(checks, "tdx.tcb.status").got == "UpToDate"
    _, checks = verify_tdx(
        _evidence(QUOTE_V4, COLLATERAL_V4),
        now=NOW_V4,
        accepted_tcb_statuses=[TcbStatus.SW_HARDENING_NEEDED],
    )
    status = _check(checks, "tdx.tcb.status")
    assert status.status is CheckStatus.FAILED and status.expected == "SWHardeningNeeded"


def test_checks_run_on_time_not_the_wall_clock():
    a = verify_tdx(_evidence(QUOTE_V4, COLLATERAL_V4), now=NOW_V4)[1]
    b = verify_tdx(_evidence(QUOTE_V4, COLLATERAL_V4), now=NOW_V4 + timedelta(days=30))[1]
    assert _failed(a) == set()
    assert "tdx.collateral.tcb_info.validity" in _failed(b)
