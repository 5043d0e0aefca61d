"""Load a data owner's records (JSONL or CSV) all-or-nothing, and split them train / held-out.

Record schema (one record per JSONL line, or one CSV row under a header line):

* classification: ``{"text": "<non-blank string>", "label": "<one of the session's labels>"}``;
  CSV header ``text,label`` (columns in any order).
* causal LM: ``{"text": "<non-blank string>"}``; CSV header ``text``.

No other fields or columns are accepted (a misspelt ``"lable"`` is refused rather than
silently dropped). Files are UTF-8 (a leading byte-order mark is allowed); blank JSONL lines
and blank CSV rows are skipped. Labels are mapped to ids through the session's label list,
which every owner receives from the session terms, so every owner numbers labels alike; a
label outside that list is an error.

Every record is validated before anything is returned: the first bad record raises
:class:`~enclave.ml.errors.RecordError` naming file, line and field, and the caller gets no
records at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from enclave.ml.errors import RecordError
from enclave.ml.task import TaskKind

TEXT_FIELD = "text"
LABEL_FIELD = "label"

# Salt of the held-out split rule; changing it changes every owner's split, hence the version.
DEFAULT_SPLIT_SALT = b"fedtune/eval-split/v1"


class RecordFormat(StrEnum):
    """On-disk record formats."""

    JSONL = "jsonl"
    CSV = "csv"

    @classmethod
    def from_path(cls, path: Path) -> RecordFormat:
        """The format a file name's suffix names (``.jsonl``/``.ndjson`` or ``.csv``)."""
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return cls.JSONL
        if suffix == ".csv":
            return cls.CSV
        raise RecordError(
            str(path),
            None,
            None,
            f"cannot tell the record format from the suffix {suffix!r}; "
            "name the file *.jsonl or *.csv, or pass fmt=",
        )


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Bounds on what one record file may hold; exceeding one is a RecordError, not a crash."""

    max_records: int = 100_000
    max_text_chars: int = 20_000
    max_file_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_records", "max_text_chars", "max_file_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True, slots=True)
class Example:
    """One validated record: its text and, for classification, the session label id."""

    text: str
    label: int | None = None


@dataclass(frozen=True, slots=True)
class OwnerData:
    """An owner's records for one session: what it trains on and what it evaluates on."""

    train: tuple[Example, ...]
    eval: tuple[Example, ...]


def load_records(
    path: str | os.PathLike[str],
    *,
    task: TaskKind | str,
    labels: Sequence[str] | None = None,
    fmt: RecordFormat | str | None = None,
    limits: RecordLimits | None = None,
) -> list[Example]:
    """Read and validate every record of one JSONL or CSV file; RecordError on the first bad one."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    task, label_ids = _check_task_labels(task, labels)
    limits = _check_limits(limits)
    file = Path(path)
    fmt = RecordFormat.from_path(file) if fmt is None else RecordFormat(fmt)
    name = str(file)
    try:
        with file.open("rb") as handle:
            # Read at most one byte past the limit: an over-limit file is refused without
            # being read whole, and without trusting a size that could change meanwhile.
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise RecordError(name, None, None, f"cannot read the file: {exc.strerror}") from exc
    if len(data) > limits.max_file_bytes:
        raise RecordError(
            name,
            None,
            None,
            f"file is larger than the limit of {limits.max_file_bytes} bytes; "
            "split it or raise RecordLimits.max_file_bytes",
        )
    return _parse(data, name, fmt, task, label_ids, limits)


def parse_records(
    data: bytes,
    *,
    source: str,
    fmt: RecordFormat | str,
    task: TaskKind | str,
    labels: Sequence[str] | None = None,
    limits: RecordLimits | None = None,
) -> list[Example]:
    """Validate records held in memory; ``source`` is the name errors report as the file."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    task, label_ids = _check_task_labels(task, labels)
    limits = _check_limits(limits)
    data = bytes(data)
    if len(data) > limits.max_file_bytes:
        raise RecordError(
            source,
            None,
            None,
            f"data is larger than the limit of {limits.max_file_bytes} bytes; "
            "split it or raise RecordLimits.max_file_bytes",
        )
    return _parse(data, source, RecordFormat(fmt), task, label_ids, limits)


