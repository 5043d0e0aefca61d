"""Fixtures for the sandbox tests: the provider's sealed model, sandboxes at various phases."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.datakey import DataKey
from crypto.identity import Identity
from enclave.ml.modeldir import write_model_dir
from enclave.ml.tiny import tiny_bert_files
from enclave.sandbox import bubblewrap_problem
from fedtune.provider.seal import seal_model_dir

from ._support import (
    HIDDEN,
    MODEL_NAME,
    MODEL_SEED,
    MODEL_VERSION,
    ProviderSide,
    Running,
    Trained,
    install_and_load,
    signed_terms,
    start,
    stop,
)


@pytest.fixture(scope="session")
def require_bwrap() -> None:
    problem = bubblewrap_problem()
    if problem is not None:
        pytest.skip(f"needs a usable bubblewrap: {problem}")


@pytest.fixture(scope="session")
def provider_side(tmp_path_factory: pytest.TempPathFactory) -> ProviderSide:
    base = tmp_path_factory.mktemp("provider")
    identity = Identity.generate()
    model_dir = write_model_dir(
        tiny_bert_files(seed=MODEL_SEED, hidden_size=HIDDEN), base / "model"
    )
    artifact = seal_model_dir(
        model_dir, base / "sealed", name=MODEL_NAME, version=MODEL_VERSION,
        identity=identity, keys_dir=base / "keys",
    )
    raw = (model_dir / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    return ProviderSide(
        identity=identity,
        artifact=artifact,
        key=DataKey.load(artifact.key_path),
        model_dir=model_dir,
        weights=raw[8 + header_len :],
    )


@pytest.fixture(scope="session")
def platform_key() -> Identity:
    return Identity.generate()


@pytest.fixture
def fresh(
    tmp_path: Path, provider_side: ProviderSide, platform_key: Identity, require_bwrap: None
) -> Iterator[Running]:
    """A sandbox that has only started."""
    running = start(tmp_path, provider_side, platform_key)
    try:
        yield running
    finally:
        stop(running)


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    provider_side: ProviderSide,
    platform_key: Identity,
    require_bwrap: None,
) -> Iterator[Trained]:
    started_at = time.time()
    running = start(tmp_path_factory.mktemp("trained"), provider_side, platform_key)
    try:
        install_and_load(running, provider_side)
        configured = running.client.configure(
            signed_terms(provider_side.identity), train_file="train.jsonl"
        )
        before = running.client.evaluate()
        result = running.client.train(1)
        yield Trained(running, configured, before, result, started_at)
    finally:
        stop(running)
