"""Record loading: the documented schema, every refusal with file/line/field, and the split rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enclave.errors import EnclaveError
from enclave.ml.data import (
    Example,
    RecordLimits,
    load_owner_data,
    load_records,
    parse_records,
    split_train_eval,
)
from enclave.ml.errors import RecordError

LABELS = ["asyncio", "email", "xml"]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def load_error(path: Path, **kw: object) -> RecordError:
    kw.setdefault("task", "classification")
    if kw["task"] == "classification":
        kw.setdefault("labels", LABELS)
    with pytest.raises(RecordError) as info:
        load_records(path, **kw)
    return info.value


# --- the happy paths --------------------------------------------------------------------------


def test_jsonl_classification_maps_labels_by_session_list(tmp_path):
    path = write(
        tmp_path,
        "r.jsonl",
        jsonl(
            {"text": "Run the event loop.", "label": "asyncio"},
            {"text": "Parse a MIME message.", "label": "email"},
            {"text": "Build an element tree.", "label": "xml"},
        ),
    )
    assert load_records(path, task="classification", labels=LABELS) == [
        Example("Run the event loop.", 0),
        Example("Parse a MIME message.", 1),
        Example("Build an element tree.", 2),
    ]
    # Another owner with the same session list numbers labels the same way.
    assert [
        e.label
        for e in load_records(path, task="classification", labels=["xml", "email", "asyncio"])
    ] == [2, 1, 0]


def test_jsonl_tolerates_bom_crlf_blank_lines_and_keeps_text_verbatim(tmp_path):
    content = (
        "\ufeff"
        + json.dumps({"text": "  a\ttab ", "label": "xml"})
        + "\r\n\r\n   \n"
        + json.dumps({"label": "email", "text": "é ünïcode"})
        + "\r\n"
    )
    path = write(tmp_path, "r.jsonl", content)
    assert load_records(path, task="classification", labels=LABELS) == [
        Example("  a\ttab ", 2),
        Example("é ünïcode", 1),
    ]


def test_csv_classification_with_quoted_commas_and_newlines(tmp_path):
    path = write(
        tmp_path, "r.csv", 'label,text\r\nemail,"Hello, world"\r\n\r\nxml,"two\nlines"\r\n'
    )
    assert load_records(path, task="classification", labels=LABELS) == [
        Example("Hello, world", 1),
        Example("two\nlines", 2),
    ]


def test_causal_lm_records_carry_no_label(tmp_path):
    j = write(tmp_path, "r.jsonl", jsonl({"text": "one"}, {"text": "two"}))
    c = write(tmp_path, "r.csv", "text\none\ntwo\n")
    expected = [Example("one"), Example("two")]
    assert load_records(j, task="causal-lm") == expected
    assert load_records(c, task="causal-lm") == expected


def test_parse_records_in_memory_names_the_source():
    with pytest.raises(RecordError) as info:
        parse_records(
            b'{"text": "x"}\n',
            source="mem://owner",
            fmt="jsonl",
            task="classification",
            labels=LABELS,
        )
    assert (info.value.file, info.value.line, info.value.field) == ("mem://owner", 1, "label")


# --- every refusal names file, line and field --------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line", "field", "fragment"),
    [
        ('{"text": "ok", "label": "xml"}\n{"text": "broken", \n', 2, None, "not valid JSON"),
        ('{"text": "ok", "label": "xml"}\n["text", "xml"]\n', 2, None, "got an array"),
        ('{"text": "ok", "label": "xml"}\n\n{"label": "xml"}\n', 3, "text", "missing"),
        ('{"text": "ok"}\n', 1, "label", "missing"),
        ('{"text": 5, "label": "xml"}\n', 1, "text", "expected a string, got a number"),
        ('{"text": "ok", "label": 1}\n', 1, "label", "expected a string"),
        ('{"text": "ok", "label": null}\n', 1, "label", "got null"),
        ('{"text": "ok", "label": "json"}\n', 1, "label", "unknown label 'json'"),
        ('{"text": "", "label": "xml"}\n', 1, "text", "empty or blank"),
        ('{"text": " \\n\\t", "label": "xml"}\n', 1, "text", "empty or blank"),
        ('{"text": "ok", "label": "xml", "lable": "xml"}\n', 1, "lable", "unexpected field"),
        ('{"text": "a", "text": "b", "label": "xml"}\n', 1, "text", "appears twice"),
    ],
)
def test_jsonl_refusals(tmp_path, content, line, field, fragment):
    path = write(tmp_path, "owner.jsonl", content)
    error = load_error(path)
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert fragment in error.reason
    assert f"{path}:{line}:" in str(error)
    if field is not None:
        assert repr(field) in str(error)
    assert isinstance(error, EnclaveError) and isinstance(error, ValueError)


def test_jsonl_bad_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "owner.jsonl", b'{"text": "ok", "label": "xml"}\n{"text": "\xff"}\n')
    error = load_error(path)
    assert (error.line, error.field) == (2, None)
    assert "UTF-8" in error.reason


def test_causal_lm_refuses_a_label_field(tmp_path):
    path = write(tmp_path, "lm.jsonl", jsonl({"text": "ok", "label": "xml"}))
    error = load_error(path, task="causal-lm")
    assert (error.line, error.field) == (1, "label")


@pytest.mark.parametrize(
    ("content", "line", "field", "fragment"),
    [
        ("text,labels\nhi,xml\n", 1, "labels", "unexpected column"),
        ("text\nhi\n", 1, "label", "missing from the header"),
        ("text,label,text\nhi,xml,hi\n", 1, "text", "appears twice"),
        ("text,label\nhi,xml\nthere,xml,extra\n", 3, None, "3 cell(s)"),
        ('text,label\nhi,xml\n"unclosed,xml\n', 3, None, "not valid CSV"),
        ("text,label\nhi,xml\n,xml\n", 3, "text", "empty or blank"),
        ("text,label\nhi,json\n", 2, "label", "unknown label"),
        ('text,label\n"multi\nline",xml\nbad,nope\n', 4, "label", "unknown label"),
    ],
)
def test_csv_refusals(tmp_path, content, line, field, fragment):
    path = write(tmp_path, "owner.csv", content)
    error = load_error(path)
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert fragment in error.reason


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.jsonl", "", "holds no records"),
        ("blank.jsonl", "\n\n  \n", "holds no records"),
        ("header-only.csv", "text,label\n", "holds no records"),
        ("empty.csv", "", "the file is empty"),
        ("records.txt", "text\n", "cannot tell the record format"),
    ],
)
def test_whole_file_refusals(tmp_path, name, content, fragment):
    path = write(tmp_path, name, content)
    error = load_error(path)
    assert (error.file, error.line, error.field) == (str(path), None, None)
    assert fragment in error.reason


def test_missing_file_is_a_record_error(tmp_path):
    error = load_error(tmp_path / "absent.jsonl")
    assert "cannot read the file" in error.reason


# --- limits -----------------------------------------------------------------------------------


def test_record_count_limit_names_the_first_record_over(tmp_path):
    path = write(tmp_path, "r.jsonl", jsonl(*({"text": f"t{i}", "label": "xml"} for i in range(4))))
    assert (
        len(
            load_records(
                path, task="classification", labels=LABELS, limits=RecordLimits(max_records=4)
            )
        )
        == 4
    )
    error = load_error(path, limits=RecordLimits(max_records=3))
    assert (error.line, error.field) == (4, None)
    assert "more than 3 records" in error.reason


def test_text_length_limit(tmp_path):
    path = write(
        tmp_path,
        "r.jsonl",
        jsonl({"text": "x" * 10, "label": "xml"}, {"text": "x" * 11, "label": "xml"}),
    )
    error = load_error(path, limits=RecordLimits(max_text_chars=10))
    assert (error.line, error.field) == (2, "text")
    assert "11 characters" in error.reason


def test_file_size_limit_refuses_before_parsing(tmp_path):
    content = jsonl({"text": "a", "label": "xml"})
    path = write(tmp_path, "r.jsonl", content)
    limit = len(content.encode()) - 1
    error = load_error(path, limits=RecordLimits(max_file_bytes=limit))
    assert (error.line, error.field) == (None, None)
    assert str(limit) in error.reason


def test_parameters_are_checked_before_reading(tmp_path):
    path = write(tmp_path, "r.jsonl", jsonl({"text": "a", "label": "xml"}))
    with pytest.raises(ValueError, match="needs the session's label list"):
        load_records(path, task="classification")
    with pytest.raises(ValueError, match="labels must be None"):
        load_records(path, task="causal-lm", labels=LABELS)
    with pytest.raises(ValueError, match="distinct"):
        load_records(path, task="classification", labels=["a", "a"])
    with pytest.raises(TypeError):
        load_records(path, task="classification", labels="axml")
    with pytest.raises(ValueError, match="unknown task"):
        load_records(path, task="regression")
    with pytest.raises(ValueError):
        RecordLimits(max_records=0)
    with pytest.raises(TypeError):
        RecordLimits(max_text_chars=1.5)


# --- the held-out split rule ------------------------------------------------------------------


def corpus(n: int) -> list[Example]:
    return [Example(f"record number {i}", i % 3) for i in range(n)]


def test_split_is_deterministic_order_independent_and_stratified():
    examples = corpus(60)
    split = split_train_eval(examples, eval_fraction=0.25)
    shuffled = split_train_eval(list(reversed(examples)), eval_fraction=0.25)
    assert {e.text for e in split.eval} == {e.text for e in shuffled.eval}
    assert len(split.eval) == 15 and len(split.train) == 45
    assert sorted(e.label for e in split.eval) == [0] * 5 + [1] * 5 + [2] * 5
    assert set(split.train) | set(split.eval) == set(examples)
    # File order is kept within each side.
    assert list(split.train) == [e for e in examples if e in split.train]


def test_split_known_answer():
    # Pinned: per label, the text with the smallest SHA-256(b"fedtune/eval-split/v1" + text)
    # (label 0: 132d253f... for "record number 0"; label 1: 408a665a...; label 2: 18835f04...).
    split = split_train_eval(corpus(12), eval_fraction=0.25)
    assert sorted(e.text for e in split.eval) == [
        "record number 0",
        "record number 4",
        "record number 8",
    ]
    other_salt = split_train_eval(corpus(12), eval_fraction=0.25, salt=b"another")
    assert {e.text for e in other_salt.eval} != {e.text for e in split.eval}


def test_split_keeps_duplicates_on_one_side():
    examples = corpus(30) + [Example("record number 4", 1)] * 3
    split = split_train_eval(examples, eval_fraction=0.3)
    eval_texts = {e.text for e in split.eval}
    assert not eval_texts & {e.text for e in split.train}


def test_split_refuses_what_cannot_be_split():
    with pytest.raises(ValueError, match="distinct text"):
        split_train_eval([Example("same", 0), Example("same", 0)])
    with pytest.raises(ValueError):
        split_train_eval(corpus(10), eval_fraction=1.0)
    with pytest.raises(TypeError):
        split_train_eval(corpus(10), salt="text")


def test_load_owner_data_from_one_or_two_files(tmp_path):
    rows = [{"text": f"doc {i}", "label": LABELS[i % 3]} for i in range(30)]
    train = write(tmp_path, "train.jsonl", jsonl(*rows))
    held = write(tmp_path, "eval.csv", "text,label\nheld out,email\n")
    one = load_owner_data(train, task="classification", labels=LABELS, eval_fraction=0.2)
    assert len(one.eval) == 6 and len(one.train) == 24
    two = load_owner_data(train, held, task="classification", labels=LABELS)
    assert two.eval == (Example("held out", 1),) and len(two.train) == 30
