"""Run the atheris campaign: every harness (or those named) for N seconds each, seeded, in turn.

    python tests/fuzz/atheris/run.py --seconds 180            # all targets, 3 minutes each
    python tests/fuzz/atheris/run.py --seconds 60 note keys   # two targets

Each target gets a corpus folder seeded with the real inputs of ``targets.py`` (plus the
regression vectors under tests/data/fuzz/<target>/); a crash is written to
``<workdir>/<target>/crashes/``. At the end a table
gives, per target, the executions, the coverage (libFuzzer ``cov``/``ft``), the corpus size and
the crash files; the exit status is 1 when any target crashed. libFuzzer stops at a crash, so
a target is restarted on its grown corpus with that crash's signature marked known (one report
per bug) until its time is used; ``fuzz-<n>.log`` in its folder holds each run's output. The
work folder defaults to ``build/fuzz`` (git-ignored); corpora are kept between runs, so a
second run starts where the first stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
# As in _harness.py: the harness files must not shadow packages (safetensors.py), and the
# repository root must come before tests/ (whose enclave/ folder is no package).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

_STAT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_SIGNATURE = "FEDTUNE-CRASH-SIGNATURE: "


@dataclass
class Result:
    """What one target's run produced."""

    target: str
    seconds: float
    execs: int
    cov: int
    ft: int
    corpus: int
    crashes: list[Path]


def _harnesses() -> list[str]:
    return sorted(
        p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run"
    )


def _seed_corpus(target: str, corpus: Path) -> int:
    from tests.fuzz._seeds import fuzz_vectors
    from tests.fuzz.targets import TARGETS

    corpus.mkdir(parents=True, exist_ok=True)
    inputs = list(TARGETS[target].seeds())
    inputs += [p.read_bytes() for p in fuzz_vectors(target) if p.suffix == ".bin"]
    for data in inputs:
        (corpus / f"seed-{hashlib.sha256(data).hexdigest()[:16]}").write_bytes(data)
    return len(inputs)


def _stats(text: str) -> tuple[int, int, int]:
    """(executions, cov, ft) from one libFuzzer log."""
    execs = cov = ft = 0
    for match in _STAT.finditer(text):
        execs, cov, ft = int(match[1]), max(cov, int(match[2])), max(ft, int(match[3]))
    done = _DONE.findall(text)
    if done:
        execs = max(execs, int(done[-1][0]))
    return execs, cov, ft


_TOKEN = re.compile(rb'"[A-Za-z0-9_.:+/-]{1,40}"')
# Values parsers get wrong, offered to libFuzzer's dictionary mutator for the JSON targets.
_TRICKY = (b"1" * 30, b"1e999", b"-0", b"[[[[[[[[", b'"\\ud800"', b"0001-01-01T00:00:00+01:00")


def _dictionary(corpus: Path, path: Path) -> Path | None:
    """A libFuzzer dictionary of the JSON strings in the seeds (keys, enum values, dates)."""
    tokens: set[bytes] = set()
    for seed in corpus.glob("seed-*"):
        tokens.update(_TOKEN.findall(seed.read_bytes()))
    if not tokens:
        return None
    tokens.update(_TRICKY)
    lines = []
    for token in sorted(tokens)[:2000]:
        escaped = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token
        )
        lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def run_target(target: str, seconds: int, workdir: Path, *, rss_mb: int, timeout_s: int) -> Result:
    """Fuzz one target for ``seconds``; collect its statistics and crash files.

    libFuzzer stops at a crash (atheris has no working fork mode), so the target is restarted
    on its grown corpus with the crash's signature marked known, until the time is used.
    """
    folder = workdir / target
    corpus, crashes = folder / "corpus", folder / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    _seed_corpus(target, corpus)
    max_len = max(64 * 1024, *(p.stat().st_size for p in corpus.iterdir()))
    dictionary = _dictionary(corpus, folder / "tokens.dict")
    before = set(crashes.iterdir())
    known: list[str] = []
    execs = cov = ft = 0
    unexplained = 0
    started = time.monotonic()
    for attempt in range(1, 1000):
        left = int(seconds - (time.monotonic() - started))
        if left < 2:
            break
        command = [
            sys.executable,
            str(HERE / f"{target}.py"),
            f"-max_total_time={left}",
            f"-timeout={timeout_s}",
            f"-rss_limit_mb={rss_mb}",
            f"-max_len={max_len}",
            "-print_final_stats=1",
            f"-artifact_prefix={crashes}/",
            *([f"-dict={dictionary}"] if dictionary else []),
            str(corpus),
        ]
        log_path = folder / f"fuzz-{attempt}.log"
        with open(log_path, "w") as log:
            finished = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                timeout=left + 120,
                check=False,
                env={**os.environ, "PYTHONHASHSEED": "0", "FEDTUNE_FUZZ_KNOWN": "\n".join(known)},
            )
        text = log_path.read_text(errors="replace")
        run_execs, run_cov, run_ft = _stats(text)
        execs, cov, ft = execs + run_execs, max(cov, run_cov), max(ft, run_ft)
        if finished.returncode == 0:
            break
        found = [
            line.split(_SIGNATURE, 1)[1].strip() for line in text.splitlines() if _SIGNATURE in line
        ]
        if found:
            known.extend(found)
        else:
            # A timeout or out-of-memory stop (libFuzzer writes timeout-/oom- files), or a
            # failure to start: a few of those and the target is left for a human to look at.
            unexplained += 1
            if unexplained >= 3:
                break
    new = sorted(set(crashes.iterdir()) - before)
    for line in known:
        print(f"  crash: {line}", flush=True)
    return Result(
        target, time.monotonic() - started, execs, cov, ft, len(list(corpus.iterdir())), new
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "targets", nargs="*", help=f"targets to run (default: all of {_harnesses()})"
    )
    parser.add_argument("--seconds", type=int, default=60, help="seconds per target")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "fuzz")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    args = parser.parse_args(argv)
    targets = args.targets or _harnesses()
    unknown = set(targets) - set(_harnesses())
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {_harnesses()}")
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")

    results = []
    for target in targets:
        print(f"fuzzing {target} for {args.seconds} s ...", flush=True)
        result = run_target(
            target, args.seconds, args.workdir, rss_mb=args.rss_limit_mb, timeout_s=args.timeout
        )
        results.append(result)
        print(
            f"  {result.execs} execs, cov {result.cov}, ft {result.ft}, corpus {result.corpus}, "
            f"{len(result.crashes)} new crash file(s)",
            flush=True,
        )

    print()
    header = f"{'target':<24}{'seconds':>8}{'execs':>12}{'exec/s':>9}{'cov':>7}{'ft':>7}"
    print(f"{header}{'corpus':>8}  crashes")
    for r in results:
        rate = r.execs / r.seconds if r.seconds else 0
        crashes = ", ".join(str(p) for p in r.crashes) or "-"
        print(
            f"{r.target:<24}{r.seconds:>8.0f}{r.execs:>12}{rate:>9.0f}{r.cov:>7}{r.ft:>7}"
            f"{r.corpus:>8}  {crashes}"
        )
    print(f"logs and corpora: {args.workdir}")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
