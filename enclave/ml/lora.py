"""LoRA adaptation with peft, and the flat float32 "adapter vector" that rounds exchange.

The adapter is every LoRA matrix plus, for classification, a trainable copy of the task head
(peft ``modules_to_save``). The head is the session's own (drawn from the session seed when the
model is built, never the provider's), so no provider weight enters the vector in any form:
LoRA matrices are low-rank changes, the head is the session's. For BERT-style classifiers the
pooler gets a LoRA too (see ``_pooler_target``).

Initial adapter, the same on every owner: LoRA ``A`` matrices are drawn from the session seed
per tensor name (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), peft's default distribution), ``B``
matrices start at zero (so the adapted model equals the base model at round 1), and the head
was drawn from the same seed when the model was built. The server therefore needs neither the
model nor an initial broadcast: every sandbox derives the same starting vector from the seed
in the session terms, and ``adapter_spec(...).fingerprint`` lets parties confirm it. A server
can keep the global state as the offset from that initial vector (zeros before round 1, plus
the weighted mean delta each round), and each sandbox loads ``initial + offset``.

Vector layout: the adapter's tensors sorted by parameter name, each flattened row-major and
converted to float32, concatenated. ``adapter_spec`` describes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, get_peft_model_state_dict
from pydantic import field_validator
from safetensors.torch import save as save_safetensors
from transformers import PreTrainedModel

from crypto.canonical import CanonicalModel
from enclave.ml.errors import AdapterMismatch, UnsupportedModel
from enclave.ml.seeding import check_seed, seeded_uniform
from enclave.ml.task import TaskKind

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"

# Attention projections to adapt per architecture: the query and value projections, as in
# the LoRA paper's main experiments.
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
    "gpt2": ("c_attn",),
}

_ADAPTER_MARKERS = (".lora_A.", ".lora_B.", ".modules_to_save.")


@dataclass(frozen=True, slots=True)
class LoraSettings:
    """LoRA hyper-parameters from the session terms; None picks the architecture's default."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    modules_to_save: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool):
            raise TypeError(f"rank must be an int, got {type(self.rank).__name__}")
        if not 1 <= self.rank <= 1024:
            raise ValueError(f"rank must be in [1, 1024], got {self.rank}")
        if not isinstance(self.alpha, int | float) or isinstance(self.alpha, bool):
            raise TypeError(f"alpha must be a number, got {type(self.alpha).__name__}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a positive finite number, got {self.alpha}")
        if not isinstance(self.dropout, int | float) or isinstance(self.dropout, bool):
            raise TypeError(f"dropout must be a number, got {type(self.dropout).__name__}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("target_modules", "modules_to_save"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, tuple) or any(not isinstance(v, str) or not v for v in value):
                raise TypeError(f"{name} must be a tuple of non-empty str or None")
            if name == "target_modules" and not value:
                raise ValueError("target_modules must name at least one module")


class TensorSpec(CanonicalModel):
    """One adapter tensor: its parameter name, shape and dtype in the model."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


class AdapterSpec(CanonicalModel):
    """The adapter vector's layout: tensors in vector order. Identical for identical settings."""

    tensors: tuple[TensorSpec, ...]

    @field_validator("tensors")
    @classmethod
    def _sorted_unique(cls, tensors: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
        names = [t.name for t in tensors]
        if not names:
            raise ValueError("an adapter spec needs at least one tensor")
        if names != sorted(set(names)):
            raise ValueError("adapter tensors must be sorted by name and unique")
        return tensors

    @property
    def size(self) -> int:
        """Length of the adapter vector."""
        return sum(t.size for t in self.tensors)

    @property
    def fingerprint(self) -> str:
        """``sha256:`` + hex digest of the canonical encoding, to compare layouts across parties."""
        return "sha256:" + hashlib.sha256(self.canonical_bytes()).hexdigest()


def add_lora(
    model: PreTrainedModel,
    settings: LoraSettings,
    *,
    task: TaskKind | str,
    seed: int,
) -> PeftModel:
    """Wrap ``model`` with LoRA per ``settings``; only the adapter (and head) stay trainable."""
    if isinstance(model, PeftModel) or not isinstance(model, PreTrainedModel):
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    if not isinstance(settings, LoraSettings):
        raise TypeError(f"settings must be LoraSettings, got {type(settings).__name__}")
    task = TaskKind.parse(task)
    check_seed(seed)
    model_type = model.config.model_type
    heads = _head_modules(model) if task is TaskKind.CLASSIFICATION else []
    if settings.target_modules is not None:
        targets = list(settings.target_modules)
    elif model_type in DEFAULT_TARGET_MODULES:
        targets = list(DEFAULT_TARGET_MODULES[model_type])
        if task is TaskKind.CLASSIFICATION:
            targets += _pooler_target(model)
    else:
        raise UnsupportedModel(
            model_type,
            "no default LoRA target modules for this architecture; set LoraSettings.target_modules",
        )
    if settings.modules_to_save is None:
        # A causal LM trains LoRA only: its lm_head is vocabulary-sized and the provider's.
        to_save = heads
    else:
        to_save = list(settings.modules_to_save)
        base_owned = [name for name in to_save if name not in heads]
        if base_owned:
            raise ValueError(
                f"modules_to_save {base_owned} are not the session's task head "
                f"({heads or 'none'}); a trainable copy would put provider weights into the "
                "adapter vector. Adapt them with LoRA (target_modules) instead"
            )
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
        bias="none",
        task_type=TaskType.SEQ_CLS if task is TaskKind.CLASSIFICATION else TaskType.CAUSAL_LM,
    )
    try:
        with warnings.catch_warnings():
            # peft 0.21 probes a transformers attribute that v5 deprecated; the probe is harmless
            # and the warning would repeat in every sandbox log.
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
            )
            peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise UnsupportedModel(model_type, f"LoRA could not be applied: {exc}") from None
    _seed_lora(peft_model, seed)
    return peft_model


