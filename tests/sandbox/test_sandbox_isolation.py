"""Isolation, tried from inside: no network to the host, no writes outside tmpfs, no foreign reads.

The probe (``enclave.sandbox.probe``) runs in a sandbox built exactly like the runtime's (same
bubblewrap argv builder, binds and environment). The same probe in the plain-process fallback
succeeds at everything, which shows each check can fail. Where the test runs as root, the live
runtime's own network namespace is entered too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.identity import Identity
from enclave.sandbox import (
    PLAIN_PROCESS_WARNING,
    SIMULATED_TEE_WARNING,
    IsolationMode,
    SandboxLaunchError,
    WeakIsolationRefused,
    with_isolation,
)
from enclave.sandbox.bwrap import SANDBOX_TMP
from enclave.sandbox.launcher import SandboxLauncher
from enclave.sandbox.measure import code_roots

from ._support import ProviderSide, Trained, start, stop, write_records

NO_BWRAP = "fedtune-test-no-such-bwrap"


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _launcher(tmp_path: Path, **options: object) -> SandboxLauncher:
    data = tmp_path / "data"
    write_records(data)
    return SandboxLauncher(data, work_dir=tmp_path / "work", **options)  # type: ignore[arg-type]


def _by_target(result: dict[str, object], what: str) -> dict[str, dict[str, object]]:
    return {item["target"]: item for item in result[what]}  # type: ignore[attr-defined,index]


def test_tcp_to_a_host_listener_fails_inside_but_works_in_the_fallback(
    tmp_path: Path, listener: int, require_bwrap: None
) -> None:
    target = f"127.0.0.1:{listener}"
    inside = _launcher(tmp_path).run_probe(["--connect", target])
    assert inside["mode"] == "bubblewrap"
    attempt = _by_target(inside, "connect")[target]
    assert not attempt["ok"]
    assert "ConnectionRefused" in str(attempt["error"])
    assert inside["interfaces"] == ["lo"]

    plain = _launcher(tmp_path, bwrap=NO_BWRAP, allow_weak_isolation=True)
    outside = plain.run_probe(["--connect", target])
    assert outside["mode"] == "plain-process"
    assert _by_target(outside, "connect")[target]["ok"]  # the check can fail


def test_writes_outside_the_private_tmpfs_fail(tmp_path: Path, require_bwrap: None) -> None:
    venv = Path(sys.prefix)
    refused = [
        "/data/new-file",
        "/.new-file",
        "/usr/new-file",
        "/etc/new-file",
        "/opt/fedtune/code/enclave/new-file",
        "/opt/fedtune/code/crypto/new-file",
        str(venv / "new-file"),
        "/dev/new-file",
        str(tmp_path / "new-file"),  # the host's own temporary directory
    ]
    allowed = [f"{SANDBOX_TMP}/new-file", "/dev/shm/new-file"]
    result = _launcher(tmp_path).run_probe([a for p in refused + allowed for a in ("--write", p)])
    writes = _by_target(result, "write")
    for path in refused:
        assert not writes[path]["ok"], f"{path} was writable inside the sandbox"
    for path in allowed:
        assert writes[path]["ok"], f"{path} (private tmpfs) was not writable: {writes[path]}"
    assert not (tmp_path / "new-file").exists()
    # Control: the same write from a plain process lands on the host.
    plain = _launcher(tmp_path, bwrap=NO_BWRAP, allow_weak_isolation=True)
    assert _by_target(plain.run_probe(["--write", str(tmp_path / "new-file")]),
                      "write")[str(tmp_path / "new-file")]["ok"]


def test_reading_outside_the_data_mount_fails(tmp_path: Path, require_bwrap: None) -> None:
    secret = tmp_path / "owner-secret.txt"
    secret.write_text("not for the sandbox")
    home = tmp_path / "fedtune-home" / "simulated-tee"
    home.mkdir(parents=True)
    (home / "platform.pem").write_text("platform key stand-in")
    fedtune_pkg = Path(__file__).resolve().parents[2] / "fedtune" / "__init__.py"
    refused = [str(secret), str(home / "platform.pem"), "/etc/passwd", "/etc/hostname",
               str(fedtune_pkg), "/opt/fedtune/code/fedtune"]
    allowed = ["/data/train.jsonl", "/opt/fedtune/code/enclave/__init__.py"]
    result = _launcher(tmp_path).run_probe([a for p in refused + allowed for a in ("--read", p)])
    reads = _by_target(result, "read")
    for path in refused:
        assert not reads[path]["ok"], f"{path} was readable inside the sandbox"
    for path in allowed:
        assert reads[path]["ok"], f"{path} should be readable: {reads[path]}"
    plain = _launcher(tmp_path, bwrap=NO_BWRAP, allow_weak_isolation=True)
    assert _by_target(plain.run_probe(["--read", str(secret)]), "read")[str(secret)]["ok"]


def test_the_report_shows_full_isolation(trained: Trained) -> None:
    report = trained.running.handle.isolation
    assert report.mode is IsolationMode.BUBBLEWRAP
    assert set(report.namespaces) == {"cgroup", "ipc", "mnt", "net", "pid", "user", "uts"}
    assert report.network_isolated and report.interfaces == ["lo"]
    assert report.filesystem_isolated
    assert report.dumpable is False
    assert report.core_limit == 0
    assert int(report.capabilities, 16) == 0
    assert not report.weaker
    assert report.warnings == [SIMULATED_TEE_WARNING]
    assert trained.running.client.status().isolation == report
    verdict, _ = trained.running.broker.verdict(trained.running.client)
    marked = with_isolation(verdict, report)
    assert marked.ok and PLAIN_PROCESS_WARNING not in marked.warnings
    assert "WEAKER" not in next(c for c in marked.checks if c.name == "sandbox.isolation").reason


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nsenter") is None,
                    reason="entering the live runtime's namespaces needs root and nsenter")
def test_the_live_runtime_network_namespace_cannot_reach_the_host(
    trained: Trained, listener: int
) -> None:
    pid = trained.running.handle.runtime_pid()
    assert pid is not None
    code = ("import socket,sys\n"
            f"try: socket.create_connection(('127.0.0.1', {listener}), timeout=3)\n"
            "except OSError as e: print('refused', type(e).__name__); sys.exit(0)\n"
            "print('connected'); sys.exit(1)\n")
    done = subprocess.run(["nsenter", "--target", str(pid), "--net", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refused" in done.stdout
    # Control: the same connection from the host's namespace works.
    with socket.create_connection(("127.0.0.1", listener), timeout=3):
        pass


def test_without_bubblewrap_the_launcher_refuses_unless_allowed(
    tmp_path: Path, provider_side: ProviderSide, platform_key: Identity
) -> None:
    with pytest.raises(WeakIsolationRefused) as caught:
        _launcher(tmp_path, bwrap=NO_BWRAP, platform_key=platform_key).start()
    assert "not installed" in str(caught.value)
    assert not (tmp_path / "work" / "run" / "sandbox.sock").exists()


def test_a_bubblewrap_that_cannot_build_namespaces_is_refused_too(
    tmp_path: Path, platform_key: Identity
) -> None:
    # "false" stands in for a bwrap that exists but fails (no user namespaces allowed).
    with pytest.raises(WeakIsolationRefused) as caught:
        _launcher(tmp_path, bwrap="false", platform_key=platform_key).start()
    assert "cannot create namespaces" in str(caught.value)


def test_a_second_sandbox_on_the_same_work_directory_is_refused(
    trained: Trained, platform_key: Identity
) -> None:
    running = trained.running
    launcher = SandboxLauncher(running.data_dir, work_dir=running.work_dir,
                               platform_key=platform_key)
    with pytest.raises(SandboxLaunchError, match="already running"):
        launcher.start()
    assert running.handle.socket_path.exists()
    assert running.client.status().phase == "configured"


def test_the_plain_fallback_is_marked_weaker_everywhere(
    tmp_path: Path, provider_side: ProviderSide, platform_key: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING"):
        running = start(tmp_path, provider_side, platform_key, bwrap=NO_BWRAP,
                        allow_weak_isolation=True)
    try:
        report = running.handle.isolation
        assert report.mode is IsolationMode.PLAIN_PROCESS
        assert report.weaker and running.handle.weaker
        assert report.namespaces == [] and not report.network_isolated
        assert report.dumpable is False and report.core_limit == 0  # hardening still applies
        assert report.warnings[0] == PLAIN_PROCESS_WARNING
        assert SIMULATED_TEE_WARNING in report.warnings
        assert PLAIN_PROCESS_WARNING in caplog.text
        attested = running.client.attest(os.urandom(32))
        assert attested.isolation == report
        assert running.client.status().isolation.weaker
        # The broker's verdict still passes (isolation is not a release rule) but says so.
        verdict, _ = running.broker.verdict(running.client)
        marked = with_isolation(verdict, attested.isolation)
        assert marked.ok
        assert PLAIN_PROCESS_WARNING in marked.warnings
        check = next(c for c in marked.checks if c.name == "sandbox.isolation")
        assert "WEAKER" in check.reason and "plain-process" in check.reason
    finally:
        stop(running)


def test_the_sandbox_sees_only_the_crypto_and_enclave_code(
    tmp_path: Path, require_bwrap: None
) -> None:
    roots = {root.name for root in code_roots()}
    assert roots == {"crypto", "enclave"}
    result = _launcher(tmp_path).run_probe(
        ["--read", "/opt/fedtune/code", "--read", "/opt/fedtune/code/fedtune/__init__.py"]
    )
    reads = _by_target(result, "read")
    assert reads["/opt/fedtune/code"]["ok"]
    assert not reads["/opt/fedtune/code/fedtune/__init__.py"]["ok"]
