"""AMD SEV-SNP attestation reports (SEV-SNP Firmware ABI spec 56860): layout, parsing, verification.

Section and table references are to AMD's "SEV Secure Nested Paging Firmware ABI Specification"
(publication 56860). Table numbers move between revisions: ATTESTATION_REPORT is Table 21 in
rev 1.51-1.55 and Table 23 from rev 1.57; the names below are the spec's own.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from enclave.attest.amd_certs import (
    TCB_EXTENSION_NAMES,
    AmdProduct,
    AmdRoots,
    EndorsementKey,
    KeyRole,
    check_chain,
    classify,
    load_certificate,
    pinned_roots,
)
from enclave.attest.evidence import Claims, Evidence, EvidenceKind
from enclave.attest.verdict import Check
from enclave.errors import MalformedEvidence

# --- ATTESTATION_REPORT structure (§7.3 "Attestation", Table 21/23) ---------------------------
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0  # the signature covers bytes 0x000-0x29F
SUPPORTED_VERSIONS = (2, 3, 5)

OFF_VERSION = 0x000  # u32 VERSION
OFF_GUEST_SVN = 0x004  # u32 GUEST_SVN
OFF_POLICY = 0x008  # u64 POLICY (guest policy, §4.3)
OFF_FAMILY_ID = 0x010  # 16 FAMILY_ID
OFF_IMAGE_ID = 0x020  # 16 IMAGE_ID
OFF_VMPL = 0x030  # u32 VMPL
OFF_SIGNATURE_ALGO = 0x034  # u32 SIGNATURE_ALGO
OFF_CURRENT_TCB = 0x038  # u64 CURRENT_TCB (TCB_VERSION, §2.2)
OFF_PLATFORM_INFO = 0x040  # u64 PLATFORM_INFO
OFF_KEY_INFO = 0x048  # u32 bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY
RSVD_KEY_INFO = (0x04C, 0x050)  # reserved, must be zero
OFF_REPORT_DATA = 0x050  # 64 REPORT_DATA
OFF_MEASUREMENT = 0x090  # 48 MEASUREMENT
OFF_HOST_DATA = 0x0C0  # 32 HOST_DATA
OFF_ID_KEY_DIGEST = 0x0E0  # 48 ID_KEY_DIGEST
OFF_AUTHOR_KEY_DIGEST = 0x110  # 48 AUTHOR_KEY_DIGEST
OFF_REPORT_ID = 0x140  # 32 REPORT_ID
OFF_REPORT_ID_MA = 0x160  # 32 REPORT_ID_MA
OFF_REPORTED_TCB = 0x180  # u64 REPORTED_TCB: the TCB the VCEK was derived from
OFF_CPUID_FAM_ID = 0x188  # u8 CPUID_FAM_ID (version 3 and later; reserved in version 2)
OFF_CPUID_MOD_ID = 0x189  # u8 CPUID_MOD_ID (version 3 and later)
OFF_CPUID_STEP = 0x18A  # u8 CPUID_STEP (version 3 and later)
RSVD_CPUID_V2 = (0x188, 0x1A0)  # version 2: reserved, must be zero
RSVD_CPUID_V3 = (0x18B, 0x1A0)  # version 3+: reserved, must be zero
OFF_CHIP_ID = 0x1A0  # 64 CHIP_ID (zero when MASK_CHIP_ID is set)
OFF_COMMITTED_TCB = 0x1E0  # u64 COMMITTED_TCB
OFF_CURRENT_BUILD = 0x1E8  # u8 CURRENT_BUILD
OFF_CURRENT_MINOR = 0x1E9  # u8 CURRENT_MINOR
OFF_CURRENT_MAJOR = 0x1EA  # u8 CURRENT_MAJOR
RSVD_CURRENT = (0x1EB, 0x1EC)  # reserved, must be zero
OFF_COMMITTED_BUILD = 0x1EC  # u8 COMMITTED_BUILD
OFF_COMMITTED_MINOR = 0x1ED  # u8 COMMITTED_MINOR
OFF_COMMITTED_MAJOR = 0x1EE  # u8 COMMITTED_MAJOR
RSVD_COMMITTED = (0x1EF, 0x1F0)  # reserved, must be zero
OFF_LAUNCH_TCB = 0x1F0  # u64 LAUNCH_TCB
OFF_LAUNCH_MIT_VECTOR = 0x1F8  # u64 LAUNCH_MIT_VECTOR (version 5 and later)
OFF_CURRENT_MIT_VECTOR = 0x200  # u64 CURRENT_MIT_VECTOR (version 5 and later)
RSVD_TAIL_V2 = (0x1F8, 0x2A0)  # versions 2-3: reserved, must be zero
RSVD_TAIL_V5 = (0x208, 0x2A0)  # version 5: reserved, must be zero
OFF_SIGNATURE = 0x2A0  # 512 SIGNATURE

# --- Signature format (§10 "ECDSA P-384 with SHA-384" signature): r and s little-endian ---
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
SIG_COMPONENT_SIZE = 0x48  # R at 0x00, S at 0x48, 72 bytes each, zero-extended
RSVD_SIGNATURE = (OFF_SIGNATURE + 2 * SIG_COMPONENT_SIZE, REPORT_SIZE)
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)

# --- Guest policy bits (§4.3 "Guest Policy") ---
POLICY_ABI_MINOR_MASK = 0xFF
POLICY_ABI_MAJOR_SHIFT = 8
POLICY_SMT_BIT = 16
POLICY_RESERVED_ONE_BIT = 17  # reserved, must be one
POLICY_MIGRATE_MA_BIT = 18
POLICY_DEBUG_BIT = 19
POLICY_SINGLE_SOCKET_BIT = 20
POLICY_HIGHEST_DEFINED_BIT = 25  # CXL_ALLOW .. PAGE_SWAP_DISABLE (rev 1.57); 63:26 reserved

# --- KEY_INFO (offset 0x48) ---
KEY_INFO_AUTHOR_KEY_EN = 1 << 0
KEY_INFO_MASK_CHIP_KEY = 1 << 1
SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1
SIGNING_KEY_NONE = 7


@dataclass(frozen=True)
class SnpReport:
    """An ATTESTATION_REPORT read field by field; integers already converted from little-endian."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    key_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: int
    current_version: tuple[int, int, int]  # (major, minor, build)
    committed_version: tuple[int, int, int]
    launch_tcb: int
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int

    @property
    def signed_bytes(self) -> bytes:
        """The bytes the AMD secure processor signed (0x000-0x29F)."""
        return self.raw[:SIGNED_SIZE]

    @property
    def debug(self) -> bool:
        """POLICY.DEBUG: the hypervisor may read and write guest memory."""
        return bool(self.policy >> POLICY_DEBUG_BIT & 1)

    @property
    def migrate_ma(self) -> bool:
        """POLICY.MIGRATE_MA: a migration agent may be associated with the guest."""
        return bool(self.policy >> POLICY_MIGRATE_MA_BIT & 1)

    @property
    def signing_key(self) -> int:
        """KEY_INFO.SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none."""
        return self.key_info >> 2 & 0x7

    @property
    def mask_chip_key(self) -> bool:
        """KEY_INFO.MASK_CHIP_KEY: CHIP_ID is zeroed in this report."""
        return bool(self.key_info & KEY_INFO_MASK_CHIP_KEY)

    @property
    def product(self) -> AmdProduct | None:
        """The product line from CPUID_FAM_ID/CPUID_MOD_ID (version 3+), or None."""
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)


