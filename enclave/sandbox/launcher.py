"""Start the sandbox runtime as a separate, isolated process and hand back a handle to it.

With bubblewrap (``bwrap`` on PATH, able to create namespaces) the runtime runs in the sandbox
``enclave.sandbox.bwrap`` describes. The launcher reads bubblewrap's ``--info-fd`` report,
checks from ``/proc`` which namespaces the sandbox does not share with it, and passes those
facts, the TEE choice and (simulated TEE) the platform key to the runtime through an inherited
pipe. Then it waits until the runtime answers ``Status`` on its socket.

Without a usable bubblewrap the launcher refuses, unless the caller passed
``allow_weak_isolation=True``: then the runtime runs as a plain child process, a loud warning
is logged, and the isolation report (in ``Attest``, ``Status`` and on the handle) says the
isolation is weaker.

The runtime dies with the launcher: bubblewrap's ``--die-with-parent`` (or the runtime's own
``PR_SET_PDEATHSIG`` in a plain process) kills it when the *thread* that launched it exits,
so launch from a thread that lives as long as the sandbox should (normally the main thread).

Under the simulated TEE every protection here is process-level: the machine's owner (root)
can still read the runtime's memory. Only a real TEE keeps the weights from the owner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import grpc

from crypto.identity import Identity
from enclave._proto import sandbox_pb2, sandbox_pb2_grpc
from enclave.attest.simulated import load_or_create_platform_key, platform_key_path
from enclave.sandbox.bootstrap import Bootstrap, write_bootstrap
from enclave.sandbox.bwrap import (
    CODE_MOUNT,
    CONFIGFS_TSM,
    DATA_MOUNT,
    SANDBOX_TMP,
    SOCKET_MOUNT,
    SOCKET_NAME,
    SandboxMounts,
    build_bwrap_argv,
    interpreter_dirs,
    sandbox_environment,
)
from enclave.sandbox.convert import isolation_from_proto
from enclave.sandbox.errors import SandboxLaunchError, WeakIsolationRefused
from enclave.sandbox.isolation import (
    EXPECTED_NAMESPACES,
    PLAIN_PROCESS_WARNING,
    SIMULATED_TEE_WARNING,
    IsolationMode,
    IsolationReport,
    LaunchFacts,
)
from enclave.sandbox.measure import code_roots
from enclave.sandbox.wire import GRPC_OPTIONS

Tee = Literal["simulated", "configfs"]

DEFAULT_START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0
LOG_NAME = "sandbox.log"
LOG_TAIL_LINES = 30
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

_log = logging.getLogger(__name__)


def bubblewrap_problem(bwrap: str = "bwrap") -> str | None:
    """None when ``bwrap`` can build the sandbox's namespaces here, else why it cannot."""
    path = shutil.which(bwrap)
    if path is None:
        return f"bubblewrap ({bwrap}) is not installed"
    true = shutil.which("true") or "/bin/true"
    argv = [path, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--ro-bind", "/", "/", "--", true]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run: {exc}"
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        return f"bubblewrap cannot create namespaces here: {message}"
    return None


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class SandboxHandle:
    """A running sandbox: its socket, processes, isolation report; ``stop()`` ends it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        socket_path: Path,
        work_dir: Path,
        log_path: Path,
        isolation: IsolationReport,
        measurement: bytes,
        sandbox_pid: int | None,
        log_file: IO[bytes],
    ) -> None:
        self.process = process
        self.socket_path = socket_path
        self.work_dir = work_dir
        self.log_path = log_path
        self.isolation = isolation
        self.measurement = measurement
        self.sandbox_pid = sandbox_pid
        self._log_file = log_file

    @property
    def pid(self) -> int:
        """The host pid of the launched process (bubblewrap, or the plain runtime)."""
        return self.process.pid

    @property
    def weaker(self) -> bool:
        """True when the isolation is weaker than the bubblewrap sandbox is meant to give."""
        return self.isolation.weaker

    def alive(self) -> bool:
        """True while the launched process runs."""
        return self.process.poll() is None

    def runtime_pid(self) -> int | None:
        """The runtime's host pid (inside bubblewrap: the child of the sandbox's PID 1)."""
        if self.sandbox_pid is None:
            return self.process.pid if self.alive() else None
        try:
            children = Path(
                f"/proc/{self.sandbox_pid}/task/{self.sandbox_pid}/children"
            ).read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Stop the runtime (SIGTERM, then SIGKILL after ``timeout``); returns its exit status."""
        if self.alive():
            runtime = self.runtime_pid()
            with contextlib.suppress(ProcessLookupError):
                # Let the runtime stop its server itself; bubblewrap exits when it does.
                os.kill(runtime if runtime is not None else self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.socket_path.unlink(missing_ok=True)
        self._log_file.close()
        left = sorted(p.name for p in self.socket_path.parent.iterdir())
        if left:
            # The socket directory is the one host directory the sandbox can write to.
            _log.warning("the sandbox left files in its socket directory %s: %s",
                         self.socket_path.parent, ", ".join(left[:10]))
        return int(self.process.returncode)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the runtime's log."""
        return _tail(self.log_path, lines)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"SandboxHandle(pid={self.pid}, mode={self.isolation.mode.value}, "
            f"socket={str(self.socket_path)!r})"
        )


