"""Intel TDX quotes: the DCAP quote v4/v5 layout, and their verification to the Intel SGX Root CA.

Layout references are to Intel's "Intel TDX DCAP Quoting Library API", appendix 3 (quote
format: Quote Header, TD Quote Body, Quote Signature Data, QE Report Certification Data)
and to the "Intel SGX ECDSA Quote Library API" for the QE report (SGX report body). Check
numbers such as 4.1.2.4.13 are the steps of Intel's Quote Verification Library.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from enclave.attest import _tdx_collateral as pcs
from enclave.attest._intel_pck import PckExtensions, pck_extensions
from enclave.attest._tdx_collateral import TcbStatus
from enclave.attest.evidence import Claims, Evidence, EvidenceKind
from enclave.attest.verdict import Check, CheckStatus
from enclave.errors import MalformedEvidence

__all__ = [
    "DEFAULT_ACCEPTED_TCB_STATUSES",
    "EnclaveReport",
    "QeReportCertificationData",
    "QuoteHeader",
    "TcbStatus",
    "TdReport",
    "TdxQuote",
    "intel_sgx_root_ca",
    "parse_quote_header",
    "parse_tdx_quote",
    "verify_tdx",
]

# --- App. 3, Quote Header (48 bytes, little-endian) ----------------------------------------
HEADER_SIZE = 48
#   0  u16  version            4 or 5
#   2  u16  att_key_type       2 = ECDSA-256-with-P-256 curve
#   4  u32  tee_type           0x00000081 = TDX (0x00000000 = SGX)
#   8  u8[4] reserved          (v3: QE SVN and PCE SVN; unused for TDX)
#  12  u8[16] qe_vendor_id     Intel's QE: 939A7233-F79C-4CA9-940A-0DB3957F0607
#  28  u8[20] user_data        first 16 bytes: QE identity hash (platform specific)
_HEADER = struct.Struct("<HHI4s16s20s")
QUOTE_VERSIONS = (4, 5)
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x00000081
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

# --- v5 only: Quote Body Descriptor (6 bytes) right after the header -------------------------
#  48  u16  body_type          1 = SGX enclave report, 2 = TD report 1.0, 3 = TD report 1.5
#  50  u32  body_size          584 (TD 1.0) or 648 (TD 1.5)
_BODY_DESCRIPTOR = struct.Struct("<HI")
BODY_TYPE_TD_REPORT10 = 2
BODY_TYPE_TD_REPORT15 = 3

# --- App. 3, TD Quote Body: TD report 1.0 (584 bytes); 1.5 appends 64 -----------------------
#   0  u8[16] TEE_TCB_SVN      [0] TDX module ISVSVN, [1] module major version, [2..] TCB SVNs
#  16  u8[48] MRSEAM           measurement of the TDX module
#  64  u8[48] MRSIGNERSEAM     signer of the TDX module (zero for Intel's)
# 112  u8[8]  SEAMATTRIBUTES
# 120  u8[8]  TDATTRIBUTES     u64 LE; bit 0 = TUD.DEBUG
# 128  u8[8]  XFAM
# 136  u8[48] MRTD             initial contents of the TD
# 184  u8[48] MRCONFIGID
# 232  u8[48] MROWNER
# 280  u8[48] MROWNERCONFIG
# 328  u8[48]x4 RTMR0..RTMR3   run-time extendable measurement registers
# 520  u8[64] REPORTDATA       chosen by the TD (fedtune binds SHA-512(nonce || key))
# TD report 1.5 only:
# 584  u8[16] TEE_TCB_SVN2     TEE_TCB_SVN of the TDX module now running (after updates)
# 600  u8[48] MRSERVICETD
_TD_REPORT10 = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
_TD_REPORT15_TAIL = struct.Struct("<16s48s")
TD_REPORT10_SIZE = _TD_REPORT10.size  # 584
TD_REPORT15_SIZE = TD_REPORT10_SIZE + _TD_REPORT15_TAIL.size  # 648
TD_ATTRIBUTES_DEBUG = 1 << 0

# --- App. 3, Quote Signature Data (after a u32 length) --------------------------------------
#   0  u8[64] ECDSA signature  r || s, big-endian, over header + body
#  64  u8[64] attestation key  raw P-256 point x || y, big-endian
# 128  u16    certification data type   (6 = QE report certification data, required)
# 130  u32    certification data size
# 134  ...    certification data
ECDSA_SIGNATURE_SIZE = 64
ECDSA_KEY_SIZE = 64
_CERTIFICATION_HEADER = struct.Struct("<HI")
CERT_DATA_QE_REPORT = 6
CERT_DATA_PCK_CHAIN = 5  # concatenated PEM: PCK leaf, intermediate CA, root CA

# --- App. 3, QE Report Certification Data (type 6) -----------------------------------------
#   0  u8[384] QE report (SGX report body, below)
# 384  u8[64]  QE report signature, r || s, by the PCK key
# 448  u16     QE authentication data size, then the data
# ...  u16 type, u32 size, data   nested certification data (1..5; 5 = PEM PCK chain)
ENCLAVE_REPORT_SIZE = 384

# --- SGX report body (384 bytes), the QE report -------------------------------------------
#   0 CPUSVN[16]  16 MISCSELECT u32  20 reserved[12]  32 ISVEXTPRODID[16]  48 ATTRIBUTES[16]
#  64 MRENCLAVE[32]  96 reserved[32]  128 MRSIGNER[32]  160 reserved[32]  192 CONFIGID[64]
# 256 ISVPRODID u16  258 ISVSVN u16  260 CONFIGSVN u16  262 reserved[42]  304 ISVFAMILYID[16]
# 320 REPORTDATA[64]
_ENCLAVE_REPORT = struct.Struct("<16s4s12s16s16s32s32s32s32s64sHHH42s16s64s")

# Real quotes are ~5 KB; the bound keeps a hostile length field from costing anything.
MAX_QUOTE_SIZE = 256 * 1024

PCK_LEAF_CN = "Intel SGX PCK Certificate"
TCB_SIGNING_CN = "Intel SGX TCB Signing"

# Statuses that pass ``tdx.tcb.status`` by default. SWHardeningNeeded passes: the platform is
# patched and the named advisories call for mitigations inside the TD's own software, which
# the measurement allow-list of the policy vouches for; the advisories are in the reason.
# ConfigurationNeeded (a platform setting Intel asks to change, e.g. SMT) fails unless the
# caller opts in; OutOfDate, Revoked, NotSupported and TDRelaunchAdvised always fail.
DEFAULT_ACCEPTED_TCB_STATUSES = frozenset({TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED})
ACCEPTABLE_TCB_STATUSES = frozenset(
    {
        TcbStatus.UP_TO_DATE,
        TcbStatus.SW_HARDENING_NEEDED,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    }
)

NO_COLLATERAL = "no collateral given: TCB status and QE identity not checked"
NO_COLLATERAL_CRL = "no collateral given: PCK revocation not checked"


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header."""

    version: int
    att_key_type: int
    tee_type: int
    reserved: bytes
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class TdReport:
    """The TD quote body: TD report 1.0, plus TEE_TCB_SVN2 and MRSERVICETD for TD report 1.5."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    @property
    def td_attributes_value(self) -> int:
        """TDATTRIBUTES as the little-endian u64 the TDX module defines."""
        return int.from_bytes(self.td_attributes, "little")

    @property
    def debug(self) -> bool:
        """True when TUD.DEBUG is set: the host can read and change the TD's state."""
        return bool(self.td_attributes_value & TD_ATTRIBUTES_DEBUG)


