"""Intel PCS collateral for TDX quotes: TCB info v3, QE identity v2, CRLs, TCB level matching."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from enclave.errors import MalformedEvidence

# The keys of the collateral JSON text: the shape of Phala's dcap-qvl QuoteCollateralV3
# (which mirrors Intel's sgx_ql_qve_collateral_t). ``tcb_info``/``qe_identity`` may also be
# a whole PCS response body ({"tcbInfo": ..., "signature": ...}), as text or as an object.
COLLATERAL_KEYS = frozenset(
    {
        "tcb_info",
        "tcb_info_signature",
        "tcb_info_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
        "qe_identity_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "pck_crl_issuer_chain",
    }
)

TDX_TCB_INFO_ID = "TDX"
TDX_TCB_INFO_VERSION = 3
TD_QE_IDENTITY_ID = "TD_QE"
QE_IDENTITY_VERSION = 2
SVN_COMPONENTS = 16
# Bound on the collateral text: real collateral is ~20 KB (PCK CRLs grow with revocations).
MAX_COLLATERAL_CHARS = 4 * 1024 * 1024


class TcbStatus(StrEnum):
    """TCB statuses of Intel's PCS (TCB info levels) and of the QVL's convergence rules."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    TD_RELAUNCH_ADVISED = "TDRelaunchAdvised"
    TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"
    REVOKED = "Revoked"
    # No TCB level matched the platform: Intel's STATUS_TCB_NOT_SUPPORTED.
    NOT_SUPPORTED = "NotSupported"


# Statuses a TCB info tcbLevel may carry, and those of TDX module / QE identity levels.
_LEVEL_STATUSES = frozenset(
    {
        TcbStatus.UP_TO_DATE,
        TcbStatus.SW_HARDENING_NEEDED,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        TcbStatus.OUT_OF_DATE,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.REVOKED,
    }
)
_IDENTITY_STATUSES = frozenset({TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE, TcbStatus.REVOKED})
_CONFIGURATION_NEEDED = frozenset(
    {
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    }
)


@dataclass(frozen=True)
class SignedDocument:
    """A PCS JSON body exactly as signed, its raw r||s ECDSA signature, and its issuer chain."""

    body: bytes
    signature: bytes
    issuer_chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class TcbLevel:
    """One tcbLevels entry of TDX TCB info v3."""

    sgx_components: tuple[int, ...]
    pce_svn: int
    tdx_components: tuple[int, ...]
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class IdentityTcbLevel:
    """One tcbLevels entry of a TDX module identity or of the QE identity (keyed by ISVSVN)."""

    isv_svn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TdxModuleIdentity:
    """The signer and attributes a TDX module must have, with its TCB levels when versioned."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    tcb_levels: tuple[IdentityTcbLevel, ...]


@dataclass(frozen=True)
class TcbInfo:
    """TDX TCB info v3 (Intel PCS API 'Get TDX TCB Info', tcbInfo body)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_evaluation_data_number: int
    tdx_module: TdxModuleIdentity
    tdx_module_identities: tuple[TdxModuleIdentity, ...]
    tcb_levels: tuple[TcbLevel, ...]


