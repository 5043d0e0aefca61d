"""AMD SEV-SNP certificates (KDS spec 57230): pinned roots, VCEK/VLEK extensions, chain checks."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from importlib import resources
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from enclave.attest.verdict import Check
from enclave.errors import MalformedEvidence


class AmdProduct(StrEnum):
    """AMD EPYC product lines with SEV-SNP, named as AMD's Key Distribution Service names them."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @classmethod
    def from_name(cls, name: str) -> AmdProduct | None:
        """Map a KDS product name ("Milan", "Genoa-B1", ...) to a product line, or None."""
        stem = name.split("-", 1)[0].strip().lower()
        for product in cls:
            if product.value.lower() == stem:
                return product
        return None


class KeyRole(StrEnum):
    """The role a certificate plays in an SEV-SNP chain, read from its subject common name."""

    VCEK = "vcek"  # Versioned Chip Endorsement Key: per chip and TCB, signs reports.
    VLEK = "vlek"  # Versioned Loaded Endorsement Key: per cloud provider, signs reports.
    ASK = "ask"  # AMD SEV Key: signs VCEKs of one product line.
    ASVK = "asvk"  # AMD SEV VLEK Key: signs VLEKs of one product line.
    ARK = "ark"  # AMD Root Key: self-signed, signs ASK and ASVK.


# VCEK/VLEK certificate extensions (KDS spec 57230, "VCEK Certificate" extensions table).
# The TCB names are those of Claims.tcb for SEV-SNP.
OID_STRUCT_VERSION = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
TCB_EXTENSION_OIDS: Mapping[str, x509.ObjectIdentifier] = MappingProxyType(
    {
        "bootloader": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1"),  # blSPL
        "tee": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2"),  # teeSPL
        "snp": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3"),  # snpSPL
        "microcode": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8"),  # ucodeSPL
        "fmc": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.9"),  # fmcSPL (Turin and later)
    }
)
# The spelling KDS uses in its URLs and AMD in the spec; shown in check reasons.
TCB_EXTENSION_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "bootloader": "blSPL",
        "tee": "teeSPL",
        "snp": "snpSPL",
        "microcode": "ucodeSPL",
        "fmc": "fmcSPL",
    }
)
OID_HWID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")
OID_CSP_ID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.5")

# Milan and Genoa VCEKs carry the full 64-byte CHIP_ID; Turin's hwID is its first 8 bytes.
HWID_SIZES = (64, 8)

_SERIAL_WARNING = "Parsed a serial number which wasn't positive"


def load_certificate(data: bytes, *, field: str) -> x509.Certificate:
    """Load one X.509 certificate from DER or PEM; MalformedEvidence(field) if it won't parse."""
    certs = load_certificates(data, field=field)
    if len(certs) != 1:
        raise MalformedEvidence(field, f"expected one certificate, found {len(certs)}")
    return certs[0]


def load_certificates(data: bytes, *, field: str) -> list[x509.Certificate]:
    """Load a PEM bundle or a single DER certificate, in file order."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("certificate data must be bytes")
    data = bytes(data)
    # AMD's KDS issues VCEKs (and the sample VCEKs in our test data) with serial number 0,
    # which RFC 5280 forbids and cryptography >= 42 warns about. The serial plays no part in
    # our decision (the chain signatures, hwID and TCB do), so the warning is silenced here,
    # for this one message, and nowhere else. (catch_warnings is process-wide state; the worst
    # a concurrent caller can cause is this one warning getting through.) If a later
    # cryptography refuses such certificates outright, the ValueError below names the field.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_SERIAL_WARNING, category=CryptographyDeprecationWarning
        )
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
            for cert in certs:
                # cryptography decodes names and the public key only when first asked; ask
                # now, so a malformed one is refused here rather than deep inside a check.
                cert.subject, cert.issuer, cert.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            # InvalidVersion (a version field other than v1/v3) is no ValueError, and a name
            # attribute of the wrong ASN.1 type for its OID raises TypeError when decoded.
            raise MalformedEvidence(field, f"not a readable X.509 certificate ({exc})") from exc
        return certs


def common_name(cert: x509.Certificate) -> str:
    """The subject's common name, or an empty string when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def classify(cert: x509.Certificate) -> tuple[KeyRole, AmdProduct | None] | None:
    """Tell an AMD certificate's role (and product, for ASK/ASVK/ARK) from its subject CN."""
    cn = common_name(cert)
    if cn == "SEV-VCEK":
        return KeyRole.VCEK, None
    if cn == "SEV-VLEK":
        return KeyRole.VLEK, None
    if cn.startswith("ARK-"):
        product = AmdProduct.from_name(cn.removeprefix("ARK-"))
        return (KeyRole.ARK, product) if product else None
    if cn.startswith("SEV-VLEK-"):
        product = AmdProduct.from_name(cn.removeprefix("SEV-VLEK-"))
        return (KeyRole.ASVK, product) if product else None
    if cn.startswith("SEV-"):
        product = AmdProduct.from_name(cn.removeprefix("SEV-"))
        return (KeyRole.ASK, product) if product else None
    return None