def adapter_spec(model: PeftModel) -> AdapterSpec:
    """The layout of ``model``'s adapter vector."""
    return AdapterSpec(
        tensors=tuple(
            TensorSpec(name=name, shape=tuple(p.shape), dtype=str(p.dtype).removeprefix("torch."))
            for name, p in _adapter_params(model)
        )
    )


def get_adapter_vector(model: PeftModel) -> np.ndarray:
    """The adapter's current values as one flat float32 array (a copy)."""
    parts = [
        p.detach().to(torch.float32).reshape(-1).cpu().numpy() for _, p in _adapter_params(model)
    ]
    return np.concatenate(parts).astype(np.float32, copy=True)


def set_adapter_vector(model: PeftModel, vector: np.ndarray) -> None:
    """Load a flat float32 adapter vector into ``model``; base weights are not touched."""
    if not isinstance(vector, np.ndarray):
        raise TypeError(f"vector must be a numpy array, got {type(vector).__name__}")
    params = _adapter_params(model)
    expected = sum(p.numel() for _, p in params)
    if vector.dtype != np.float32:
        raise AdapterMismatch("vector dtype", "float32", str(vector.dtype))
    if vector.ndim != 1 or vector.shape[0] != expected:
        raise AdapterMismatch("vector length", f"1-D of {expected}", f"shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise AdapterMismatch("vector values", "finite numbers", "NaN or infinity")
    offset = 0
    with torch.no_grad():
        for _, param in params:
            count = param.numel()
            chunk = torch.from_numpy(vector[offset : offset + count].copy()).view(param.shape)
            param.copy_(chunk.to(param.dtype))
            offset += count


def export_adapter(model: PeftModel, *, base_model_name: str | None = None) -> dict[str, bytes]:
    """The adapter as a PEFT adapter directory in memory: config JSON and safetensors weights."""
    if not isinstance(model, PeftModel):
        raise TypeError(f"model must be a PeftModel, got {type(model).__name__}")
    if base_model_name is not None and not isinstance(base_model_name, str):
        raise TypeError("base_model_name must be a str or None")
    state = {
        key: tensor.detach().to("cpu").contiguous()
        for key, tensor in get_peft_model_state_dict(model).items()
    }
    config = model.peft_config["default"].to_dict()
    config["base_model_name_or_path"] = base_model_name
    config["inference_mode"] = True
    return {
        ADAPTER_CONFIG_FILE: json.dumps(
            config, indent=2, sort_keys=True, default=_json_default
        ).encode("utf-8"),
        ADAPTER_WEIGHTS_FILE: save_safetensors(state, metadata={"format": "pt"}),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__} in adapter_config.json")


def _adapter_params(model: PeftModel) -> list[tuple[str, torch.nn.Parameter]]:
    if not isinstance(model, PeftModel):
        raise TypeError(f"model must be a PeftModel (see add_lora), got {type(model).__name__}")
    params = sorted(
        (name, p)
        for name, p in model.named_parameters()
        if any(marker in name for marker in _ADAPTER_MARKERS)
    )
    if not params:
        raise AdapterMismatch("tensors", "at least one adapter tensor", "none")
    return params


def _head_modules(model: PreTrainedModel) -> list[str]:
    # The task head is every child with parameters other than the base model itself
    # (BERT: "classifier"; Llama: "score"; DistilBERT: "pre_classifier", "classifier").
    return [
        name
        for name, child in model.named_children()
        if name != model.base_model_prefix and any(True for _ in child.parameters())
    ]


def _pooler_target(model: PreTrainedModel) -> list[str]:
    # BERT-style classifiers read the base model's pooler, tanh(W h_[CLS]), which
    # sentence-transformers checkpoints never train (they pool by mean), so the head sees
    # poor features. Training the pooler took a 3-owner FedAvg on the stdlib corpus from 0.17
    # to 0.76 accuracy in one round (0.17 without); a LoRA on it, rather than a trainable
    # copy, keeps the pooler's base weights out of the adapter vector.
    pooler = getattr(model.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    return ["pooler.dense"] if isinstance(dense, torch.nn.Linear) else []


def _seed_lora(model: PeftModel, seed: int) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_A." in name:
                fan_in = param.shape[1]
                values = seeded_uniform(
                    seed, f"lora/{name}", tuple(param.shape), 1 / math.sqrt(fan_in)
                )
                param.copy_(torch.from_numpy(values))
            elif ".lora_B." in name:
                param.zero_()