@dataclass(frozen=True)
class EnclaveReport:
    """An SGX report body; here the Quoting Enclave's report."""

    cpu_svn: bytes
    misc_select: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes


@dataclass(frozen=True)
class QeReportCertificationData:
    """Certification data type 6: the QE report, its PCK signature, and how to find the PCK."""

    qe_report_raw: bytes
    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data_type: int
    certification_data: bytes

    @property
    def pck_chain_pem(self) -> bytes | None:
        """The embedded PEM PCK chain (type 5), without Intel's trailing NUL; None otherwise."""
        if self.certification_data_type != CERT_DATA_PCK_CHAIN:
            return None
        return self.certification_data.rstrip(b"\x00")


@dataclass(frozen=True)
class TdxQuote:
    """A parsed TDX quote (v4, or v5 with a TD report 1.0/1.5 body)."""

    header: QuoteHeader
    body_type: int
    td_report: TdReport
    signed_data: bytes
    signature: bytes
    attestation_key: bytes
    qe_certification: QeReportCertificationData
    # Zero bytes after the signature data (some capture paths pad to a fixed buffer size).
    trailing_padding: int


class _Reader:
    """A bounds-checked cursor; every short read names the quote field it was reading."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, size: int, field: str) -> bytes:
        if size > self.remaining:
            raise MalformedEvidence(
                field,
                f"truncated: needs {size} bytes at offset {self.offset}, {self.remaining} left",
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, layout: struct.Struct, field: str) -> tuple:
        return layout.unpack(self.take(layout.size, field))


def parse_quote_header(raw: bytes) -> QuoteHeader:
    """Parse the 48-byte quote header without judging its values."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"quote must be bytes, not {type(raw).__name__}")
    return QuoteHeader(*_Reader(bytes(raw)).unpack(_HEADER, "quote.header"))


