"""SEV-SNP report parsing against the real sample reports, field by field."""

from __future__ import annotations

import pytest

from enclave.attest.amd_certs import AmdProduct, EndorsementKey, load_certificate
from enclave.attest.snp import (
    REPORT_SIZE,
    decode_tcb,
    load_report,
    parse_report,
    product_from_cpuid,
    report_claims,
)
from enclave.errors import MalformedEvidence

from .snp_helpers import DATA, GSG_MEASUREMENT, VIRTEE_MEASUREMENT, VIRTEE_REPORT_DATA


def _vcek(name: str) -> EndorsementKey:
    return EndorsementKey.from_certificate(
        load_certificate((DATA / name).read_bytes(), field="vcek"), field="vcek"
    )


def test_gsg_report_fields():
    report = parse_report((DATA / "gsg-attestation.bin").read_bytes())
    assert report.version == 2
    assert report.guest_svn == 0
    # SMT allowed, reserved bit 17, and DEBUG (bit 19): go-sev-guest's sample is a debug guest.
    assert report.policy == 0xB0000
    assert report.debug is True
    assert report.migrate_ma is False
    assert report.vmpl == 0
    assert report.signature_algo == 1
    assert report.signing_key == 0  # VCEK
    assert report.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)
    assert report.measurement == GSG_MEASUREMENT
    assert report.report_id_ma == b"\xff" * 32  # no migration agent
    assert report.cpuid_fam_id is None  # version 2 has no CPUID fields
    assert report.launch_mit_vector is None
    assert report.current_version == (1, 49, 3)


def test_gsg_report_agrees_with_its_amd_signed_vcek():
    # The VCEK is signed by AMD and names the TCB and chip it was derived for: an outside
    # authority for REPORTED_TCB and CHIP_ID.
    report = parse_report((DATA / "gsg-attestation.bin").read_bytes())
    vcek = _vcek("gsg-vcek.der")
    assert (
        decode_tcb(report.reported_tcb, AmdProduct.MILAN)
        == dict(vcek.tcb)
        == {
            "bootloader": 2,
            "tee": 0,
            "snp": 5,
            "microcode": 68,
        }
    )
    assert report.chip_id == vcek.hwid
    assert vcek.product is AmdProduct.MILAN and vcek.product_name == "Milan-B0"


def test_virtee_report_from_hex_text():
    raw = load_report((DATA / "virtee-report-milan.hex").read_bytes())
    assert len(raw) == REPORT_SIZE
    report = parse_report(raw)
    assert report.version == 2
    assert report.policy == 0x30000 and report.debug is False
    assert report.report_data == VIRTEE_REPORT_DATA
    assert report.measurement == VIRTEE_MEASUREMENT
    vcek = _vcek("virtee-vcek-milan.der")
    assert decode_tcb(report.reported_tcb, AmdProduct.MILAN) == dict(vcek.tcb)
    assert dict(vcek.tcb) == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    assert report.chip_id == vcek.hwid


def test_claims_use_the_agreed_names():
    report = parse_report((DATA / "gsg-attestation.bin").read_bytes())
    claims = report_claims(report, AmdProduct.MILAN)
    assert set(claims.measurements) == {"measurement"}
    assert set(claims.tcb) == {"bootloader", "tee", "snp", "microcode"}
    assert claims.debug is True
    assert claims.policy_bits == 0xB0000
    assert claims.platform_id == report.chip_id
    assert claims.signed_at is None
    assert claims.format_version == 2


def test_hex_text_with_whitespace_and_prefix():
    raw = (DATA / "gsg-attestation.bin").read_bytes()
    text = "0x" + "\n".join(raw.hex()[i : i + 64] for i in range(0, 2 * len(raw), 64))
    assert load_report(text.encode()) == raw


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x00" * 100, "report.size"),
        (b"zz" * REPORT_SIZE, "report.size"),
        (b"ab" * 10, "report.size"),
    ],
)
def test_load_report_refuses_wrong_sizes(data, field):
    with pytest.raises(MalformedEvidence) as info:
        parse_report(load_report(data))
    assert info.value.field == field


def test_trustee_vceks_hwid_in_both_encodings():
    # trustee's negative-case VCEKs carry hwID 00 01 .. 3f, once as the raw 64 bytes (the
    # legacy KDS encoding) and once wrapped in a DER OCTET STRING (the newer encoding).
    for name in ("trustee-vcek-invalid-legacy.der", "trustee-vcek-invalid-new.der"):
        assert _vcek(name).hwid == bytes(range(64)), name


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x01, AmdProduct.MILAN),
        (0x19, 0x11, AmdProduct.GENOA),
        (0x19, 0xA0, AmdProduct.GENOA),  # Bergamo/Siena use Genoa's keys
        (0x1A, 0x02, AmdProduct.TURIN),
        (0x17, 0x31, None),  # Rome: no SEV-SNP
        (None, None, None),
    ],
)
def test_product_from_cpuid(family, model, product):
    assert product_from_cpuid(family, model) is product


def test_turin_tcb_layout():
    # Turin: FMC, BOOT_LOADER, TEE, SNP, 3 reserved, MICROCODE (byte 0 first).
    raw = int.from_bytes(bytes([1, 2, 3, 4, 0, 0, 0, 9]), "little")
    assert decode_tcb(raw, AmdProduct.TURIN) == {
        "fmc": 1,
        "bootloader": 2,
        "tee": 3,
        "snp": 4,
        "microcode": 9,
    }
    assert decode_tcb(raw, AmdProduct.GENOA) == {
        "bootloader": 1,
        "tee": 2,
        "snp": 0,
        "microcode": 9,
    }
