"""LoRA wrapping, the adapter vector codec, the seeded initial adapter and PEFT export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from peft import PeftModel

from enclave.ml.errors import AdapterMismatch, UnsupportedModel
from enclave.ml.lora import (
    AdapterSpec,
    LoraSettings,
    adapter_spec,
    add_lora,
    export_adapter,
    get_adapter_vector,
    set_adapter_vector,
)
from enclave.ml.model import build_model
from enclave.ml.modeldir import write_model_dir

LABELS = ["asyncio", "email", "xml"]
TEXTS = ["Return the payload of the message.", "Run the event loop until complete."]


def bert_lora(files, *, seed=3, rank=4):
    built = build_model(files, task="classification", labels=LABELS, seed=seed)
    return add_lora(
        built.model, LoraSettings(rank=rank, alpha=8), task="classification", seed=seed
    ), built.tokenizer


def base_state(model: PeftModel) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if ".lora_" not in name and ".modules_to_save." not in name
    }


def test_spec_lists_lora_matrices_and_head_in_name_order(bert_files):
    model, _ = bert_lora(bert_files)
    spec = adapter_spec(model)
    names = [t.name for t in spec.tensors]
    assert names == sorted(names)
    # 2 layers x (query, value), plus the pooler a BERT classifier reads.
    lora_modules = sorted(
        {n.split(".lora_")[0].removeprefix("base_model.model.") for n in names if ".lora_" in n}
    )
    assert lora_modules == [
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.0.attention.self.value",
        "bert.encoder.layer.1.attention.self.query",
        "bert.encoder.layer.1.attention.self.value",
        "bert.pooler.dense",
    ]
    assert sum(".lora_A." in n for n in names) == sum(".lora_B." in n for n in names) == 5
    assert [n for n in names if "modules_to_save" in n] == [
        "base_model.model.classifier.modules_to_save.default.bias",
        "base_model.model.classifier.modules_to_save.default.weight",
    ]
    # hidden 32, rank 4: 10 matrices of 4x32 (or 32x4) plus a 3x32 head and 3 biases.
    assert spec.size == 10 * 4 * 32 + 3 * 32 + 3
    assert all(t.dtype == "float32" for t in spec.tensors)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == names


def test_spec_and_initial_vector_identical_for_same_seed_across_builds(bert_files):
    a, _ = bert_lora(bert_files, seed=5)
    b, _ = bert_lora(bert_files, seed=5)
    c, _ = bert_lora(bert_files, seed=6)
    assert adapter_spec(a) == adapter_spec(b)
    assert adapter_spec(a).fingerprint == adapter_spec(c).fingerprint
    np.testing.assert_array_equal(get_adapter_vector(a), get_adapter_vector(b))
    assert not np.array_equal(get_adapter_vector(a), get_adapter_vector(c))
    assert adapter_spec(bert_lora(bert_files, rank=2)[0]).fingerprint != adapter_spec(a).fingerprint
    # The spec survives its canonical JSON encoding.
    spec = adapter_spec(a)
    assert AdapterSpec.model_validate_json(spec.canonical_bytes()) == spec


def test_initial_lora_is_a_no_op_with_peft_default_distribution(bert_files):
    model, tok = bert_lora(bert_files)
    for name, p in model.named_parameters():
        if ".lora_B." in name:
            assert torch.count_nonzero(p) == 0
        elif ".lora_A." in name:
            bound = 1 / math.sqrt(p.shape[1])
            assert float(p.detach().abs().max()) <= bound
            assert float(p.detach().abs().max()) > 0.8 * bound
    ids = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        adapted = model(**ids).logits
        with model.disable_adapter():
            base = model(**ids).logits
    torch.testing.assert_close(adapted, base, rtol=0, atol=0)


def test_set_changes_exactly_the_adapter_and_leaves_base_bit_identical(bert_files):
    model, _ = bert_lora(bert_files)
    before = base_state(model)
    spec = adapter_spec(model)
    vector = np.arange(spec.size, dtype=np.float32) / spec.size
    set_adapter_vector(model, vector)
    np.testing.assert_array_equal(get_adapter_vector(model), vector)
    after = base_state(model)
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    # Layout: the first tensor in spec order holds the first elements, row-major.
    first = spec.tensors[0]
    param = dict(model.named_parameters())[first.name]
    np.testing.assert_array_equal(param.detach().numpy().reshape(-1), vector[: first.size])


def test_set_refuses_wrong_vectors(bert_files):
    model, _ = bert_lora(bert_files)
    size = adapter_spec(model).size
    original = get_adapter_vector(model)
    with pytest.raises(AdapterMismatch, match="length"):
        set_adapter_vector(model, np.zeros(size - 1, dtype=np.float32))
    with pytest.raises(AdapterMismatch, match="length"):
        set_adapter_vector(model, np.zeros((1, size), dtype=np.float32))
    with pytest.raises(AdapterMismatch, match="dtype"):
        set_adapter_vector(model, np.zeros(size, dtype=np.float64))
    bad = np.zeros(size, dtype=np.float32)
    bad[7] = np.nan
    with pytest.raises(AdapterMismatch, match="finite"):
        set_adapter_vector(model, bad)
    with pytest.raises(TypeError):
        set_adapter_vector(model, [0.0] * size)
    np.testing.assert_array_equal(get_adapter_vector(model), original)


def test_export_loads_with_peft_from_pretrained(bert_files, llama_files, tmp_path):
    model, tok = bert_lora(bert_files, seed=9)
    rng = np.random.default_rng(0)
    set_adapter_vector(model, rng.normal(0, 0.1, adapter_spec(model).size).astype(np.float32))
    files = export_adapter(model, base_model_name="tiny-bert")
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads(files["adapter_config.json"])
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["pooler.dense", "query", "value"]
    assert config["base_model_name_or_path"] == "tiny-bert" and config["inference_mode"] is True
    write_model_dir(files, tmp_path / "adapter")

    # A fresh base with a different head seed: the exported head must override it.
    fresh = build_model(bert_files, task="classification", labels=LABELS, seed=99).model
    loaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    ids = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(**ids).logits, model.eval()(**ids).logits, rtol=0, atol=1e-6
        )

    built = build_model(llama_files, task="causal-lm", seed=1)
    lm = add_lora(built.model, LoraSettings(rank=2), task="causal-lm", seed=1)
    assert not any("modules_to_save" in t.name for t in adapter_spec(lm).tensors)
    set_adapter_vector(lm, rng.normal(0, 0.1, adapter_spec(lm).size).astype(np.float32))
    write_model_dir(export_adapter(lm), tmp_path / "lm-adapter")
    again = PeftModel.from_pretrained(
        build_model(llama_files, task="causal-lm", seed=1).model, tmp_path / "lm-adapter"
    ).eval()
    ids = built.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again(**ids).logits, lm.eval()(**ids).logits, rtol=0, atol=1e-5)


def test_llama_targets_q_and_v_projections(llama_files):
    built = build_model(llama_files, task="causal-lm", seed=0)
    model = add_lora(built.model, LoraSettings(rank=2), task="causal-lm", seed=0)
    names = [t.name for t in adapter_spec(model).tensors]
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}


def test_unknown_architecture_needs_explicit_targets():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig(
        vocab_size=100,
        embedding_size=16,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    with pytest.raises(UnsupportedModel, match="target_modules"):
        add_lora(
            AlbertForSequenceClassification(config), LoraSettings(), task="classification", seed=0
        )
    with pytest.raises(UnsupportedModel, match="could not be applied"):
        add_lora(
            AlbertForSequenceClassification(config),
            LoraSettings(target_modules=("no_such_module",)),
            task="classification",
            seed=0,
        )
    model = add_lora(
        AlbertForSequenceClassification(config),
        LoraSettings(target_modules=("query", "value")),
        task="classification",
        seed=0,
    )
    assert adapter_spec(model).size > 0


def test_no_provider_weight_enters_the_adapter(bert_files):
    built = build_model(bert_files, task="classification", labels=LABELS, seed=0)
    base = {n: p.detach().clone() for n, p in built.model.named_parameters()}
    with pytest.raises(ValueError, match="provider weights"):
        add_lora(
            built.model,
            LoraSettings(modules_to_save=("classifier", "pooler")),
            task="classification",
            seed=0,
        )
    model = add_lora(built.model, LoraSettings(rank=4), task="classification", seed=0)
    vector = get_adapter_vector(model)
    # Every adapter tensor is either a LoRA factor or the session-seeded head; no provider
    # tensor (of any shape) appears among them.
    for spec in adapter_spec(model).tensors:
        assert ".lora_" in spec.name or ".classifier.modules_to_save." in spec.name
    provider = [p for n, p in base.items() if not n.startswith("classifier.")]
    for tensor in provider:
        flat = tensor.reshape(-1).numpy()
        # Constant stretches (zero biases, unit norms) would match zero-initialised LoRA B.
        if flat.size >= 8 and len(set(flat[:8].tolist())) == 8:
            windows = np.lib.stride_tricks.sliding_window_view(vector, 8)
            assert not (windows == flat[:8]).all(axis=1).any()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rank": 0}, ValueError),
        ({"rank": 2.0}, TypeError),
        ({"alpha": -1}, ValueError),
        ({"dropout": 1.0}, ValueError),
        ({"target_modules": ()}, ValueError),
        ({"target_modules": ["query"]}, TypeError),
        ({"modules_to_save": ("",)}, TypeError),
    ],
)
def test_lora_settings_are_validated(kwargs, error):
    with pytest.raises(error):
        LoraSettings(**kwargs)


def test_llama_classifier_trains_its_score_head(llama_files):
    built = build_model(llama_files, task="classification", labels=LABELS, seed=0)
    assert built.report.initialized == ("score.weight",)
    assert built.model.config.pad_token_id == built.tokenizer.pad_token_id
    model = add_lora(built.model, LoraSettings(rank=2), task="classification", seed=0)
    names = [t.name for t in adapter_spec(model).tensors]
    assert "base_model.model.score.modules_to_save.default.weight" in names
    ids = built.tokenizer(["short", "a longer text than that"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**ids).logits.shape == (2, 3)
