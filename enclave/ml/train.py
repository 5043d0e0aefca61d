"""Local LoRA training for one round, held-out evaluation, and the update that leaves the sandbox.

Update semantics (FedAvg over deltas): each round the sandbox loads the global adapter vector
``g`` it was sent, trains, and returns ``delta = new - g`` with its example count ``n``. The
server computes ``g' = g + sum(n_i * delta_i) / sum(n_i)``, which equals FedAvg of the new
vectors, but deltas are what client-level DP clipping bounds (the norm of a delta is the
contribution of one owner) and they are small, which keeps fixed-point encoding for secure
aggregation precise. The optimizer state starts fresh each round. Pass a ``seed`` that
differs per round and owner (e.g. derived from the session seed, round and owner index) so
shuffling and dropout differ between rounds while staying reproducible.

CPU friendly: texts are tokenized once per call, batches are padded only to their longest
member, evaluation sorts by length and runs without autograd.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from enclave.ml.data import Example
from enclave.ml.errors import TrainingDiverged
from enclave.ml.lora import get_adapter_vector, set_adapter_vector
from enclave.ml.seeding import check_seed
from enclave.ml.task import TaskKind

ProgressCallback = Callable[[int, int, float], None]
"""Called after every optimizer step with (step, total steps, that step's loss)."""

_IGNORE_INDEX = -100


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What one call of local training did."""

    num_examples: int
    steps: int
    mean_loss: float
    losses: tuple[float, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class LocalUpdate:
    """The round's contribution: ``delta = new - global`` (float32) and its FedAvg weight."""

    delta: np.ndarray
    num_examples: int
    train: TrainResult


def train_local(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    epochs: int,
    learning_rate: float,
    seed: int,
    batch_size: int = 16,
    max_length: int = 128,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train the trainable (adapter) parameters on ``examples`` with AdamW; returns the losses."""
    task = task_of(model)
    examples = _check_examples(model, task, examples)
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("max_length", max_length, minimum=2)
    _check_positive_float("learning_rate", learning_rate)
    if not isinstance(weight_decay, int | float) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    if max_grad_norm is not None:
        _check_positive_float("max_grad_norm", max_grad_norm)
    check_seed(seed)
    if progress is not None and not callable(progress):
        raise TypeError("progress must be callable or None")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters; wrap it with add_lora first")

    encoded = _encode(tokenizer, examples, task, max_length)
    batches_per_epoch = math.ceil(len(encoded) / batch_size)
    total_steps = epochs * batches_per_epoch
    losses: list[float] = []
    started = time.perf_counter()
    with _threads(num_threads), torch.random.fork_rng(devices=[]), torch.enable_grad():
        # Dropout draws from torch's global generator, shuffling from its own; both seeded.
        torch.manual_seed(seed)
        shuffle = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=weight_decay)
        model.train()
        try:
            for _ in range(epochs):
                order = torch.randperm(len(encoded), generator=shuffle).tolist()
                for start in range(0, len(order), batch_size):
                    batch = [encoded[i] for i in order[start : start + batch_size]]
                    loss = model(**_collate(batch, tokenizer.pad_token_id, task)).loss
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingDiverged(len(losses) + 1, value)
                    loss.backward()
                    if max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(value)
                    if progress is not None:
                        progress(len(losses), total_steps, value)
        finally:
            model.eval()
    return TrainResult(
        num_examples=len(examples),
        steps=len(losses),
        mean_loss=float(np.mean(losses)),
        losses=tuple(losses),
        seconds=time.perf_counter() - started,
    )


def local_update(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    global_vector: np.ndarray,
    *,
    epochs: int,
    learning_rate: float,
    seed: int,
    batch_size: int = 16,
    max_length: int = 128,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    num_threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> LocalUpdate:
    """Start from ``global_vector``, train locally, and return ``new - global`` with the count."""
    set_adapter_vector(model, global_vector)
    result = train_local(
        model,
        tokenizer,
        examples,
        epochs=epochs,
        learning_rate=learning_rate,
        seed=seed,
        batch_size=batch_size,
        max_length=max_length,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        num_threads=num_threads,
        progress=progress,
    )
    delta = get_adapter_vector(model) - global_vector
    if not np.isfinite(delta).all():
        raise TrainingDiverged(result.steps, float("nan"))
    return LocalUpdate(
        delta=delta.astype(np.float32, copy=False), num_examples=result.num_examples, train=result
    )


def evaluate(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    batch_size: int = 32,
    max_length: int = 128,
    num_threads: int | None = None,
) -> dict[str, float]:
    """Held-out metrics: classification loss, accuracy, macro_f1; causal LM loss, perplexity."""
    task = task_of(model)
    examples = _check_examples(model, task, examples)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("max_length", max_length, minimum=2)
    encoded = _encode(tokenizer, examples, task, max_length)
    # Length-sorted batches pad least; the order of evaluation does not change the metrics.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    total_loss = 0.0
    total_tokens = 0
    predictions: list[int] = []
    truths: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with _threads(num_threads), torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = [encoded[i] for i in order[start : start + batch_size]]
                inputs = _collate(batch, tokenizer.pad_token_id, task)
                labels = inputs.pop("labels")
                logits = model(**inputs).logits.float()
                if task is TaskKind.CLASSIFICATION:
                    total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                    predictions.extend(logits.argmax(dim=-1).tolist())
                    truths.extend(labels.tolist())
                else:
                    targets = labels[:, 1:]
                    total_loss += float(
                        F.cross_entropy(
                            logits[:, :-1].reshape(-1, logits.shape[-1]),
                            targets.reshape(-1),
                            ignore_index=_IGNORE_INDEX,
                            reduction="sum",
                        )
                    )
                    total_tokens += int((targets != _IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    if task is TaskKind.CLASSIFICATION:
        return {
            "loss": total_loss / len(examples),
            "accuracy": float(np.mean(np.array(predictions) == np.array(truths))),
            "macro_f1": macro_f1(truths, predictions),
            "num_examples": float(len(examples)),
        }
    loss = total_loss / total_tokens
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "num_tokens": float(total_tokens),
        "num_examples": float(len(examples)),
    }


def macro_f1(truths: Sequence[int], predictions: Sequence[int]) -> float:
    """Unweighted mean F1 over the classes that occur in ``truths`` or ``predictions``."""
    if len(truths) != len(predictions):
        raise ValueError("truths and predictions must have the same length")
    if not truths:
        raise ValueError("macro_f1 needs at least one example")
    scores = []
    for cls in sorted(set(truths) | set(predictions)):
        tp = sum(1 for t, p in zip(truths, predictions, strict=True) if t == cls and p == cls)
        fp = sum(1 for t, p in zip(truths, predictions, strict=True) if t != cls and p == cls)
        fn = sum(1 for t, p in zip(truths, predictions, strict=True) if t == cls and p != cls)
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def task_of(model: PreTrainedModel | PeftModel) -> TaskKind:
    """Which task ``model`` does, judged by its transformers class name."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if not isinstance(base, PreTrainedModel):
        raise TypeError(f"model must be a transformers or peft model, got {type(model).__name__}")
    name = type(base).__name__
    if name.endswith("ForSequenceClassification"):
        return TaskKind.CLASSIFICATION
    if name.endswith("ForCausalLM"):
        return TaskKind.CAUSAL_LM
    raise TypeError(f"{name} is neither a sequence classifier nor a causal LM")


def _check_examples(
    model: PreTrainedModel | PeftModel, task: TaskKind, examples: Sequence[Example]
) -> list[Example]:
    examples = list(examples)
    if not examples:
        raise ValueError("no examples given")
    if any(not isinstance(e, Example) for e in examples):
        raise TypeError("examples must be enclave.ml.data.Example instances")
    if task is TaskKind.CLASSIFICATION:
        num_labels = int(model.config.num_labels)
        for index, example in enumerate(examples):
            if example.label is None or not 0 <= example.label < num_labels:
                raise ValueError(
                    f"example {index} has label {example.label!r}; this model has "
                    f"{num_labels} labels (load records with the session's label list)"
                )
    elif any(e.label is not None for e in examples):
        raise ValueError("causal-lm examples carry no label; load them with task='causal-lm'")
    return examples


def _encode(
    tokenizer: PreTrainedTokenizerBase, examples: list[Example], task: TaskKind, max_length: int
) -> list[tuple[list[int], int | None]]:
    ids = tokenizer(
        [e.text for e in examples],
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    if task is TaskKind.CAUSAL_LM:
        for index, row in enumerate(ids):
            if len(row) < 2:
                raise ValueError(
                    f"example {index} is a single token; a causal LM needs at least two to learn"
                )
    return [(row, e.label) for row, e in zip(ids, examples, strict=True)]


def _collate(
    batch: list[tuple[list[int], int | None]], pad_id: int, task: TaskKind
) -> dict[str, torch.Tensor]:
    longest = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, (ids, _) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
    if task is TaskKind.CLASSIFICATION:
        labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    else:
        # Padding never counts as a target, even where the pad token doubles as EOS.
        labels = input_ids.masked_fill(attention == 0, _IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    if num_threads is None:
        yield
        return
    _check_positive_int("num_threads", num_threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_positive_float(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