@dataclass(frozen=True)
class QeIdentity:
    """TD QE identity v2 (Intel PCS API 'Get TDX QE Identity', enclaveIdentity body)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isv_prod_id: int
    tcb_levels: tuple[IdentityTcbLevel, ...]


@dataclass(frozen=True)
class Collateral:
    """Parsed collateral; each part is None when the collateral text did not carry it."""

    tcb_info: TcbInfo | None
    tcb_info_document: SignedDocument | None
    qe_identity: QeIdentity | None
    qe_identity_document: SignedDocument | None
    root_ca_crl: x509.CertificateRevocationList | None
    pck_crl: x509.CertificateRevocationList | None
    pck_crl_issuer_chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class TcbEvaluation:
    """The converged TCB status of a platform and the advisories that explain it."""

    status: TcbStatus
    advisory_ids: tuple[str, ...]
    explanation: str


def parse_collateral(text: str) -> Collateral:
    """Parse collateral JSON text; MalformedEvidence names the part that is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"collateral must be str, not {type(text).__name__}")
    if len(text) > MAX_COLLATERAL_CHARS:
        raise MalformedEvidence("collateral", f"{len(text)} characters exceed the bound")
    try:
        # Signed bodies are compared as UTF-8 bytes; a lone surrogate has no such bytes.
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEvidence("collateral", f"not UTF-8 text: {exc.reason}") from None
    raw = _raw_members(text, field="collateral")
    unknown = set(raw) - COLLATERAL_KEYS
    if unknown:
        raise MalformedEvidence(
            "collateral",
            f"unknown keys {sorted(unknown)}; accepted: {sorted(COLLATERAL_KEYS)}",
        )
    values = {key: json.loads(value) for key, value in raw.items()}

    tcb_document = _signed_document(raw, values, "tcb_info", "tcbInfo")
    qe_document = _signed_document(raw, values, "qe_identity", "enclaveIdentity")
    return Collateral(
        tcb_info=None if tcb_document is None else _parse_tcb_info(tcb_document.body),
        tcb_info_document=tcb_document,
        qe_identity=None if qe_document is None else _parse_qe_identity(qe_document.body),
        qe_identity_document=qe_document,
        root_ca_crl=_crl(values, "root_ca_crl"),
        pck_crl=_crl(values, "pck_crl"),
        pck_crl_issuer_chain=_optional_chain(values, "pck_crl_issuer_chain"),
    )


def evaluate_tdx_tcb(
    tcb_info: TcbInfo,
    *,
    sgx_components: Sequence[int],
    pce_svn: int,
    tee_tcb_svn: bytes,
    tee_tcb_svn2: bytes | None,
    quote_version: int,
    qe_status: TcbStatus | None = None,
    qe_advisory_ids: Sequence[str] = (),
) -> TcbEvaluation:
    """Match the platform against the TCB levels and converge as Intel's QVL does (4.1.2.4.17)."""
    sgx_level: TcbLevel | None = None
    tdx_level: TcbLevel | None = None
    # Levels come sorted from the highest TCB down; the first that the platform meets wins.
    for level in tcb_info.tcb_levels:
        sgx_ok = all(a >= b for a, b in zip(sgx_components, level.sgx_components, strict=True))
        if not (sgx_ok and pce_svn >= level.pce_svn):
            continue
        if sgx_level is None:
            sgx_level = level
        if _tdx_components_meet(tee_tcb_svn, level):
            tdx_level = level
            break
    platform = (
        f"SGX TCB components {list(sgx_components)}, PCESVN {pce_svn}, "
        f"TEE_TCB_SVN {tee_tcb_svn.hex()}"
    )
    if sgx_level is None or tdx_level is None:
        which = "SGX" if sgx_level is None else "TDX"
        return TcbEvaluation(
            TcbStatus.NOT_SUPPORTED, (), f"no {which} TCB level matches the platform ({platform})"
        )

    module_status, module_level, module_note = _tdx_module_status(
        tcb_info, tee_tcb_svn, quote_version
    )
    if module_status == TcbStatus.NOT_SUPPORTED:
        return TcbEvaluation(TcbStatus.NOT_SUPPORTED, (), module_note)
    status = _converge(tdx_level.status, module_status)
    notes = [f"TCB level of {tdx_level.tcb_date.date()} is {tdx_level.status}", module_note]
    if status != TcbStatus.REVOKED and tee_tcb_svn2 is not None:
        relaunched = _relaunch(
            tee_tcb_svn2, tcb_info, sgx_level.status, status, module_status, qe_status
        )
        if relaunched != status:
            notes.append("TEE_TCB_SVN2 shows the platform was updated after this TD launched")
            status = relaunched
    if qe_status is not None:
        notes.append(f"QE TCB is {qe_status}")
        status = _converge(status, qe_status, qe=True)
    advisories: list[str] = []
    module_advisories = module_level.advisory_ids if module_level is not None else ()
    for advisory in (*tdx_level.advisory_ids, *module_advisories, *qe_advisory_ids):
        if advisory not in advisories:
            advisories.append(advisory)
    return TcbEvaluation(status, tuple(advisories), "; ".join(n for n in notes if n))


