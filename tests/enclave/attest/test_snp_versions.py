"""SEV-SNP report versions 3 and 5, Genoa/Turin layouts and VLEK signing, on a stand-in AMD PKI.

No public vector covers these, so the reports here are laid out and signed by a stand-in PKI
built like AMD's (see snp_helpers). Each test passes its roots explicitly; the pinned AMD roots
refuse all of it, which is tested too.
"""

from __future__ import annotations

import pytest

from enclave.attest import verify
from enclave.attest.amd_certs import AmdProduct
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.snp import parse_report, verify_snp
from enclave.attest.verdict import CheckStatus

from .snp_helpers import NOW, StandInAmd, build_report, sign_report

GENOA_TCB = {"bootloader": 9, "tee": 0, "snp": 21, "microcode": 72}
TURIN_TCB = {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 80}


@pytest.fixture(scope="module")
def genoa() -> StandInAmd:
    return StandInAmd.create(AmdProduct.GENOA)


@pytest.fixture(scope="module")
def turin() -> StandInAmd:
    return StandInAmd.create(AmdProduct.TURIN)


def _evidence(raw: bytes, *certs: bytes) -> Evidence:
    return Evidence(kind=EvidenceKind.SEV_SNP, raw=raw, certificates=list(certs))


def _statuses(evidence: Evidence, roots) -> dict[str, CheckStatus]:
    _, checks = verify_snp(evidence, now=NOW, roots=roots)
    return {c.name: c.status for c in checks}


def test_genoa_v3_report_verifies(genoa):
    chip = bytes(range(64))
    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=chip)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, chip_id=chip), key
    )
    claims, checks = verify_snp(_evidence(raw, vcek), now=NOW, roots=genoa.roots())
    assert all(c.status is CheckStatus.PASSED for c in checks), checks
    report = parse_report(raw)
    assert (report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step) == (0x19, 0x11, 1)
    assert claims.tcb == GENOA_TCB
    assert claims.format_version == 3
    # The pinned (real) AMD roots do not know this stand-in PKI.
    assert not verify(_evidence(raw, vcek), now=NOW).ok


def test_turin_v5_report_with_8_byte_hwid(turin):
    chip = bytes(range(1, 9)) + bytes(56)
    key, vcek = turin.endorsement_key(TURIN_TCB, hwid=chip[:8])
    raw = sign_report(
        build_report(version=5, product=AmdProduct.TURIN, tcb=TURIN_TCB, chip_id=chip), key
    )
    claims, checks = verify_snp(_evidence(raw, vcek), now=NOW, roots=turin.roots())
    assert all(c.status is CheckStatus.PASSED for c in checks), checks
    assert "snp.vcek.tcb.fmc" in {c.name for c in checks}
    assert claims.tcb == TURIN_TCB
    report = parse_report(raw)
    assert (report.launch_mit_vector, report.current_mit_vector) == (0x3, 0x7)


def test_turin_chip_id_beyond_hwid_must_be_zero(turin):
    chip = bytes(range(1, 9)) + b"\x01" + bytes(55)
    key, vcek = turin.endorsement_key(TURIN_TCB, hwid=chip[:8])
    raw = sign_report(
        build_report(version=5, product=AmdProduct.TURIN, tcb=TURIN_TCB, chip_id=chip), key
    )
    assert _statuses(_evidence(raw, vcek), turin.roots())["snp.vcek.hwid"] is CheckStatus.FAILED


@pytest.mark.parametrize("component", sorted(TURIN_TCB))
def test_each_turin_tcb_component_is_compared(turin, component):
    # Signatures all valid: only the one TCB component differs between VCEK and report.
    cert_tcb = dict(TURIN_TCB, **{component: TURIN_TCB[component] + 1})
    chip = bytes(range(1, 9)) + bytes(56)
    key, vcek = turin.endorsement_key(cert_tcb, hwid=chip[:8])
    raw = sign_report(
        build_report(version=5, product=AmdProduct.TURIN, tcb=TURIN_TCB, chip_id=chip), key
    )
    statuses = _statuses(_evidence(raw, vcek), turin.roots())
    failed = {name for name, status in statuses.items() if status is CheckStatus.FAILED}
    assert failed == {f"snp.vcek.tcb.{component}"}


def test_vcek_without_a_tcb_extension_fails(genoa):
    tcb = {k: v for k, v in GENOA_TCB.items() if k != "snp"}
    key, vcek = genoa.endorsement_key(tcb, hwid=b"\xc1" * 64)
    raw = sign_report(build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB), key)
    _, checks = verify_snp(_evidence(raw, vcek), now=NOW, roots=genoa.roots())
    snp = next(c for c in checks if c.name == "snp.vcek.tcb.snp")
    assert snp.status is CheckStatus.FAILED and "snpSPL" in snp.reason


def test_cpuid_disagreeing_with_the_vcek_fails(genoa):
    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=b"\xc1" * 64)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, cpuid=(0x19, 0x01)), key
    )
    assert _statuses(_evidence(raw, vcek), genoa.roots())["snp.product"] is CheckStatus.FAILED


def test_unknown_cpuid_fails(genoa):
    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=b"\xc1" * 64)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, cpuid=(0x17, 0x31)), key
    )
    assert _statuses(_evidence(raw, vcek), genoa.roots())["snp.product"] is CheckStatus.FAILED


