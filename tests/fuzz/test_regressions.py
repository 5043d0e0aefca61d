"""Every input a fuzzer crashed a parser with, kept under tests/data/fuzz/, and its typed error.

One loader walks the vectors (transparency-dev style): ``<target>/<name>.bin`` is the exact
input of ``targets.TARGETS[<target>]``, ``<name>.json`` says what it is, who found it, what was
fixed, and ``want``: the error class the input must now be refused with, or
``check-failed:<check>`` for a verifier that must now answer with that check failed.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import grpc
import pytest

from enclave.attest.verdict import Verdict
from fedtune._proto import audit_pb2
from fedtune.audit.log import AuditLog
from fedtune.audit.service import serve

from . import _seeds as seeds
from .rpc import check_call, methods
from .targets import TARGETS

VECTORS = sorted(seeds.FUZZ_VECTORS.glob("*/*.json"))


def _error_class(dotted: str) -> type[BaseException]:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_there_are_vectors_for_the_fixed_crashes() -> None:
    assert len(VECTORS) >= 10


@pytest.mark.parametrize("path", VECTORS, ids=[f"{p.parent.name}/{p.stem}" for p in VECTORS])
def test_vector_is_refused_with_the_typed_error(path: Path) -> None:
    meta = json.loads(path.read_text())
    assert meta["target"] == path.parent.name
    assert meta["desc"] and meta["found_by"] and meta["fix"]
    data = path.with_suffix(".bin").read_bytes()
    outcome = TARGETS[meta["target"]].run(data)
    if meta["want"].startswith("check-failed:"):
        assert outcome.ok, f"{path.stem}: {outcome.error!r}"
        value = outcome.value
        checks = value.checks if isinstance(value, Verdict) else value[1]
        failed = {c.name: c.reason for c in checks if c.status.value == "failed"}
        assert meta["want"].removeprefix("check-failed:") in failed, failed
        return
    assert not outcome.ok, f"{path.stem} is accepted"
    want = _error_class(meta["want"])
    assert isinstance(outcome.error, want), f"{path.stem}: got {outcome.error!r}, want {want}"
    assert str(outcome.error).strip()


def test_checkpoint_size_beyond_sqlite_integers_is_served_not_an_internal_error(
    tmp_path: Path,
) -> None:
    # Found by test_rpc: GetCheckpoint(at_or_below_size >= 2**63) reached SQLite as an integer
    # it cannot hold (OverflowError), which the servicer answered with INTERNAL. Fixed in
    # fedtune/audit/reader.py: the bound is clamped to the latest size first.
    log = AuditLog.open(tmp_path / "audit.db", seeds.LOG_IDENTITY, seeds.LOG_ORIGIN)
    log.append(seeds.audit_event(0))
    server, port = serve(log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        (method,) = [m for m in methods(audit_pb2, "AuditLog") if m.path.endswith("/GetCheckpoint")]
        for bound in (2**63, 2**64 - 1):
            request = audit_pb2.GetCheckpointRequest(at_or_below_size=bound)
            assert check_call(channel, method, request) is grpc.StatusCode.OK
        assert log.checkpoint(at_or_below=2**64 - 1) == log.checkpoint()
    finally:
        channel.close()
        server.stop(grace=None).wait(10)
        log.close()
