"""Test helpers: the real SEV-SNP vectors, and a stand-in AMD PKI that signs reports we lay out.

The stand-in PKI exists for what no public vector covers (version 3 and 5 reports, Genoa and
Turin TCB layouts, VLEK signing, a field wrong under a *valid* signature). It is built the way
AMD builds its own (RSASSA-PSS/SHA-384 certificates, ECDSA P-384 report signatures with
little-endian r and s, the KDS extension OIDs), and it is never trusted by default: tests pass
its roots explicitly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from enclave.attest.amd_certs import (
    OID_CSP_ID,
    OID_HWID,
    OID_PRODUCT_NAME,
    TCB_EXTENSION_OIDS,
    AmdProduct,
    ProductRoots,
)
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.snp import load_report

DATA = Path(__file__).resolve().parents[2] / "data" / "attestation" / "sev-snp"
# A time inside every real certificate's validity (VCEKs: 2022/2023 .. 2029/2030).
NOW = datetime(2025, 6, 1, tzinfo=UTC)

# Known answers read from the vectors' own documentation and their AMD-signed VCEKs.
VIRTEE_REPORT_DATA = bytes.fromhex(
    "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063"
    "fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
)
VIRTEE_MEASUREMENT = bytes.fromhex(
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480"
    "cd81841f"
)
GSG_MEASUREMENT = bytes.fromhex(
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2"
    "e4872b01"
)


def der_chain(pem_name: str) -> list[bytes]:
    """The certificates of a PEM file in tests/data, as DER."""
    certs = x509.load_pem_x509_certificates((DATA / pem_name).read_bytes())
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def gsg_evidence() -> Evidence:
    """go-sev-guest's sample: a v2 Milan report (debug guest) and its VCEK, no chain."""
    return Evidence(
        kind=EvidenceKind.SEV_SNP,
        raw=(DATA / "gsg-attestation.bin").read_bytes(),
        certificates=[(DATA / "gsg-vcek.der").read_bytes()],
    )


def virtee_evidence(*, chain: str | None = "virtee-cert-chain-milan.pem") -> Evidence:
    """virtee/sev's sample: a v2 Milan report (hex text), its VCEK and the ASK/ARK chain."""
    certs = [(DATA / "virtee-vcek-milan.der").read_bytes()]
    if chain:
        certs += der_chain(chain)
    return Evidence(
        kind=EvidenceKind.SEV_SNP,
        raw=load_report((DATA / "virtee-report-milan.hex").read_bytes()),
        certificates=certs,
    )


# --- the stand-in AMD PKI -------------------------------------------------------------------

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Stand-in for AMD"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    body = text.encode("ascii")
    return bytes([0x16, len(body)]) + body


def _der_octets(data: bytes) -> bytes:
    return bytes([0x04, len(data)]) + data


def _ca_cert(
    subject: str, issuer: str, key: rsa.RSAPrivateKey, signer: rsa.RSAPrivateKey
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2045, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA384(), rsa_padding=_PSS)
    )


@dataclass
class StandInAmd:
    """An ARK/ASK/ASVK for one product line, with their private keys."""

    product: AmdProduct
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    asvk_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate

    @classmethod
    def create(cls, product: AmdProduct) -> StandInAmd:
        keys = [rsa.generate_private_key(65537, 2048) for _ in range(3)]
        p = product.value
        ark = _ca_cert(f"ARK-{p}", f"ARK-{p}", keys[0], keys[0])
        ask = _ca_cert(f"SEV-{p}", f"ARK-{p}", keys[1], keys[0])
        asvk = _ca_cert(f"SEV-VLEK-{p}", f"ARK-{p}", keys[2], keys[0])
        return cls(product, keys[0], keys[1], keys[2], ark, ask, asvk)

    def roots(self, *, with_asvk: bool = True) -> dict[AmdProduct, ProductRoots]:
        return {
            self.product: ProductRoots(
                self.product, self.ark, self.ask, self.asvk if with_asvk else None
            )
        }

    def endorsement_key(
        self,
        tcb: dict[str, int],
        *,
        hwid: bytes | None,
        vlek: bool = False,
        product_name: str | None = None,
        hwid_raw: bool = False,
        not_after: datetime | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """A VCEK (or VLEK) with AMD's extensions; returns its key and DER certificate."""
        key = ec.generate_private_key(ec.SECP384R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VLEK" if vlek else "SEV-VCEK"))
            .issuer_name(
                _name(f"SEV-VLEK-{self.product.value}" if vlek else f"SEV-{self.product.value}")
            )
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2023, 1, 1, tzinfo=UTC))
            .not_valid_after(not_after or datetime(2030, 1, 1, tzinfo=UTC))
            .add_extension(
                x509.UnrecognizedExtension(
                    OID_PRODUCT_NAME, _der_ia5(product_name or f"{self.product.value}-B0")
                ),
                critical=False,
            )
        )
        for name, value in tcb.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(TCB_EXTENSION_OIDS[name], _der_int(value)),
                critical=False,
            )
        if hwid is not None:
            value = hwid if hwid_raw else _der_octets(hwid)
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_HWID, value), critical=False
            )
        if vlek:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_CSP_ID, _der_ia5("test-cloud")), critical=False
            )
        signer = self.asvk_key if vlek else self.ask_key
        cert = builder.sign(signer, hashes.SHA384(), rsa_padding=_PSS)
        return key, cert.public_bytes(serialization.Encoding.DER)