def parse_tdx_quote(raw: bytes) -> TdxQuote:
    """Parse a TDX quote v4/v5 field by field; MalformedEvidence names the field that is wrong."""
    header = parse_quote_header(raw)
    data = bytes(raw)
    if len(data) > MAX_QUOTE_SIZE:
        raise MalformedEvidence("quote", f"{len(data)} bytes exceeds {MAX_QUOTE_SIZE}")
    if header.version not in QUOTE_VERSIONS:
        raise MalformedEvidence(
            "quote.header.version", f"version {header.version}, expected 4 or 5"
        )
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise MalformedEvidence(
            "quote.header.att_key_type",
            f"attestation key type {header.att_key_type}, expected 2 (ECDSA P-256)",
        )
    if header.tee_type != TEE_TYPE_TDX:
        raise MalformedEvidence(
            "quote.header.tee_type", f"TEE type 0x{header.tee_type:08x}, expected 0x00000081 (TDX)"
        )
    reader = _Reader(data, HEADER_SIZE)
    if header.version == 4:
        body_type, body_size = BODY_TYPE_TD_REPORT10, TD_REPORT10_SIZE
    else:
        body_type, body_size = reader.unpack(_BODY_DESCRIPTOR, "quote.body_descriptor")
        expected = {
            BODY_TYPE_TD_REPORT10: TD_REPORT10_SIZE,
            BODY_TYPE_TD_REPORT15: TD_REPORT15_SIZE,
        }
        if body_type not in expected:
            raise MalformedEvidence(
                "quote.body_descriptor.type",
                f"body type {body_type}, expected 2 (TD report 1.0) or 3 (TD report 1.5)",
            )
        if body_size != expected[body_type]:
            raise MalformedEvidence(
                "quote.body_descriptor.size",
                f"{body_size} bytes for body type {body_type}, expected {expected[body_type]}",
            )
    body = _Reader(reader.take(body_size, "quote.td_report"))
    fields = body.unpack(_TD_REPORT10, "quote.td_report")
    tail = body.unpack(_TD_REPORT15_TAIL, "quote.td_report") if body.remaining else (None, None)
    td_report = TdReport(*fields, *tail)
    signed_data = data[: reader.offset]

    (signature_size,) = reader.unpack(struct.Struct("<I"), "quote.signature_data_len")
    signature_data = _Reader(reader.take(signature_size, "quote.signature_data"))
    signature = signature_data.take(ECDSA_SIGNATURE_SIZE, "quote.signature_data.signature")
    attestation_key = signature_data.take(ECDSA_KEY_SIZE, "quote.signature_data.attestation_key")
    cert_type, cert_size = signature_data.unpack(
        _CERTIFICATION_HEADER, "quote.signature_data.certification_data"
    )
    if cert_type != CERT_DATA_QE_REPORT:
        raise MalformedEvidence(
            "quote.signature_data.certification_data.type",
            f"type {cert_type}, expected 6 (QE report certification data)",
        )
    if cert_size != signature_data.remaining:
        raise MalformedEvidence(
            "quote.signature_data.certification_data.size",
            f"declares {cert_size} bytes, {signature_data.remaining} follow",
        )
    trailing = reader.data[reader.offset :]
    if trailing.strip(b"\x00"):
        raise MalformedEvidence(
            "quote.trailing", f"{len(trailing)} bytes after the signature data are not padding"
        )
    return TdxQuote(
        header=header,
        body_type=body_type,
        td_report=td_report,
        signed_data=signed_data,
        signature=signature,
        attestation_key=attestation_key,
        qe_certification=_parse_qe_certification(signature_data.take(cert_size, "")),
        trailing_padding=len(trailing),
    )


def _parse_qe_certification(data: bytes) -> QeReportCertificationData:
    field = "quote.qe_report_certification_data"
    reader = _Reader(data)
    qe_report_raw = reader.take(ENCLAVE_REPORT_SIZE, f"{field}.qe_report")
    qe_signature = reader.take(ECDSA_SIGNATURE_SIZE, f"{field}.qe_report_signature")
    (auth_size,) = reader.unpack(struct.Struct("<H"), f"{field}.qe_auth_data")
    auth_data = reader.take(auth_size, f"{field}.qe_auth_data")
    inner_type, inner_size = reader.unpack(_CERTIFICATION_HEADER, f"{field}.certification_data")
    if not 1 <= inner_type <= CERT_DATA_PCK_CHAIN:
        raise MalformedEvidence(
            f"{field}.certification_data.type", f"type {inner_type}, expected 1..5"
        )
    if inner_size != reader.remaining:
        raise MalformedEvidence(
            f"{field}.certification_data.size",
            f"declares {inner_size} bytes, {reader.remaining} follow",
        )
    (
        cpu_svn, misc_select, _reserved1, isv_ext_prod_id, attributes, mr_enclave, _reserved2,
        mr_signer, _reserved3, config_id, isv_prod_id, isv_svn, config_svn, _reserved4,
        isv_family_id, report_data,
    ) = _ENCLAVE_REPORT.unpack(qe_report_raw)  # fmt: skip
    return QeReportCertificationData(
        qe_report_raw=qe_report_raw,
        qe_report=EnclaveReport(
            cpu_svn=cpu_svn,
            misc_select=misc_select,
            isv_ext_prod_id=isv_ext_prod_id,
            attributes=attributes,
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            config_id=config_id,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            config_svn=config_svn,
            isv_family_id=isv_family_id,
            report_data=report_data,
        ),
        qe_report_signature=qe_signature,
        qe_auth_data=auth_data,
        certification_data_type=inner_type,
        certification_data=reader.take(inner_size, f"{field}.certification_data"),
    )


