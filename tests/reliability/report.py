"""Regenerate docs/reliability.md: run every fault, bad-input and load case, render the table.

    python -m tests.reliability.report            # run the cases (slow ones too), write the doc
    python -m tests.reliability.report --fast     # only the cases of the default suite
    python -m tests.reliability.report --load     # ... and bench/load.py --quick
    python -m tests.reliability.report --junit a.xml b.xml   # render existing pytest runs

Each case names the tests that exercise it; its result is theirs (all passed, any failed, all
skipped with the reason, or no test). The catalogue below says what is injected, what the user
sees and what must hold; the run says whether it does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
COMMAND = "python -m tests.reliability.report"


@dataclass(frozen=True)
class Case:
    """One row: the fault or input, what happens, what the user sees, the tests that check it."""

    group: str
    case: str
    happens: str
    user_sees: str
    tests: tuple[str, ...]  # "module::test-name prefix"; empty: no test yet


CASES: tuple[Case, ...] = (
    # -- processes killed ---------------------------------------------------------------------
    Case("kill", "sandbox stopped mid-round, within the threshold",
         "the relay finds no sandbox; secure aggregation drops the owner at the next stage; "
         "the round commits the survivors' exact FedAvg",
         "session finishes; the dropout (stage, reason) is on the audit log and in the report",
         ("tests.federated.test_session_faults::test_a_dropout_within_the_threshold",)),
    Case("kill", "kill -9 of a sandbox runtime mid-round (weights only in its memory)",
         "SIGKILL right after the owner trained: no graceful stop, nothing flushed",
         "session finishes with the survivors' sum; the dropout is on the record; audit "
         "verify passes",
         ("tests.reliability.test_flower_faults::test_kill_9_mid_round_drops_the_owner_and_"
          "the_session_finishes[sandbox]",)),
    Case("kill", "sandboxes stopped mid-round, beyond the threshold",
         "the round cannot unmask; no aggregate is committed",
         "session fails cleanly with the reason on the record; no partial aggregate",
         ("tests.federated.test_session_faults::test_dropouts_beyond_the_threshold",)),
    Case("kill", "kill -9 of a SuperNode mid-round (its sandbox lives on)",
         "the SuperNode dies right after the owner trained; the aggregator hears nothing "
         "from it at the next stage",
         "session finishes with the survivors' sum; the report and the audit log name the "
         "dropped owner; audit verify passes",
         ("tests.reliability.test_flower_faults::test_kill_9_mid_round_drops_the_owner_and_the_session_finishes[supernode]",)),
    Case("kill", "kill -9 of the SuperLink mid-round",
         "Flower's run state dies with it; the runner's liveness check sees the exit",
         "`session run` fails at once with ProcessDiedError naming the SuperLink and its "
         "status (-9), not at the run timeout; the session stays running in the "
         "orchestrator with its record intact until the operator cancels it with the reason "
         "(no automatic resume); audit verify passes",
         ("tests.reliability.test_flower_faults::test_kill_9_of_the_superlink",)),
    Case("kill", "kill -9 of the orchestrator mid-upload",
         "the stream breaks; chunks fdatasync'ed and recorded before the kill stay stored",
         "UNAVAILABLE; after the restart the upload resumes from the first missing chunk",
         ("tests.orchestrator.test_crash::test_kill_9_during_upload",)),
    Case("kill", "kill -9 of the orchestrator during session transitions",
         "create/invite/accept/start/cancel in flight",
         "UNAVAILABLE; every acknowledged transition and nonce state survives the restart",
         ("tests.orchestrator.test_crash::test_kill_9_during_session_transitions",)),
    Case("kill", "kill -9 of the orchestrator mid-round, session running, then restart",
         "releases and round events in flight; the process dies without a flush",
         "UNAVAILABLE for the calls in flight; after the restart the session is still running, "
         "spent nonces stay spent, the round and the session finish; audit verify passes "
         "before and after the restart and holds every acknowledged step",
         ("tests.reliability.test_orchestrator_restart::",)),
    # -- network --------------------------------------------------------------------------------
    Case("link", "link down mid-upload",
         "connections reset both ways while both processes run",
         "UNAVAILABLE (no hang); once the link is back the upload resumes from the first "
         "missing chunk; the blob downloads byte-identical",
         ("tests.reliability.test_link_faults::test_link_down_mid_upload",)),
    Case("link", "link down mid-release",
         "the release request never arrives",
         "UNAVAILABLE; the nonce is unspent, the retry releases once (one audited release), a "
         "second try is a refused replay",
         ("tests.reliability.test_link_faults::test_link_down_mid_release",)),
    Case("link", "link down mid-round (owner <-> SuperLink)", "(not yet tested)", "", ()),
    # -- storage --------------------------------------------------------------------------------
    Case("storage", "blob store disk full during an upload (real ENOSPC, 1 MiB tmpfs)",
         "pwrite fails with ENOSPC; the store raises StorageFull",
         "RESOURCE_EXHAUSTED: 'storage is full ... free space and retry, the upload resumes "
         "from its first missing chunk'; after space is freed it does",
         ("tests.reliability.test_storage_faults::test_a_full_blob_disk",
          "tests.reliability.test_storage_faults::test_the_blob_store_turns_enospc")),
    Case("storage", "sealed blob corrupted at rest (one bit in segment 3)",
         "the orchestrator serves the stored bytes as they are",
         "verify_blob refuses (ManifestMismatchError on ciphertext_digest); unsealing names "
         "the segment (SegmentAuthError index 3); no plaintext comes out",
         ("tests.reliability.test_storage_faults::test_a_sealed_blob_corrupted_at_rest",)),
    Case("storage", "sealed segment tampered in transit into the sandbox",
         "LoadModel authenticates each segment",
         "DATA_LOSS naming the segment; an intact stream then loads",
         ("tests.sandbox.test_sandbox_load_failures::test_segment_tampered_in_transit",)),
    Case("storage", "a masked vector corrupted by a ClientApp",
         "the aggregator checks shape and range",
         "the owner is excluded with the reason on the record; the sum of the others is exact",
         ("tests.federated.test_session_faults::test_a_corrupted_masked_vector",)),
    # -- bad input ------------------------------------------------------------------------------
    Case("input", "every orchestrator RPC: random and mutated request messages",
         "hypothesis draws messages from the descriptors and mutates real requests",
         "a deliberate status with a reason (never UNKNOWN/INTERNAL), within 10 s; the "
         "server stays up; the audit log verifies after the campaign",
         ("tests.fuzz.test_rpc_requests::test_orchestrator_answers_fuzzed",
          "tests.fuzz.test_rpc_requests::test_every_orchestrator_rpc_reaches")),
    Case("input", "every orchestrator RPC: raw random bytes as the request",
         "bytes that are not a message, or mutated encodings",
         "gRPC's own refusal before any servicer, or a deliberate status",
         ("tests.fuzz.test_rpc_requests::test_orchestrator_answers_raw_bytes",)),
    Case("input", "every sandbox RPC: random, mutated and raw requests",
         "sent over the sandbox's Unix socket to a real bubblewrap sandbox",
         "a deliberate status with a reason; Status still answers afterwards",
         ("tests.fuzz.test_rpc_requests::test_sandbox_answers",)),
    Case("input", "audit log service requests", "fuzzed against the log service",
         "a deliberate status; a refused call does not grow the log",
         ("tests.fuzz.test_rpc::",)),
    Case("input", "parsers of outside bytes (sealed header, manifest, SNP, TDX, configfs-tsm, "
         "checkpoint notes, Merkle proofs, audit leaves)",
         "hypothesis + the regression vectors of the atheris campaign (docs/fuzzing.md)",
         "only the typed error of the parser's package",
         ("tests.fuzz.test_sealed::", "tests.fuzz.test_documents::", "tests.fuzz.test_merkle::",
          "tests.fuzz.test_configfs::", "tests.fuzz.test_audit_log::",
          "tests.fuzz.test_targets::", "tests.fuzz.test_regressions::")),
    Case("input", "authorisation matrix: every RPC x every caller x relation",
         "each cell called on one real server (docs/security-tests.md)",
         "PERMISSION_DENIED naming the role/object, audited, no state changed",
         ("tests.security.test_authz_matrix::",)),
    Case("input", "replay and downgrade", "spent/expired nonces, old policies, foreign certs",
         "refused with the check named; nothing released",
         ("tests.security.test_replay_downgrade::",)),
    # -- multi-host -----------------------------------------------------------------------------
    Case("multi-host", "orchestrator + SuperLink and three owners in four network namespaces",
         "real addresses over veth + a bridge, TLS everywhere, a full session",
         "the session finishes; audit verify passes",
         ("tests.reliability.test_netns::",)),
)


LAYOUT = """\
### The same layout on real machines