def module_identity_for(
    tcb_info: TcbInfo, tee_tcb_svn: bytes, quote_version: int
) -> TdxModuleIdentity | None:
    """The TDX module identity that applies to this quote (QVL 4.1.2.4.11), or None."""
    major = tee_tcb_svn[1]
    if quote_version <= 3 or major == 0:
        return tcb_info.tdx_module
    wanted = f"TDX_{major:02X}"
    for identity in tcb_info.tdx_module_identities:
        if identity.id.upper() == wanted:
            return identity
    return None


def qe_tcb_level(identity: QeIdentity, isv_svn: int) -> IdentityTcbLevel | None:
    """The QE identity TCB level the QE's ISVSVN meets (QVL 4.1.2.9.9); None: NotSupported."""
    for level in identity.tcb_levels:
        if isv_svn >= level.isv_svn:
            return level
    return None


def _tdx_components_meet(tee_tcb_svn: bytes, level: TcbLevel) -> bool:
    # QVL isTdxTcbHigherOrEqual: with a versioned TDX module (TEE_TCB_SVN[1] > 0) bytes 0 and
    # 1 are the module's ISVSVN and major version, judged by the module identity instead.
    start = 2 if tee_tcb_svn[1] > 0 else 0
    return all(tee_tcb_svn[i] >= level.tdx_components[i] for i in range(start, SVN_COMPONENTS))


def _tdx_module_status(
    tcb_info: TcbInfo, tee_tcb_svn: bytes, quote_version: int
) -> tuple[TcbStatus, IdentityTcbLevel | None, str]:
    # QVL checkTdxModuleTcbStatus.
    isv_svn, major = tee_tcb_svn[0], tee_tcb_svn[1]
    if quote_version > 3 and major == 0:
        return TcbStatus.UP_TO_DATE, None, ""
    wanted = f"TDX_{major:02X}"
    identity = module_identity_for(tcb_info, tee_tcb_svn, quote_version)
    if identity is None or identity is tcb_info.tdx_module:
        return TcbStatus.NOT_SUPPORTED, None, f"TCB info has no TDX module identity {wanted}"
    for level in identity.tcb_levels:
        if isv_svn >= level.isv_svn:
            note = f"TDX module {wanted} ISVSVN {isv_svn} is {level.status}"
            return level.status, level, note
    return TcbStatus.NOT_SUPPORTED, None, f"no {wanted} TCB level for module ISVSVN {isv_svn}"


def _converge(level: TcbStatus, other: TcbStatus, *, qe: bool = False) -> TcbStatus:
    # QVL convergeTcbStatusWithTdxModuleStatus / convergeTcbStatusWithQeTcbStatus.
    if other == TcbStatus.OUT_OF_DATE:
        if level in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE
        if level in (
            TcbStatus.CONFIGURATION_NEEDED,
            TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ):
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    if other == TcbStatus.REVOKED:
        return TcbStatus.REVOKED
    if qe and other == TcbStatus.NOT_SUPPORTED:
        return TcbStatus.NOT_SUPPORTED
    return level


