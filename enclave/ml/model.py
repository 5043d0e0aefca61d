"""Build a transformers model and tokenizer from an in-memory model directory, never touching disk.

The directory is what the sandbox holds after unsealing: ``config.json``, ``model.safetensors``
(or shards named by ``model.safetensors.index.json``), ``tokenizer.json`` and optionally
``tokenizer_config.json`` / ``special_tokens_map.json``. Nothing is downloaded and no code
from the directory runs: configs asking for remote code (``auto_map``) and pickle weights
(``pytorch_model.bin``) are refused.

Checkpoint keys are matched to the task model's keys directly, or by adding or removing the
architecture's base-model prefix (a sentence-transformers ``BertModel`` checkpoint has
``encoder.layer.0...`` where ``BertForSequenceClassification`` wants
``bert.encoder.layer.0...``). Every base-model tensor must be present. A classification head
(``classifier``, ``score``) is always the session's own, drawn from the session seed so every
owner gets the same one; a head in the checkpoint is ignored (its labels are not the session's,
and the trainable head must not carry provider weights out). A causal LM's ``lm_head`` comes
from the checkpoint or is tied to the input embeddings; an untied one that is missing is drawn
from the seed too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from tokenizers import Tokenizer
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from enclave.ml.errors import ModelLoadError
from enclave.ml.modeldir import ModelFiles, check_model_files
from enclave.ml.seeding import check_seed, seeded_normal
from enclave.ml.task import TaskKind

# The sandbox has no network and must never try it; these make any accidental hub call fail
# fast instead of hanging on a timeout. Nothing in this module calls the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"

_SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# tokenizer_config.json uses a huge sentinel for "no limit"; keep lengths sane for padding.
_MAX_MODEL_LENGTH = 1_000_000


@dataclass(frozen=True, slots=True)
class LoadReport:
    """How the checkpoint met the model: what loaded, what was initialised, what was dropped."""

    model_type: str
    architecture: str
    loaded: int
    prefix_mapped: int
    initialized: tuple[str, ...]
    tied: tuple[str, ...]
    ignored: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A task model on CPU in float32, its tokenizer, the task and the load report."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    task: TaskKind
    report: LoadReport


def build_model(
    files: ModelFiles,
    *,
    task: TaskKind | str,
    labels: Sequence[str] | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build the task model and tokenizer from an in-memory model directory."""
    files = check_model_files(files)
    task = TaskKind.parse(task)
    check_seed(seed)
    if task is TaskKind.CLASSIFICATION:
        if labels is None or isinstance(labels, str) or not isinstance(labels, Sequence):
            raise TypeError("a classification model needs labels: a sequence of str")
        if any(not isinstance(label, str) for label in labels):
            raise TypeError("every label must be a str")
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError("labels must hold at least 2 distinct strings")
    elif labels is not None:
        raise ValueError("labels must be None for a causal-lm model")

    tokenizer = build_tokenizer(files)
    config = _build_config(files, task, labels, tokenizer)
    model_class = (
        AutoModelForSequenceClassification
        if task is TaskKind.CLASSIFICATION
        else AutoModelForCausalLM
    )
    try:
        # The random initialisation is overwritten by the checkpoint; keep it from advancing
        # the caller's global torch generator.
        with torch.random.fork_rng(devices=[]):
            model = model_class.from_config(config)
    except (ValueError, TypeError, StrictDataclassError) as exc:
        raise ModelLoadError(
            CONFIG_FILE, f"cannot build a {task.value} model of type {config.model_type!r}: {exc}"
        ) from None
    model = model.to(torch.float32)
    vocab = tokenizer.backend_tokenizer.get_vocab_size(with_added_tokens=True)
    embeddings = model.get_input_embeddings().weight.shape[0]
    if vocab > embeddings:
        raise ModelLoadError(
            TOKENIZER_FILE,
            f"tokenizer has {vocab} tokens but the model embeds only {embeddings}; "
            "the tokenizer does not belong to this model",
        )
    report = _load_weights(model, _read_checkpoint(files), task=task, seed=seed)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, task=task, report=report)


