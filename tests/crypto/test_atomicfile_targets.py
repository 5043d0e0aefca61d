"""atomic_output replaces regular files only: never a device, FIFO or directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crypto.atomicfile import atomic_write_bytes


def test_a_fifo_is_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError, match="not a regular file"):
        atomic_write_bytes(fifo, b"x")
    assert fifo.is_fifo()
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary left behind


def test_a_device_is_not_replaced() -> None:
    with pytest.raises(FileExistsError, match="not a regular file"):
        atomic_write_bytes("/dev/null", b"x")
    assert Path("/dev/null").is_char_device()


def test_a_directory_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write_bytes(tmp_path / "d", b"x")


def test_a_regular_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old")
    atomic_write_bytes(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"new"