def split_train_eval(
    examples: Sequence[Example],
    *,
    eval_fraction: float = 0.2,
    salt: bytes = DEFAULT_SPLIT_SALT,
) -> OwnerData:
    """Hold out about ``eval_fraction`` of the records by a rule that depends only on their texts.

    Rule: group the records by text; within each label (classification) or over all records
    (causal LM), rank the distinct texts by SHA-256(salt || UTF-8 text) and hold out the first
    round(eval_fraction * n) of them, at least one and at most n - 1 when the group has two or
    more texts. So the split is the same on every run and for any order of the file, a
    duplicate text never sits on both sides, and every label with two or more distinct texts
    appears on both sides. Records keep their file order within each side.
    """
    if not isinstance(eval_fraction, float | int) or isinstance(eval_fraction, bool):
        raise TypeError(f"eval_fraction must be a float, got {type(eval_fraction).__name__}")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if not isinstance(salt, bytes):
        raise TypeError(f"salt must be bytes, got {type(salt).__name__}")
    examples = list(examples)
    if any(not isinstance(e, Example) for e in examples):
        raise TypeError("examples must be Example instances")

    group_of_text: dict[str, int | None] = {}
    for example in examples:
        # A text's group is the label of its first occurrence, so all copies move together.
        group_of_text.setdefault(example.text, example.label)
    by_group: dict[int | None, list[str]] = {}
    for text, group in group_of_text.items():
        by_group.setdefault(group, []).append(text)

    held_out: set[str] = set()
    for texts in by_group.values():
        if len(texts) < 2:
            continue
        ranked = sorted(texts, key=lambda t: hashlib.sha256(salt + t.encode("utf-8")).digest())
        k = min(max(round(eval_fraction * len(ranked)), 1), len(ranked) - 1)
        held_out.update(ranked[:k])
    if not held_out or len(held_out) == len(group_of_text):
        raise ValueError(
            f"cannot hold out a split from {len(group_of_text)} distinct text(s); "
            "provide at least two distinct texts per label, or a separate eval file"
        )
    train = tuple(e for e in examples if e.text not in held_out)
    evaluation = tuple(e for e in examples if e.text in held_out)
    return OwnerData(train=train, eval=evaluation)


def load_owner_data(
    train_path: str | os.PathLike[str],
    eval_path: str | os.PathLike[str] | None = None,
    *,
    task: TaskKind | str,
    labels: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    salt: bytes = DEFAULT_SPLIT_SALT,
    limits: RecordLimits | None = None,
) -> OwnerData:
    """An owner's train and held-out records: two files, or one file split by split_train_eval."""
    train = load_records(train_path, task=task, labels=labels, limits=limits)
    if eval_path is None:
        return split_train_eval(train, eval_fraction=eval_fraction, salt=salt)
    evaluation = load_records(eval_path, task=task, labels=labels, limits=limits)
    return OwnerData(train=tuple(train), eval=tuple(evaluation))


def _check_task_labels(
    task: TaskKind | str, labels: Sequence[str] | None
) -> tuple[TaskKind, dict[str, int] | None]:
    task = TaskKind.parse(task)
    if task is TaskKind.CAUSAL_LM:
        if labels is not None:
            raise ValueError("labels must be None for a causal-lm task")
        return task, None
    if labels is None:
        raise ValueError("a classification task needs the session's label list")
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a sequence of str, got {type(labels).__name__}")
    if any(not isinstance(label, str) for label in labels):
        raise TypeError("every label must be a str")
    if len(labels) < 2:
        raise ValueError(f"a classification task needs at least 2 labels, got {len(labels)}")
    if any(not label.strip() for label in labels):
        raise ValueError("labels must be non-blank strings")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct")
    return task, {label: i for i, label in enumerate(labels)}


def _check_limits(limits: RecordLimits | None) -> RecordLimits:
    if limits is None:
        return RecordLimits()
    if not isinstance(limits, RecordLimits):
        raise TypeError(f"limits must be a RecordLimits, got {type(limits).__name__}")
    return limits


def _schema_hint(task: TaskKind, fmt: RecordFormat) -> str:
    if fmt is RecordFormat.CSV:
        return "text,label" if task is TaskKind.CLASSIFICATION else "text"
    if task is TaskKind.CLASSIFICATION:
        return '{"text": "...", "label": "..."}'
    return '{"text": "..."}'


def _parse(
    data: bytes,
    source: str,
    fmt: RecordFormat,
    task: TaskKind,
    label_ids: dict[str, int] | None,
    limits: RecordLimits,
) -> list[Example]:
    lines = _decode_lines(data, source)
    rows = (
        _jsonl_rows(lines, source, task)
        if fmt is RecordFormat.JSONL
        else _csv_rows(lines, source, task)
    )
    examples: list[Example] = []
    for line_no, row in rows:
        if len(examples) == limits.max_records:
            raise RecordError(
                source,
                line_no,
                None,
                f"more than {limits.max_records} records; split the file or raise "
                "RecordLimits.max_records",
            )
        examples.append(_validate(row, source, line_no, task, label_ids, limits))
    if not examples:
        raise RecordError(
            source,
            None,
            None,
            f"the file holds no records; expected one per line like {_schema_hint(task, fmt)}",
        )
    return examples