def build_tokenizer(files: ModelFiles) -> PreTrainedTokenizerFast:
    """A fast tokenizer from ``tokenizer.json`` plus special tokens from the tokenizer configs."""
    files = check_model_files(files)
    if TOKENIZER_FILE not in files:
        raise ModelLoadError(
            TOKENIZER_FILE,
            "missing; only tokenizers' JSON serialisation is supported (save the tokenizer "
            "with a fast tokenizer's save_pretrained)",
        )
    try:
        backend = Tokenizer.from_str(files[TOKENIZER_FILE].decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad serialisation
        raise ModelLoadError(TOKENIZER_FILE, f"not a valid tokenizer: {exc}") from None
    # Padding and truncation are chosen per call (dynamic padding), not baked into the file.
    backend.no_padding()
    backend.no_truncation()

    settings: dict[str, Any] = {}
    for name in (SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE):
        if name in files:
            document = _json_object(files, name)
            for key in _SPECIAL_TOKEN_KEYS:
                token = _token_content(document.get(key), name, key)
                if token is not None:
                    settings[key] = token
            if name == TOKENIZER_CONFIG_FILE:
                max_length = document.get("model_max_length")
                if isinstance(max_length, int | float) and max_length > 0:
                    settings["model_max_length"] = int(min(max_length, _MAX_MODEL_LENGTH))
    for key, token in settings.items():
        if key.endswith("_token") and backend.token_to_id(token) is None:
            raise ModelLoadError(
                TOKENIZER_CONFIG_FILE, f"{key} {token!r} is not in the tokenizer's vocabulary"
            )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **settings)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Causal LMs often ship without a pad token; padded positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise ModelLoadError(
            TOKENIZER_CONFIG_FILE, "no pad_token and no eos_token to pad with; add a pad_token"
        )
    return tokenizer


