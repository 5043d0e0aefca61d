"""The stdlib docstring corpus: real, deterministic, deduplicated; non-IID splits that cover."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from enclave.ml.data import load_records
from fedtune.datasets import (
    DEFAULT_FAMILIES,
    build_corpus,
    label_counts,
    split_non_iid,
    write_split,
)


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(seed=0)


def test_corpus_is_balanced_labelled_and_bounded(corpus):
    assert corpus.labels == tuple(DEFAULT_FAMILIES)
    counts = corpus.counts()
    assert len(set(counts.values())) == 1, counts  # balanced to the smallest family
    assert min(counts.values()) >= 100
    texts = [r.text for r in corpus.records]
    assert len(texts) == len(set(texts))
    assert all(40 <= len(t) <= 600 for t in texts)
    assert all("\n" not in t and "  " not in t for t in texts)


def test_known_docstrings_carry_their_family_label():
    unbalanced = build_corpus(balance=False)
    by_origin = {r.origin: r for r in unbalanced.records}
    # Known answers from the stdlib itself: where these objects live and what they say.
    assert by_origin["asyncio.locks:Semaphore.acquire"].label == "asyncio"
    assert by_origin["asyncio.locks:Semaphore.acquire"].text.startswith("Acquire a semaphore.")
    assert by_origin["smtplib:SMTP.sendmail"].label == "email"
    assert by_origin["xml.dom.expatbuilder:parseString"].label == "xml"
    assert by_origin["logging:Logger.fatal"].text == (
        "Don't use this method, use critical() instead."
    )
    assert all(
        not part.startswith("_")
        for r in unbalanced.records
        for part in r.origin.split(":")[1].split(".")
    )
    assert not any(".test" in r.origin.split(":")[0] for r in unbalanced.records)


def test_corpus_is_deterministic_and_the_seed_picks_the_sample(corpus):
    assert build_corpus(seed=0) == corpus
    other = build_corpus(seed=1)
    assert other.counts() == corpus.counts()
    assert {r.text for r in other.records} != {r.text for r in corpus.records}


def test_texts_under_two_labels_are_dropped(tmp_path):
    (tmp_path / "alpha.py").write_text(
        'def shared():\n    """This docstring appears in both families, word for word."""\n'
        'def only_alpha():\n    """This docstring is found only in the alpha module."""\n'
    )
    (tmp_path / "beta").mkdir()
    (tmp_path / "beta" / "__init__.py").write_text(
        'def shared():\n    """This docstring appears in both families, word for word."""\n'
        'class Thing:\n    def method(self):\n        """A method of the beta package thing."""\n'
        '    def _private(self):\n        """A private method that the corpus must skip."""\n'
    )
    (tmp_path / "beta" / "tests").mkdir()
    (tmp_path / "beta" / "tests" / "__init__.py").write_text(
        'def test_x():\n    """A test helper docstring that the corpus must skip."""\n'
    )
    built = build_corpus(
        families={"a": ("alpha",), "b": ("beta",)}, stdlib_dir=tmp_path, min_chars=10, balance=False
    )
    assert [(r.label, r.origin, r.text) for r in built.records] == [
        ("a", "alpha:only_alpha", "This docstring is found only in the alpha module."),
        ("b", "beta:Thing.method", "A method of the beta package thing."),
    ]


def test_corpus_never_imports_the_modules_it_reads():
    code = (
        "import sys\n"
        "from fedtune.datasets import build_corpus\n"
        "before = set(sys.modules)\n"
        "build_corpus()\n"
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in {'mailbox','smtplib','imaplib','poplib','wsgiref','doctest',"
        "'xml','asyncio','unittest','http','urllib','html','mimetypes'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_paragraph_corpus_for_causal_lm():
    lm = build_corpus(unit="paragraph", min_chars=30, max_chars=300)
    assert min(lm.counts().values()) >= 200
    assert all(30 <= len(r.text) <= 300 for r in lm.records)


def test_non_iid_split_is_a_skewed_covering_partition(corpus):
    split = split_non_iid(corpus.records, 3, labels=corpus.labels, seed=0, alpha=0.3)
    pieces = [*split.global_eval] + [r for o in split.owners for r in (*o.train, *o.eval)]
    assert sorted(pieces, key=lambda r: r.text) == sorted(corpus.records, key=lambda r: r.text)
    per_label = corpus.counts()["asyncio"]
    assert label_counts(split.global_eval, corpus.labels) == dict.fromkeys(
        corpus.labels, round(0.2 * per_label)
    )
    shares = []
    for owner in split.owners:
        train = label_counts(owner.train, corpus.labels)
        assert min(train.values()) >= 1, (owner.name, train)  # every owner has every label
        held = label_counts(owner.eval, corpus.labels)
        assert sum(held.values()) > 0
        counts = np.array(list(train.values()), dtype=float)
        shares.append(counts / counts.sum())
    # Skewed: each owner's label mix is far (total variation) from uniform and from the others'.
    uniform = np.full(len(corpus.labels), 1 / len(corpus.labels))
    assert all(0.5 * np.abs(s - uniform).sum() > 0.15 for s in shares)
    distances = [0.5 * np.abs(a - b).sum() for i, a in enumerate(shares) for b in shares[i + 1 :]]
    assert min(distances) > 0.25


def test_non_iid_split_is_deterministic_and_alpha_controls_skew(corpus):
    a = split_non_iid(corpus.records, 3, labels=corpus.labels, seed=4)
    assert split_non_iid(corpus.records, 3, labels=corpus.labels, seed=4) == a
    assert split_non_iid(corpus.records, 3, labels=corpus.labels, seed=5) != a

    def skew(alpha: float) -> float:
        split = split_non_iid(corpus.records, 3, labels=corpus.labels, seed=0, alpha=alpha)
        counts = np.array(
            [list(label_counts(o.train, corpus.labels).values()) for o in split.owners], dtype=float
        )
        return float(np.abs(counts / counts.sum(1, keepdims=True) - 1 / 6).sum())

    assert skew(100.0) < skew(0.1) / 3


def test_split_refusals(corpus):
    with pytest.raises(ValueError, match="min_per_label"):
        split_non_iid(corpus.records[:20], 5, labels=corpus.labels, seed=0)
    with pytest.raises(ValueError, match="outside the label list"):
        split_non_iid(corpus.records, 3, labels=corpus.labels[:2], seed=0)
    with pytest.raises(ValueError):
        split_non_iid(corpus.records, 3, labels=corpus.labels, seed=0, alpha=0)
    with pytest.raises(ValueError):
        split_non_iid(corpus.records, 0, labels=corpus.labels, seed=0)


def test_written_split_loads_with_the_owner_record_loader(corpus, tmp_path):
    split = split_non_iid(corpus.records, 3, labels=corpus.labels, seed=0)
    paths = write_split(split, tmp_path / "cls")
    labels = json.loads(paths["labels"].read_text())
    assert labels == list(corpus.labels)
    for owner in split.owners:
        loaded = load_records(paths[f"{owner.name}/train"], task="classification", labels=labels)
        assert [(e.text, labels[e.label]) for e in loaded] == [
            (r.text, r.label) for r in owner.train
        ]
    assert len(load_records(paths["global-eval"], task="classification", labels=labels)) == len(
        split.global_eval
    )

    lm = build_corpus(unit="paragraph", min_chars=30, max_chars=300)
    lm_paths = write_split(
        split_non_iid(lm.records, 2, labels=lm.labels, seed=0), tmp_path / "lm", with_labels=False
    )
    assert load_records(lm_paths["owner-1/train"], task="causal-lm")