def _relaunch(
    tee_tcb_svn2: bytes,
    tcb_info: TcbInfo,
    sgx_status: TcbStatus,
    tdx_status: TcbStatus,
    module_status: TcbStatus,
    qe_status: TcbStatus | None,
) -> TcbStatus:
    # QVL checkForRelaunch (TD report 1.5 only): the platform was updated while the TD ran,
    # so relaunching the TD would bring it up to date.
    if qe_status is not None and qe_status != TcbStatus.UP_TO_DATE:
        return tdx_status
    if sgx_status not in (
        TcbStatus.UP_TO_DATE,
        TcbStatus.SW_HARDENING_NEEDED,
        TcbStatus.CONFIGURATION_NEEDED,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ):
        return tdx_status
    if tdx_status not in (TcbStatus.OUT_OF_DATE, TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED):
        return tdx_status
    if module_status != TcbStatus.OUT_OF_DATE:
        return tdx_status
    latest = tcb_info.tcb_levels[0]
    if tee_tcb_svn2[1] == 0:
        module_ok = tee_tcb_svn2[0] >= latest.tdx_components[0]
    else:
        wanted = f"TDX_{tee_tcb_svn2[1]:02X}"
        identity = next((i for i in tcb_info.tdx_module_identities if i.id.upper() == wanted), None)
        if identity is None or not identity.tcb_levels:
            return tdx_status
        module_ok = tee_tcb_svn2[0] >= identity.tcb_levels[0].isv_svn
    if module_ok and tee_tcb_svn2[2] >= latest.tdx_components[2]:
        if sgx_status in _CONFIGURATION_NEEDED or tdx_status in _CONFIGURATION_NEEDED:
            return TcbStatus.TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return TcbStatus.TD_RELAUNCH_ADVISED
    return tdx_status


# --- parsing -------------------------------------------------------------------------------


