"""Plaintext weights never touch disk: no 64-byte window of them in a file the sandbox can write.

What the scan covers, after the session sandbox loaded the model and trained a round:

- every place the sandbox can write to: its private tmpfs (``/tmp`` and ``/dev/shm``, read
  through ``/proc/<pid>/root`` while it runs; memory-backed, but it must not hold plaintext
  either), and the socket directory (the one host directory bound writable);
- the owner's data directory (bound read-only; scanned anyway) and the whole work directory
  (socket directory and the runtime's log);
- files in the host's temporary directory changed since the sandbox started (the sandbox
  cannot see it; this catches a leak through a path we did not think of), minus this test
  session's own directories (the provider's plaintext model, the scanner's planted control).

Not covered: swap (the runtime does not mlock; a real TEE encrypts memory instead) and files
other processes of the machine write elsewhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from enclave.sandbox.bwrap import SANDBOX_SHM, SANDBOX_TMP, interpreter_dirs

from ._scan import WINDOW, PlaintextIndex, scan_paths
from ._support import ProviderSide, Trained


@pytest.fixture(scope="module")
def index(provider_side: ProviderSide) -> PlaintextIndex:
    return PlaintextIndex(provider_side.weights)


def test_the_scanner_finds_a_window_at_any_offset_and_ignores_padding(
    index: PlaintextIndex, provider_side: ProviderSide, tmp_path: Path
) -> None:
    weights = provider_side.weights
    offset = len(weights) // 3 + 7  # not aligned to anything
    # The bytes around a planted piece differ from the plaintext's neighbours, so exactly the
    # planted window matches (random ones would extend the match 1 time in 256).
    before = os.urandom(1000) + bytes([weights[offset - 1] ^ 0xFF])
    after = bytes([weights[offset + WINDOW] ^ 0xFF]) + os.urandom(16)
    planted = before + weights[offset : offset + WINDOW] + after
    (tmp_path / "leak.bin").write_bytes(planted)
    (tmp_path / "short.bin").write_bytes(before + weights[offset : offset + WINDOW - 1])
    (tmp_path / "zeros.bin").write_bytes(bytes(4096) + b"\x00\x00\x80\x3f" * 64)
    report = scan_paths(index, [tmp_path])
    assert report.files == 3
    assert report.hits is not None
    assert [(Path(h.path).name, h.offset) for h in report.hits] == [("leak.bin", 1001)]
    assert report.hits[0].plaintext_offset == offset


def test_no_file_the_sandbox_could_write_holds_plaintext(
    trained: Trained, index: PlaintextIndex, tmp_path_factory: pytest.TempPathFactory
) -> None:
    running = trained.running
    assert running.client.status().rounds_trained >= 1  # after load and train
    hits = []

    pid = running.handle.sandbox_pid
    assert pid is not None
    inside = Path(f"/proc/{pid}/root")
    try:
        os.listdir(inside / "tmp")
    except PermissionError:
        pytest.skip("the sandbox's tmpfs is readable only with ptrace rights over it (root)")
    # Read-only binds that land inside the tmpfs (a virtualenv under /tmp) are not writable
    # by the sandbox (test_writes_outside_the_private_tmpfs_fail): leave them out of the walk.
    read_only = [inside / str(d).lstrip("/") for d in interpreter_dirs()
                 if d.is_relative_to(SANDBOX_TMP) or d.is_relative_to(SANDBOX_SHM)]
    private = scan_paths(index, [inside / "tmp", inside / "dev" / "shm"], exclude=read_only)
    assert private.unreadable == 0
    hits += private.hits or []

    owner = scan_paths(index, [running.data_dir, running.work_dir])
    assert owner.files >= 2  # the records and the runtime log at least
    assert owner.unreadable == 0
    hits += owner.hits or []

    # pytest's session directories (this one and any other session running beside it) are
    # left out of the host scan: they hold the provider's plaintext model and the scanner's
    # planted control, deterministic across sessions; the sandbox's own data and work
    # directories among them were scanned above.
    basetemp = tmp_path_factory.getbasetemp()
    sessions = basetemp.parent if basetemp.parent.name.startswith("pytest-of-") else basetemp
    host_tmp = scan_paths(
        index, [Path(tempfile.gettempdir())], exclude=[sessions], newer_than=trained.started_at
    )
    hits += host_tmp.hits or []
    assert not hits, f"plaintext weights found on disk: {hits}"