@dataclass(frozen=True)
class ProductRoots:
    """The trust anchors for one product line: its ARK, ASK and (optionally) ASVK."""

    product: AmdProduct
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate | None = None

    def __post_init__(self) -> None:
        for role, cert in (("ark", self.ark), ("ask", self.ask), ("asvk", self.asvk)):
            if cert is not None and not isinstance(cert, x509.Certificate):
                raise TypeError(f"{role} must be a cryptography x509.Certificate")

    @classmethod
    def from_pem(cls, product: AmdProduct, pem: bytes) -> ProductRoots:
        """Build from a PEM bundle holding the ARK, the ASK and optionally the ASVK, any order."""
        found: dict[KeyRole, x509.Certificate] = {}
        for cert in load_certificates(pem, field=f"roots.{product.value}"):
            role = classify(cert)
            if role is None or role[1] != product:
                raise ValueError(
                    f"certificate CN={common_name(cert)!r} is not an AMD {product.value} "
                    "ARK, ASK or ASVK"
                )
            if role[0] in found:
                raise ValueError(f"two {role[0].value.upper()} certificates for {product.value}")
            found[role[0]] = cert
        if KeyRole.ARK not in found or KeyRole.ASK not in found:
            raise ValueError(f"{product.value} roots need both the ARK and the ASK")
        return cls(product, found[KeyRole.ARK], found[KeyRole.ASK], found.get(KeyRole.ASVK))


AmdRoots = Mapping[AmdProduct, ProductRoots]


@functools.cache
def _pinned() -> Mapping[AmdProduct, ProductRoots]:
    folder = resources.files("enclave.attest.roots")
    return MappingProxyType(
        {
            product: ProductRoots.from_pem(
                product, folder.joinpath(f"{product.value.lower()}.pem").read_bytes()
            )
            for product in AmdProduct
        }
    )


def pinned_roots() -> AmdRoots:
    """The AMD roots shipped with fedtune (Milan, Genoa, Turin); see enclave/attest/roots/."""
    return _pinned()