def _json_object(files: dict[str, bytes], name: str) -> dict[str, Any]:
    try:
        document = json.loads(files[name])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(name, f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ModelLoadError(name, "expected a JSON object")
    return document


def _token_content(value: object, file: str, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ModelLoadError(file, f"{key} must be a string or an object with 'content'")


def _build_config(
    files: dict[str, bytes],
    task: TaskKind,
    labels: Sequence[str] | None,
    tokenizer: PreTrainedTokenizerFast,
) -> PretrainedConfig:
    if CONFIG_FILE not in files:
        raise ModelLoadError(CONFIG_FILE, "missing; a model directory needs its config.json")
    document = _json_object(files, CONFIG_FILE)
    if "auto_map" in document:
        raise ModelLoadError(
            CONFIG_FILE,
            "asks for custom model code (auto_map); the sandbox runs only the architectures "
            "built into transformers",
        )
    model_type = document.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ModelLoadError(CONFIG_FILE, "lacks a string 'model_type'")
    for key in ("architectures", "_name_or_path", "num_labels", "id2label", "label2id"):
        document.pop(key, None)
    if task is TaskKind.CLASSIFICATION:
        assert labels is not None
        document["id2label"] = dict(enumerate(labels))
        document["label2id"] = {label: i for i, label in enumerate(labels)}
        document["problem_type"] = "single_label_classification"
    if document.get("pad_token_id") is None:
        # Sequence classification on decoder models finds the last real token by pad id.
        document["pad_token_id"] = tokenizer.pad_token_id
    try:
        return AutoConfig.for_model(model_type, **document)
    except (ValueError, TypeError, KeyError, StrictDataclassError) as exc:
        raise ModelLoadError(CONFIG_FILE, f"not a usable {model_type!r} config: {exc}") from None


def _read_checkpoint(files: dict[str, bytes]) -> dict[str, torch.Tensor]:
    if WEIGHTS_FILE in files:
        shard_names = [WEIGHTS_FILE]
    elif WEIGHTS_INDEX_FILE in files:
        weight_map = _json_object(files, WEIGHTS_INDEX_FILE).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(WEIGHTS_INDEX_FILE, "lacks a non-empty 'weight_map'")
        shard_names = sorted(set(weight_map.values()))
    else:
        pickle_hint = (
            " (pytorch_model.bin is refused: unpickling it can run code)"
            if "pytorch_model.bin" in files
            else ""
        )
        raise ModelLoadError(WEIGHTS_FILE, f"missing; weights must be safetensors{pickle_hint}")
    tensors: dict[str, torch.Tensor] = {}
    for shard in shard_names:
        if not isinstance(shard, str) or shard not in files:
            raise ModelLoadError(str(shard), "shard named in the weight index is missing")
        try:
            part = load_safetensors(files[shard])
        except SafetensorError as exc:
            raise ModelLoadError(shard, f"not a valid safetensors file: {exc}") from None
        for key, tensor in part.items():
            if key in tensors:
                raise ModelLoadError(shard, f"tensor {key!r} appears in more than one shard")
            tensors[key] = tensor
    return tensors


def _load_weights(
    model: PreTrainedModel, checkpoint: dict[str, torch.Tensor], *, task: TaskKind, seed: int
) -> LoadReport:
    state = model.state_dict()
    prefix = model.base_model_prefix
    head_keys = {k for k in state if not (prefix and k.startswith(prefix + "."))}
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    prefix_mapped = 0
    for key, tensor in checkpoint.items():
        target = _target_key(key, state, prefix)
        if target is None:
            ignored.append(key)
            continue
        if target in mapped:
            raise ModelLoadError(key, f"maps onto {target!r}, which another tensor already fills")
        if target in head_keys and task is TaskKind.CLASSIFICATION:
            # The classification head belongs to the session (its labels come from the session
            # terms): a provider's head is never used, so none of it can reach the adapter.
            ignored.append(key)
            continue
        expected = tuple(state[target].shape)
        if tuple(tensor.shape) != expected:
            raise ModelLoadError(
                key, f"shape {tuple(tensor.shape)} but the model expects {expected}"
            )
        if target != key:
            prefix_mapped += 1
        mapped[target] = tensor.to(state[target].dtype)

    # Weights tied to a loaded one (an lm_head sharing the input embeddings) need no data.
    loaded_ptrs = {state[k].data_ptr() for k in mapped}
    missing = [k for k in state if k not in mapped]
    tied = [k for k in missing if state[k].data_ptr() in loaded_ptrs]
    initialized = [k for k in missing if k not in tied]
    base_missing = [k for k in initialized if k not in head_keys]
    if base_missing:
        shown = ", ".join(base_missing[:5]) + (" ..." if len(base_missing) > 5 else "")
        raise ModelLoadError(
            WEIGHTS_FILE,
            f"{len(base_missing)} base-model tensor(s) missing from the checkpoint ({shown}); "
            "the checkpoint does not match config.json",
        )
    model.load_state_dict(mapped, strict=False)
    _init_head(model, initialized, seed=seed)
    return LoadReport(
        model_type=model.config.model_type,
        architecture=type(model).__name__,
        loaded=len(mapped),
        prefix_mapped=prefix_mapped,
        initialized=tuple(initialized),
        tied=tuple(tied),
        ignored=tuple(sorted(ignored)),
    )


def _target_key(key: str, state: dict[str, torch.Tensor], prefix: str) -> str | None:
    if key in state:
        return key
    if prefix and f"{prefix}.{key}" in state:
        return f"{prefix}.{key}"
    if prefix and key.startswith(prefix + ".") and key[len(prefix) + 1 :] in state:
        return key[len(prefix) + 1 :]
    return None


def _init_head(model: PreTrainedModel, keys: list[str], *, seed: int) -> None:
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        for key in keys:
            module_name, _, param_name = key.rpartition(".")
            module = model.get_submodule(module_name)
            target = getattr(module, param_name)
            if param_name == "bias":
                target.zero_()
            elif isinstance(module, nn.LayerNorm):
                target.fill_(1.0)
            elif isinstance(module, nn.Linear | nn.Embedding) and param_name == "weight":
                values = seeded_normal(seed, f"head/{key}", tuple(target.shape), std)
                target.copy_(torch.from_numpy(values))
            else:
                raise ModelLoadError(
                    key,
                    f"is missing from the checkpoint and a {type(module).__name__} "
                    "cannot be initialised here; include it in the checkpoint",
                )
