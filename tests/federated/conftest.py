"""Fixtures for the deployment harness tests: the test app directory, TLS files, a socket."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedtune.federated.appdir import AppDir, write_app_dir
from fedtune.federated.deployment import find_processes

from . import harness_app
from .tlsfiles import write_ca_and_server_cert

HERE = Path(__file__).resolve().parent


def make_harness_app(dest: Path) -> AppDir:
    """Write the harness test app (ServerApp + ClientApp of harness_app.py) into ``dest``."""
    return write_app_dir(
        dest, "harness", "harness_app:serverapp", "harness_app:clientapp",
        config=harness_app.RUN_CONFIG, modules={"harness_app.py": HERE / "harness_app.py"},
        description="fedtune deployment harness test app",
    )


@pytest.fixture
def harness_dir(tmp_path: Path) -> AppDir:
    """The harness test app in a fresh app directory."""
    return make_harness_app(tmp_path / "apps" / "harness")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost it signed."""
    return write_ca_and_server_cert(tmp_path / "tls")


class LineServer:
    """A Unix-socket server that answers each line with ``ack <line>`` and records them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen()
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5.0)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode().strip()
                self.lines.append(line)
                conn.sendall(f"ack {line}\n".encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def line_server() -> Iterator[LineServer]:
    """A Unix socket (short path: sun_path holds 108 bytes) that ClientApps can talk to."""
    directory = Path(tempfile.mkdtemp(prefix="ftsock-"))
    server = LineServer(directory / "owner.sock")
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def assert_no_processes_left(deployment_id: str, workdir: Path, pids: set[int]) -> None:
    """Check, three ways, that nothing a deployment started is still running."""
    assert find_processes(deployment_id) == []
    for pid in pids:
        assert not _alive(pid), f"pid {pid} of the deployment is still running"
    needle = str(workdir)
    leftovers = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and ("flower" in cmdline or "flwr" in cmdline):
            leftovers.append((entry.name, cmdline))
    assert leftovers == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in (b"Z", b"X")


@pytest.fixture(scope="session")
def session_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One orchestrator, provider, three owners and a TLS SuperLink for every session test."""
    from enclave.sandbox import bubblewrap_problem

    from .session_world import SessionWorld

    problem = bubblewrap_problem()
    if problem is not None:
        pytest.skip(f"the session tests run real sandboxes and need bubblewrap: {problem}")
    world = SessionWorld(tmp_path_factory.mktemp("sessions"))
    try:
        yield world
    finally:
        world.stop()
