"""A real labelled text corpus from the running Python's standard library, and non-IID owner splits.

Texts are the docstrings of public modules, classes, functions and methods, read from the
stdlib sources with ``ast`` (nothing is imported), labelled by the package family they come
from (``email`` covers ``email``, ``mailbox``, ``smtplib``, ...). Test directories and private
modules or names (leading underscore) are skipped; whitespace is collapsed; texts outside
``[min_chars, max_chars]`` are dropped (long ones are cut at a word boundary first); a text
that occurs twice is kept once, and a text found under two labels is dropped entirely. With
``unit="paragraph"`` every docstring paragraph is a record instead, for causal-LM examples.

Everything is deterministic for a given Python installation and seed.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import sysconfig
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from crypto.atomicfile import atomic_write_bytes

# Package families whose docstrings read differently from each other (protocol parsing, event
# loops, markup trees, test tooling, log plumbing), each with a few hundred public docstrings
# on CPython 3.11-3.13. Modules absent from an installation are skipped.
DEFAULT_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "asyncio": ("asyncio",),
    "email": ("email", "mailbox", "smtplib", "imaplib", "poplib", "mimetypes"),
    "http": ("http", "urllib", "wsgiref"),
    "logging": ("logging",),
    "unittest": ("unittest", "doctest"),
    "xml": ("xml", "html"),
}

_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__"})
_WHITESPACE = re.compile(r"\s+")

Unit = Literal["docstring", "paragraph"]


@dataclass(frozen=True, slots=True)
class CorpusRecord:
    """One text, its label, and where in the stdlib it came from (``module:qualname``)."""

    text: str
    label: str
    origin: str


@dataclass(frozen=True, slots=True)
class Corpus:
    """Records grouped by label, in a fixed order; ``labels`` is the session label list."""

    labels: tuple[str, ...]
    records: tuple[CorpusRecord, ...]

    def counts(self) -> dict[str, int]:
        """Number of records per label, in label order."""
        return label_counts(self.records, self.labels)


@dataclass(frozen=True, slots=True)
class OwnerShard:
    """One data owner's slice: what it trains on and its own held-out split."""

    name: str
    train: tuple[CorpusRecord, ...]
    eval: tuple[CorpusRecord, ...]


@dataclass(frozen=True, slots=True)
class NonIidSplit:
    """Per-owner shards plus a global, label-stratified evaluation set nobody trains on."""

    labels: tuple[str, ...]
    owners: tuple[OwnerShard, ...]
    global_eval: tuple[CorpusRecord, ...]


def build_corpus(
    *,
    families: Mapping[str, Sequence[str]] = DEFAULT_FAMILIES,
    seed: int = 0,
    unit: Unit = "docstring",
    min_chars: int = 40,
    max_chars: int = 600,
    max_per_label: int | None = None,
    balance: bool = True,
    stdlib_dir: str | os.PathLike[str] | None = None,
) -> Corpus:
    """Collect, clean and deduplicate stdlib docstrings labelled by package family."""
    labels = _check_families(families)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if unit not in ("docstring", "paragraph"):
        raise ValueError(f"unit must be 'docstring' or 'paragraph', got {unit!r}")
    if not isinstance(min_chars, int) or not isinstance(max_chars, int):
        raise TypeError("min_chars and max_chars must be int")
    if not 1 <= min_chars <= max_chars:
        raise ValueError(f"need 1 <= min_chars <= max_chars, got {min_chars}, {max_chars}")
    if max_per_label is not None and (not isinstance(max_per_label, int) or max_per_label < 1):
        raise ValueError(f"max_per_label must be a positive int or None, got {max_per_label!r}")
    root = Path(stdlib_dir) if stdlib_dir is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"no standard library sources at {root}")

    found: dict[str, set[str]] = {}  # text -> labels it was found under
    origin_of: dict[tuple[str, str], str] = {}
    for label, modules in families.items():
        for module_file, module_name in _module_files(root, modules):
            for origin, docstring in _docstrings(module_file, module_name):
                pieces = _paragraphs(docstring) if unit == "paragraph" else [docstring]
                for piece in pieces:
                    text = _bounded(_WHITESPACE.sub(" ", piece).strip(), max_chars)
                    if len(text) < min_chars:
                        continue
                    found.setdefault(text, set()).add(label)
                    origin_of.setdefault((text, label), origin)

    by_label: dict[str, list[CorpusRecord]] = {label: [] for label in labels}
    for text, where in found.items():
        if len(where) == 1:
            (label,) = where
            by_label[label].append(CorpusRecord(text, label, origin_of[(text, label)]))
    empty = [label for label, recs in by_label.items() if not recs]
    if empty:
        raise ValueError(f"no texts found for label(s) {empty} under {root}")

    cap = max_per_label
    if balance:
        smallest = min(len(recs) for recs in by_label.values())
        cap = smallest if cap is None else min(cap, smallest)
    rng = np.random.default_rng(seed)
    records: list[CorpusRecord] = []
    for label in labels:
        recs = sorted(by_label[label], key=lambda r: (r.origin, r.text))
        if cap is not None and len(recs) > cap:
            keep = sorted(rng.choice(len(recs), size=cap, replace=False).tolist())
            recs = [recs[i] for i in keep]
        records.extend(recs)
    return Corpus(labels=labels, records=tuple(records))