def test_vlek_signed_report_verifies_with_asvk(genoa):
    key, vlek = genoa.endorsement_key(GENOA_TCB, hwid=None, vlek=True)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, signing_key=1), key
    )
    _, checks = verify_snp(_evidence(raw, vlek), now=NOW, roots=genoa.roots())
    statuses = {c.name: c.status for c in checks}
    assert statuses["snp.asvk"] is CheckStatus.PASSED
    assert statuses["snp.vlek.chain"] is CheckStatus.PASSED
    assert statuses["snp.vlek.hwid"] is CheckStatus.NOT_APPLICABLE
    assert CheckStatus.FAILED not in statuses.values()


def test_vlek_without_an_asvk_fails(genoa):
    key, vlek = genoa.endorsement_key(GENOA_TCB, hwid=None, vlek=True)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, signing_key=1), key
    )
    statuses = _statuses(_evidence(raw, vlek), genoa.roots(with_asvk=False))
    assert statuses["snp.asvk"] is CheckStatus.FAILED
    assert statuses["snp.vlek.chain"] is CheckStatus.FAILED


def test_vlek_supplied_asvk_chains_to_the_pinned_ark(genoa):
    from cryptography.hazmat.primitives.serialization import Encoding

    key, vlek = genoa.endorsement_key(GENOA_TCB, hwid=None, vlek=True)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, signing_key=1), key
    )
    asvk = genoa.asvk.public_bytes(Encoding.DER)
    statuses = _statuses(_evidence(raw, vlek, asvk), genoa.roots(with_asvk=False))
    assert statuses["snp.asvk"] is CheckStatus.PASSED
    assert statuses["snp.vlek.chain"] is CheckStatus.PASSED


def test_report_saying_vcek_but_signed_by_vlek_fails(genoa):
    key, vlek = genoa.endorsement_key(GENOA_TCB, hwid=None, vlek=True)
    raw = sign_report(build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB), key)
    assert _statuses(_evidence(raw, vlek), genoa.roots())["snp.signing_key"] is CheckStatus.FAILED


def test_masked_chip_id_makes_hwid_not_applicable(genoa):
    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=b"\xc1" * 64)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, mask_chip_key=True), key
    )
    statuses = _statuses(_evidence(raw, vcek), genoa.roots())
    assert statuses["snp.vcek.hwid"] is CheckStatus.NOT_APPLICABLE
    assert CheckStatus.FAILED not in statuses.values()


def test_raw_64_byte_hwid_encoding_is_read(genoa):
    chip = bytes(range(64))
    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=chip, hwid_raw=True)
    raw = sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB, chip_id=chip), key
    )
    assert _statuses(_evidence(raw, vcek), genoa.roots())["snp.vcek.hwid"] is CheckStatus.PASSED


def test_reserved_cpuid_tail_of_v3_must_be_zero(genoa):
    key, _ = genoa.endorsement_key(GENOA_TCB, hwid=b"\xc1" * 64)
    raw = build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB)
    raw[0x18B] = 1
    verdict = verify(_evidence(sign_report(raw, key)), now=NOW)
    assert [c.name for c in verdict.failures] == ["snp.report.reserved.0x188"]


def test_v5_tail_after_mitigation_vectors_must_be_zero(turin):
    key, _ = turin.endorsement_key(TURIN_TCB, hwid=b"\x01" * 8)
    raw = build_report(version=5, product=AmdProduct.TURIN, tcb=TURIN_TCB)
    raw[0x208] = 1
    verdict = verify(_evidence(sign_report(raw, key)), now=NOW)
    assert [c.name for c in verdict.failures] == ["snp.report.reserved.0x1F8"]


def test_expired_vcek_fails(genoa):
    from datetime import UTC, datetime

    key, vcek = genoa.endorsement_key(
        GENOA_TCB, hwid=b"\xc1" * 64, not_after=datetime(2024, 1, 1, tzinfo=UTC)
    )
    raw = sign_report(build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB), key)
    statuses = _statuses(_evidence(raw, vcek), genoa.roots())
    assert statuses["snp.vcek.chain"] is CheckStatus.FAILED


def test_a_leaf_in_place_of_the_ask_is_refused(genoa):
    from cryptography import x509

    from enclave.attest.amd_certs import ProductRoots

    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=b"\xc1" * 64)
    raw = sign_report(build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB), key)
    leaf_as_ask = x509.load_der_x509_certificate(vcek)
    roots = {AmdProduct.GENOA: ProductRoots(AmdProduct.GENOA, genoa.ark, leaf_as_ask)}
    _, checks = verify_snp(_evidence(raw, vcek), now=NOW, roots=roots)
    ask = next(c for c in checks if c.name == "snp.ask")
    assert ask.status is CheckStatus.FAILED and "is not the ASK of Genoa" in ask.reason


def test_an_ask_that_is_no_ca_is_refused(genoa):
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ask = (
        x509.CertificateBuilder()
        .subject_name(name("SEV-Genoa"))
        .issuer_name(genoa.ark.subject)
        .public_key(genoa.ask_key.public_key())
        .serial_number(7)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2045, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(
            genoa.ark_key,
            hashes.SHA384(),
            rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
        )
    )
    key, vcek = genoa.endorsement_key(GENOA_TCB, hwid=b"\xc1" * 64)
    raw = sign_report(build_report(version=3, product=AmdProduct.GENOA, tcb=GENOA_TCB), key)
    evidence = _evidence(raw, vcek, ask.public_bytes(Encoding.DER))
    _, checks = verify_snp(evidence, now=NOW, roots=genoa.roots())
    check = next(c for c in checks if c.name == "snp.ask")
    assert check.status is CheckStatus.FAILED and "not a CA" in check.reason
