"""SEV-SNP verification on the real vectors, and one mutated copy per field the verifier checks."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from enclave.attest import verify
from enclave.attest.amd_certs import AmdProduct, ProductRoots, pinned_roots
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.snp import verify_snp
from enclave.attest.verdict import CheckStatus
from enclave.errors import MalformedEvidence

from .snp_helpers import DATA, NOW, der_chain, gsg_evidence, virtee_evidence


def _failed(evidence: Evidence, **kw) -> set[str]:
    verdict = verify(evidence, now=kw.pop("now", NOW), **kw)
    assert not verdict.ok
    return {c.name for c in verdict.failures}


@pytest.mark.parametrize(
    "evidence",
    [gsg_evidence(), virtee_evidence(), virtee_evidence(chain=None)],
    ids=["go-sev-guest", "virtee+chain", "virtee-vcek-only"],
)
def test_real_vectors_verify(evidence):
    claims, checks = verify_snp(evidence, now=NOW)
    assert claims is not None
    assert [c for c in checks if c.status is not CheckStatus.PASSED] == []
    names = {c.name for c in checks}
    assert {
        "snp.report",
        "snp.product",
        "snp.signing_key",
        "snp.ark",
        "snp.ask",
        "snp.vcek.chain",
        "snp.signature",
        "snp.vcek.tcb.bootloader",
        "snp.vcek.tcb.tee",
        "snp.vcek.tcb.snp",
        "snp.vcek.tcb.microcode",
        "snp.vcek.hwid",
    } <= names
    assert verify(evidence, now=NOW).ok


def test_verifier_ignores_the_claims_the_evidence_carries():
    evidence = virtee_evidence()
    forged = gsg_evidence()  # a different report's claims, attached as if they were ours
    claims, _ = verify_snp(
        evidence.model_copy(update={"claims": verify_snp(forged, now=NOW)[0]}), now=NOW
    )
    assert claims == verify_snp(evidence, now=NOW)[0]


# --- one mutated copy per field ---------------------------------------------------------------


def _set_u32(offset: int, value: int) -> Callable[[bytearray], None]:
    return lambda raw: struct.pack_into("<I", raw, offset, value)


def _xor(offset: int, mask: int = 0x01) -> Callable[[bytearray], None]:
    def mutate(raw: bytearray) -> None:
        raw[offset] ^= mask

    return mutate


def _zero_r(raw: bytearray) -> None:
    raw[0x2A0:0x2E8] = bytes(72)


# (field, mutation of the report bytes, the check that must fail and name it)
REPORT_MUTATIONS = [
    ("version=1", _set_u32(0x000, 1), "snp.report.version"),
    ("version=4", _set_u32(0x000, 4), "snp.report.version"),
    ("guest_svn", _xor(0x004), "snp.signature"),
    ("policy.abi_minor", _xor(0x008), "snp.signature"),
    ("policy.debug", _xor(0x00A, 0x08), "snp.signature"),
    ("policy.reserved_must_be_one", _xor(0x00A, 0x02), "snp.report.policy"),
    ("policy.reserved_high_bits", _xor(0x00F, 0x80), "snp.report.policy"),
    ("family_id", _xor(0x010), "snp.signature"),
    ("image_id", _xor(0x020), "snp.signature"),
    ("vmpl", _xor(0x030), "snp.signature"),
    ("signature_algo", _set_u32(0x034, 2), "snp.report.signature_algo"),
    ("current_tcb", _xor(0x038), "snp.signature"),
    ("platform_info", _xor(0x040, 0x02), "snp.signature"),
    ("key_info.signing_key=vlek", _set_u32(0x048, 1 << 2), "snp.signing_key"),
    ("key_info.signing_key=none", _set_u32(0x048, 7 << 2), "snp.signing_key"),
    ("key_info.signing_key=reserved", _set_u32(0x048, 3 << 2), "snp.report.key_info"),
    ("key_info.reserved_bits", _set_u32(0x048, 1 << 5), "snp.report.key_info"),
    ("reserved.0x04C", _xor(0x04C), "snp.report.reserved.0x04C"),
    ("report_data", _xor(0x050), "snp.signature"),
    ("measurement", _xor(0x090), "snp.signature"),
    ("host_data", _xor(0x0C0), "snp.signature"),
    ("id_key_digest", _xor(0x0E0), "snp.signature"),
    ("author_key_digest", _xor(0x110), "snp.signature"),
    ("report_id", _xor(0x140), "snp.signature"),
    ("report_id_ma", _xor(0x160), "snp.signature"),
    ("reported_tcb.bootloader", _xor(0x180), "snp.vcek.tcb.bootloader"),
    ("reported_tcb.tee", _xor(0x181), "snp.vcek.tcb.tee"),
    ("reported_tcb.snp", _xor(0x186), "snp.vcek.tcb.snp"),
    ("reported_tcb.microcode", _xor(0x187), "snp.vcek.tcb.microcode"),
    ("reserved.0x188 (v2 cpuid)", _xor(0x188), "snp.report.reserved.0x188"),
    ("chip_id", _xor(0x1A0), "snp.vcek.hwid"),
    ("committed_tcb", _xor(0x1E0), "snp.signature"),
    ("current_build", _xor(0x1E8), "snp.signature"),
    ("reserved.0x1EB", _xor(0x1EB), "snp.report.reserved.0x1EB"),
    ("committed_build", _xor(0x1EC), "snp.signature"),
    ("reserved.0x1EF", _xor(0x1EF), "snp.report.reserved.0x1EF"),
    ("launch_tcb", _xor(0x1F0), "snp.signature"),
    ("reserved.0x1F8 (v2 mit vectors)", _xor(0x200), "snp.report.reserved.0x1F8"),
    ("signature.r", _xor(0x2A0), "snp.signature"),
    ("signature.s", _xor(0x2E8), "snp.signature"),
    ("signature.r=0", _zero_r, "snp.report.signature.r"),
    ("signature.reserved", _xor(0x330), "snp.report.signature.reserved"),
]


@pytest.mark.parametrize(
    ("mutate", "check"),
    [pytest.param(m, c, id=f) for f, m, c in REPORT_MUTATIONS],
)
def test_mutated_report_field_fails_naming_it(mutate, check):
    evidence = virtee_evidence()
    raw = bytearray(evidence.raw)
    mutate(raw)
    assert check in _failed(evidence.model_copy(update={"raw": bytes(raw)}))


def test_truncated_report_fails():
    evidence = virtee_evidence()
    assert "snp.report.size" in _failed(evidence.model_copy(update={"raw": evidence.raw[:-1]}))


def test_parse_errors_raise_from_verify_snp():
    evidence = virtee_evidence()
    raw = bytearray(evidence.raw)
    struct.pack_into("<I", raw, 0, 1)
    with pytest.raises(MalformedEvidence) as info:
        verify_snp(evidence.model_copy(update={"raw": bytes(raw)}), now=NOW)
    assert info.value.field == "report.version"


# VCEK extension OIDs as DER bytes (1.3.6.1.4.1.3704.1.3.N and .1.4).
def _spl_oid(n: int) -> bytes:
    return bytes.fromhex("060a2b060104019c78010300")[:-1] + bytes([n])


_HWID_OID = bytes.fromhex("06092b060104019c780104")


def _bump_spl(n: int) -> Callable[[bytearray], None]:
    def mutate(der: bytearray) -> None:
        at = der.index(_spl_oid(n)) + len(_spl_oid(n))
        assert der[at] == 0x04 and der[at + 2] == 0x02  # OCTET STRING { INTEGER }
        der[at + 3 + der[at + 3]] ^= 0x01  # last byte of the integer

    return mutate


def _flip_hwid(der: bytearray) -> None:
    at = der.index(_HWID_OID) + len(_HWID_OID)
    assert der[at] == 0x04
    der[at + 2 + 10] ^= 0x01


def _rename_product(der: bytearray) -> None:
    at = der.index(b"Milan-B0")
    der[at : at + 8] = b"Genoa-B0"


def _flip_signature(der: bytearray) -> None:
    der[-1] ^= 0x01


VCEK_MUTATIONS = [
    ("vcek.signature", _flip_signature, "snp.vcek.chain"),
    ("vcek.blSPL", _bump_spl(1), "snp.vcek.tcb.bootloader"),
    ("vcek.teeSPL", _bump_spl(2), "snp.vcek.tcb.tee"),
    ("vcek.snpSPL", _bump_spl(3), "snp.vcek.tcb.snp"),
    ("vcek.ucodeSPL", _bump_spl(8), "snp.vcek.tcb.microcode"),
    ("vcek.hwID", _flip_hwid, "snp.vcek.hwid"),
    ("vcek.productName", _rename_product, "snp.product"),
]


@pytest.mark.parametrize(
    ("mutate", "check"), [pytest.param(m, c, id=f) for f, m, c in VCEK_MUTATIONS]
)
def test_mutated_vcek_field_fails_naming_it(mutate, check):
    evidence = virtee_evidence()
    der = bytearray(evidence.certificates[0])
    mutate(der)
    failed = _failed(
        evidence.model_copy(update={"certificates": [bytes(der), *evidence.certificates[1:]]})
    )
    assert check in failed
    # Any edit to the certificate also breaks AMD's signature over it.
    assert "snp.vcek.chain" in failed


def test_tampered_supplied_ask_fails():
    evidence = virtee_evidence()
    ask = bytearray(evidence.certificates[1])
    ask[-1] ^= 0x01
    certs = [evidence.certificates[0], bytes(ask), evidence.certificates[2]]
    failed = _failed(evidence.model_copy(update={"certificates": certs}))
    assert {"snp.ask", "snp.vcek.chain"} <= failed


def test_milan_vcek_presented_with_genoa_chain_fails():
    # The wrong product's ASK/ARK: the Milan VCEK cannot chain to them, and a foreign ARK is
    # never trusted in place of the pinned one.
    evidence = virtee_evidence(chain="ask_ark_genoa.pem")
    failed = _failed(evidence)
    assert {"snp.ark", "snp.ask", "snp.vcek.chain"} <= failed


def test_milan_evidence_with_only_genoa_roots_trusted_fails():
    genoa = {AmdProduct.GENOA: pinned_roots()[AmdProduct.GENOA]}
    assert "snp.product" in _failed(virtee_evidence(), snp_roots=genoa)


def test_genoa_roots_relabelled_as_milan_fail():
    genoa = pinned_roots()[AmdProduct.GENOA]
    fake = {AmdProduct.MILAN: ProductRoots(AmdProduct.MILAN, genoa.ark, genoa.ask)}
    failed = _failed(virtee_evidence(chain=None), snp_roots=fake)
    assert {"snp.ask", "snp.vcek.chain"} <= failed


def test_vcek_of_another_chip_and_tcb_fails():
    # go-sev-guest's report presented with virtee's (genuine, AMD-signed) VCEK.
    evidence = gsg_evidence().model_copy(
        update={"certificates": [(DATA / "virtee-vcek-milan.der").read_bytes()]}
    )
    failed = _failed(evidence)
    assert {"snp.signature", "snp.vcek.hwid", "snp.vcek.tcb.snp"} <= failed
    assert "snp.vcek.chain" not in failed  # the VCEK itself is genuine


@pytest.mark.parametrize(
    "name", ["trustee-vcek-invalid-legacy.der", "trustee-vcek-invalid-new.der"]
)
def test_trustee_invalid_vceks_are_refused(name):
    evidence = gsg_evidence().model_copy(update={"certificates": [(DATA / name).read_bytes()]})
    _claims, checks = verify_snp(evidence, now=NOW)
    chain = next(c for c in checks if c.name == "snp.vcek.chain")
    assert chain.status is CheckStatus.FAILED
    assert "signature does not verify under SEV-Milan" in chain.reason


def test_missing_vcek_fails_with_advice():
    evidence = virtee_evidence().model_copy(update={"certificates": []})
    verdict = verify(evidence, now=NOW)
    assert [c.name for c in verdict.failures] == ["snp.vcek.chain"]
    assert "--vcek" in verdict.failures[0].reason


def test_garbage_certificate_is_malformed():
    evidence = virtee_evidence().model_copy(update={"certificates": [b"\x30\x03\x02\x01\x00"]})
    assert "snp.certificates[0]" in _failed(evidence)


def test_non_vcek_leaf_is_refused():
    # Only the ASK and ARK: nothing that can have signed a report.
    evidence = virtee_evidence().model_copy(
        update={"certificates": der_chain("virtee-cert-chain-milan.pem")}
    )
    assert "snp.vcek.chain" in _failed(evidence)


@pytest.mark.parametrize(
    ("when", "check"),
    [
        (datetime(2031, 1, 1, tzinfo=UTC), "snp.vcek.chain"),  # VCEK expired in 2030
        (datetime(2023, 1, 1, tzinfo=UTC), "snp.vcek.chain"),  # before the VCEK was issued
        (datetime(2019, 1, 1, tzinfo=UTC), "snp.ask"),  # before AMD made the Milan ASK
    ],
)
def test_certificates_outside_their_validity_fail(when, check):
    assert check in _failed(virtee_evidence(), now=when)


def test_now_must_be_aware():
    with pytest.raises(TypeError):
        verify_snp(virtee_evidence(), now=datetime(2025, 1, 1))


def test_wrong_kind_is_refused():
    with pytest.raises(ValueError, match="tdx"):
        verify_snp(virtee_evidence().model_copy(update={"kind": EvidenceKind.TDX}), now=NOW)