def _der_tlv(data: bytes, tag: int, what: str) -> bytes:
    # A strict reader for the single primitive DER values AMD puts in its extensions.
    if len(data) < 2 or data[0] != tag:
        raise ValueError(f"{what}: expected DER tag 0x{tag:02x}")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise ValueError(f"{what}: bad DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset = 2 + count
        if length < 0x80 or data[2] == 0:
            raise ValueError(f"{what}: non-minimal DER length")
    if offset + length != len(data):
        raise ValueError(f"{what}: DER length does not match the extension's size")
    return data[offset:]


def _der_uint8(data: bytes, what: str) -> int:
    body = _der_tlv(data, 0x02, what)
    if not body or (len(body) > 1 and body[0] == 0 and body[1] < 0x80):
        raise ValueError(f"{what}: non-minimal DER INTEGER")
    value = int.from_bytes(body, "big", signed=True)
    if not 0 <= value <= 255:
        raise ValueError(f"{what}: {value} is not a security patch level (0-255)")
    return value


def _extension_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ValueError(f"extension {oid.dotted_string} has an unexpected type")
    return value.value


@dataclass(frozen=True)
class EndorsementKey:
    """A VCEK or VLEK certificate with its AMD extensions read out."""

    cert: x509.Certificate
    role: KeyRole
    product_name: str | None
    # Security patch levels by Claims.tcb name; components whose extension is absent or
    # unreadable are in ``tcb_errors`` instead, so the TCB check can say why.
    tcb: Mapping[str, int]
    tcb_errors: Mapping[str, str] = field(default_factory=dict)
    hwid: bytes | None = None
    hwid_error: str | None = None
    csp_id: str | None = None

    @property
    def product(self) -> AmdProduct | None:
        """The product line named by the productName extension, if it names a known one."""
        return AmdProduct.from_name(self.product_name) if self.product_name else None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, *, field: str) -> EndorsementKey:
        """Read a VCEK/VLEK; MalformedEvidence(field) when it is no endorsement key at all."""
        role = classify(cert)
        if role is None or role[0] not in (KeyRole.VCEK, KeyRole.VLEK):
            raise MalformedEvidence(
                field,
                f"certificate CN={common_name(cert)!r} is not an AMD VCEK or VLEK "
                "(expected CN=SEV-VCEK or CN=SEV-VLEK)",
            )
        try:
            raw_name = _extension_bytes(cert, OID_PRODUCT_NAME)
            product_name = (
                _der_tlv(raw_name, 0x16, "productName").decode("ascii") if raw_name else None
            )
        except (ValueError, x509.DuplicateExtension, UnicodeDecodeError) as exc:
            raise MalformedEvidence(f"{field}.productName", str(exc)) from exc

        tcb: dict[str, int] = {}
        errors: dict[str, str] = {}
        for name, oid in TCB_EXTENSION_OIDS.items():
            spelled = TCB_EXTENSION_NAMES[name]
            try:
                raw = _extension_bytes(cert, oid)
                if raw is None:
                    errors[name] = f"the certificate has no {spelled} extension"
                else:
                    tcb[name] = _der_uint8(raw, spelled)
            except (ValueError, x509.DuplicateExtension) as exc:
                errors[name] = str(exc)

        hwid: bytes | None = None
        hwid_error: str | None = None
        csp_id: str | None = None
        try:
            raw_hwid = _extension_bytes(cert, OID_HWID)
            if raw_hwid is not None:
                # Older KDS certificates carry the hwID as the raw extension value; newer
                # ones wrap it in a DER OCTET STRING. Both forms are in AMD's wild.
                hwid = raw_hwid if len(raw_hwid) in HWID_SIZES else _der_tlv(raw_hwid, 0x04, "hwID")
                if len(hwid) not in HWID_SIZES:
                    hwid, hwid_error = None, f"hwID is {len(hwid)} bytes, expected 64 or 8"
            raw_csp = _extension_bytes(cert, OID_CSP_ID)
            if raw_csp is not None:
                csp_id = _der_tlv(raw_csp, 0x16, "csp_id").decode("ascii", "replace")
        except (ValueError, x509.DuplicateExtension) as exc:
            hwid_error = str(exc)
        return cls(
            cert=cert,
            role=role[0],
            product_name=product_name,
            tcb=MappingProxyType(tcb),
            tcb_errors=MappingProxyType(errors),
            hwid=hwid,
            hwid_error=hwid_error,
            csp_id=csp_id,
        )


def _validity_problem(cert: x509.Certificate, now: datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc.isoformat()}"
    if now > cert.not_valid_after_utc:
        return f"expired at {cert.not_valid_after_utc.isoformat()}"
    return None