def _raw_members(text: str, *, field: str) -> dict[str, str]:
    """Split a JSON object's text into its members' raw value texts, byte-exact.

    Intel signs the bytes of the ``tcbInfo``/``enclaveIdentity`` value as it was served, so
    the value must be cut out of the text, never re-serialised.
    """
    decoder = json.JSONDecoder()
    members: dict[str, str] = {}
    try:
        position = _skip_whitespace(text, 0)
        if text[position : position + 1] != "{":
            raise MalformedEvidence(field, "not a JSON object")
        position = _skip_whitespace(text, position + 1)
        if text[position : position + 1] == "}":
            position += 1
        else:
            while True:
                key, position = decoder.raw_decode(text, position)
                if not isinstance(key, str):
                    raise MalformedEvidence(field, "object key is not a string")
                position = _skip_whitespace(text, position)
                if text[position : position + 1] != ":":
                    raise MalformedEvidence(field, f"expected ':' after key {key!r}")
                position = _skip_whitespace(text, position + 1)
                _, end = decoder.raw_decode(text, position)
                if key in members:
                    raise MalformedEvidence(field, f"duplicate key {key!r}")
                members[key] = text[position:end]
                position = _skip_whitespace(text, end)
                separator = text[position : position + 1]
                position = _skip_whitespace(text, position + 1)
                if separator == "}":
                    break
                if separator != ",":
                    raise MalformedEvidence(field, f"expected ',' or '}}' after {key!r}")
        if text[position:].strip(" \t\n\r"):
            raise MalformedEvidence(field, "trailing text after the JSON object")
    except json.JSONDecodeError as exc:
        raise MalformedEvidence(field, f"invalid JSON: {exc.msg} at {exc.pos}") from None
    except ValueError as exc:
        # An integer past Python's digit limit (int_max_str_digits) is no collateral value.
        raise MalformedEvidence(field, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise MalformedEvidence(field, "invalid JSON: nested too deeply") from None
    return members


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\n\r":
        position += 1
    return position


def _signed_document(
    raw: dict[str, str], values: dict[str, Any], key: str, wrapper: str
) -> SignedDocument | None:
    signature_key, chain_key = f"{key}_signature", f"{key}_issuer_chain"
    if key not in raw:
        for dependent in (signature_key, chain_key):
            if dependent in raw:
                raise MalformedEvidence(f"collateral.{dependent}", f"given without {key}")
        return None
    value = values[key]
    body_text = value if isinstance(value, str) else raw[key]
    if not isinstance(value, str | dict):
        raise MalformedEvidence(f"collateral.{key}", "must be JSON text or a JSON object")
    members = _raw_members(body_text, field=f"collateral.{key}")
    if wrapper in members:
        # A whole PCS response body: {"<wrapper>": {...}, "signature": "<hex>"}.
        if set(members) != {wrapper, "signature"}:
            raise MalformedEvidence(
                f"collateral.{key}", f"expected members {wrapper!r} and 'signature'"
            )
        if signature_key in raw:
            raise MalformedEvidence(
                f"collateral.{signature_key}", f"{key} already carries its signature"
            )
        body = members[wrapper]
        signature_hex = json.loads(members["signature"])
    else:
        body = body_text
        if signature_key not in raw:
            raise MalformedEvidence(f"collateral.{signature_key}", "missing")
        signature_hex = values[signature_key]
    signature = _hex(signature_hex, f"collateral.{signature_key}", size=64)
    if chain_key not in raw:
        raise MalformedEvidence(f"collateral.{chain_key}", "missing: needed to check the signature")
    chain = _pem_chain(values[chain_key], f"collateral.{chain_key}")
    return SignedDocument(body=body.encode("utf-8"), signature=signature, issuer_chain=chain)


def _optional_chain(values: dict[str, Any], key: str) -> tuple[x509.Certificate, ...]:
    return () if key not in values else _pem_chain(values[key], f"collateral.{key}")


def readable_certificates(
    certificates: Sequence[x509.Certificate], field: str
) -> tuple[x509.Certificate, ...]:
    """The certificates, once their names and public keys decode; else MalformedEvidence."""
    # cryptography decodes the subject, issuer and key only when first asked; asking here
    # refuses a malformed certificate at the parser instead of deep inside a check.
    for index, certificate in enumerate(certificates):
        try:
            certificate.subject, certificate.issuer, certificate.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # TypeError: a name attribute of the wrong ASN.1 type for its OID.
            raise MalformedEvidence(f"{field}[{index}]", f"unreadable certificate: {exc}") from None
    return tuple(certificates)


def _pem_chain(value: Any, field: str) -> tuple[x509.Certificate, ...]:
    if not isinstance(value, str):
        raise MalformedEvidence(field, "must be PEM text")
    try:
        certificates = x509.load_pem_x509_certificates(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError, x509.InvalidVersion) as exc:
        raise MalformedEvidence(field, f"not a PEM certificate chain: {exc}") from None
    return readable_certificates(certificates, field)


def _crl(values: dict[str, Any], key: str) -> x509.CertificateRevocationList | None:
    if key not in values:
        return None
    value, field = values[key], f"collateral.{key}"
    if not isinstance(value, str):
        raise MalformedEvidence(field, "must be hex-encoded DER or PEM text")
    try:
        if value.lstrip().startswith("-----BEGIN"):
            crl = x509.load_pem_x509_crl(value.encode("ascii"))
        else:
            crl = x509.load_der_x509_crl(_hex(value, field))
        crl.issuer  # noqa: B018 - decoded lazily; a malformed name is refused here
    except (ValueError, TypeError, UnicodeEncodeError, x509.InvalidVersion) as exc:
        # InvalidVersion (a version other than v1/v2) is no ValueError; TypeError comes from
        # an issuer name attribute of the wrong ASN.1 type for its OID.
        raise MalformedEvidence(field, f"not a CRL: {exc}") from None
    return crl


def _parse_tcb_info(body: bytes) -> TcbInfo:
    field = "collateral.tcb_info"
    obj = _object(json.loads(body), field)
    info_id = _get(obj, "id", str, field)
    version = _get(obj, "version", int, field)
    if info_id != TDX_TCB_INFO_ID or version != TDX_TCB_INFO_VERSION:
        raise MalformedEvidence(
            field,
            f"TCB info id {info_id!r} version {version}, expected "
            f"{TDX_TCB_INFO_ID!r} version {TDX_TCB_INFO_VERSION} (TDX)",
        )
    module_obj = _object(_get(obj, "tdxModule", dict, field), f"{field}.tdxModule")
    identities = tuple(
        _module_identity(
            _object(item, f"{field}.tdxModuleIdentities[{i}]"), f"{field}.tdxModuleIdentities[{i}]"
        )
        for i, item in enumerate(
            _get(obj, "tdxModuleIdentities", list, field) if "tdxModuleIdentities" in obj else []
        )
    )
    levels = tuple(
        _tcb_level(_object(item, f"{field}.tcbLevels[{i}]"), f"{field}.tcbLevels[{i}]")
        for i, item in enumerate(_get(obj, "tcbLevels", list, field))
    )
    if not levels:
        raise MalformedEvidence(f"{field}.tcbLevels", "empty")
    return TcbInfo(
        id=info_id,
        version=version,
        issue_date=_date(_get(obj, "issueDate", str, field), f"{field}.issueDate"),
        next_update=_date(_get(obj, "nextUpdate", str, field), f"{field}.nextUpdate"),
        fmspc=_hex(_get(obj, "fmspc", str, field), f"{field}.fmspc", size=6),
        pce_id=_hex(_get(obj, "pceId", str, field), f"{field}.pceId", size=2),
        tcb_evaluation_data_number=_get(obj, "tcbEvaluationDataNumber", int, field),
        tdx_module=TdxModuleIdentity(
            id="tdxModule",
            mrsigner=_hex(
                _get(module_obj, "mrsigner", str, field), f"{field}.tdxModule.mrsigner", size=48
            ),
            attributes=_hex(
                _get(module_obj, "attributes", str, field), f"{field}.tdxModule.attributes", size=8
            ),
            attributes_mask=_hex(
                _get(module_obj, "attributesMask", str, field),
                f"{field}.tdxModule.attributesMask",
                size=8,
            ),
            tcb_levels=(),
        ),
        tdx_module_identities=identities,
        tcb_levels=levels,
    )


def _module_identity(obj: dict[str, Any], field: str) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        id=_get(obj, "id", str, field),
        mrsigner=_hex(_get(obj, "mrsigner", str, field), f"{field}.mrsigner", size=48),
        attributes=_hex(_get(obj, "attributes", str, field), f"{field}.attributes", size=8),
        attributes_mask=_hex(
            _get(obj, "attributesMask", str, field), f"{field}.attributesMask", size=8
        ),
        tcb_levels=_identity_levels(obj, field),
    )


def _tcb_level(obj: dict[str, Any], field: str) -> TcbLevel:
    tcb = _object(_get(obj, "tcb", dict, field), f"{field}.tcb")
    return TcbLevel(
        sgx_components=_components(
            _get(tcb, "sgxtcbcomponents", list, field), f"{field}.tcb.sgxtcbcomponents"
        ),
        pce_svn=_svn(_get(tcb, "pcesvn", int, field), f"{field}.tcb.pcesvn", 0xFFFF),
        tdx_components=_components(
            _get(tcb, "tdxtcbcomponents", list, field), f"{field}.tcb.tdxtcbcomponents"
        ),
        tcb_date=_date(_get(obj, "tcbDate", str, field), f"{field}.tcbDate"),
        status=_status(_get(obj, "tcbStatus", str, field), f"{field}.tcbStatus", _LEVEL_STATUSES),
        advisory_ids=_advisories(obj, field),
    )


def _identity_levels(obj: dict[str, Any], field: str) -> tuple[IdentityTcbLevel, ...]:
    levels = []
    for i, item in enumerate(_get(obj, "tcbLevels", list, field)):
        level_field = f"{field}.tcbLevels[{i}]"
        level = _object(item, level_field)
        tcb = _object(_get(level, "tcb", dict, level_field), f"{level_field}.tcb")
        levels.append(
            IdentityTcbLevel(
                isv_svn=_svn(
                    _get(tcb, "isvsvn", int, level_field), f"{level_field}.tcb.isvsvn", 0xFFFF
                ),
                tcb_date=_date(_get(level, "tcbDate", str, level_field), f"{level_field}.tcbDate"),
                status=_status(
                    _get(level, "tcbStatus", str, level_field),
                    f"{level_field}.tcbStatus",
                    _IDENTITY_STATUSES,
                ),
                advisory_ids=_advisories(level, level_field),
            )
        )
    if not levels:
        raise MalformedEvidence(f"{field}.tcbLevels", "empty")
    return tuple(levels)