`tests/reliability/test_netns.py` builds this with `ip netns` and veth pairs on a bridge: every
party is its own process, reaching the others only by address, TLS everywhere. On real machines
(names are examples; open only these ports, only to these parties):

| host | runs | listens (TLS) | dials |
|---|---|---|---|
| hub | `orchestrator serve`, `session run` | 7443 API, 7444 enrol, 9092 SuperLink | - |
| owner-1..3 | `owner join` (sandbox + SuperNode) | nothing | hub:7443, hub:9092 |
| provider | `provider seal/upload`, `session create` | nothing | hub:7443 |

7443 is mutual TLS (client certificates from enrolment), 7444 server-only TLS (one-time
tokens), 9092 TLS with SuperNode authentication (only keys registered for the session).

1. hub: `fedtune orchestrator init --dir /srv/fedtune --host hub.example.org` (the server and
   SuperLink certificates name the address the others dial), then
   `fedtune orchestrator serve --dir /srv/fedtune --host 0.0.0.0`; give each party a token
   (`fedtune orchestrator invite`) and the CA fingerprint out of band.
2. each owner and the provider: `fedtune enrol --server hub.example.org:7444 --token ...
   --ca-fingerprint sha256:...` (pins the CA; the identity key never leaves the host).
3. provider: seal, upload, set the release policy, create and invite the session.
4. each owner: `fedtune owner init --superlink hub.example.org:9092`, review the pinned
   measurement, `fedtune owner join SESSION --data ./records`.
