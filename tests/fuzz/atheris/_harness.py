"""Shared body of the atheris harnesses: instrument our packages, fuzz one target of targets.py."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
# The harness folder leaves the path (its files are named after targets: ``safetensors.py``
# must not shadow the safetensors package) and the repository root goes first (``tests/enclave``,
# a plain folder, must not shadow ``enclave``).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

# Coverage feedback from our own code (the parsers) and the harness glue; third-party code
# (pydantic-core, cryptography's Rust) is native and reports no Python coverage anyway.
with atheris.instrument_imports(include=["crypto", "enclave", "fedtune", "tests.fuzz"]):
    import crypto.ckks
    import crypto.secagg.messages  # noqa: F401 - imported lazily by targets.py, instrumented here
    from tests.fuzz import _contract
    from tests.fuzz.targets import TARGETS

# libFuzzer owns SIGALRM (-timeout) and the RSS limit (-rss_limit_mb).
_contract.USE_ALARM = False


# Crashes already reported in this campaign (run.py restarts the fuzzer after each crash and
# passes their signatures here), so one bug is reported once and the search goes on past it.
KNOWN = frozenset(filter(None, os.environ.get("FEDTUNE_FUZZ_KNOWN", "").split("\n")))
SIGNATURE_PREFIX = "FEDTUNE-CRASH-SIGNATURE: "


def signature(exc: BaseException) -> str:
    """Exception type and the innermost frame in our code: one bug, one signature."""
    root = exc.__cause__ or exc
    ours = [
        f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}"
        for f in traceback.extract_tb(root.__traceback__)
        if Path(f.filename).is_relative_to(ROOT) and "/tests/" not in f.filename
    ]
    where = ours[-1] if ours else "?"
    return f"{type(exc).__name__}/{type(root).__name__} at {where}"


def main(name: str) -> None:
    """Fuzz target ``name`` with libFuzzer's command line from ``sys.argv``."""
    target = TARGETS[name]
    for seed in target.seeds():  # warm the caches so the first timed input is not the slowest
        target.run(seed)

    def one_input(data: bytes) -> None:
        try:
            target.run(data)
        except Exception as exc:
            found = signature(exc)
            if found in KNOWN:
                return
            print(f"\n{SIGNATURE_PREFIX}{found}", file=sys.stderr, flush=True)
            raise

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
