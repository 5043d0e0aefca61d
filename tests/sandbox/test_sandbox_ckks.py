"""CKKS sessions: the secret context is released like a key; updates leave encrypted."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crypto.ckks import (
    add_encrypted,
    decrypt_average,
    encrypt_update,
    generate_secret_context,
    public_context,
)
from crypto.datakey import DataKey
from crypto.identity import Identity
from crypto.seal import seal
from enclave.ml.modeldir import read_model_dir
from enclave.sandbox import CkksAggregates, SecretKind
from enclave.sandbox.training import TrainingSession
from fedtune.sandbox_client import SandboxCallError, plain_adapter

from ._support import (
    MODEL_ID,
    SESSION_ID,
    ProviderSide,
    Running,
    derived_terms,
    install_and_load,
    signed_terms,
    start,
    stop,
)

pytestmark = pytest.mark.slow


def _sealed(secret: bytes) -> tuple[DataKey, bytes]:
    key = DataKey.generate()
    out = io.BytesIO()
    seal(io.BytesIO(secret), out, key)
    return key, out.getvalue()


@pytest.fixture
def ckks_sandbox(
    tmp_path: Path, provider_side: ProviderSide, platform_key: Identity, require_bwrap: None
) -> Iterator[Running]:
    running = start(tmp_path, provider_side, platform_key)
    try:
        install_and_load(running, provider_side)
        yield running
    finally:
        stop(running)


def _refused(call, *args, **kwargs) -> SandboxCallError:
    with pytest.raises(SandboxCallError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_ckks_round_trip_through_the_sandbox(
    ckks_sandbox: Running, provider_side: ProviderSide
) -> None:
    client = ckks_sandbox.client
    secret = generate_secret_context()
    public = public_context(secret)

    # A public context is not what a sandbox needs to decrypt aggregates: refused.
    key, sealed = _sealed(public)
    wrapped = ckks_sandbox.broker.release(client, key.raw)
    error = _refused(client.install_key, SecretKind.CKKS_SECRET_CONTEXT, wrapped,
                     model_id=MODEL_ID, session_id=SESSION_ID, sealed_secret=sealed)
    assert error.error_type == "CkksContextError"

    key, sealed = _sealed(secret)
    wrapped = ckks_sandbox.broker.release(client, key.raw)
    client.install_key(SecretKind.CKKS_SECRET_CONTEXT, wrapped, model_id=MODEL_ID,
                       session_id=SESSION_ID, sealed_secret=sealed)
    assert set(client.status().secrets) == {"model-data-key", "ckks-secret-context"}

    change = {"aggregation": "ckks", "secagg_threshold": None}
    terms = derived_terms(provider_side.identity, **change)
    configured = client.configure(
        signed_terms(provider_side.identity, **change), train_file="train.jsonl"
    )
    first = client.train(1)
    blob = client.export_ckks(1)
    assert (blob.stage, blob.done) == ("ckks", True)
    assert not client.status().update_pending

    other = np.random.default_rng(3).normal(0, 0.01, configured.adapter_length)
    aggregate = add_encrypted(public, [
        blob.reply, encrypt_update(public, other, 5.0, max_weight=terms.max_weight,
                                   clip=terms.update_clip),
    ])
    average, total = decrypt_average(secret, aggregate, max_weight=terms.max_weight)

    session = TrainingSession(
        terms, read_model_dir(provider_side.model_dir), ckks_sandbox.data_dir,
        train_file="train.jsonl", eval_file=None,
        num_threads=max(1, len(os.sched_getaffinity(0))),
    )
    _, delta = session.train(1, session.initial)
    n = first.num_examples
    assert total == pytest.approx(n + 5.0, rel=1e-4)
    assert np.abs(average - (delta * n + other * 5.0) / (n + 5.0)).max() < 1e-5

    # The server never learns the global adapter in a CKKS session: plaintext is refused.
    error = _refused(client.train, 2, plain_adapter(np.zeros(configured.adapter_length)))
    assert error.error_type == "AdapterSourceError"
    error = _refused(client.train, 3, CkksAggregates(((2, aggregate),)))  # round 1 missing
    assert error.error_type == "AdapterSourceError"
    assert client.status().ckks_rounds_applied == 0

    moved = client.evaluate(CkksAggregates(((1, aggregate),)))
    assert client.status().ckks_rounds_applied == 1
    again = client.evaluate(CkksAggregates(((1, aggregate),)))  # applied once, not twice
    assert again.metrics == moved.metrics
    client.train(2, CkksAggregates(((1, aggregate),)))
    assert client.status().ckks_rounds_applied == 1
    assert _refused(client.export_ckks, 1).error_type == "RoundError"
    assert client.export_ckks(2).done