@cache
def intel_sgx_root_ca() -> x509.Certificate:
    """The Intel SGX Root CA pinned in this package (see roots/INTEL-PROVENANCE.md)."""
    der = resources.files("enclave.attest.roots").joinpath("intel-sgx-root-ca.der").read_bytes()
    return x509.load_der_x509_certificate(der)


def verify_tdx(
    evidence: Evidence,
    *,
    now: datetime,
    root_ca: x509.Certificate | None = None,
    accepted_tcb_statuses: Collection[TcbStatus] = DEFAULT_ACCEPTED_TCB_STATUSES,
) -> tuple[Claims | None, list[Check]]:
    """Check a TDX quote's authenticity (and its collateral, when given) at time ``now``.

    ``evidence.collateral`` is JSON text in dcap-qvl's QuoteCollateralV3 shape (tcb_info,
    tcb_info_signature, tcb_info_issuer_chain, qe_identity(+_signature, _issuer_chain),
    root_ca_crl, pck_crl as hex DER or PEM, pck_crl_issuer_chain); tcb_info and qe_identity
    may instead be whole PCS response bodies ({"tcbInfo": ..., "signature": ...}), embedded
    unchanged. Returns the claims only when no check failed, with every check that ran.
    """
    if not isinstance(evidence, Evidence):
        raise TypeError(f"evidence must be Evidence, not {type(evidence).__name__}")
    if evidence.kind != EvidenceKind.TDX:
        raise ValueError(f"evidence kind is {evidence.kind.value!r}, expected 'tdx'")
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if root_ca is not None and not isinstance(root_ca, x509.Certificate):
        raise TypeError(f"root_ca must be an x509.Certificate, not {type(root_ca).__name__}")
    accepted = _accepted_statuses(accepted_tcb_statuses)
    root = intel_sgx_root_ca() if root_ca is None else root_ca

    checks = _header_checks(parse_quote_header(evidence.raw))
    if any(c.status == CheckStatus.FAILED for c in checks):
        return None, checks
    quote = parse_tdx_quote(evidence.raw)
    qe = quote.qe_certification

    # 4.1.2.4.16: the quote (header + TD report) is signed by the attestation key.
    checks.append(_check_quote_signature(quote))
    # 4.1.2.4.4/5: the PCK certificate chains to the pinned root at ``now``.
    chain_check, pck_chain = _check_pck_chain(quote, evidence.certificates, root, now)
    checks.append(chain_check)
    leaf = pck_chain[0] if pck_chain else _unverified_leaf(quote, evidence.certificates)
    # 4.1.2.4.12: the QE report is signed by the PCK key.
    checks.append(_check_qe_report_signature(qe, leaf))
    # 4.1.2.4.13: the QE report binds the attestation key and the QE authentication data.
    checks.append(_check_qe_binding(quote))
    # Platform TCB and FMSPC are read only from a PCK certificate that chained to the root.
    extensions = pck_extensions(pck_chain[0]) if pck_chain else None

    if evidence.collateral is None:
        checks.append(Check.not_applicable("tdx.pck.crl", NO_COLLATERAL_CRL))
        checks.extend(
            Check.not_applicable(name, NO_COLLATERAL)
            for name in (
                "tdx.collateral.tcb_info.signature",
                "tdx.collateral.tcb_info.validity",
                "tdx.collateral.tcb_info.match",
                "tdx.collateral.qe_identity.signature",
                "tdx.collateral.qe_identity.validity",
                "tdx.collateral.qe_identity.match",
                "tdx.tcb.tdx_module",
                "tdx.tcb.status",
            )
        )
    else:
        collateral = pcs.parse_collateral(evidence.collateral)
        crl_check, root_crl = _check_crls(collateral, pck_chain, root, now)
        checks.append(crl_check)
        checks.extend(
            _collateral_checks(quote, collateral, extensions, root, root_crl, now, accepted)
        )

    if any(c.status == CheckStatus.FAILED for c in checks):
        return None, checks
    return _claims(quote, extensions), checks


def _accepted_statuses(value: Collection[TcbStatus]) -> frozenset[TcbStatus]:
    if isinstance(value, str) or not isinstance(value, Collection):
        raise TypeError("accepted_tcb_statuses must be a collection of TcbStatus")
    try:
        statuses = frozenset(TcbStatus(v) for v in value)
    except ValueError as exc:
        raise ValueError(f"accepted_tcb_statuses: {exc}") from None
    if not statuses:
        raise ValueError("accepted_tcb_statuses is empty: no TCB would ever pass")
    refused = statuses - ACCEPTABLE_TCB_STATUSES
    if refused:
        raise ValueError(
            f"accepted_tcb_statuses may not include {sorted(refused)}: such a platform is "
            "missing security fixes"
        )
    return statuses