def split_non_iid(
    records: Sequence[CorpusRecord],
    n_owners: int,
    *,
    labels: Sequence[str],
    seed: int,
    alpha: float = 0.5,
    global_eval_fraction: float = 0.2,
    owner_eval_fraction: float = 0.2,
    min_per_label: int = 2,
) -> NonIidSplit:
    """Deal records to owners with Dirichlet(alpha) label skew; every owner gets every label.

    Per label: ``global_eval_fraction`` of the records go to the global eval set; each owner
    is first dealt ``min_per_label`` records (so no owner lacks a label); the rest are dealt
    in proportions drawn from Dirichlet(alpha, ..., alpha) (smaller alpha, stronger skew).
    Each owner then holds out ``owner_eval_fraction`` of every label it has, always keeping at
    least one record of each label for training.
    """
    labels = tuple(labels)
    if not isinstance(n_owners, int) or isinstance(n_owners, bool):
        raise TypeError(f"n_owners must be an int, got {type(n_owners).__name__}")
    if n_owners < 1:
        raise ValueError(f"n_owners must be at least 1, got {n_owners}")
    if not isinstance(alpha, int | float) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    for name, value in (
        ("global_eval_fraction", global_eval_fraction),
        ("owner_eval_fraction", owner_eval_fraction),
    ):
        if not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if not isinstance(min_per_label, int) or min_per_label < 1:
        raise ValueError(f"min_per_label must be a positive int, got {min_per_label!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    unknown = {r.label for r in records} - set(labels)
    if unknown:
        raise ValueError(f"records carry labels outside the label list: {sorted(unknown)}")

    rng = np.random.default_rng(seed)
    owner_records: list[list[CorpusRecord]] = [[] for _ in range(n_owners)]
    global_eval: list[CorpusRecord] = []
    for label in labels:
        recs = sorted((r for r in records if r.label == label), key=lambda r: (r.origin, r.text))
        recs = [recs[i] for i in rng.permutation(len(recs))]
        n_global = round(global_eval_fraction * len(recs))
        global_eval.extend(recs[:n_global])
        pool = recs[n_global:]
        if len(pool) < n_owners * min_per_label:
            raise ValueError(
                f"label {label!r} has {len(pool)} records after the global eval set; "
                f"{n_owners} owners x min_per_label {min_per_label} need more"
            )
        counts = np.full(n_owners, min_per_label)
        counts += _largest_remainder(
            rng.dirichlet(np.full(n_owners, float(alpha))), len(pool) - int(counts.sum())
        )
        start = 0
        for owner, count in enumerate(counts.tolist()):
            owner_records[owner].extend(pool[start : start + count])
            start += count

    owners = []
    for index, recs in enumerate(owner_records):
        train: list[CorpusRecord] = []
        held: list[CorpusRecord] = []
        for label in labels:
            mine = [r for r in recs if r.label == label]
            k = min(round(owner_eval_fraction * len(mine)), len(mine) - 1)
            held.extend(mine[:k])
            train.extend(mine[k:])
        owners.append(OwnerShard(f"owner-{index + 1}", tuple(train), tuple(held)))
    return NonIidSplit(labels=labels, owners=tuple(owners), global_eval=tuple(global_eval))


def write_split(
    split: NonIidSplit,
    out_dir: str | os.PathLike[str],
    *,
    with_labels: bool = True,
) -> dict[str, Path]:
    """Write ``labels.json``, ``global-eval.jsonl`` and ``<owner>/{train,eval}.jsonl``.

    Records are written in the data-owner schema: ``{"text", "label"}`` for classification,
    or ``{"text"}`` alone when ``with_labels`` is False (causal LM). Each file is replaced
    atomically. Returns the written paths by role (``"owner-1/train"``, ``"global-eval"``...).
    """
    if not isinstance(split, NonIidSplit):
        raise TypeError(f"split must be a NonIidSplit, got {type(split).__name__}")
    root = Path(out_dir)
    written: dict[str, Path] = {}

    def emit(role: str, path: Path, data: bytes) -> None:
        atomic_write_bytes(path, data)
        written[role] = path

    emit("labels", root / "labels.json", json.dumps(list(split.labels), indent=2).encode() + b"\n")
    emit("global-eval", root / "global-eval.jsonl", _jsonl(split.global_eval, with_labels))
    for owner in split.owners:
        emit(
            f"{owner.name}/train",
            root / owner.name / "train.jsonl",
            _jsonl(owner.train, with_labels),
        )
        emit(
            f"{owner.name}/eval", root / owner.name / "eval.jsonl", _jsonl(owner.eval, with_labels)
        )
    return written


def label_counts(records: Sequence[CorpusRecord], labels: Sequence[str]) -> dict[str, int]:
    """Number of records per label, in the order of ``labels`` (zero where absent)."""
    counts = dict.fromkeys(labels, 0)
    for record in records:
        counts[record.label] += 1
    return counts


def _jsonl(records: Sequence[CorpusRecord], with_labels: bool) -> bytes:
    lines = []
    for record in records:
        row = {"text": record.text, "label": record.label} if with_labels else {"text": record.text}
        lines.append(json.dumps(row, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    exact = shares * total
    counts = np.floor(exact).astype(int)
    # Hand the leftover units to the largest fractional parts; ties go to the lower index.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def _check_families(families: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    if not isinstance(families, Mapping) or len(families) < 2:
        raise ValueError("families must map at least two labels to module names")
    seen: set[str] = set()
    for label, modules in families.items():
        if not isinstance(label, str) or not label:
            raise TypeError("family labels must be non-empty str")
        if isinstance(modules, str) or not modules:
            raise TypeError(f"family {label!r} must list module names, not {modules!r}")
        for module in modules:
            if not isinstance(module, str) or not module.isidentifier():
                raise ValueError(f"family {label!r}: {module!r} is not a top-level module name")
            if module in seen:
                raise ValueError(f"module {module!r} belongs to two families")
            seen.add(module)
    return tuple(families)


def _module_files(root: Path, modules: Sequence[str]) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    for module in modules:
        package = root / module
        if (package / "__init__.py").is_file():
            for path in sorted(package.rglob("*.py")):
                rel = path.relative_to(root).with_suffix("")
                parts = rel.parts
                if any(p in _SKIPPED_DIRS for p in parts) or any(
                    p.startswith("_") and p != "__init__" for p in parts
                ):
                    continue
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                files.append((path, name))
        elif (root / f"{module}.py").is_file():
            files.append((root / f"{module}.py", module))
    return files


def _docstrings(path: Path, module_name: str) -> tuple[tuple[str, str], ...]:
    """(origin, docstring) for the module and its public classes, functions and methods."""
    # Parsing is the slow part and sources rarely change: cache by path, size and mtime.
    stat = path.stat()
    return _parsed_docstrings(str(path), module_name, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _parsed_docstrings(
    path: str, module_name: str, size: int, mtime_ns: int
) -> tuple[tuple[str, str], ...]:
    del size, mtime_ns  # only part of the cache key
    try:
        with tokenize.open(path) as handle:  # honours the file's coding declaration
            source = handle.read()
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        # A source this Python cannot read or parse (lib2to3 grammar samples) has no corpus text.
        return ()
    found: list[tuple[str, str]] = []
    module_doc = ast.get_docstring(tree, clean=True)
    if module_doc:
        found.append((f"{module_name}:<module>", module_doc))

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name.startswith("_"):
                continue
            qualname = f"{prefix}{node.name}"
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append((f"{module_name}:{qualname}", doc))
            if isinstance(node, ast.ClassDef):
                visit(node.body, qualname + ".")

    visit(tree.body, "")
    return tuple(found)


def _paragraphs(docstring: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", docstring) if p.strip()]


def _bounded(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut
