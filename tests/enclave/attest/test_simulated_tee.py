"""The simulated TEE: per-install platform key, signed evidence, and its verifier."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime

import pytest

from crypto.identity import Identity
from enclave.attest import verify
from enclave.attest.evidence import EvidenceKind
from enclave.attest.measurement import runtime_measurement
from enclave.attest.simulated import (
    SIMULATED_WARNING,
    SimulatedTee,
    load_or_create_platform_key,
    parse_simulated,
    platform_key_path,
    verify_simulated,
)
from enclave.attest.verdict import CheckStatus
from enclave.errors import MalformedEvidence

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REPORT_DATA = bytes(range(64))


@pytest.fixture
def tee(tmp_path) -> SimulatedTee:
    return SimulatedTee(Identity.generate(), measurement=b"\x5a" * 48)


def test_platform_key_is_created_once_with_mode_0600(tmp_path):
    path = platform_key_path(tmp_path)
    assert path == tmp_path / "simulated-tee" / "platform.pem"
    first = SimulatedTee.load_or_create(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    second = SimulatedTee.load_or_create(tmp_path)
    assert first.public_key == second.public_key
    assert [p.name for p in path.parent.iterdir()] == ["platform.pem"]  # no temporaries left


def test_a_world_readable_platform_key_is_refused(tmp_path):
    path = platform_key_path(tmp_path)
    load_or_create_platform_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(Exception, match="chmod 600"):
        load_or_create_platform_key(path)


def test_measurement_is_the_runtime_measurement(tmp_path):
    tee = SimulatedTee.load_or_create(tmp_path)
    assert tee.measurement == runtime_measurement()
    evidence = tee.get_evidence(REPORT_DATA)
    assert evidence.claims.measurements == {"measurement": runtime_measurement()}


def test_evidence_verifies_with_the_pinned_key(tee):
    evidence = tee.get_evidence(REPORT_DATA, now=NOW)
    assert evidence.kind is EvidenceKind.SIMULATED
    claims, checks = verify_simulated(evidence, now=NOW, trusted_keys=[tee.public_key])
    assert [c.status for c in checks] == [CheckStatus.PASSED, CheckStatus.PASSED]
    assert claims.report_data == REPORT_DATA
    assert claims.signed_at == NOW
    assert claims.platform_id == tee.public_key.raw
    assert claims.debug is False and claims.tcb == {}
    # Also by fingerprint string.
    _, checks = verify_simulated(evidence, now=NOW, trusted_keys=[tee.public_key.fingerprint])
    assert all(c.status is CheckStatus.PASSED for c in checks)


def test_the_document_says_simulated(tee):
    document = json.loads(tee.get_evidence(REPORT_DATA, now=NOW).raw)
    assert document["report"]["simulated"] is True
    assert document["report"]["format"] == "fedtune.simulated-evidence/v1"


def test_unpinned_platform_key_fails(tee):
    evidence = tee.get_evidence(REPORT_DATA, now=NOW)
    verdict = verify(evidence, now=NOW)
    assert [c.name for c in verdict.failures] == ["simulated.platform_key"]
    assert "not pinned" in verdict.failures[0].reason
    assert SIMULATED_WARNING in verdict.warnings
    other = Identity.generate().public
    verdict = verify(evidence, now=NOW, simulated_platform_keys=[other])
    assert [c.name for c in verdict.failures] == ["simulated.platform_key"]


def _b64(data: bytes) -> str:
    # CanonicalModel's JSON carries bytes as URL-safe base64.
    return base64.urlsafe_b64encode(data).decode()


def _edit(raw: bytes, change) -> bytes:
    document = json.loads(raw)
    change(document)
    # Re-encode canonically so only the edited value differs.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["report"].update(measurement=_b64(bytes(48))),
        lambda d: d["report"].update(report_data=_b64(bytes(64))),
        lambda d: d["report"].update(timestamp="2030-01-01T00:00:00Z"),
        lambda d: d.update(signature=_b64(bytes(64))),
    ],
    ids=["measurement", "report_data", "timestamp", "signature"],
)
def test_tampered_evidence_fails_the_signature(tee, change):
    evidence = tee.get_evidence(REPORT_DATA, now=NOW)
    tampered = evidence.model_copy(update={"raw": _edit(evidence.raw, change)})
    verdict = verify(tampered, now=NOW, simulated_platform_keys=[tee.public_key])
    assert "simulated.signature" in {c.name for c in verdict.failures}


def test_swapped_platform_key_fails(tee):
    # Someone else's key named in the report: the signature no longer verifies under it, and
    # the key is not pinned.
    evidence = tee.get_evidence(REPORT_DATA, now=NOW)
    other = Identity.generate().public.raw
    raw = _edit(evidence.raw, lambda d: d["report"].update(platform_key=_b64(other)))
    verdict = verify(
        evidence.model_copy(update={"raw": raw}), now=NOW, simulated_platform_keys=[tee.public_key]
    )
    assert {"simulated.signature", "simulated.platform_key"} <= {c.name for c in verdict.failures}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "document"),
        (b'{"report":{},"signature":""}', "report.measurement"),
    ],
)
def test_malformed_evidence(raw, field):
    with pytest.raises(MalformedEvidence) as info:
        parse_simulated(raw)
    assert info.value.field == field


def test_non_canonical_encoding_is_refused(tee):
    raw = tee.get_evidence(REPORT_DATA, now=NOW).raw
    spaced = json.dumps(json.loads(raw), indent=1).encode()
    with pytest.raises(MalformedEvidence) as info:
        parse_simulated(spaced)
    assert info.value.field == "encoding"


def test_simulated_flag_cannot_be_false(tee):
    raw = _edit(
        tee.get_evidence(REPORT_DATA, now=NOW).raw, lambda d: d["report"].update(simulated=False)
    )
    with pytest.raises(MalformedEvidence) as info:
        parse_simulated(raw)
    assert info.value.field == "report.simulated"


@pytest.mark.parametrize(
    ("report_data", "error"),
    [(bytes(63), ValueError), (bytes(65), ValueError), ("x" * 64, TypeError)],
)
def test_get_evidence_validates_report_data(tee, report_data, error):
    with pytest.raises(error):
        tee.get_evidence(report_data)


def test_get_evidence_needs_an_aware_time(tee):
    with pytest.raises(TypeError):
        tee.get_evidence(REPORT_DATA, now=datetime(2025, 1, 1))
