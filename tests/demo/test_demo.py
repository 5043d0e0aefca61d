"""``fedtune demo --rounds 1``, run once as a user would, with debug logging; its outputs checked.

The one run (module fixture) is the CLI in a subprocess against a fresh directory. The tests
then check what it produced: the before/after metrics, the session report (HTML with its plot),
the audit log (verified again here by ``fedtune audit verify``), and that nothing under the
deployment directory holds what must stay secret: no window of the provider's plaintext
weights in any file, no key file's material outside that file, no owner record in any log or
in the audit log (reliability issue: secrets are never logged, even at debug level).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedtune.demo import minilm_dir

# One run of the CLI takes 3.5 min on a quiet 2-core machine (over 6 min while it is shared).
pytestmark = [pytest.mark.deployment, pytest.mark.slow]

FEDTUNE = [sys.executable, "-c", "from fedtune.cli.main import main; main()"]
WINDOW = 48
WINDOWS = 64


@dataclass
class DemoRun:
    root: Path
    output: str
    returncode: int

    def files(self) -> Iterator[Path]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield path


@pytest.fixture(scope="module")
def demo_run() -> Iterator[DemoRun]:
    # A short directory: each sandbox's Unix socket lives under it (107-byte path limit).
    root = Path(tempfile.mkdtemp(prefix="ftd-")) / "d"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    try:
        done = subprocess.run(
            [*FEDTUNE, "demo", "--rounds", "1", "--dir", str(root), "--log-level", "debug"],
            capture_output=True, text=True, timeout=900, env=env, check=False,
        )
        yield DemoRun(root, done.stdout + done.stderr, done.returncode)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def test_demo_finishes_and_prints_where_everything_is(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-6000:]
    out = demo_run.output
    assert "simulated TEE" in out and "development only" in out  # the policy's warning
    assert "✓ verified" in out
    for label in ("HTML report", "plot", "sealed model", "sealed adapter", "audit log", "logs"):
        assert label in out, label
    assert str(demo_run.root / "report" / "report.html") in out.replace("\n", "")


def test_metrics_before_and_after_differ(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-3000:]
    report = json.loads((demo_run.root / "report" / "report.json").read_text())
    assert report["status"] == "finished"
    assert report["model"].startswith("demo/all-minilm-l6-v2")
    assert len(report["rounds"]) == 1
    before = {m["owner"]: m for m in report["before"]}
    after = {m["owner"]: m for m in report["after"]}
    assert len(before) == len(after) == 3
    assert before.keys() == after.keys()
    for owner in before:
        for metric in ("loss", "accuracy"):
            assert metric in before[owner]["metrics"] and metric in after[owner]["metrics"]
    # Training moved the model: some owner's held-out loss changed.
    assert any(
        before[o]["metrics"]["loss"] != after[o]["metrics"]["loss"] for o in before
    )
    # The console table shows both columns.
    assert "before" in demo_run.output and "after" in demo_run.output


def test_report_html_embeds_the_plot(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-3000:]
    page = (demo_run.root / "report" / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "Audit log" in page
    png = (demo_run.root / "report" / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_audit_log_verifies_again_with_the_printed_key(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-3000:]
    match = re.search(r"--log-key '([^']+)'", demo_run.output.replace("\n", ""))
    assert match, demo_run.output[-3000:]
    db = demo_run.root / "orchestrator" / "audit" / "log.sqlite"
    checkpoint = demo_run.root.parent / "my-checkpoint"
    done = subprocess.run(
        [*FEDTUNE, "audit", "verify", "--db", str(db), "--log-key", match.group(1),
         "--since-checkpoint", str(checkpoint)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout
    shown = subprocess.run(
        [*FEDTUNE, "audit", "show", "--db", str(db)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ,
                                                                     "COLUMNS": "250"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "release" in shown.stdout.lower()  # the key broker's releases are on the log


def _weight_windows() -> list[bytes]:
    """Windows of the provider's plaintext weights, spread over the tensor data."""
    data = (minilm_dir() / "model.safetensors").read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    body = data[header:]
    windows = []
    for i in range(WINDOWS):
        start = (len(body) - WINDOW) * i // WINDOWS
        window = body[start : start + WINDOW]
        if len(set(window)) > 16:  # skip runs of zeros or padding: they prove nothing
            windows.append(window)
    assert len(windows) > WINDOWS // 2
    return windows


