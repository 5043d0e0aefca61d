"""Local training and evaluation: loss goes down, metrics are right, updates are deltas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from enclave.ml.data import Example
from enclave.ml.errors import AdapterMismatch, TrainingDiverged
from enclave.ml.lora import LoraSettings, adapter_spec, add_lora, get_adapter_vector
from enclave.ml.model import build_model
from enclave.ml.train import evaluate, local_update, macro_f1, task_of, train_local

LABELS = ["asyncio", "email", "xml"]
FIXED_SET = [
    Example("Run the event loop until the future is done.", 0),
    Example("Schedule a coroutine as a task on the loop.", 0),
    Example("Wait for the semaphore to be released by a task.", 0),
    Example("Return the transport of the subprocess.", 0),
    Example("Parse a MIME message from a bytes object.", 1),
    Example("Return the value of the Content-Type header.", 1),
    Example("Send the mail to every recipient over SMTP.", 1),
    Example("Attach a payload to the multipart message.", 1),
    Example("Build an element tree from the XML source.", 2),
    Example("Return the attribute of the DOM node.", 2),
    Example("Called by the SAX parser at the start of an element.", 2),
    Example("Serialize the element and its children as XML.", 2),
]
LM_SET = [
    Example("the event loop runs tasks and callbacks"),
    Example("the parser builds an element tree from xml"),
    Example("a message holds headers and a payload"),
    Example("the logger passes records to its handlers"),
]


def tiny_classifier(files, seed=0):
    built = build_model(files, task="classification", labels=LABELS, seed=seed)
    model = add_lora(
        built.model, LoraSettings(rank=4, alpha=8, dropout=0.0), task="classification", seed=seed
    )
    return model, built.tokenizer


def tiny_lm(files, seed=0):
    built = build_model(files, task="causal-lm", seed=seed)
    model = add_lora(
        built.model, LoraSettings(rank=4, alpha=8, dropout=0.0), task="causal-lm", seed=seed
    )
    return model, built.tokenizer


def test_training_reduces_loss_on_a_fixed_set_tiny_bert(bert_files):
    model, tok = tiny_classifier(bert_files)
    before = evaluate(model, tok, FIXED_SET)
    steps: list[tuple[int, int, float]] = []
    result = train_local(
        model,
        tok,
        FIXED_SET,
        epochs=8,
        learning_rate=3e-2,
        seed=1,
        batch_size=6,
        progress=lambda *a: steps.append(a),
    )
    after = evaluate(model, tok, FIXED_SET)
    assert result.steps == 16 and result.num_examples == 12
    assert [s[:2] for s in steps] == [(i, 16) for i in range(1, 17)]
    assert result.losses == tuple(s[2] for s in steps)
    assert result.mean_loss == pytest.approx(float(np.mean(result.losses)))
    assert after["loss"] < before["loss"] - 0.3
    assert after["accuracy"] > before["accuracy"]
    assert not model.training


def test_training_reduces_loss_on_a_fixed_set_tiny_llama(llama_files):
    model, tok = tiny_lm(llama_files)
    before = evaluate(model, tok, LM_SET)
    train_local(model, tok, LM_SET, epochs=20, learning_rate=3e-2, seed=0, batch_size=4)
    after = evaluate(model, tok, LM_SET)
    assert after["loss"] < before["loss"] - 1.0
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    # Every real token but the first is a target: [CLS] w1 ... wn [SEP] gives n + 1.
    lengths = [len(tok(e.text)["input_ids"]) for e in LM_SET]
    assert after["num_tokens"] == sum(n - 1 for n in lengths)


def test_minilm_few_lora_steps_reduce_loss(minilm_files):
    built = build_model(minilm_files, task="classification", labels=LABELS, seed=0)
    model = add_lora(
        built.model, LoraSettings(rank=4, alpha=8, dropout=0.0), task="classification", seed=0
    )
    before = evaluate(model, built.tokenizer, FIXED_SET, max_length=32)
    train_local(
        model,
        built.tokenizer,
        FIXED_SET,
        epochs=4,
        learning_rate=1e-2,
        seed=0,
        batch_size=12,
        max_length=32,
    )
    after = evaluate(model, built.tokenizer, FIXED_SET, max_length=32)
    assert after["loss"] < before["loss"]


def test_training_is_deterministic_for_a_seed(bert_files):
    runs = []
    for seed in (4, 4, 5):
        model, tok = tiny_classifier(bert_files)
        model.base_model.model.config.hidden_dropout_prob = 0.1
        result = train_local(
            model, tok, FIXED_SET, epochs=2, learning_rate=1e-2, seed=seed, batch_size=5
        )
        runs.append((result.losses, get_adapter_vector(model)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_local_update_is_new_minus_global_and_starts_from_global(bert_files):
    model, tok = tiny_classifier(bert_files)
    size = adapter_spec(model).size
    global_vector = np.random.default_rng(3).normal(0, 0.05, size).astype(np.float32)
    update = local_update(
        model, tok, FIXED_SET, global_vector, epochs=1, learning_rate=1e-2, seed=0, batch_size=6
    )
    np.testing.assert_array_equal(update.delta, get_adapter_vector(model) - global_vector)
    assert update.delta.dtype == np.float32 and update.num_examples == 12
    assert update.train.steps == 2 and np.any(update.delta != 0)

    # The same start in a fresh model gives the same delta (it really started from global).
    other, _ = tiny_classifier(bert_files, seed=8)
    again = local_update(
        other, tok, FIXED_SET, global_vector, epochs=1, learning_rate=1e-2, seed=0, batch_size=6
    )
    np.testing.assert_allclose(again.delta, update.delta, rtol=0, atol=1e-6)
    with pytest.raises(AdapterMismatch):
        local_update(
            model, tok, FIXED_SET, global_vector[:-1], epochs=1, learning_rate=1e-2, seed=0
        )


def test_non_finite_loss_stops_training(bert_files):
    model, tok = tiny_classifier(bert_files)
    with torch.no_grad():
        model.base_model.model.bert.embeddings.word_embeddings.weight.fill_(float("inf"))
    with pytest.raises(TrainingDiverged) as info:
        train_local(model, tok, FIXED_SET, epochs=1, learning_rate=1e-2, seed=0)
    assert info.value.step == 1


def test_classification_metrics_against_hand_computed_values(bert_files):
    model, tok = tiny_classifier(bert_files)
    with torch.no_grad():
        logits = []
        for e in FIXED_SET:
            ids = tok(e.text, return_tensors="pt")
            logits.append(model(**ids).logits[0])
        logits = torch.stack(logits)
    labels = torch.tensor([e.label for e in FIXED_SET])
    metrics = evaluate(model, tok, FIXED_SET, batch_size=5)
    # Batched, padded, length-sorted evaluation equals one-at-a-time evaluation.
    assert metrics["loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), abs=1e-5
    )
    predictions = logits.argmax(-1)
    assert metrics["accuracy"] == pytest.approx(float((predictions == labels).float().mean()))
    assert metrics["macro_f1"] == pytest.approx(macro_f1(labels.tolist(), predictions.tolist()))
    assert metrics["num_examples"] == 12


def test_macro_f1_known_answers():
    # Class 0: tp 2, fp 1, fn 1 -> 2/3; class 1: tp 1, fp 0, fn 1 -> 2/3; class 2: only
    # predicted, never true -> 0. Mean = (2/3 + 2/3 + 0) / 3 = 4/9.
    assert macro_f1([0, 0, 1, 1, 0], [0, 0, 1, 0, 2]) == pytest.approx(4 / 9)
    assert macro_f1([1, 1], [1, 1]) == 1.0
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truths, predictions = rng.integers(0, 5, 200).tolist(), rng.integers(0, 5, 200).tolist()
    assert macro_f1(truths, predictions) == pytest.approx(
        sklearn.f1_score(truths, predictions, average="macro")
    )


def test_parameters_and_examples_are_checked(bert_files, llama_files):
    model, tok = tiny_classifier(bert_files)
    kw = {"epochs": 1, "learning_rate": 1e-3, "seed": 0}
    with pytest.raises(ValueError, match="label"):
        train_local(model, tok, [Example("x", 3)], **kw)
    with pytest.raises(ValueError, match="label"):
        train_local(model, tok, [Example("x")], **kw)
    with pytest.raises(ValueError, match="no examples"):
        train_local(model, tok, [], **kw)
    with pytest.raises(TypeError):
        train_local(model, tok, [("x", 0)], **kw)
    with pytest.raises(ValueError):
        train_local(model, tok, FIXED_SET, epochs=0, learning_rate=1e-3, seed=0)
    with pytest.raises(ValueError):
        train_local(model, tok, FIXED_SET, epochs=1, learning_rate=float("nan"), seed=0)
    with pytest.raises(TypeError):
        train_local(model, tok, FIXED_SET, epochs=1, learning_rate=1e-3, seed=0, batch_size=2.5)
    lm, lm_tok = tiny_lm(llama_files)
    with pytest.raises(ValueError, match="carry no label"):
        evaluate(lm, lm_tok, FIXED_SET)
    assert task_of(lm).value == "causal-lm" and task_of(model).value == "classification"
    with pytest.raises(TypeError):
        task_of(torch.nn.Linear(2, 2))
