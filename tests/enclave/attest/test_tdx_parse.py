"""TDX quote, PCK extension and collateral parsing against real vectors and malformed copies."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography import x509

from enclave.attest import _der
from enclave.attest._intel_pck import SgxType, parse_sgx_extensions, pck_extensions
from enclave.attest._tdx_collateral import TcbStatus, parse_collateral
from enclave.attest.tdx import intel_sgx_root_ca, parse_quote_header, parse_tdx_quote
from enclave.errors import MalformedEvidence

DATA = Path(__file__).resolve().parents[2] / "data" / "attestation" / "tdx"
QUOTE_V4 = (DATA / "dcapqvl-quote-v4.bin").read_bytes()
QUOTE_V5 = (DATA / "dcapqvl-quote-outdated.bin").read_bytes()
TRUSTEE_V4 = (DATA / "trustee-quote-v4.dat").read_bytes()
TRUSTEE_V5 = (DATA / "trustee-quote-v5.dat").read_bytes()
COLLATERAL_V4 = (DATA / "dcapqvl-quote-v4-collateral.json").read_text()

# Spec offsets (Intel TDX DCAP Quoting Library API, app. 3) for the v4 sample quote.
BODY = 48
SIG_DATA_LEN = 632
CERT_HEADER = 764
QE_REPORT = 770
AUTH_SIZE = 1218
INNER_HEADER = 1252


def _patched(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


# --- known answers -------------------------------------------------------------------------


def test_v4_quote_fields_match_dcap_qvl_snapshot():
    # Pinned from Phala-Network/dcap-qvl tests/snapshots/verify_quote__could_parse_tdx_quote.snap,
    # the parse of the same sample by an independent implementation.
    quote = parse_tdx_quote(QUOTE_V4)
    header, report = quote.header, quote.td_report
    assert (header.version, header.att_key_type, header.tee_type) == (4, 2, 0x81)
    assert header.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert header.user_data.hex() == "889b7d6ff9df2405b240a830e73faf3d00000000"
    assert report.tee_tcb_svn.hex() == "06010300000000000000000000000000"
    assert report.mr_seam.hex() == (
        "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c43"
        "6489d6c8e4f92f160b7cad34207b00c1"
    )
    assert report.mr_signer_seam == bytes(48)
    assert report.seam_attributes == bytes(8)
    assert report.td_attributes.hex() == "0000001000000000"
    assert report.xfam.hex() == "e702060000000000"
    assert report.mr_td.hex() == (
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
        "de03ae6dc5f87f27428b2538873118b7"
    )
    assert report.mr_config_id == report.mr_owner == report.mr_owner_config == bytes(48)
    assert report.rtmr0.hex() == (
        "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c"
        "48aca29b220b80b6a540cf994b9bc9c0"
    )
    assert report.rtmr1.hex() == (
        "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7"
        "aea8c323c173019b3093d54e579e9378"
    )
    assert report.rtmr2.hex() == (
        "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3"
        "ba80b70870d7330733642e01d48c3132"
    )
    assert report.rtmr3 == bytes(48)
    assert report.report_data.hex() == (
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
        "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    )
    assert quote.signature.hex() == (
        "f156eac8ad01d79f7cce668f60005819b22f2151a66155a430ad4f7a9538ae31"
        "330f9dfd5424e7c4124b44a668cb97fe2da48e617252ee5aeb6252d48e9324e5"
    )
    assert quote.attestation_key.hex() == (
        "c78ac5859b9f567238fad82ad63202bc516ee7ad14ec1d9adfc633e4cf5f71f7"
        "3d6138ce76d0d9c1443f695464d1ed419c37ce696e70e95a5b317894a5897907"
    )
    # TDATTRIBUTES 0x10000000: bit 28 SEPT_VE_DISABLE, not bit 0 DEBUG.
    assert report.td_attributes_value == 0x1000_0000
    assert report.debug is False
    assert report.tee_tcb_svn2 is None and report.mr_service_td is None
    assert quote.body_type == 2
    assert quote.signed_data == QUOTE_V4[:632]
    # The sample was captured into a 5006-byte buffer: 70 zero bytes follow the signature data.
    assert quote.trailing_padding == 70


def test_v4_qe_certification_data():
    qe = parse_tdx_quote(QUOTE_V4).qe_certification
    assert qe.qe_report_raw == QUOTE_V4[QE_REPORT : QE_REPORT + 384]
    assert len(qe.qe_report_signature) == 64
    assert len(qe.qe_auth_data) == 32
    assert qe.certification_data_type == 5
    pem = qe.pck_chain_pem
    assert pem is not None and not pem.endswith(b"\x00")
    chain = x509.load_pem_x509_certificates(pem)
    assert [c.subject.rfc4514_string().split(",")[-1] for c in chain] == [
        "CN=Intel SGX PCK Certificate",
        "CN=Intel SGX PCK Platform CA",
        "CN=Intel SGX Root CA",
    ]
    assert chain[2] == intel_sgx_root_ca()
    # Intel's TD QE: ISVPRODID 2, MRSIGNER of Intel's QE signing key (QE identity v2).
    assert qe.qe_report.isv_prod_id == 2
    assert qe.qe_report.mr_signer.hex().upper() == (
        "DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5"
    )


@pytest.mark.parametrize(
    ("raw", "tee_tcb_svn", "tee_tcb_svn2", "mr_service_td_prefix"),
    [
        # Read off the bytes at offsets 54 (TEE_TCB_SVN), 638 (TEE_TCB_SVN2), 654 (MRSERVICETD).
        (QUOTE_V5, "0701030000", "0d01030000", "0000000000"),
        (TRUSTEE_V5, "0501020000", "0501020000", "383c87d3bb"),
    ],
    ids=["dcapqvl-outdated-v5", "trustee-v5"],
)
def test_v5_quotes_parse_with_td_report_15(
    raw: bytes, tee_tcb_svn: str, tee_tcb_svn2: str, mr_service_td_prefix: str
):
    quote = parse_tdx_quote(raw)
    assert quote.header.version == 5
    assert quote.body_type == 3
    report = quote.td_report
    assert report.tee_tcb_svn.hex().startswith(tee_tcb_svn)
    assert report.tee_tcb_svn2 is not None and report.tee_tcb_svn2.hex().startswith(tee_tcb_svn2)
    assert report.mr_service_td is not None and len(report.mr_service_td) == 48
    assert report.mr_service_td.hex().startswith(mr_service_td_prefix)
    # v5 signs header + body descriptor + TD report 1.5: 48 + 6 + 648 bytes.
    assert quote.signed_data == raw[:702]
    assert quote.trailing_padding == 0


def test_trustee_v4_quote_parses_without_padding():
    quote = parse_tdx_quote(TRUSTEE_V4)
    assert quote.header.version == 4
    assert quote.td_report.tee_tcb_svn.hex() == "03000500000000000000000000000000"
    assert quote.trailing_padding == 0


def test_pinned_root_is_the_test_vector_root():
    assert intel_sgx_root_ca() == x509.load_der_x509_certificate(
        (DATA / "intel-sgx-root-ca.der").read_bytes()
    )


# --- malformed quotes ----------------------------------------------------------------------


def _v5_with_body(body_type: int, size: int) -> bytes:
    return _patched(QUOTE_V5, 48, struct.pack("<HI", body_type, size))


MALFORMED = [
    ("empty", b"", "quote.header"),
    ("header-truncated", QUOTE_V4[:47], "quote.header"),
    ("body-truncated", QUOTE_V4[:600], "quote.td_report"),
    ("no-signature-data-len", QUOTE_V4[:634], "quote.signature_data_len"),
    (
        "signature-data-len-too-long",
        _patched(QUOTE_V4, SIG_DATA_LEN, struct.pack("<I", 0xFFFF_FFFF)),
        "quote.signature_data",
    ),
    (
        "certification-type-not-6",
        _patched(QUOTE_V4, CERT_HEADER, struct.pack("<H", 5)),
        "quote.signature_data.certification_data.type",
    ),
    (
        "certification-size-off-by-one",
        _patched(
            QUOTE_V4,
            CERT_HEADER + 2,
            struct.pack("<I", struct.unpack_from("<I", QUOTE_V4, CERT_HEADER + 2)[0] - 1),
        ),
        "quote.signature_data.certification_data.size",
    ),
    (
        "inner-certification-size-off-by-one",
        _patched(
            QUOTE_V4,
            INNER_HEADER + 2,
            struct.pack("<I", struct.unpack_from("<I", QUOTE_V4, INNER_HEADER + 2)[0] + 1),
        ),
        "quote.qe_report_certification_data.certification_data",
    ),
    (
        "inner-certification-type-7",
        _patched(QUOTE_V4, INNER_HEADER, struct.pack("<H", 7)),
        "quote.qe_report_certification_data.certification_data.type",
    ),
    (
        "qe-auth-data-size-overruns",
        _patched(QUOTE_V4, AUTH_SIZE, struct.pack("<H", 0xFFFF)),
        "quote.qe_report_certification_data.qe_auth_data",
    ),
    ("trailing-garbage", QUOTE_V4 + b"\x01", "quote.trailing"),
    ("trailing-garbage-inside-padding", _patched(QUOTE_V4, 4990, b"\x07"), "quote.trailing"),
    ("v4-relabelled-v5", _patched(QUOTE_V4, 0, b"\x05"), "quote.body_descriptor.type"),
    ("v5-sgx-body", _v5_with_body(1, 384), "quote.body_descriptor.type"),
    ("v5-td15-wrong-size", _v5_with_body(3, 584), "quote.body_descriptor.size"),
    ("v5-td10-wrong-size", _v5_with_body(2, 648), "quote.body_descriptor.size"),
    ("version-3", _patched(QUOTE_V4, 0, b"\x03"), "quote.header.version"),
    ("att-key-type-3", _patched(QUOTE_V4, 2, b"\x03"), "quote.header.att_key_type"),
    ("tee-type-sgx", _patched(QUOTE_V4, 4, b"\x00"), "quote.header.tee_type"),
    ("too-large", QUOTE_V4 + bytes(300_000), "quote"),
]


@pytest.mark.parametrize(
    ("raw", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_quote_names_the_field(raw: bytes, field: str):
    with pytest.raises(MalformedEvidence) as info:
        parse_tdx_quote(raw)
    assert info.value.field.startswith(field), (info.value.field, info.value.reason)


def test_parse_refuses_non_bytes():
    with pytest.raises(TypeError):
        parse_quote_header("not bytes")  # type: ignore[arg-type]


# --- PCK certificate SGX extensions ---------------------------------------------------------


def _pck_leaf(raw: bytes) -> x509.Certificate:
    pem = parse_tdx_quote(raw).qe_certification.pck_chain_pem
    assert pem is not None
    return x509.load_pem_x509_certificates(pem)[0]


def _sgx_extension_der(raw: bytes) -> bytes:
    oid = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
    value = _pck_leaf(raw).extensions.get_extension_for_oid(oid).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def test_pck_extensions_known_answer():
    # Values read off the certificate with `openssl asn1parse` (an independent decoder).
    ext = pck_extensions(_pck_leaf(QUOTE_V4))
    assert ext.ppid.hex() == "811dca2a26b952e85bb6448b097ba4fd"
    assert ext.tcb_components == (3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
    assert ext.pce_svn == 11
    assert ext.cpu_svn.hex() == "03030202040100050000000000000000"
    assert ext.pce_id.hex() == "0000"
    assert ext.fmspc.hex().upper() == "B0C06F000000"
    assert ext.sgx_type is SgxType.SCALABLE
    assert ext.platform_instance_id is not None
    assert ext.platform_instance_id.hex() == "07828474603e7019dc930775ffe8cdd2"


def test_pck_extensions_of_other_platforms():
    assert pck_extensions(_pck_leaf(QUOTE_V5)).fmspc.hex().upper() == "90C06F000000"
    trustee = pck_extensions(_pck_leaf(TRUSTEE_V4))
    assert trustee.fmspc.hex().upper() == "50806F000000"
    assert trustee.tcb_components[:3] == (5, 5, 13)


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old.hex()
    return data.replace(old, new)


# The FMSPC member: SEQUENCE(20) { OID 1.2.840.113741.1.13.1.4, OCTET STRING(6) B0C06F000000 }.
_FMSPC_MEMBER = bytes.fromhex("3014060a2a864886f84d010d01040406b0c06f000000")


@pytest.mark.parametrize(
    ("desc", "mutate", "field"),
    [
        (
            "fmspc-5-bytes",
            # One byte shorter, with the outer SEQUENCE length (0x226) shortened to match.
            lambda d: (
                b"\x30\x82\x02\x25"
                + _replace_once(
                    d[4:],
                    _FMSPC_MEMBER,
                    bytes.fromhex("3013060a2a864886f84d010d01040405b0c06f0000"),
                )
            ),
            "pck.sgx_extensions.fmspc",
        ),
        (
            "fmspc-oid-duplicated-as-pceid",
            lambda d: _replace_once(
                d,
                bytes.fromhex("060a2a864886f84d010d0103"),
                bytes.fromhex("060a2a864886f84d010d0104"),
            ),
            "pck.sgx_extensions",
        ),
        ("truncated", lambda d: d[:-1], "pck.sgx_extensions"),
        ("trailing-byte", lambda d: d + b"\x00", "pck.sgx_extensions"),
        (
            "indefinite-length",
            lambda d: b"\x30\x80" + d[4:] + b"\x00\x00",
            "pck.sgx_extensions",
        ),
        (
            "non-minimal-length",
            lambda d: b"\x30\x83\x00" + d[2:],
            "pck.sgx_extensions",
        ),
    ],
)
def test_malformed_sgx_extensions(desc: str, mutate, field: str):
    original = _sgx_extension_der(QUOTE_V4)
    assert original[:4] == b"\x30\x82\x02\x26"
    der = mutate(original)
    with pytest.raises(MalformedEvidence) as info:
        parse_sgx_extensions(der)
    assert info.value.field.startswith(field), (desc, info.value)


# --- the DER reader itself ------------------------------------------------------------------


def test_der_decodes_known_oid_and_integers():
    oid = _der.read_element(bytes.fromhex("06092a864886f84d010d01"), field="t")
    assert _der.decode_oid(oid, field="t") == "1.2.840.113741.1.13.1"
    assert _der.decode_oid(_der.Element(0x06, bytes.fromhex("2a864886f70d")), field="t") == (
        "1.2.840.113549"
    )
    assert _der.decode_integer(_der.Element(0x02, b"\x00\x80"), field="t") == 128
    assert _der.decode_integer(_der.Element(0x02, b"\xff"), field="t") == -1
    assert _der.decode_boolean(_der.Element(0x01, b"\xff"), field="t") is True


@pytest.mark.parametrize(
    ("desc", "call"),
    [
        (
            "integer-leading-zero",
            lambda: _der.decode_integer(_der.Element(0x02, b"\x00\x05"), field="t"),
        ),
        (
            "integer-leading-ff",
            lambda: _der.decode_integer(_der.Element(0x02, b"\xff\x80"), field="t"),
        ),
        ("integer-empty", lambda: _der.decode_integer(_der.Element(0x02, b""), field="t")),
        (
            "integer-too-long",
            lambda: _der.decode_integer(_der.Element(0x02, b"\x01" * 17), field="t"),
        ),
        ("boolean-not-der", lambda: _der.decode_boolean(_der.Element(0x01, b"\x01"), field="t")),
        ("oid-unterminated", lambda: _der.decode_oid(_der.Element(0x06, b"\x2a\x86"), field="t")),
        (
            "oid-non-minimal",
            lambda: _der.decode_oid(_der.Element(0x06, b"\x2a\x80\x01"), field="t"),
        ),
        ("wrong-tag", lambda: _der.decode_octet_string(_der.Element(0x02, b"\x01"), field="t")),
        ("high-tag-form", lambda: _der.read_element(b"\x1f\x01\x00", field="t")),
        ("length-runs-past", lambda: _der.read_element(b"\x04\x05abc", field="t")),
        ("too-deep", lambda: _der.sequence_members(_der.Element(0x30, b""), field="t", depth=99)),
        ("too-large", lambda: _der.read_element(b"\x04\x00" * 40_000, field="t")),
    ],
)
def test_der_reader_is_strict(desc: str, call):
    with pytest.raises(MalformedEvidence):
        call()


# --- collateral ----------------------------------------------------------------------------


def test_collateral_parses_real_dcap_qvl_shape():
    collateral = parse_collateral(COLLATERAL_V4)
    assert collateral.tcb_info is not None and collateral.qe_identity is not None
    assert collateral.tcb_info.fmspc.hex().upper() == "B0C06F000000"
    assert collateral.tcb_info.tcb_evaluation_data_number == 17
    assert [lvl.status for lvl in collateral.tcb_info.tcb_levels] == [
        TcbStatus.UP_TO_DATE,
        TcbStatus.OUT_OF_DATE,
    ]
    assert len(collateral.tcb_info.tcb_levels[1].advisory_ids) == 14
    assert [i.id for i in collateral.tcb_info.tdx_module_identities] == ["TDX_03", "TDX_01"]
    assert collateral.qe_identity.isv_prod_id == 2
    assert collateral.root_ca_crl is not None and collateral.pck_crl is not None
    assert len(list(collateral.pck_crl)) == 44
    # The signed body is the tcb_info text exactly as served.
    assert collateral.tcb_info_document is not None
    assert collateral.tcb_info_document.body == json.loads(COLLATERAL_V4)["tcb_info"].encode()


def test_collateral_accepts_pcs_response_bodies_byte_exact():
    dcap = json.loads(COLLATERAL_V4)
    tcb_text = (DATA / "trustee-tcbInfo.json").read_text().strip()
    qe_text = (DATA / "trustee-enclaveIdentity.json").read_text().strip()
    text = (
        '{"tcb_info": '
        + tcb_text
        + ', "tcb_info_issuer_chain": '
        + json.dumps(dcap["tcb_info_issuer_chain"])
        + ', "qe_identity": '
        + json.dumps(qe_text)
        + ', "qe_identity_issuer_chain": '
        + json.dumps(dcap["qe_identity_issuer_chain"])
        + "}"
    )
    collateral = parse_collateral(text)
    assert collateral.tcb_info is not None and collateral.tcb_info.fmspc.hex() == "00a06d080000"
    assert collateral.tcb_info_document is not None
    body = collateral.tcb_info_document.body.decode()
    assert tcb_text.startswith('{"tcbInfo":' + body)
    assert collateral.qe_identity is not None and collateral.qe_identity.id == "TD_QE"
    assert collateral.root_ca_crl is None and collateral.pck_crl is None


def _dcap_with(**changes: object) -> str:
    values = json.loads(COLLATERAL_V4)
    for key, value in changes.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    return json.dumps(values)


_TCB = json.loads(json.loads(COLLATERAL_V4)["tcb_info"])


def _tcb_with(**changes: object) -> str:
    return json.dumps({**_TCB, **changes}, separators=(",", ":"))


@pytest.mark.parametrize(
    ("desc", "text", "field"),
    [
        ("not-json", "{", "collateral"),
        ("not-an-object", "[]", "collateral"),
        ("trailing-text", COLLATERAL_V4 + "x", "collateral"),
        ("duplicate-key", '{"pck_crl": "00", "pck_crl": "00"}', "collateral"),
        ("unknown-key", _dcap_with(pck_certificate_chain="x"), "collateral"),
        (
            "tcb-info-without-signature",
            _dcap_with(tcb_info_signature=None),
            "collateral.tcb_info_signature",
        ),
        (
            "tcb-info-without-chain",
            _dcap_with(tcb_info_issuer_chain=None),
            "collateral.tcb_info_issuer_chain",
        ),
        ("signature-without-tcb-info", _dcap_with(tcb_info=None), "collateral.tcb_info_signature"),
        ("signature-not-hex", _dcap_with(tcb_info_signature="zz"), "collateral.tcb_info_signature"),
        (
            "signature-short",
            _dcap_with(tcb_info_signature="00" * 63),
            "collateral.tcb_info_signature",
        ),
        (
            "chain-not-pem",
            _dcap_with(tcb_info_issuer_chain="nope"),
            "collateral.tcb_info_issuer_chain",
        ),
        ("crl-not-der", _dcap_with(pck_crl="3000"), "collateral.pck_crl"),
        (
            "tcb-info-sgx",
            _dcap_with(tcb_info=_tcb_with(id="SGX", version=3)),
            "collateral.tcb_info",
        ),
        ("tcb-info-v2", _dcap_with(tcb_info=_tcb_with(version=2)), "collateral.tcb_info"),
        (
            "tcb-status-unknown",
            _dcap_with(
                tcb_info=_tcb_with(tcbLevels=[{**_TCB["tcbLevels"][0], "tcbStatus": "Fine"}])
            ),
            "collateral.tcb_info.tcbLevels[0].tcbStatus",
        ),
        (
            "tcb-levels-empty",
            _dcap_with(tcb_info=_tcb_with(tcbLevels=[])),
            "collateral.tcb_info.tcbLevels",
        ),
        (
            "fifteen-components",
            _dcap_with(
                tcb_info=_tcb_with(
                    tcbLevels=[
                        {
                            **_TCB["tcbLevels"][0],
                            "tcb": {
                                **_TCB["tcbLevels"][0]["tcb"],
                                "sgxtcbcomponents": _TCB["tcbLevels"][0]["tcb"]["sgxtcbcomponents"][
                                    :15
                                ],
                            },
                        }
                    ]
                )
            ),
            "collateral.tcb_info.tcbLevels[0].tcb.sgxtcbcomponents",
        ),
        (
            "fmspc-short",
            _dcap_with(tcb_info=_tcb_with(fmspc="B0C06F")),
            "collateral.tcb_info.fmspc",
        ),
        (
            "date-naive",
            _dcap_with(tcb_info=_tcb_with(nextUpdate="2025-07-19T10:16:03")),
            "collateral.tcb_info.nextUpdate",
        ),
        (
            "svn-bool",
            _dcap_with(tcb_info=_tcb_with(tcbEvaluationDataNumber=True)),
            "collateral.tcb_info.tcbEvaluationDataNumber",
        ),
    ],
)
def test_malformed_collateral_names_the_part(desc: str, text: str, field: str):
    with pytest.raises(MalformedEvidence) as info:
        parse_collateral(text)
    assert info.value.field == field, (desc, info.value)