def _mbz(raw: bytes, span: tuple[int, int], name: str) -> None:
    lo, hi = span
    if any(raw[lo:hi]):
        raise MalformedEvidence(
            name, f"reserved bytes 0x{lo:03X}-0x{hi - 1:03X} must be zero, got {raw[lo:hi].hex()}"
        )


def parse_report(raw: bytes) -> SnpReport:
    """Parse an ATTESTATION_REPORT (versions 2, 3, 5); MalformedEvidence names a bad field."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("raw must be bytes")
    raw = bytes(raw)
    if len(raw) != REPORT_SIZE:
        raise MalformedEvidence(
            "report.size", f"an SEV-SNP report is {REPORT_SIZE} bytes, got {len(raw)}"
        )

    def u32(off: int) -> int:
        return struct.unpack_from("<I", raw, off)[0]

    def u64(off: int) -> int:
        return struct.unpack_from("<Q", raw, off)[0]

    version = u32(OFF_VERSION)
    if version not in SUPPORTED_VERSIONS:
        raise MalformedEvidence(
            "report.version",
            f"report version {version} is not one this verifier knows "
            f"({', '.join(map(str, SUPPORTED_VERSIONS))})",
        )
    policy = u64(OFF_POLICY)
    if not policy >> POLICY_RESERVED_ONE_BIT & 1:
        raise MalformedEvidence("report.policy", "guest policy bit 17 is reserved and must be one")
    if policy >> (POLICY_HIGHEST_DEFINED_BIT + 1):
        raise MalformedEvidence(
            "report.policy", f"guest policy 0x{policy:x} sets reserved bits 63:26"
        )
    signature_algo = u32(OFF_SIGNATURE_ALGO)
    if signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise MalformedEvidence(
            "report.signature_algo",
            f"signature algorithm {signature_algo} is unknown (1 = ECDSA P-384 with SHA-384)",
        )
    key_info = u32(OFF_KEY_INFO)
    if key_info >> 5:
        raise MalformedEvidence(
            "report.key_info", f"KEY_INFO 0x{key_info:x} sets reserved bits 31:5"
        )
    signing_key = key_info >> 2 & 0x7
    if signing_key not in (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK, SIGNING_KEY_NONE):
        raise MalformedEvidence("report.key_info", f"SIGNING_KEY {signing_key} is reserved")
    _mbz(raw, RSVD_KEY_INFO, "report.reserved.0x04C")

    has_cpuid = version >= 3
    _mbz(raw, RSVD_CPUID_V3 if has_cpuid else RSVD_CPUID_V2, "report.reserved.0x188")
    _mbz(raw, RSVD_CURRENT, "report.reserved.0x1EB")
    _mbz(raw, RSVD_COMMITTED, "report.reserved.0x1EF")
    has_mit = version >= 5
    _mbz(raw, RSVD_TAIL_V5 if has_mit else RSVD_TAIL_V2, "report.reserved.0x1F8")
    _mbz(raw, RSVD_SIGNATURE, "report.signature.reserved")

    sig = raw[OFF_SIGNATURE:]
    r = int.from_bytes(sig[:SIG_COMPONENT_SIZE], "little")
    s = int.from_bytes(sig[SIG_COMPONENT_SIZE : 2 * SIG_COMPONENT_SIZE], "little")
    for name, value in (("report.signature.r", r), ("report.signature.s", s)):
        if not 0 < value < _P384_ORDER:
            raise MalformedEvidence(name, "not in the range of a P-384 signature component")

    return SnpReport(
        raw=raw,
        version=version,
        guest_svn=u32(OFF_GUEST_SVN),
        policy=policy,
        family_id=raw[OFF_FAMILY_ID : OFF_FAMILY_ID + 16],
        image_id=raw[OFF_IMAGE_ID : OFF_IMAGE_ID + 16],
        vmpl=u32(OFF_VMPL),
        signature_algo=signature_algo,
        current_tcb=u64(OFF_CURRENT_TCB),
        platform_info=u64(OFF_PLATFORM_INFO),
        key_info=key_info,
        report_data=raw[OFF_REPORT_DATA : OFF_REPORT_DATA + 64],
        measurement=raw[OFF_MEASUREMENT : OFF_MEASUREMENT + 48],
        host_data=raw[OFF_HOST_DATA : OFF_HOST_DATA + 32],
        id_key_digest=raw[OFF_ID_KEY_DIGEST : OFF_ID_KEY_DIGEST + 48],
        author_key_digest=raw[OFF_AUTHOR_KEY_DIGEST : OFF_AUTHOR_KEY_DIGEST + 48],
        report_id=raw[OFF_REPORT_ID : OFF_REPORT_ID + 32],
        report_id_ma=raw[OFF_REPORT_ID_MA : OFF_REPORT_ID_MA + 32],
        reported_tcb=u64(OFF_REPORTED_TCB),
        cpuid_fam_id=raw[OFF_CPUID_FAM_ID] if has_cpuid else None,
        cpuid_mod_id=raw[OFF_CPUID_MOD_ID] if has_cpuid else None,
        cpuid_step=raw[OFF_CPUID_STEP] if has_cpuid else None,
        chip_id=raw[OFF_CHIP_ID : OFF_CHIP_ID + 64],
        committed_tcb=u64(OFF_COMMITTED_TCB),
        current_version=(
            raw[OFF_CURRENT_MAJOR],
            raw[OFF_CURRENT_MINOR],
            raw[OFF_CURRENT_BUILD],
        ),
        committed_version=(
            raw[OFF_COMMITTED_MAJOR],
            raw[OFF_COMMITTED_MINOR],
            raw[OFF_COMMITTED_BUILD],
        ),
        launch_tcb=u64(OFF_LAUNCH_TCB),
        launch_mit_vector=u64(OFF_LAUNCH_MIT_VECTOR) if has_mit else None,
        current_mit_vector=u64(OFF_CURRENT_MIT_VECTOR) if has_mit else None,
        signature_r=r,
        signature_s=s,
    )


def load_report(data: bytes) -> bytes:
    """Accept a report as raw binary or as hex text (whitespace ignored); return the raw bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("data must be bytes")
    data = bytes(data)
    if len(data) == REPORT_SIZE:
        return data
    text = b"".join(data.split())
    if text[:2].lower() == b"0x":
        text = text[2:]
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedEvidence(
            "report.size",
            f"neither a {REPORT_SIZE}-byte binary report nor hex text ({len(data)} bytes read)",
        ) from None
    if len(decoded) != REPORT_SIZE:
        raise MalformedEvidence(
            "report.size", f"hex text decodes to {len(decoded)} bytes, a report is {REPORT_SIZE}"
        )
    return decoded