def _not_a_ca(cert: x509.Certificate) -> str | None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return "has no usable basicConstraints extension"
    return None if constraints.ca else "is not a CA certificate (basicConstraints CA:false)"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """None when ``issuer`` signed ``cert`` with RSASSA-PSS/SHA-384, else what is wrong."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        return (
            f"signed with {cert.signature_algorithm_oid.dotted_string}, AMD signs with RSASSA-PSS"
        )
    try:
        hash_algorithm = cert.signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm) as exc:
        # Malformed or unknown RSASSA-PSS parameters (decoded only when asked for).
        return f"RSASSA-PSS parameters are unreadable ({exc})"
    if not isinstance(hash_algorithm, hashes.SHA384):
        return "RSASSA-PSS signature does not use SHA-384"
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return f"signature does not verify under {common_name(issuer)}"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"not issued by {common_name(issuer)} ({exc})"
    return None


def check_chain(
    leaf: EndorsementKey,
    roots: ProductRoots,
    supplied: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> list[Check]:
    """Check leaf <- ASK/ASVK <- ARK for one product: pinned ARK, signatures and validity."""
    vlek = leaf.role is KeyRole.VLEK
    mid_role = KeyRole.ASVK if vlek else KeyRole.ASK
    mid_name = f"snp.{mid_role.value}"
    leaf_name = f"snp.{leaf.role.value}.chain"
    product = roots.product.value
    checks: list[Check] = []

    supplied_ark = [c for c in supplied if (classify(c) or (None,))[0] is KeyRole.ARK]
    supplied_mid = [c for c in supplied if (classify(c) or (None,))[0] is mid_role]

    # The ARK: only the pinned one is trusted; a supplied ARK must be that same certificate.
    ark = roots.ark
    ark_problem = _validity_problem(ark, now) or _not_a_ca(ark) or _signed_by(ark, ark)
    foreign = [c for c in supplied_ark if c != ark]
    if foreign:
        checks.append(
            Check.failed(
                "snp.ark",
                f"the evidence carries ARK CN={common_name(foreign[0])!r}, which is not the "
                f"pinned AMD root for {product}",
                expected=ark.fingerprint(hashes.SHA256()).hex(),
                got=foreign[0].fingerprint(hashes.SHA256()).hex(),
            )
        )
    elif ark_problem:
        checks.append(Check.failed("snp.ark", f"pinned ARK-{product} is unusable: {ark_problem}"))
    else:
        checks.append(
            Check.passed("snp.ark", f"pinned ARK-{product}, self-signed, within its validity")
        )

    # The intermediate: the supplied one if any (it must chain to the pinned ARK), else ours.
    pinned_mid = roots.asvk if vlek else roots.ask
    candidates = supplied_mid or ([pinned_mid] if pinned_mid is not None else [])
    mid: x509.Certificate | None = None
    if not candidates:
        checks.append(
            Check.failed(
                mid_name,
                f"no {mid_role.value.upper()} for {product}: the evidence carries none and none "
                f"is pinned; pass roots that include the AMD {mid_role.value.upper()}",
            )
        )
    elif len(candidates) > 1:
        checks.append(
            Check.failed(mid_name, f"the evidence carries {len(candidates)} {mid_role.value}s")
        )
    else:
        mid = candidates[0]
        source = "supplied" if supplied_mid else "pinned"
        identity = None
        if classify(mid) != (mid_role, roots.product):
            identity = f"is not the {mid_role.value.upper()} of {product}"
        problem = identity or _not_a_ca(mid) or _validity_problem(mid, now) or _signed_by(mid, ark)
        if problem:
            checks.append(Check.failed(mid_name, f"{source} CN={common_name(mid)!r} {problem}"))
            mid = None
        else:
            checks.append(
                Check.passed(
                    mid_name,
                    f"{source} {common_name(mid)} is signed by ARK-{product} "
                    "(RSASSA-PSS/SHA-384) and within its validity",
                )
            )

    problem = _validity_problem(leaf.cert, now)
    if mid is None:
        checks.append(
            Check.failed(
                leaf_name,
                f"cannot check the {leaf.role.value.upper()}: no trusted "
                f"{mid_role.value.upper()} to check it against",
            )
        )
    else:
        problem = _signed_by(leaf.cert, mid) or problem
        if problem:
            checks.append(Check.failed(leaf_name, f"{leaf.role.value.upper()}: {problem}"))
        else:
            checks.append(
                Check.passed(
                    leaf_name,
                    f"{leaf.role.value.upper()} is signed by {common_name(mid)} "
                    "(RSASSA-PSS/SHA-384) and within its validity",
                )
            )
    return checks
