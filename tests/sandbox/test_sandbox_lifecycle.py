"""A sandbox goes the whole way: attest, key release, sealed model load, configure, train."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest

from crypto.identity import Identity
from enclave._proto import sandbox_pb2
from enclave.attest import (
    AllowedMeasurement,
    CheckStatus,
    EvidenceKind,
    ReleasePolicy,
    new_nonce,
    report_data_for,
    runtime_measurement,
    verify,
)
from enclave.sandbox import IsolationMode, checkout_roots, measure
from fedtune.sandbox_client import SandboxCallError, plain_delta

from ._support import MODEL_NAME, RECORDS, ProviderSide, Trained, simulated_policy

REPO = Path(__file__).resolve().parents[2]


def _safetensors_counts(path: Path) -> tuple[int, int]:
    """(tensor count, parameter count) read from the safetensors header directly."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    table = json.loads(raw[8 : 8 + length])
    shapes = [v["shape"] for k, v in table.items() if k != "__metadata__"]
    return len(shapes), sum(math.prod(s) for s in shapes)


def test_flow_loads_the_sealed_model_then_trains_and_evaluates(
    trained: Trained, provider_side: ProviderSide
) -> None:
    status = trained.running.client.status()
    summary = status.model
    assert summary is not None
    tensors, params = _safetensors_counts(provider_side.model_dir / "model.safetensors")
    assert (summary.tensor_count, summary.parameter_count) == (tensors, params)
    assert (summary.model_type, summary.architecture) == ("bert", "BertModel")
    assert summary.provider_fingerprint == provider_side.identity.fingerprint
    assert summary.data_key_id == provider_side.key.key_id

    configured = trained.configured
    total = sum(len(texts) for texts in RECORDS.values())
    assert configured.train_examples + configured.eval_examples == total
    assert configured.eval_examples >= len(RECORDS)  # every label on both sides
    assert configured.adapter_fingerprint.startswith("sha256:")

    result = trained.trained
    assert result.round == 1
    assert result.num_examples == configured.train_examples
    assert result.metrics["steps"] == math.ceil(configured.train_examples / 4)
    assert all(math.isfinite(v) for v in result.metrics.values())

    before = trained.before
    assert before.num_examples == configured.eval_examples
    assert set(before.metrics) >= {"loss", "accuracy", "macro_f1"}
    # An untrained classification head over three labels starts near ln 3.
    assert abs(before.metrics["loss"] - math.log(3)) < 0.3


def test_status_tracks_the_phase_and_rounds(trained: Trained) -> None:
    status = trained.running.client.status()
    assert status.phase == "configured"
    assert status.session_id == "sandbox-test-session"
    assert status.aggregation == "secagg"
    assert status.rounds_trained >= 1
    assert status.secrets == ("model-data-key",)
    assert status.isolation.mode is IsolationMode.BUBBLEWRAP


def test_a_round_cannot_be_trained_twice(trained: Trained) -> None:
    with pytest.raises(SandboxCallError) as caught:
        trained.running.client.train(1)
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.error_type == "RoundError"


def test_requests_for_another_session_are_refused(trained: Trained) -> None:
    client = trained.running.client
    before = client.status()
    for call in (lambda: client.train(before.last_round + 1, session_id="another-session"),
                 lambda: client.evaluate(session_id="another-session"),
                 # Sent as raw bytes, the way the Flower relay forwards requests.
                 lambda: client.relay("ExportUpdate", sandbox_pb2.SandboxExportUpdateRequest(
                     ckks=sandbox_pb2.SandboxCkksExport(round=before.last_round)
                 ).SerializeToString())):
        with pytest.raises(SandboxCallError) as caught:
            call()
        assert (caught.value.code, caught.value.error_type) == (
            grpc.StatusCode.PERMISSION_DENIED, "WrongSession")
    assert client.status().last_round == before.last_round


def test_no_round_beyond_the_signed_rounds(trained: Trained) -> None:
    client = trained.running.client
    assert client.status().rounds == 20
    with pytest.raises(SandboxCallError) as caught:
        client.train(21)
    assert caught.value.error_type == "RoundError"
    assert "no more rounds" in caught.value.message