# --- TCB_VERSION (§2.2 "TCB Version"): one byte per component, layout per product ---------
# Milan and Genoa: BOOT_LOADER, TEE, 4 reserved, SNP, MICROCODE.
# Turin (rev 1.58): FMC, BOOT_LOADER, TEE, SNP, 3 reserved, MICROCODE.
_TCB_BYTES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "legacy": MappingProxyType({"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7}),
        "turin": MappingProxyType({"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7}),
    }
)


def decode_tcb(raw: int, product: AmdProduct | None) -> dict[str, int]:
    """Split a TCB_VERSION into named security patch levels, in the product's byte layout."""
    layout = _TCB_BYTES["turin" if product is AmdProduct.TURIN else "legacy"]
    octets = raw.to_bytes(8, "little")
    return {name: octets[index] for name, index in layout.items()}


def product_from_cpuid(family: int | None, model: int | None) -> AmdProduct | None:
    """Map CPUID family/model (report version 3+) to a product line, per AMD's KDS naming."""
    if family is None or model is None:
        return None
    if family == 0x19:  # Zen 3 / Zen 4
        if model <= 0x0F:
            return AmdProduct.MILAN
        # Genoa (0x10-0x1F) and its Bergamo/Siena siblings (0xA0-0xAF) share Genoa's keys.
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return AmdProduct.GENOA
        return None
    if family == 0x1A:  # Zen 5
        return AmdProduct.TURIN if model <= 0x1F else None
    return None


def report_claims(report: SnpReport, product: AmdProduct | None) -> Claims:
    """The generic claims of a parsed report (names agreed with the policy evaluator)."""
    return Claims(
        measurements={"measurement": report.measurement},
        report_data=report.report_data,
        tcb=decode_tcb(report.reported_tcb, product),
        debug=report.debug,
        policy_bits=report.policy,
        platform_id=report.chip_id,
        signed_at=None,
        format_version=report.version,
    )


def parse_evidence_claims(raw: bytes) -> Claims:
    """Claims read from a report without verifying it (what a provider attaches to Evidence)."""
    report = parse_report(raw)
    return report_claims(report, report.product)


def _tcb_text(tcb: Mapping[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in tcb.items())


def _check_product(
    report: SnpReport, key: EndorsementKey, roots: AmdRoots
) -> tuple[AmdProduct | None, Check]:
    """Agree on one product line from the report's CPUID, the key's productName and its issuer."""
    sources: dict[str, AmdProduct] = {}
    if report.product is not None:
        sources["report CPUID"] = report.product
    elif report.cpuid_fam_id is not None:
        return None, Check.failed(
            "snp.product",
            f"CPUID family 0x{report.cpuid_fam_id:02x} model 0x{report.cpuid_mod_id:02x} is "
            "not a known SEV-SNP product line",
        )
    if key.product is not None:
        sources[f"{key.role.value.upper()} productName {key.product_name!r}"] = key.product
    issuer_cn = key.cert.issuer.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if issuer_cn:
        issuer_product = AmdProduct.from_name(
            str(issuer_cn[0].value).removeprefix("SEV-").removeprefix("VLEK-")
        )
        if issuer_product is not None:
            sources["issuer name"] = issuer_product
    found = set(sources.values())
    if not found:
        return None, Check.failed(
            "snp.product", "cannot tell the product line: no CPUID, productName or issuer name"
        )
    if len(found) > 1:
        detail = "; ".join(f"{where}: {p.value}" for where, p in sources.items())
        return None, Check.failed("snp.product", f"sources disagree on the product: {detail}")
    product = found.pop()
    if product not in roots:
        return product, Check.failed(
            "snp.product",
            f"{product.value} evidence, but no AMD root for {product.value} is trusted",
        )
    return product, Check.passed("snp.product", f"{product.value} (from {', '.join(sources)})")


def _check_signing_key(report: SnpReport, key: EndorsementKey) -> Check:
    expected = {SIGNING_KEY_VCEK: KeyRole.VCEK, SIGNING_KEY_VLEK: KeyRole.VLEK}.get(
        report.signing_key
    )
    if expected is None:
        return Check.failed("snp.signing_key", "the report is unsigned (SIGNING_KEY = none)")
    if key.role is not expected:
        return Check.failed(
            "snp.signing_key",
            "the report names one kind of signing key, the certificate is another",
            expected=expected.value.upper(),
            got=key.role.value.upper(),
        )
    return Check.passed("snp.signing_key", f"report signed by a {expected.value.upper()}")


def _check_signature(report: SnpReport, key: EndorsementKey) -> Check:
    public_key = key.cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP384R1
    ):
        return Check.failed("snp.signature", f"the {key.role.value.upper()} key is not ECDSA P-384")
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        public_key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return Check.failed(
            "snp.signature",
            f"the report's ECDSA P-384 signature does not verify under the "
            f"{key.role.value.upper()}: the report was altered or signed by another chip/TCB",
        )
    return Check.passed(
        "snp.signature",
        f"ECDSA P-384/SHA-384 over bytes 0x000-0x29F verifies under the {key.role.value.upper()}",
    )


def _check_tcb(report: SnpReport, key: EndorsementKey, product: AmdProduct | None) -> list[Check]:
    checks = []
    prefix = f"snp.{key.role.value}.tcb"
    reported = decode_tcb(report.reported_tcb, product)
    for name, value in reported.items():
        spelled = TCB_EXTENSION_NAMES[name]
        if name in key.tcb_errors:
            checks.append(Check.failed(f"{prefix}.{name}", key.tcb_errors[name]))
        elif key.tcb.get(name) != value:
            checks.append(
                Check.failed(
                    f"{prefix}.{name}",
                    f"the certificate's {spelled} differs from the report's REPORTED_TCB: "
                    "the key was issued for another TCB",
                    expected=str(value),
                    got=str(key.tcb.get(name)),
                )
            )
        else:
            checks.append(
                Check.passed(f"{prefix}.{name}", f"{spelled}={value} matches REPORTED_TCB")
            )
    return checks


def _check_hwid(report: SnpReport, key: EndorsementKey) -> Check:
    name = f"snp.{key.role.value}.hwid"
    if key.role is KeyRole.VLEK:
        return Check.not_applicable(
            name, f"a VLEK names a cloud provider ({key.csp_id or 'unnamed'}), not a chip"
        )
    if key.hwid_error:
        return Check.failed(name, key.hwid_error)
    if key.hwid is None:
        return Check.failed(name, "the VCEK has no hwID extension")
    if report.mask_chip_key:
        return Check.not_applicable(
            name, "the report's CHIP_ID is masked (MASK_CHIP_KEY), nothing to compare"
        )
    # Turin VCEKs name the chip by the first 8 bytes of CHIP_ID; the rest must be zero.
    width = len(key.hwid)
    matches = hmac.compare_digest(report.chip_id[:width], key.hwid) and not any(
        report.chip_id[width:]
    )
    if not matches:
        return Check.failed(
            name,
            "the VCEK was issued to another chip than the one in CHIP_ID",
            expected=report.chip_id.hex(),
            got=key.hwid.hex(),
        )
    return Check.passed(name, f"VCEK hwID equals CHIP_ID ({width} bytes)")


def verify_snp(
    evidence: Evidence, *, now: datetime, roots: AmdRoots | None = None
) -> tuple[Claims | None, list[Check]]:
    """Check an SEV-SNP report's authenticity: signature, VCEK/VLEK chain, TCB and chip binding.

    ``evidence.certificates`` holds the VCEK (or VLEK) and optionally the ASK/ASVK and ARK, DER,
    in any order; ``roots`` defaults to the AMD roots pinned in the package. Claims are parsed
    from ``evidence.raw``; ``evidence.claims`` is ignored. Raises MalformedEvidence when the
    report or a certificate does not parse.
    """
    if not isinstance(evidence, Evidence):
        raise TypeError("evidence must be an Evidence")
    if evidence.kind is not EvidenceKind.SEV_SNP:
        raise ValueError(f"verify_snp got {evidence.kind.value} evidence")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    trusted = pinned_roots() if roots is None else roots

    report = parse_report(evidence.raw)
    certs = [
        load_certificate(der, field=f"certificates[{i}]")
        for i, der in enumerate(evidence.certificates)
    ]
    leaves = [
        (i, c)
        for i, c in enumerate(certs)
        if (classify(c) or (None,))[0] in (KeyRole.VCEK, KeyRole.VLEK)
    ]
    if not leaves:
        claims = report_claims(report, report.product)
        return claims, [
            Check.failed(
                "snp.vcek.chain",
                "no VCEK or VLEK certificate came with the report; supply it (--vcek), e.g. "
                "from the guest's configfs-tsm auxblob or AMD's KDS",
            )
        ]
    if len(leaves) > 1:
        raise MalformedEvidence("certificates", "more than one VCEK/VLEK certificate supplied")
    index, leaf_cert = leaves[0]
    key = EndorsementKey.from_certificate(leaf_cert, field=f"certificates[{index}]")
    others: Sequence[x509.Certificate] = [c for i, c in enumerate(certs) if i != index]

    checks: list[Check] = [
        Check.passed(
            "snp.report",
            f"ATTESTATION_REPORT version {report.version}, {REPORT_SIZE} bytes, reserved "
            "fields zero",
        )
    ]
    product, product_check = _check_product(report, key, trusted)
    checks.append(product_check)
    checks.append(_check_signing_key(report, key))
    if product is not None and product in trusted:
        checks.extend(check_chain(key, trusted[product], others, now=now))
    else:
        checks.append(
            Check.failed(
                f"snp.{key.role.value}.chain",
                "no trusted AMD root to check the certificate chain against",
            )
        )
    checks.append(_check_signature(report, key))
    checks.extend(_check_tcb(report, key, product))
    checks.append(_check_hwid(report, key))
    return report_claims(report, product), checks
