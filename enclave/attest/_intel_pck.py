"""SGX extensions of Intel PCK certificates (Intel SGX PCK Certificate and CRL Profile, 1.3.5)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509

from enclave.attest import _der
from enclave.errors import MalformedEvidence

# Profile section 1.3.5: the extension and its members, under Intel's arc 1.2.840.113741.
SGX_EXTENSIONS_OID = "1.2.840.113741.1.13.1"
PPID_OID = SGX_EXTENSIONS_OID + ".1"
TCB_OID = SGX_EXTENSIONS_OID + ".2"
PCEID_OID = SGX_EXTENSIONS_OID + ".3"
FMSPC_OID = SGX_EXTENSIONS_OID + ".4"
SGX_TYPE_OID = SGX_EXTENSIONS_OID + ".5"
PLATFORM_INSTANCE_ID_OID = SGX_EXTENSIONS_OID + ".6"
CONFIGURATION_OID = SGX_EXTENSIONS_OID + ".7"
# Inside TCB: components 1..16 are TCB_OID.1 .. TCB_OID.16, then PCESVN and CPUSVN.
PCESVN_OID = TCB_OID + ".17"
CPUSVN_OID = TCB_OID + ".18"

TCB_COMPONENT_COUNT = 16
_FIELD = "pck.sgx_extensions"


class SgxType(IntEnum):
    """Profile table 'SGX Type': which SGX flavour the platform is."""

    STANDARD = 0
    SCALABLE = 1
    SCALABLE_WITH_INTEGRITY = 2


@dataclass(frozen=True)
class PckExtensions:
    """What a PCK certificate says about its platform: identity, TCB, FMSPC."""

    ppid: bytes
    tcb_components: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: SgxType
    platform_instance_id: bytes | None


def pck_extensions(certificate: x509.Certificate) -> PckExtensions:
    """Parse the SGX extensions of a PCK certificate; MalformedEvidence if absent or malformed."""
    try:
        extension = certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(SGX_EXTENSIONS_OID)
        )
    except x509.ExtensionNotFound:
        raise MalformedEvidence(_FIELD, "the PCK certificate has no SGX extensions") from None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise MalformedEvidence(_FIELD, "the SGX extensions did not come back as raw DER")
    return parse_sgx_extensions(value.value)


def parse_sgx_extensions(der: bytes) -> PckExtensions:
    """Parse the DER of the SGX extensions (a SEQUENCE of OID/value pairs)."""
    members = _pairs(_der.read_sequence(der, field=_FIELD), field=_FIELD)
    tcb = members.get(TCB_OID)
    if tcb is None:
        raise MalformedEvidence(_FIELD, "no TCB member")
    components, pce_svn, cpu_svn = _parse_tcb(tcb)
    sgx_type_value = _der.decode_integer(
        _required(members, SGX_TYPE_OID), field=f"{_FIELD}.sgx_type", tag=_der.ENUMERATED
    )
    try:
        sgx_type = SgxType(sgx_type_value)
    except ValueError:
        raise MalformedEvidence(
            f"{_FIELD}.sgx_type", f"unknown SGX type {sgx_type_value}"
        ) from None
    instance = members.get(PLATFORM_INSTANCE_ID_OID)
    return PckExtensions(
        ppid=_der.decode_octet_string(
            _required(members, PPID_OID), field=f"{_FIELD}.ppid", size=16
        ),
        tcb_components=components,
        pce_svn=pce_svn,
        cpu_svn=cpu_svn,
        pce_id=_der.decode_octet_string(
            _required(members, PCEID_OID), field=f"{_FIELD}.pce_id", size=2
        ),
        fmspc=_der.decode_octet_string(
            _required(members, FMSPC_OID), field=f"{_FIELD}.fmspc", size=6
        ),
        sgx_type=sgx_type,
        platform_instance_id=None
        if instance is None
        else _der.decode_octet_string(instance, field=f"{_FIELD}.platform_instance_id", size=16),
    )


def _parse_tcb(element: _der.Element) -> tuple[tuple[int, ...], int, bytes]:
    field = f"{_FIELD}.tcb"
    members = _pairs(_der.sequence_members(element, field=field, depth=1), field=field)
    components = []
    for index in range(1, TCB_COMPONENT_COUNT + 1):
        svn = _der.decode_integer(
            _required(members, f"{TCB_OID}.{index}"), field=f"{field}.comp{index:02d}_svn"
        )
        if not 0 <= svn <= 0xFF:
            raise MalformedEvidence(f"{field}.comp{index:02d}_svn", f"{svn} is not a byte")
        components.append(svn)
    pce_svn = _der.decode_integer(_required(members, PCESVN_OID), field=f"{field}.pce_svn")
    if not 0 <= pce_svn <= 0xFFFF:
        raise MalformedEvidence(f"{field}.pce_svn", f"{pce_svn} is not a 16-bit value")
    cpu_svn = _der.decode_octet_string(
        _required(members, CPUSVN_OID), field=f"{field}.cpu_svn", size=16
    )
    expected = {f"{TCB_OID}.{i}" for i in range(1, TCB_COMPONENT_COUNT + 1)}
    unknown = set(members) - expected - {PCESVN_OID, CPUSVN_OID}
    if unknown:
        raise MalformedEvidence(field, f"unexpected members {sorted(unknown)}")
    return tuple(components), pce_svn, cpu_svn


def _pairs(elements: list[_der.Element], *, field: str) -> dict[str, _der.Element]:
    """Map each ``SEQUENCE { OID, value }`` member to its value, refusing duplicates."""
    pairs: dict[str, _der.Element] = {}
    for element in elements:
        pair = _der.sequence_members(element, field=field, depth=2)
        if len(pair) != 2:
            raise MalformedEvidence(field, f"member with {len(pair)} parts, expected OID and value")
        oid = _der.decode_oid(pair[0], field=field)
        if oid in pairs:
            raise MalformedEvidence(field, f"duplicate member {oid}")
        pairs[oid] = pair[1]
    return pairs


def _required(members: dict[str, _der.Element], oid: str) -> _der.Element:
    try:
        return members[oid]
    except KeyError:
        raise MalformedEvidence(_FIELD, f"missing member {oid}") from None