def test_a_zero_delta_is_the_initial_adapter_and_a_delta_moves_it(trained: Trained) -> None:
    client = trained.running.client
    length = trained.configured.adapter_length
    initial = client.evaluate()
    same = client.evaluate(plain_delta(np.zeros(length, dtype=np.float32)))
    assert same.metrics == initial.metrics
    moved = client.evaluate(plain_delta(np.full(length, 0.05, dtype=np.float32)))
    assert moved.metrics["loss"] != initial.metrics["loss"]
    with pytest.raises(SandboxCallError) as caught:
        client.evaluate(plain_delta(np.zeros(length + 1, dtype=np.float32)))
    assert caught.value.error_type == "AdapterSourceError"


def test_reported_measurement_is_the_one_computed_outside(trained: Trained) -> None:
    outside = runtime_measurement()
    assert trained.running.handle.measurement == outside
    assert trained.running.client.status().measurement == outside
    attested = trained.running.client.attest(new_nonce())
    assert attested.measurement == outside
    assert attested.evidence.claims is not None
    assert attested.evidence.claims.measurements["measurement"] == outside
    # ... and the one an owner reproduces from the checkout (fedtune sandbox measure).
    assert measure(checkout_roots(REPO)).digest == outside


def test_evidence_passes_a_pinned_simulated_policy_and_fails_a_production_one(
    trained: Trained, provider_side: ProviderSide, platform_key: Identity
) -> None:
    provider = provider_side.identity
    client = trained.running.client
    nonce = new_nonce()
    attested = client.attest(nonce)
    binding = report_data_for(nonce, attested.ephemeral_public_key)
    trusted = [provider.public]

    dev = simulated_policy(provider, platform_key, runtime_measurement())
    verdict = verify(attested.evidence, dev, binding, trusted_policy_issuers=trusted)
    assert verdict.ok, verdict.failures

    production = ReleasePolicy(
        name=MODEL_NAME, version=2, issuer=provider.fingerprint, issued_at=datetime.now(UTC),
        allowed_kinds=[EvidenceKind.SEV_SNP],
        allowed_measurements=[AllowedMeasurement(kind=EvidenceKind.SEV_SNP,
                                                 values={"measurement": bytes(48)})],
    ).sign(provider)
    refused = verify(attested.evidence, production, binding, trusted_policy_issuers=trusted)
    failed = {c.name for c in refused.failures}
    assert not refused.ok
    assert {"policy.kind", "policy.simulated"} <= failed

    other_build = simulated_policy(provider, platform_key, bytes(48))
    refused = verify(attested.evidence, other_build, binding, trusted_policy_issuers=trusted)
    assert {c.name for c in refused.failures} == {"policy.measurement"}

    replay = verify(attested.evidence, dev, report_data_for(new_nonce(),
                                                            attested.ephemeral_public_key),
                    trusted_policy_issuers=trusted)
    assert {c.name for c in replay.failures} == {"policy.report_data"}

    foreign_platform = simulated_policy(provider, Identity.generate(), runtime_measurement())
    refused = verify(attested.evidence, foreign_platform, binding, trusted_policy_issuers=trusted)
    assert "simulated.platform_key" in {c.name for c in refused.failures}


def test_every_attest_binds_the_same_ephemeral_key_to_a_new_nonce(trained: Trained) -> None:
    client = trained.running.client
    first, second = client.attest(new_nonce()), client.attest(new_nonce())
    assert first.ephemeral_public_key == second.ephemeral_public_key
    assert first.evidence.claims is not None and second.evidence.claims is not None
    assert first.evidence.claims.report_data != second.evidence.claims.report_data
    with pytest.raises(SandboxCallError) as caught:
        client.attest(b"short")
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.error_type == "InvalidRequest"
    # The ephemeral key is the hybrid post-quantum KEM by default.
    from crypto.hpke import Kem, RecipientPublicKey

    assert RecipientPublicKey.from_bytes(first.ephemeral_public_key).kem is Kem.MLKEM768_X25519
    assert first.evidence.kind.value == "simulated"
    statuses = {c.status for c in verify(first.evidence).checks}
    assert CheckStatus.FAILED in statuses  # no pinned platform key: authenticity alone fails