class SandboxLauncher:
    """Builds and starts sandboxes for one data directory (see the module doc)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        work_dir: str | os.PathLike[str],
        tee: Tee = "simulated",
        platform_key: Identity | None = None,
        home: str | os.PathLike[str] | None = None,
        allow_weak_isolation: bool = False,
        num_threads: int | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        bwrap: str = "bwrap",
        python: str | os.PathLike[str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError("data_dir must be a path")
        if not isinstance(work_dir, str | os.PathLike):
            raise TypeError("work_dir must be a path")
        if tee not in ("simulated", "configfs"):
            raise ValueError(f"tee must be 'simulated' or 'configfs', got {tee!r}")
        if platform_key is not None and not isinstance(platform_key, Identity):
            raise TypeError("platform_key must be a crypto.identity.Identity")
        if platform_key is not None and tee != "simulated":
            raise ValueError("platform_key applies only to the simulated TEE")
        if not isinstance(allow_weak_isolation, bool):
            raise TypeError("allow_weak_isolation must be a bool")
        if num_threads is not None and (
            not isinstance(num_threads, int) or isinstance(num_threads, bool)
        ):
            raise TypeError("num_threads must be an int or None")
        if num_threads is not None and num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        if not isinstance(start_timeout, int | float) or start_timeout <= 0:
            raise ValueError("start_timeout must be a positive number of seconds")
        self.data_dir = Path(data_dir).resolve()
        if not self.data_dir.is_dir():
            raise ValueError(f"the data directory {self.data_dir} does not exist")
        self.work_dir = Path(work_dir).resolve()
        if self.work_dir.is_relative_to(self.data_dir):
            raise ValueError("work_dir must not lie inside the data directory (it is read-only)")
        self.socket_dir = self.work_dir / "run"
        self.socket_path = self.socket_dir / SOCKET_NAME
        if len(str(self.socket_path).encode()) > MAX_SOCKET_PATH:
            raise ValueError(
                f"the socket path {self.socket_path} is longer than a Unix socket allows; "
                "choose a shorter work_dir"
            )
        self.tee: Tee = tee
        self._platform_key = platform_key
        self._home = Path(home) if home is not None else None
        self.allow_weak_isolation = allow_weak_isolation
        self.num_threads = num_threads or max(1, len(os.sched_getaffinity(0)))
        self.start_timeout = float(start_timeout)
        self.bwrap = bwrap
        self.python = Path(python) if python is not None else Path(sys.executable)
        self.log_level = log_level
        self.code_roots = code_roots()

    # -- building ----------------------------------------------------------------------------

    def _mounts(self) -> SandboxMounts:
        configfs = None
        if self.tee == "configfs":
            if not CONFIGFS_TSM.is_dir():
                raise SandboxLaunchError(f"no configfs-tsm at {CONFIGFS_TSM}: not a TEE guest")
            configfs = CONFIGFS_TSM
        return SandboxMounts(
            data_dir=self.data_dir,
            socket_dir=self.socket_dir,
            code_roots=self.code_roots,
            interpreter_dirs=interpreter_dirs(),
            configfs=configfs,
        )

    def _runtime_command(
        self, socket_path: os.PathLike[str], data_dir: os.PathLike[str], bootstrap_fd: int
    ) -> list[str]:
        return [
            str(self.python), "-s", "-B", "-m", "enclave.sandbox.runtime",
            "--socket", str(socket_path),
            "--data", str(data_dir),
            "--bootstrap-fd", str(bootstrap_fd),
            "--log-level", self.log_level,
        ]

    def _plain_environment(self) -> dict[str, str]:
        tmp = self.work_dir / "tmp"
        tmp.mkdir(mode=0o700, exist_ok=True)
        parents = sorted({str(root.parent) for root in self.code_roots})
        return sandbox_environment(
            num_threads=self.num_threads, pythonpath=os.pathsep.join(parents), home=str(tmp)
        )

    def _tee_name(self) -> str:
        return "simulated" if self.tee == "simulated" else "configfs-tsm"

    def _bootstrap(self, facts: LaunchFacts) -> Bootstrap:
        key = None
        if self.tee == "simulated":
            identity = self._platform_key or load_or_create_platform_key(
                platform_key_path(self._home)
            )
            key = identity.private_key.private_bytes_raw()
        return Bootstrap(facts=facts, tee=self.tee, simulated_platform_key=key,
                         num_threads=self.num_threads)

    def _ensure_dirs(self) -> None:
        self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)

    def _prepare_dirs(self) -> None:
        self._ensure_dirs()
        if self.socket_path.exists():
            if _answers(self.socket_path):
                raise SandboxLaunchError(
                    f"a sandbox is already running on {self.socket_path}; stop it first or "
                    "choose another work directory"
                )
            self.socket_path.unlink()  # left behind by a runtime that was killed
        leftovers = list(self.socket_dir.iterdir())
        if leftovers:
            raise SandboxLaunchError(
                f"the socket directory {self.socket_dir} holds other files "
                f"({', '.join(p.name for p in leftovers[:5])}); it must hold only the socket"
            )

    # -- starting ----------------------------------------------------------------------------

    def start(self) -> SandboxHandle:
        """Start the runtime and wait until it answers; SandboxLaunchError if it does not."""
        self._prepare_dirs()
        if self.tee == "simulated":
            _log.warning("%s", SIMULATED_TEE_WARNING)
        problem = bubblewrap_problem(self.bwrap)
        if problem is None:
            try:
                return self._start_bubblewrap()
            except _NamespaceSetupFailed as exc:
                problem = exc.reason
        if not self.allow_weak_isolation:
            raise WeakIsolationRefused(problem)
        _log.warning("%s (%s)", PLAIN_PROCESS_WARNING, problem)
        return self._start_plain()

    def _start_bubblewrap(self) -> SandboxHandle:
        mounts = self._mounts()
        bwrap_path = shutil.which(self.bwrap) or self.bwrap
        info_r, info_w = os.pipe()
        boot_r, boot_w = os.pipe()
        command = self._runtime_command(SOCKET_MOUNT / SOCKET_NAME, DATA_MOUNT, boot_r)
        env = sandbox_environment(
            num_threads=self.num_threads, pythonpath=str(CODE_MOUNT), home=SANDBOX_TMP
        )
        argv = build_bwrap_argv(mounts, command, env=env, bwrap=bwrap_path, info_fd=info_w)
        log_path = self.work_dir / LOG_NAME
        log = _open_log(log_path)
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(info_w, boot_r), close_fds=True,
            )
        except OSError as exc:
            for fd in (info_r, info_w, boot_r, boot_w):
                os.close(fd)
            log.close()
            raise _NamespaceSetupFailed(f"bubblewrap could not be started: {exc}") from exc
        os.close(info_w)
        os.close(boot_r)
        deadline = time.monotonic() + self.start_timeout
        try:
            info = _read_info(info_r, process, deadline)
            if info is None:
                process.wait(5)
                detail = _tail(log_path, 5) or "no output"
                raise _NamespaceSetupFailed(f"bubblewrap failed to set up the sandbox: {detail}")
            sandbox_pid = int(info["child-pid"])
            facts = LaunchFacts(
                mode=IsolationMode.BUBBLEWRAP,
                namespaces=_separate_namespaces(sandbox_pid, info),
                filesystem_isolated=True,
                tee=self._tee_name(),
            )
            write_bootstrap(boot_w, self._bootstrap(facts))
            boot_w = -1
            status = _wait_ready(self.socket_path, process, deadline, log_path)
        except BaseException:
            if boot_w != -1:
                os.close(boot_w)
            _kill(process)
            log.close()
            raise
        finally:
            os.close(info_r)
        return self._handle(process, status, log_path, log, sandbox_pid)

    def _start_plain(self) -> SandboxHandle:
        boot_r, boot_w = os.pipe()
        command = self._runtime_command(self.socket_path, self.data_dir, boot_r)
        env = self._plain_environment()
        log_path = self.work_dir / LOG_NAME
        log = _open_log(log_path)
        try:
            process = subprocess.Popen(
                command, env=env, cwd=env["HOME"], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(boot_r,), close_fds=True,
            )
        except OSError as exc:
            os.close(boot_r)
            os.close(boot_w)
            log.close()
            raise SandboxLaunchError(f"cannot start {self.python}: {exc}") from exc
        os.close(boot_r)
        facts = LaunchFacts(
            mode=IsolationMode.PLAIN_PROCESS, namespaces=[], filesystem_isolated=False,
            tee=self._tee_name(),
        )
        try:
            write_bootstrap(boot_w, self._bootstrap(facts))
            status = _wait_ready(
                self.socket_path, process, time.monotonic() + self.start_timeout, log_path
            )
        except BaseException:
            _kill(process)
            log.close()
            raise
        return self._handle(process, status, log_path, log, None)

    def _handle(
        self,
        process: subprocess.Popen[bytes],
        status: sandbox_pb2.SandboxStatus,
        log_path: Path,
        log: IO[bytes],
        sandbox_pid: int | None,
    ) -> SandboxHandle:
        isolation = isolation_from_proto(status.isolation)
        for warning in isolation.warnings:
            _log.warning("sandbox: %s", warning)
        return SandboxHandle(
            process,
            socket_path=self.socket_path,
            work_dir=self.work_dir,
            log_path=log_path,
            isolation=isolation,
            measurement=bytes(status.measurement),
            sandbox_pid=sandbox_pid,
            log_file=log,
        )

    # -- probing -----------------------------------------------------------------------------

    def run_probe(self, args: list[str], *, timeout: float = 120.0) -> dict[str, object]:
        """Run ``enclave.sandbox.probe`` with ``args`` in a sandbox built like the runtime's.

        The answer is the probe's JSON plus ``"mode"``: the isolation it ran under (bubblewrap,
        or the plain process when that is what ``start()`` would fall back to).
        """
        self._ensure_dirs()
        command = [str(self.python), "-s", "-B", "-m", "enclave.sandbox.probe", *args]
        problem = bubblewrap_problem(self.bwrap)
        if problem is None:
            env = sandbox_environment(
                num_threads=self.num_threads, pythonpath=str(CODE_MOUNT), home=SANDBOX_TMP
            )
            argv = build_bwrap_argv(self._mounts(), command, env=env,
                                    bwrap=shutil.which(self.bwrap) or self.bwrap)
            mode, cwd = IsolationMode.BUBBLEWRAP, None
        elif self.allow_weak_isolation:
            env = self._plain_environment()
            argv, mode, cwd = command, IsolationMode.PLAIN_PROCESS, env["HOME"]
        else:
            raise WeakIsolationRefused(problem)
        done = subprocess.run(
            argv, env=env if mode is IsolationMode.PLAIN_PROCESS else None, cwd=cwd,
            capture_output=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise SandboxLaunchError(
                f"the probe exited with status {done.returncode}",
                log_tail=done.stderr.decode("utf-8", "replace")[-4000:],
            )
        result = json.loads(done.stdout)
        result["mode"] = mode.value
        return result


class _NamespaceSetupFailed(Exception):
    """bubblewrap exited before it reported its namespaces: the host does not allow them."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def launch_sandbox(
    data_dir: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str],
    tee: Tee = "simulated",
    platform_key: Identity | None = None,
    home: str | os.PathLike[str] | None = None,
    allow_weak_isolation: bool = False,
    num_threads: int | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT_S,
) -> SandboxHandle:
    """Start a sandbox runtime over ``data_dir`` (see :class:`SandboxLauncher`)."""
    return SandboxLauncher(
        data_dir,
        work_dir=work_dir,
        tee=tee,
        platform_key=platform_key,
        home=home,
        allow_weak_isolation=allow_weak_isolation,
        num_threads=num_threads,
        start_timeout=start_timeout,
    ).start()