def _header_checks(header: QuoteHeader) -> list[Check]:
    def check(name: str, ok: bool, what: str, expected: str, got: str) -> Check:
        if ok:
            return Check.passed(name, f"{what} is {got}")
        return Check.failed(name, f"unsupported {what}", expected=expected, got=got)

    return [
        check(
            "tdx.header.version",
            header.version in QUOTE_VERSIONS,
            "quote version",
            "4 or 5",
            str(header.version),
        ),
        check(
            "tdx.header.att_key_type",
            header.att_key_type == ATT_KEY_TYPE_ECDSA_P256,
            "attestation key type",
            "2 (ECDSA-256-with-P-256)",
            str(header.att_key_type),
        ),
        check(
            "tdx.header.tee_type",
            header.tee_type == TEE_TYPE_TDX,
            "TEE type",
            "0x00000081 (TDX)",
            f"0x{header.tee_type:08x}",
        ),
        check(
            "tdx.header.qe_vendor_id",
            header.qe_vendor_id == INTEL_QE_VENDOR_ID,
            "QE vendor",
            INTEL_QE_VENDOR_ID.hex(),
            header.qe_vendor_id.hex(),
        ),
    ]


def _p256_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


def _der_signature(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _ecdsa_ok(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(_der_signature(signature), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _check_quote_signature(quote: TdxQuote) -> Check:
    name = "tdx.quote.signature"
    try:
        key = _p256_key(quote.attestation_key)
    except ValueError:
        return Check.failed(name, "the attestation key is not a P-256 point")
    if not _ecdsa_ok(key, quote.signature, quote.signed_data):
        return Check.failed(
            name,
            "the quote signature does not verify with the attestation key: header or "
            "TD report was altered, or the signature is not from this key",
        )
    return Check.passed(name, "header and TD report are signed by the attestation key")


def _pck_certificates(quote: TdxQuote, given: list[bytes]) -> tuple[x509.Certificate, ...] | None:
    """The PCK chain, leaf first: embedded in the quote, else the evidence's DER certificates."""
    pem = quote.qe_certification.pck_chain_pem
    if pem is not None:
        try:
            embedded = x509.load_pem_x509_certificates(pem)
        except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
            raise MalformedEvidence("quote.pck_chain", f"not a PEM chain: {exc}") from None
        return pcs.readable_certificates(embedded, "quote.pck_chain")
    if not given:
        return None
    try:
        loaded = [x509.load_der_x509_certificate(der) for der in given]
    except (ValueError, x509.InvalidVersion) as exc:
        raise MalformedEvidence("certificates", f"not a DER certificate: {exc}") from None
    return pcs.readable_certificates(loaded, "certificates")


def _unverified_leaf(quote: TdxQuote, given: list[bytes]) -> x509.Certificate | None:
    certificates = _pck_certificates(quote, given)
    return certificates[0] if certificates else None


def _check_pck_chain(
    quote: TdxQuote, given: list[bytes], root: x509.Certificate, now: datetime
) -> tuple[Check, tuple[x509.Certificate, ...]]:
    name = "tdx.pck.chain"
    certificates = _pck_certificates(quote, given)
    if certificates is None:
        return (
            Check.failed(
                name,
                f"the quote does not embed the PCK chain (certification data type "
                f"{quote.qe_certification.certification_data_type}) and no certificates were given",
            ),
            (),
        )
    note = ""
    # The chain the QE embedded is the one verified; a second, untrusted copy adds nothing.
    embedded = quote.qe_certification.pck_chain_pem is not None
    if embedded and given and list(given) != [c.public_bytes(Encoding.DER) for c in certificates]:
        note = "; the evidence's certificates differ from the embedded chain and were ignored"
    leaf = certificates[0]
    if PCK_LEAF_CN not in _common_name(leaf):
        return (
            Check.failed(
                name,
                "the leaf is not a PCK certificate",
                expected=PCK_LEAF_CN,
                got=_common_name(leaf),
            ),
            (),
        )
    verified = _verify_chain(certificates, root, now, name)
    if isinstance(verified, Check):
        return verified, ()
    return (
        Check.passed(
            name,
            f"PCK certificate chains to {_common_name(root)} "
            f"({' <- '.join(_common_name(c) for c in reversed(verified))}){note}",
        ),
        verified,
    )


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _require_digital_signature(
    _policy: object, _cert: x509.Certificate, usage: x509.KeyUsage
) -> None:
    if not usage.digital_signature:
        raise ValueError("key usage lacks digitalSignature")


def _verify_chain(
    certificates: tuple[x509.Certificate, ...], root: x509.Certificate, now: datetime, name: str
) -> tuple[x509.Certificate, ...] | Check:
    """Path-validate ``certificates`` (leaf first) to ``root`` at ``now`` with pyca's verifier."""
    last = certificates[-1]
    # A chain that carries its own root must carry the pinned one: a look-alike root with the
    # same name is the classic substitution.
    if len(certificates) > 1 and last.subject == last.issuer and last != root:
        return Check.failed(
            name,
            "the chain ends in a root that is not the pinned root",
            expected=root.fingerprint(hashes.SHA256()).hex(),
            got=last.fingerprint(hashes.SHA256()).hex(),
        )
    # Intel's leaves are not Web PKI leaves (no SAN, no EKU); they must still be signing keys.
    ee_policy = ExtensionPolicy.permit_all().require_present(
        x509.KeyUsage, Criticality.AGNOSTIC, _require_digital_signature
    )
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(certificates[0], list(certificates[1:]))
    except VerificationError as exc:
        return Check.failed(name, f"certificate path validation failed at {now.isoformat()}: {exc}")
    return tuple(verified.chain)


def _check_qe_report_signature(
    qe: QeReportCertificationData, leaf: x509.Certificate | None
) -> Check:
    name = "tdx.qe_report.signature"
    if leaf is None:
        return Check.failed(name, "no PCK certificate to verify the QE report with")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return Check.failed(name, "the PCK key is not a P-256 key")
    if not _ecdsa_ok(key, qe.qe_report_signature, qe.qe_report_raw):
        return Check.failed(name, "the QE report signature does not verify with the PCK key")
    return Check.passed(name, "the QE report is signed by the PCK key")


def _check_qe_binding(quote: TdxQuote) -> Check:
    qe = quote.qe_certification
    expected = hashlib.sha256(quote.attestation_key + qe.qe_auth_data).digest() + bytes(32)
    got = qe.qe_report.report_data
    if got != expected:
        return Check.failed(
            "tdx.qe_report.binding",
            "QE report data is not SHA-256(attestation key || QE auth data) || 0^32",
            expected=expected.hex(),
            got=got.hex(),
        )
    return Check.passed(
        "tdx.qe_report.binding",
        "the QE report binds the attestation key and QE authentication data",
    )


def _check_crls(
    collateral: pcs.Collateral,
    pck_chain: tuple[x509.Certificate, ...],
    root: x509.Certificate,
    now: datetime,
) -> tuple[Check, x509.CertificateRevocationList | None]:
    """Check the PCK leaf against the PCK CRL and the intermediate against the root CA CRL."""
    name = "tdx.pck.crl"
    root_crl, pck_crl = collateral.root_ca_crl, collateral.pck_crl
    if root_crl is None and pck_crl is None:
        return Check.not_applicable(
            name, "collateral has no CRLs: PCK revocation not checked"
        ), None
    if root_crl is None or pck_crl is None:
        missing = "root_ca_crl" if root_crl is None else "pck_crl"
        return Check.failed(name, f"collateral lacks {missing}: revocation is half checked"), None
    root_problem = _crl_problem(root_crl, root, now, "root CA CRL")
    if root_problem:
        return Check.failed(name, root_problem), None
    if len(pck_chain) < 2:
        return Check.failed(
            name, "the PCK chain did not verify, so its CRL cannot be checked"
        ), root_crl
    leaf, intermediate = pck_chain[0], pck_chain[1]
    # The PCK CRL must be signed by the CA that issued this PCK, i.e. the intermediate of the
    # chain just verified; the collateral's pck_crl_issuer_chain is therefore not needed.
    pck_problem = _crl_problem(pck_crl, intermediate, now, "PCK CRL")
    if pck_problem:
        return Check.failed(name, pck_problem), root_crl
    for certificate, crl, label in (
        (intermediate, root_crl, "root CA CRL"),
        (leaf, pck_crl, "PCK CRL"),
    ):
        revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if revoked is not None:
            return (
                Check.failed(
                    name,
                    f"{_common_name(certificate)} serial {certificate.serial_number:x} is revoked "
                    f"by the {label} since {revoked.revocation_date_utc.isoformat()}",
                ),
                root_crl,
            )
    return (
        Check.passed(
            name,
            f"neither the PCK certificate nor {_common_name(intermediate)} is revoked "
            f"(PCK CRL of {pck_crl.last_update_utc.date()}, root CA CRL of "
            f"{root_crl.last_update_utc.date()})",
        ),
        root_crl,
    )


def _crl_problem(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime, label: str
) -> str | None:
    if crl.issuer != issuer.subject:
        return f"the {label} is issued by {crl.issuer.rfc4514_string()}, not {_common_name(issuer)}"
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(key):
        return f"the {label} signature does not verify with {_common_name(issuer)}"
    next_update = crl.next_update_utc
    if now < crl.last_update_utc or next_update is None or now > next_update:
        return (
            f"the {label} is not current at {now.isoformat()} (thisUpdate "
            f"{crl.last_update_utc.isoformat()}, nextUpdate {next_update})"
        )
    return None


def _collateral_checks(
    quote: TdxQuote,
    collateral: pcs.Collateral,
    extensions: PckExtensions | None,
    root: x509.Certificate,
    root_crl: x509.CertificateRevocationList | None,
    now: datetime,
    accepted: frozenset[TcbStatus],
) -> list[Check]:
    checks: list[Check] = []
    report = quote.td_report
    qe_report = quote.qe_certification.qe_report
    tcb_info, qe_identity = collateral.tcb_info, collateral.qe_identity

    # QE identity (4.1.2.4.14/15): which enclave made the QE report, and how current it is.
    qe_status: TcbStatus | None = None
    qe_advisories: tuple[str, ...] = ()
    if qe_identity is None or collateral.qe_identity_document is None:
        reason = "collateral has no QE identity: the quoting enclave is not checked"
        checks.extend(
            Check.not_applicable(f"tdx.collateral.qe_identity.{part}", reason)
            for part in ("signature", "validity", "match")
        )
    else:
        checks.append(
            _check_signed_document(
                "tdx.collateral.qe_identity.signature",
                collateral.qe_identity_document,
                root,
                root_crl,
                now,
            )
        )
        checks.append(
            _check_validity(
                "tdx.collateral.qe_identity.validity",
                "QE identity",
                qe_identity.issue_date,
                qe_identity.next_update,
                now,
            )
        )
        qe_level = pcs.qe_tcb_level(qe_identity, qe_report.isv_svn)
        qe_status = TcbStatus.NOT_SUPPORTED if qe_level is None else qe_level.status
        qe_advisories = () if qe_level is None else qe_level.advisory_ids
        checks.append(_check_qe_identity(qe_identity, qe_report, qe_status))

    if tcb_info is None or collateral.tcb_info_document is None:
        reason = "collateral has no TCB info: TCB status not checked"
        checks.extend(
            Check.not_applicable(name, reason)
            for name in (
                "tdx.collateral.tcb_info.signature",
                "tdx.collateral.tcb_info.validity",
                "tdx.collateral.tcb_info.match",
                "tdx.tcb.tdx_module",
                "tdx.tcb.status",
            )
        )
        return checks

    checks.append(
        _check_signed_document(
            "tdx.collateral.tcb_info.signature", collateral.tcb_info_document, root, root_crl, now
        )
    )
    checks.append(
        _check_validity(
            "tdx.collateral.tcb_info.validity",
            "TCB info",
            tcb_info.issue_date,
            tcb_info.next_update,
            now,
        )
    )
    if extensions is None:
        unverified = (
            "the PCK certificate did not verify, so the platform's FMSPC and TCB are unknown"
        )
        checks.append(Check.failed("tdx.collateral.tcb_info.match", unverified))
        checks.append(Check.failed("tdx.tcb.status", unverified))
        checks.append(_check_tdx_module(tcb_info, quote))
        return checks
    checks.append(_check_tcb_info_match(tcb_info, extensions))
    checks.append(_check_tdx_module(tcb_info, quote))

    evaluation = pcs.evaluate_tdx_tcb(
        tcb_info,
        sgx_components=extensions.tcb_components,
        pce_svn=extensions.pce_svn,
        tee_tcb_svn=report.tee_tcb_svn,
        tee_tcb_svn2=report.tee_tcb_svn2,
        quote_version=quote.header.version,
        qe_status=qe_status,
        qe_advisory_ids=qe_advisories,
    )
    reason = f"TCB status {evaluation.status.value}"
    if evaluation.advisory_ids:
        reason += f", advisories {', '.join(evaluation.advisory_ids)}"
    reason += f" ({evaluation.explanation})"
    if qe_identity is None:
        reason += "; no QE identity given, so the QE's own TCB is not part of this status"
    if evaluation.status in accepted:
        checks.append(Check.passed("tdx.tcb.status", reason, got=evaluation.status.value))
    else:
        checks.append(
            Check.failed(
                "tdx.tcb.status",
                reason,
                expected=" or ".join(sorted(s.value for s in accepted)),
                got=evaluation.status.value,
            )
        )
    return checks


def _check_signed_document(
    name: str,
    document: pcs.SignedDocument,
    root: x509.Certificate,
    root_crl: x509.CertificateRevocationList | None,
    now: datetime,
) -> Check:
    if not document.issuer_chain:
        return Check.failed(name, "the issuer chain is empty")
    signer = document.issuer_chain[0]
    if _common_name(signer) != TCB_SIGNING_CN:
        return Check.failed(
            name,
            "not signed by Intel's TCB signing certificate",
            expected=TCB_SIGNING_CN,
            got=_common_name(signer),
        )
    verified = _verify_chain(document.issuer_chain, root, now, name)
    if isinstance(verified, Check):
        return verified
    if root_crl is not None:
        revoked = root_crl.get_revoked_certificate_by_serial_number(signer.serial_number)
        if revoked is not None:
            return Check.failed(name, f"{TCB_SIGNING_CN} certificate is revoked by the root CA CRL")
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not _ecdsa_ok(
        key, document.signature, document.body
    ):
        return Check.failed(name, f"the signature does not verify with the {TCB_SIGNING_CN} key")
    return Check.passed(name, f"signed by {TCB_SIGNING_CN}, which chains to {_common_name(root)}")


def _check_validity(
    name: str, what: str, issue_date: datetime, next_update: datetime, now: datetime
) -> Check:
    window = f"{issue_date.isoformat()} .. {next_update.isoformat()}"
    if now < issue_date:
        return Check.failed(name, f"{what} is not yet issued at {now.isoformat()}", expected=window)
    if now > next_update:
        return Check.failed(
            name,
            f"{what} is stale: its nextUpdate passed before {now.isoformat()}; fetch fresh "
            "collateral",
            expected=window,
            got=now.isoformat(),
        )
    return Check.passed(name, f"{what} is current ({window})")


def _check_qe_identity(
    identity: pcs.QeIdentity, qe_report: EnclaveReport, qe_status: TcbStatus
) -> Check:
    def masked(value: bytes, mask: bytes) -> bytes:
        return bytes(a & b for a, b in zip(value, mask, strict=True))

    mismatches: list[tuple[str, str, str]] = []
    if qe_report.mr_signer != identity.mrsigner:
        mismatches.append(("MRSIGNER", identity.mrsigner.hex(), qe_report.mr_signer.hex()))
    if qe_report.isv_prod_id != identity.isv_prod_id:
        mismatches.append(("ISVPRODID", str(identity.isv_prod_id), str(qe_report.isv_prod_id)))
    misc = masked(qe_report.misc_select, identity.miscselect_mask)
    if misc != masked(identity.miscselect, identity.miscselect_mask):
        mismatches.append(("MISCSELECT", identity.miscselect.hex(), misc.hex()))
    attributes = masked(qe_report.attributes, identity.attributes_mask)
    if attributes != masked(identity.attributes, identity.attributes_mask):
        mismatches.append(("ATTRIBUTES", identity.attributes.hex(), attributes.hex()))
    name = "tdx.collateral.qe_identity.match"
    if mismatches:
        return Check.failed(
            name,
            "the QE report does not match the TD_QE identity: "
            + ", ".join(m[0] for m in mismatches),
            expected="; ".join(f"{m[0]}={m[1]}" for m in mismatches),
            got="; ".join(f"{m[0]}={m[2]}" for m in mismatches),
        )
    return Check.passed(
        name,
        "the QE is Intel's TD quoting enclave (MRSIGNER, ISVPRODID, MISCSELECT, ATTRIBUTES); "
        f"its ISVSVN {qe_report.isv_svn} is {qe_status.value}",
    )


def _check_tcb_info_match(tcb_info: pcs.TcbInfo, extensions: PckExtensions) -> Check:
    name = "tdx.collateral.tcb_info.match"
    if extensions.fmspc != tcb_info.fmspc:
        return Check.failed(
            name,
            "TCB info is for another platform model (FMSPC)",
            expected=extensions.fmspc.hex().upper(),
            got=tcb_info.fmspc.hex().upper(),
        )
    if extensions.pce_id != tcb_info.pce_id:
        return Check.failed(
            name,
            "TCB info is for another PCE (PCEID)",
            expected=extensions.pce_id.hex(),
            got=tcb_info.pce_id.hex(),
        )
    return Check.passed(
        name,
        f"TCB info is for this platform (FMSPC {tcb_info.fmspc.hex().upper()}, "
        f"PCEID {tcb_info.pce_id.hex()})",
    )


def _check_tdx_module(tcb_info: pcs.TcbInfo, quote: TdxQuote) -> Check:
    # 4.1.2.4.11: MRSIGNERSEAM and SEAMATTRIBUTES against the TDX module identity.
    name = "tdx.tcb.tdx_module"
    report = quote.td_report
    identity = pcs.module_identity_for(tcb_info, report.tee_tcb_svn, quote.header.version)
    if identity is None:
        return Check.failed(
            name,
            f"TCB info has no identity TDX_{report.tee_tcb_svn[1]:02X} for this TDX module version",
        )
    if report.mr_signer_seam != identity.mrsigner:
        return Check.failed(
            name,
            "the TDX module is not signed by the expected signer (MRSIGNERSEAM)",
            expected=identity.mrsigner.hex(),
            got=report.mr_signer_seam.hex(),
        )
    attributes = bytes(
        a & m for a, m in zip(report.seam_attributes, identity.attributes_mask, strict=True)
    )
    if attributes != identity.attributes:
        return Check.failed(
            name,
            "SEAMATTRIBUTES do not match the TDX module identity",
            expected=identity.attributes.hex(),
            got=attributes.hex(),
        )
    return Check.passed(
        name, f"TDX module matches identity {identity.id} (MRSIGNERSEAM, SEAMATTRIBUTES)"
    )


def _claims(quote: TdxQuote, extensions: PckExtensions | None) -> Claims:
    report = quote.td_report
    tcb = {f"tee_tcb_svn.{i}": svn for i, svn in enumerate(report.tee_tcb_svn)}
    tcb["qe_svn"] = quote.qe_certification.qe_report.isv_svn
    if extensions is not None:
        tcb["pce_svn"] = extensions.pce_svn
    return Claims(
        measurements={
            "mrtd": report.mr_td,
            "rtmr0": report.rtmr0,
            "rtmr1": report.rtmr1,
            "rtmr2": report.rtmr2,
            "rtmr3": report.rtmr3,
        },
        report_data=report.report_data,
        tcb=tcb,
        debug=report.debug,
        policy_bits=report.td_attributes_value,
        platform_id=None if extensions is None else extensions.ppid,
        signed_at=None,
        format_version=quote.header.version,
    )