def test_no_plaintext_weights_anywhere_under_the_deployment(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-3000:]
    windows = _weight_windows()
    # The check can fail: the model the provider sealed does hold these bytes.
    original = (minilm_dir() / "model.safetensors").read_bytes()
    assert all(w in original for w in windows)
    scanned = 0
    for path in demo_run.files():
        content = path.read_bytes()
        scanned += 1
        leaked = [i for i, w in enumerate(windows) if w in content]
        assert not leaked, f"{path} holds plaintext weight windows {leaked[:5]}"
    assert scanned > 20


def _scalar(key: object) -> bytes:
    """The secret part of a private key object, as bytes."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

    if isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey):
        return key.private_bytes_raw()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.private_numbers().private_value.to_bytes(
            (key.curve.key_size + 7) // 8, "big"
        )
    if isinstance(key, rsa.RSAPrivateKey):
        d = key.private_numbers().d
        return d.to_bytes((d.bit_length() + 7) // 8, "big")
    raise AssertionError(f"unexpected private key type {type(key).__name__}")


def _secret_files(run: DemoRun) -> dict[Path, list[bytes]]:
    """Files holding secrets (private keys, data keys, master keys) and their secrets' forms."""
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_ssh_private_key,
    )

    from crypto.datakey import DataKey

    secrets: dict[Path, list[bytes]] = {}
    for path in run.files():
        content = path.read_bytes()
        raw: bytes | None = None
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in content:
            raw = _scalar(load_ssh_private_key(content, password=None))
        elif b"PRIVATE KEY-----" in content:
            raw = _scalar(load_pem_private_key(content, password=None))
        elif b"-----BEGIN FEDTUNE DATA KEY-----" in content:
            raw = DataKey.load(path).raw
        elif path.suffix == ".key" and len(content) == 32:
            raw = content  # a raw symmetric key (the broker's master key)
        elif path.suffix == ".key" and len(content) >= 48:
            raw = content[-32:]  # an opaque key file: its tail holds key bytes
        if raw is not None:
            assert len(raw) >= 16, path
            secrets[path] = [raw, raw.hex().encode(), base64.b64encode(raw).rstrip(b"=")]
    return secrets


def test_key_material_stays_in_its_own_0600_files(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-3000:]
    secrets = _secret_files(demo_run)
    names = {p.name for p in secrets}
    # Every kind of secret the deployment holds was found, so the scan below means something.
    assert {"ca.key", "server.key", "master.key", "identity.pem", "auth.key"} <= names, names
    assert any(p.parent.name == "keys" for p in secrets), "the provider's data key is missing"
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"
    for path in demo_run.files():
        content = path.read_bytes()
        for holder, forms in secrets.items():
            if holder == path:
                continue
            leaked = [f for f in forms if len(f) >= 16 and f in content]
            assert not leaked, f"{path} holds key material of {holder}"


def _record_snippets(run: DemoRun) -> list[str]:
    snippets = []
    for train in sorted((run.root / "data").glob("*/train.jsonl")):
        for line in train.read_text().splitlines():
            text = json.loads(line)["text"]
            snippets.append(text[:40])
    assert len(snippets) >= 60
    return snippets


def test_no_raw_record_in_any_log_or_the_audit_log(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.output[-3000:]
    snippets = [s.encode() for s in _record_snippets(demo_run)]
    logs = [p for p in demo_run.files() if p.suffix == ".log" or p.name.startswith("log.sqlite")]
    names = {p.name for p in logs}
    assert "demo.log" in names and "log.sqlite" in names and "sandbox.log" in names, names
    debug = (demo_run.root / "logs" / "demo.log").read_text()
    assert " DEBUG " in debug  # the demo really ran with debug logging
    for path in logs:
        content = path.read_bytes()
        leaked = [s for s in snippets if s in content]
        assert not leaked, f"{path} holds owner records, e.g. {leaked[0]!r}"
    # Nor anywhere else outside the owners' own record files.
    for path in demo_run.files():
        if (demo_run.root / "data") in path.parents:
            continue
        content = path.read_bytes()
        leaked = [s for s in snippets if s in content]
        assert not leaked, f"{path} holds owner records, e.g. {leaked[0]!r}"