# CPUID (family, model) per product line, as a version 3+ report carries it.
CPUID = {
    AmdProduct.MILAN: (0x19, 0x01),
    AmdProduct.GENOA: (0x19, 0x11),
    AmdProduct.TURIN: (0x1A, 0x02),
}


def tcb_u64(product: AmdProduct, tcb: dict[str, int]) -> int:
    """Lay out named SPLs as a TCB_VERSION for ``product`` (ABI spec §2.2)."""
    if product is AmdProduct.TURIN:
        order = {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7}
    else:
        order = {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7}
    octets = bytearray(8)
    for name, index in order.items():
        octets[index] = tcb.get(name, 0)
    return int.from_bytes(octets, "little")


def build_report(
    *,
    version: int,
    product: AmdProduct,
    tcb: dict[str, int],
    report_data: bytes = bytes(64),
    measurement: bytes = b"\x11" * 48,
    chip_id: bytes = b"\xc1" * 64,
    policy: int = 0x30000,
    signing_key: int = 0,
    mask_chip_key: bool = False,
    cpuid: tuple[int, int] | None = None,
) -> bytearray:
    """An unsigned ATTESTATION_REPORT laid out per the ABI spec (offsets as in snp.py)."""
    raw = bytearray(0x4A0)
    raw_tcb = tcb_u64(product, tcb)
    struct.pack_into("<IIQ", raw, 0x000, version, 1, policy)
    struct.pack_into("<II", raw, 0x030, 0, 1)  # VMPL 0, ECDSA P-384 with SHA-384
    struct.pack_into("<QQ", raw, 0x038, raw_tcb, 0x1)  # CURRENT_TCB, PLATFORM_INFO (SMT)
    struct.pack_into("<I", raw, 0x048, (signing_key << 2) | (2 if mask_chip_key else 0))
    raw[0x050:0x090] = report_data
    raw[0x090:0x0C0] = measurement
    raw[0x140:0x160] = b"\x42" * 32
    raw[0x160:0x180] = b"\xff" * 32
    struct.pack_into("<Q", raw, 0x180, raw_tcb)
    if version >= 3:
        family, model = cpuid or CPUID[product]
        raw[0x188:0x18B] = bytes([family, model, 1])
    raw[0x1A0:0x1E0] = bytes(64) if mask_chip_key else chip_id
    struct.pack_into("<Q", raw, 0x1E0, raw_tcb)
    raw[0x1E8:0x1EB] = bytes([9, 55, 1])
    raw[0x1EC:0x1EF] = bytes([9, 55, 1])
    struct.pack_into("<Q", raw, 0x1F0, raw_tcb)
    if version >= 5:
        struct.pack_into("<QQ", raw, 0x1F8, 0x3, 0x7)
    return raw


def sign_report(raw: bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign bytes 0x000-0x29F and store r, s little-endian as the AMD secure processor does."""
    der = key.sign(bytes(raw[:0x2A0]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    raw[0x2A0:0x4A0] = bytes(0x200)
    raw[0x2A0:0x2E8] = r.to_bytes(72, "little")
    raw[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(raw)