def _parse_qe_identity(body: bytes) -> QeIdentity:
    field = "collateral.qe_identity"
    obj = _object(json.loads(body), field)
    identity_id = _get(obj, "id", str, field)
    version = _get(obj, "version", int, field)
    if identity_id != TD_QE_IDENTITY_ID or version != QE_IDENTITY_VERSION:
        raise MalformedEvidence(
            field,
            f"QE identity id {identity_id!r} version {version}, expected "
            f"{TD_QE_IDENTITY_ID!r} version {QE_IDENTITY_VERSION} (the TDX quoting enclave)",
        )
    return QeIdentity(
        id=identity_id,
        version=version,
        issue_date=_date(_get(obj, "issueDate", str, field), f"{field}.issueDate"),
        next_update=_date(_get(obj, "nextUpdate", str, field), f"{field}.nextUpdate"),
        tcb_evaluation_data_number=_get(obj, "tcbEvaluationDataNumber", int, field),
        miscselect=_hex(_get(obj, "miscselect", str, field), f"{field}.miscselect", size=4),
        miscselect_mask=_hex(
            _get(obj, "miscselectMask", str, field), f"{field}.miscselectMask", size=4
        ),
        attributes=_hex(_get(obj, "attributes", str, field), f"{field}.attributes", size=16),
        attributes_mask=_hex(
            _get(obj, "attributesMask", str, field), f"{field}.attributesMask", size=16
        ),
        mrsigner=_hex(_get(obj, "mrsigner", str, field), f"{field}.mrsigner", size=32),
        isv_prod_id=_svn(_get(obj, "isvprodid", int, field), f"{field}.isvprodid", 0xFFFF),
        tcb_levels=_identity_levels(obj, field),
    )


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvidence(field, "must be a JSON object")
    return value


def _get(obj: dict[str, Any], key: str, kind: type, field: str) -> Any:
    if key not in obj:
        raise MalformedEvidence(f"{field}.{key}", "missing")
    value = obj[key]
    # bool is an int in Python; JSON true is never an SVN.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedEvidence(f"{field}.{key}", f"must be {kind.__name__}")
    return value


def _components(items: list[Any], field: str) -> tuple[int, ...]:
    if len(items) != SVN_COMPONENTS:
        raise MalformedEvidence(field, f"{len(items)} components, expected {SVN_COMPONENTS}")
    return tuple(
        _svn(
            _get(_object(item, f"{field}[{i}]"), "svn", int, f"{field}[{i}]"),
            f"{field}[{i}].svn",
            0xFF,
        )
        for i, item in enumerate(items)
    )


def _svn(value: int, field: str, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise MalformedEvidence(field, f"{value} is outside 0..{maximum}")
    return value


def _status(value: str, field: str, allowed: frozenset[TcbStatus]) -> TcbStatus:
    try:
        status = TcbStatus(value)
    except ValueError:
        status = None
    if status not in allowed:
        raise MalformedEvidence(field, f"unknown TCB status {value!r}")
    return status  # type: ignore[return-value]


def _advisories(obj: dict[str, Any], field: str) -> tuple[str, ...]:
    items = obj.get("advisoryIDs", [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise MalformedEvidence(f"{field}.advisoryIDs", "must be a list of strings")
    return tuple(items)


def _date(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvidence(field, f"{value!r} is not an ISO 8601 date") from None
    if parsed.tzinfo is None:
        raise MalformedEvidence(field, f"{value!r} has no time zone")
    return parsed


def _hex(value: Any, field: str, *, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise MalformedEvidence(field, "must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise MalformedEvidence(field, "not hex") from None
    if size is not None and len(data) != size:
        raise MalformedEvidence(field, f"{len(data)} bytes, expected {size}")
    return data