5. hub: `fedtune session run SESSION --dir /srv/fedtune --public-host hub.example.org` once the
   owners have accepted and the session is started.
"""


@dataclass
class Outcome:
    """What the junit XML says of the tests matching one case."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def render(self) -> str:
        """A short cell: pass/FAIL/skipped/no test."""
        total = self.passed + self.failed + self.skipped
        if total == 0:
            return "not run"
        if self.failed:
            return f"**FAIL** ({self.failed} of {total})"
        if self.passed == 0:
            why = "; ".join(sorted(set(self.reasons)))[:160]
            return f"skipped: {why}"
        extra = f", {self.skipped} skipped" if self.skipped else ""
        return f"pass ({self.passed} test{'s' * (self.passed != 1)}{extra}, {self.seconds:.0f} s)"


def read_junit(path: Path) -> dict[str, tuple[str, float, str]]:
    """``module::name`` -> (passed|failed|skipped, seconds, message) for every testcase."""
    results: dict[str, tuple[str, float, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, message = "failed", child.get("message", "")
            elif child.tag == "skipped":
                status, message = "skipped", child.get("message", "")
        results[key] = (status, float(case.get("time", "0") or 0), message)
    return results


def outcomes(results: dict[str, tuple[str, float, str]]) -> list[tuple[Case, Outcome | None]]:
    """Each case with the combined outcome of its tests (None: the case has no test)."""
    rows: list[tuple[Case, Outcome | None]] = []
    for case in CASES:
        if not case.tests:
            rows.append((case, None))
            continue
        out = Outcome()
        for key, (status, seconds, message) in results.items():
            if any(key.startswith(prefix) for prefix in case.tests):
                setattr(out, status, getattr(out, status) + 1)
                out.seconds += seconds
                if status == "skipped":
                    out.reasons.append(re.sub(r"^Skipped: ", "", message))
        rows.append((case, out))
    return rows


def test_files() -> list[str]:
    """The test modules the catalogue names."""
    modules = {prefix.split("::")[0] for case in CASES for prefix in case.tests}
    return sorted(
        str(Path(*m.split(".")).with_suffix(".py"))
        for m in modules
        if (ROOT / Path(*m.split(".")).with_suffix(".py")).exists()
    )


def run_tests(junit: Path, *, fast: bool) -> int:
    """Run the catalogue's tests (slow ones too unless ``fast``) into ``junit``."""
    marker = "not slow" if fast else "slow or not slow"
    args = [sys.executable, "-m", "pytest", *test_files(), "-m", marker, "-q",
            "-p", "no:cacheprovider", f"--junitxml={junit}"]
    print("running:", " ".join(args[2:]), flush=True)
    return subprocess.run(args, cwd=ROOT, check=False).returncode


def run_load() -> str:
    """``bench/load.py --quick``'s RESULT line."""
    proc = subprocess.run([sys.executable, "bench/load.py", "--quick"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return lines[-1] if lines else f"(bench/load.py failed with status {proc.returncode})"


def render(rows: list[tuple[Case, Outcome | None]], *, load: str | None, how: str) -> str:
    """The markdown document."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: faults, bad input, load",
        "",
        f"Generated by `{COMMAND}{how}` on {now} ({platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}). Do not edit by hand: "
        "the catalogue (case, what happens, what the user sees, tests) lives in "
        "`tests/reliability/report.py`; the results come from the run.",
        "",
        "Every case must hold: the session resumes or fails cleanly with a reason, nothing "
        "acknowledged is lost, and the audit log verifies afterwards "
        "(`fedtune audit verify`; the tests call the same `verify_log`).",
        "",
    ]
    groups = {
        "kill": "Processes killed",
        "link": "Network",
        "storage": "Storage and corrupted data",
        "input": "Bad input",
        "multi-host": "Multi-host",
    }
    counts = {"pass": 0, "fail": 0, "other": 0}
    for group, title in groups.items():
        lines += [f"## {title}", "", "| case | what happens | what the user sees | result |",
                  "|---|---|---|---|"]
        for case, out in rows:
            if case.group != group:
                continue
            result = "no test yet" if out is None else out.render()
            kind = "pass" if result.startswith("pass") else "fail" if "FAIL" in result else "other"
            counts[kind] += 1
            lines.append(f"| {case.case} | {case.happens} | {case.user_sees or '-'} | {result} |")
        lines.append("")
    lines += [*LAYOUT.splitlines(), ""]
    lines += ["## Load", ""]
    if load:
        lines += ["`python bench/load.py --quick` (server in its own process, loopback, mutual "
                  "TLS; numbers and the full run are in bench/RESULTS.md):", "", "```", load,
                  "```", ""]
    else:
        lines += ["Not run here (pass `--load`); see bench/RESULTS.md, section "
                  "'Orchestrator under load: bench/load.py'.", ""]
    lines += [f"Summary: {counts['pass']} cases pass, {counts['fail']} fail, "
              f"{counts['other']} not run, skipped or without a test.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run (or read) the tests and write docs/reliability.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junit", type=Path, nargs="+",
                        help="render these junit XML files (merged) instead of running")
    parser.add_argument("--fast", action="store_true", help="skip the slow cases")
    parser.add_argument("--load", action="store_true", help="also run bench/load.py --quick")
    parser.add_argument("--out", type=Path, default=DOC, help="output (docs/reliability.md)")
    parser.add_argument("--save-junit", type=Path, help="also keep the run's junit XML here")
    opts = parser.parse_args(argv)
    how = "".join(f" {flag}" for flag, on in (("--fast", opts.fast), ("--load", opts.load)) if on)
    if opts.junit is not None:
        how += " --junit " + " ".join(p.name for p in opts.junit)
    status = 0
    if opts.junit is not None:
        results = {}
        for path in opts.junit:  # a later file's result for the same test wins
            results |= read_junit(path)
    else:
        with tempfile.TemporaryDirectory(prefix="fedtune-reliability-") as tmp:
            junit = Path(tmp) / "junit.xml"
            status = run_tests(junit, fast=opts.fast)
            if opts.save_junit is not None and junit.exists():
                opts.save_junit.write_bytes(junit.read_bytes())
            results = read_junit(junit)
    load = run_load() if opts.load else None
    from crypto.atomicfile import atomic_write_bytes

    text = render(outcomes(results), load=load, how=how)
    atomic_write_bytes(opts.out, text.encode(), mode=0o644)
    print(f"wrote {opts.out}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
