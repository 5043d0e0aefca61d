"""Check an owner's record files against the session's schema before anything is started.

The schema is ``enclave.ml.data``'s (JSONL objects or CSV rows with ``text`` and, for
classification, ``label`` from the session's label list; nothing else). The sandbox validates
the records again itself; checking here first means a bad record is reported (file, line,
field) before a sandbox is launched or a single file is staged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enclave.ml.data import load_records
from enclave.ml.task import TaskKind


@dataclass(frozen=True)
class RecordCounts:
    """How many valid records each checked file holds."""

    train: int
    eval: int | None


def check_records(
    data_dir: Path,
    train_file: str,
    eval_file: str | None = None,
    *,
    task: TaskKind | str,
    labels: Sequence[str] | None = None,
) -> RecordCounts:
    """Validate every record of the owner's files; RecordError naming file, line and field."""
    if not isinstance(data_dir, Path):
        raise TypeError("data_dir must be a pathlib.Path")
    if not isinstance(train_file, str) or not train_file:
        raise ValueError("train_file must name a file inside data_dir")
    train = load_records(data_dir / train_file, task=task, labels=labels)
    evaluation = None
    if eval_file is not None:
        evaluation = len(load_records(data_dir / eval_file, task=task, labels=labels))
    return RecordCounts(len(train), evaluation)
