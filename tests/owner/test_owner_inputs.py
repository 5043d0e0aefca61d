"""Fast checks of what an owner gives ``fedtune owner join``: records, owner.toml, staging, jail."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclave.ml.errors import RecordError
from fedtune.owner.config import OwnerConfig, starter_config
from fedtune.owner.errors import JailError, OwnerConfigError, StagingError
from fedtune.owner.jail import JailSpec, build_jail_argv
from fedtune.owner.records import check_records
from fedtune.owner.staging import make_staging_dir, stage_records

LABELS = ["ham", "spam"]
GOOD_JSONL = '{"text": "hello there", "label": "ham"}\n{"text": "buy now", "label": "spam"}\n'


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "fragment"),
    [
        ("train.jsonl", GOOD_JSONL + '{"text": "x", "lable": "ham"}\n', 3, "lable",
         "unexpected field"),
        ("train.jsonl", GOOD_JSONL + '{"text": "x", "label": "eggs"}\n', 3, "label", "eggs"),
        ("train.jsonl", '{"text": "ok", "label": "ham"}\n{"text": 7, "label": "ham"}\n', 2,
         "text", "string"),
        ("train.jsonl", GOOD_JSONL + "not json\n", 3, None, "JSON"),
        ("train.csv", "text,label\nhello,ham\nbuy,spam\n,ham\n", 4, "text", "blank"),
        ("train.csv", "text,label\nhello,ham\nbuy,bacon\n", 3, "label", "bacon"),
        ("train.csv", "text,colour\nhello,red\n", 1, "colour", "column"),
    ],
)
def test_a_bad_record_names_file_line_and_field(
    tmp_path: Path, name: str, content: str, line: int, field: str | None, fragment: str
) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        check_records(tmp_path, name, task="classification", labels=LABELS)
    error = caught.value
    assert error.file == str(tmp_path / name)
    assert (error.line, error.field) == (line, field)
    assert fragment.lower() in str(error).lower()
    assert f"{tmp_path / name}:{line}" in str(error)


def test_good_records_in_both_formats_are_counted(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(GOOD_JSONL, encoding="utf-8")
    (tmp_path / "eval.csv").write_text('text,label\n"a, quoted",ham\nb,spam\nc,ham\n', "utf-8")
    counts = check_records(tmp_path, "train.jsonl", "eval.csv", task="classification",
                           labels=LABELS)
    assert (counts.train, counts.eval) == (2, 3)


def test_a_bad_eval_file_is_reported_even_when_train_is_good(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(GOOD_JSONL, encoding="utf-8")
    (tmp_path / "eval.jsonl").write_text('{"text": "fine", "label": "ham"}\n{"text": ""}\n',
                                         encoding="utf-8")
    with pytest.raises(RecordError) as caught:
        check_records(tmp_path, "train.jsonl", "eval.jsonl", task="classification",
                      labels=LABELS)
    assert caught.value.file.endswith("eval.jsonl") and caught.value.line == 2


def test_staging_is_all_or_nothing(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    (records / "train.jsonl").write_text(GOOD_JSONL, encoding="utf-8")
    staging = make_staging_dir(tmp_path / "staging")
    assert staging.stat().st_mode & 0o777 == 0o700
    with pytest.raises(StagingError, match=r"eval\.jsonl"):
        stage_records(records, staging, ["train.jsonl", "eval.jsonl"])
    assert list(staging.iterdir()) == []  # the train file staged first was removed again
    for bad in ("../records/train.jsonl", "/etc/passwd"):
        with pytest.raises(StagingError, match="plain path"):
            stage_records(records, staging, [bad])
    (records / "link.jsonl").symlink_to(records / "train.jsonl")
    with pytest.raises(StagingError, match="symbolic link"):
        stage_records(records, staging, ["link.jsonl"])
    staged = stage_records(records, staging, ["train.jsonl"])
    assert [p.name for p in staged] == ["train.jsonl"]
    assert (staging / "train.jsonl").read_text("utf-8") == GOOD_JSONL
    with pytest.raises(StagingError, match="not empty"):
        make_staging_dir(staging)  # a leftover staging dir is never reused silently


def test_owner_toml_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "owner.toml"
    text = starter_config(superlink="127.0.0.1:9092", measurement=bytes(range(48)),
                          simulated=True)
    path.write_text(text, encoding="utf-8")
    config = OwnerConfig.load(path)
    assert config.policy.allow_simulated and config.data.train == "train.jsonl"
    path.write_text(text.replace("[data]", "[data]\ncolumns = 3"), encoding="utf-8")
    with pytest.raises(OwnerConfigError, match=r"owner\.toml: data\.columns"):
        OwnerConfig.load(path)
    path.write_text(text.replace('train = "train.jsonl"', 'train = "../x.jsonl"'), "utf-8")
    with pytest.raises(OwnerConfigError, match=r"data\.train"):
        OwnerConfig.load(path)
    path.write_text(text.replace("allow_simulated = true", "allow_simulated = false"), "utf-8")
    with pytest.raises(OwnerConfigError, match="allow_simulated"):
        OwnerConfig.load(path)
    with pytest.raises(OwnerConfigError, match="fedtune owner init"):
        OwnerConfig.load(tmp_path / "missing.toml")


def test_the_jail_refuses_to_bind_a_directory_holding_the_records(tmp_path: Path) -> None:
    home = tmp_path / "node"
    home.mkdir()
    records = tmp_path / "records"
    records.mkdir()
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir()
    spec = JailSpec(socket_dir=socket_dir, read_only_files=(), protected=(records,),
                    code_dirs=(tmp_path,), interpreter=())
    with pytest.raises(JailError, match="records"):
        build_jail_argv(spec, ["flower-supernode"], home=home, env={})
    spec = JailSpec(socket_dir=socket_dir, read_only_files=(), protected=(records,),
                    code_dirs=(), interpreter=())
    argv = build_jail_argv(spec, ["flower-supernode"], home=home,
                           env={"FEDTUNE_HOME": "/secret", "FLWR_HOME": str(home), "PATH": "/bin"})
    assert str(records) not in argv and "/secret" not in " ".join(argv)
    assert argv[argv.index("--") + 1:] == ["flower-supernode"]
    assert ["--setenv", "FLWR_HOME", str(home)] == argv[argv.index("FLWR_HOME") - 1:
                                                       argv.index("FLWR_HOME") + 2]