def _decode_lines(data: bytes, source: str) -> list[str]:
    # Decoding line by line lets a bad byte be reported with its line number.
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines: list[str] = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RecordError(
                source,
                number,
                None,
                f"not valid UTF-8 (byte {exc.start} of the line); save the file as UTF-8",
            ) from None
    return lines


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _jsonl_rows(
    lines: list[str], source: str, task: TaskKind
) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_reject_duplicate_keys)
        except _DuplicateKey as exc:
            raise RecordError(
                source, number, exc.key, "appears twice in the record; keep one"
            ) from None
        except json.JSONDecodeError as exc:
            raise RecordError(
                source,
                number,
                None,
                f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one "
                f"JSON object like {_schema_hint(task, RecordFormat.JSONL)}",
            ) from None
        if not isinstance(value, dict):
            raise RecordError(
                source,
                number,
                None,
                f"expected a JSON object like {_schema_hint(task, RecordFormat.JSONL)}, "
                f"got {_json_type(value)}",
            )
        yield number, value


def _csv_rows(
    lines: list[str], source: str, task: TaskKind
) -> Iterator[tuple[int, dict[str, Any]]]:
    expected = [TEXT_FIELD, LABEL_FIELD] if task is TaskKind.CLASSIFICATION else [TEXT_FIELD]
    hint = _schema_hint(task, RecordFormat.CSV)
    reader = csv.reader(io.StringIO("\n".join(lines), newline=""), strict=True)
    header: list[str] | None = None
    consumed = 0
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RecordError(
                source,
                start,
                None,
                f"not valid CSV ({exc}); quote fields that hold commas, quotes or newlines",
            ) from None
        consumed = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip() and header is not None):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            _check_header(header, expected, source, start, hint)
            continue
        if len(row) != len(header):
            raise RecordError(
                source,
                start,
                None,
                f"row has {len(row)} cell(s) but the header has {len(header)}; "
                "quote text that holds commas",
            )
        yield start, dict(zip(header, row, strict=True))
    if header is None:
        raise RecordError(source, None, None, f"the file is empty; the first line must be: {hint}")


def _check_header(
    header: list[str], expected: list[str], source: str, line: int, hint: str
) -> None:
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise RecordError(source, line, column, f"column appears twice in the header; {hint}")
        seen.add(column)
        if column not in expected:
            raise RecordError(
                source,
                line,
                column,
                f"unexpected column in the header; the first line must be: {hint}",
            )
    for column in expected:
        if column not in seen:
            raise RecordError(
                source, line, column, f"missing from the header; the first line must be: {hint}"
            )


def _validate(
    row: dict[str, Any],
    source: str,
    line: int,
    task: TaskKind,
    label_ids: dict[str, int] | None,
    limits: RecordLimits,
) -> Example:
    allowed = (TEXT_FIELD, LABEL_FIELD) if task is TaskKind.CLASSIFICATION else (TEXT_FIELD,)
    for key in row:
        if key not in allowed:
            raise RecordError(
                source,
                line,
                key,
                f"unexpected field for a {task.value} record; the schema is "
                f"{_schema_hint(task, RecordFormat.JSONL)}",
            )
    if TEXT_FIELD not in row:
        raise RecordError(source, line, TEXT_FIELD, "missing; every record needs a text")
    text = row[TEXT_FIELD]
    if not isinstance(text, str):
        raise RecordError(source, line, TEXT_FIELD, f"expected a string, got {_json_type(text)}")
    if not text.strip():
        raise RecordError(source, line, TEXT_FIELD, "is empty or blank; remove the record")
    if len(text) > limits.max_text_chars:
        raise RecordError(
            source,
            line,
            TEXT_FIELD,
            f"is {len(text)} characters, over the limit of {limits.max_text_chars}; "
            "shorten it or raise RecordLimits.max_text_chars",
        )
    if label_ids is None:
        return Example(text=text)
    if LABEL_FIELD not in row:
        raise RecordError(source, line, LABEL_FIELD, "missing; classification records need a label")
    label = row[LABEL_FIELD]
    if not isinstance(label, str):
        raise RecordError(
            source,
            line,
            LABEL_FIELD,
            f"expected a string (one of the session's labels), got {_json_type(label)}",
        )
    if label not in label_ids:
        known = ", ".join(repr(k) for k in label_ids)
        raise RecordError(
            source,
            line,
            LABEL_FIELD,
            f"unknown label {label!r}; the session's labels are: {known}",
        )
    return Example(text=text, label=label_ids[label])


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