def _read_info(
    fd: int, process: subprocess.Popen[bytes], deadline: float
) -> dict[str, int] | None:
    """bubblewrap's --info-fd JSON, or None when it exited without writing it."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            try:
                return json.loads(data)
            except json.JSONDecodeError:
                continue
        elif process.poll() is not None:
            break
    if not data:
        if process.poll() is None and time.monotonic() >= deadline:
            raise SandboxLaunchError("bubblewrap did not report its namespaces in time")
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise SandboxLaunchError("bubblewrap's --info-fd output is not JSON") from None


def _separate_namespaces(pid: int, info: dict[str, int]) -> list[str]:
    """The namespaces of ``pid`` that differ from ours, checked in /proc (and against ``info``)."""
    separate = []
    for name in EXPECTED_NAMESPACES:
        try:
            ours = os.stat(f"/proc/self/ns/{name}").st_ino
            theirs = os.stat(f"/proc/{pid}/ns/{name}").st_ino
        except OSError:
            continue  # unverifiable counts as shared: the report then says weaker
        reported = info.get(f"{name}-namespace")
        if reported is not None and reported != theirs:
            continue
        if theirs != ours:
            separate.append(name)
    return separate


def _wait_ready(
    socket_path: Path, process: subprocess.Popen[bytes], deadline: float, log_path: Path
) -> sandbox_pb2.SandboxStatus:
    """Poll until the runtime answers Status on its socket."""
    with grpc.insecure_channel(f"unix:{socket_path}", options=GRPC_OPTIONS) as channel:
        stub = sandbox_pb2_grpc.SandboxStub(channel)
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise SandboxLaunchError(
                    f"the runtime exited with status {code}", log_tail=_tail(log_path)
                )
            if socket_path.exists():
                try:
                    return stub.Status(sandbox_pb2.SandboxStatusRequest(), timeout=5)
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
    raise SandboxLaunchError("the runtime did not answer in time", log_tail=_tail(log_path))


def _answers(socket_path: Path) -> bool:
    """True when something accepts connections on the Unix socket ``socket_path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True


def _open_log(path: Path) -> IO[bytes]:
    """The runtime's log, appended to, readable by its owner only (owned by the handle)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
