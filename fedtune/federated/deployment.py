"""Start, watch and stop Flower's Deployment Engine: a SuperLink, SuperNodes, and runs on them.

One :class:`Deployment` owns a working directory and the processes it starts there:

- a ``flower-superlink`` in one-port mode (Fleet, Control and Runtime APIs on ``host:port``),
  with runtime dependency installation disabled so app imports resolve against this venv;
- one ``flower-supernode`` per data owner, each with its own Runtime API port and
  ``--node-config`` read from a TOML file (no shell quoting);
- ``flwr run / log / ls / stop`` calls through a named connection written to the CLI's own
  ``FLWR_HOME/config.toml`` (never the ``:local:`` default, which starts a simulation).

Every process is started in its own session with its output in ``logs/<name>.log``, and
carries two environment markers (deployment id, process name) that Flower passes on to the
``flower-superexec``, ``flwr-serverapp`` and ``flwr-clientapp`` processes it spawns. Teardown
finds a process's whole family through those markers, even after Flower re-parents or
re-sessions them, sends SIGTERM, waits, then SIGKILLs whatever is left.

Verified facts about what runs where are in ``DEPLOYMENT-NOTES.md`` beside this module.
This class is not thread-safe; drive one deployment from one thread.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.atomicfile import atomic_write_bytes
from fedtune.federated.appdir import AppDir, ConfigValue, config_toml, read_app_dir
from fedtune.federated.errors import (
    DeploymentError,
    FlowerCliError,
    ProcessDiedError,
    ProcessStartError,
    RunError,
    RunFailedError,
    RunTimeoutError,
    TeardownError,
)

__all__ = [
    "CONNECTION_NAME",
    "MARKER_ENV",
    "PROCESS_ENV",
    "SUPERLINK",
    "Deployment",
    "RunResult",
    "SuperLinkInfo",
    "SuperNodeInfo",
    "SuperNodeSpec",
    "TlsCertificates",
    "find_processes",
    "write_supernode_auth_key",
]

_log = logging.getLogger(__name__)

SUPERLINK = "superlink"
"""The process name of the SuperLink in a :class:`Deployment` (SuperNodes use owner names)."""

CONNECTION_NAME = "fedtune"
"""The SuperLink connection every ``flwr`` call of a deployment names explicitly."""

MARKER_ENV = "FEDTUNE_DEPLOYMENT_ID"
"""Environment variable carrying the deployment id into every process it starts."""

PROCESS_ENV = "FEDTUNE_DEPLOYMENT_PROCESS"
"""Environment variable carrying the name of the process (family) a process belongs to."""

_RESERVED_ENV = {"FLWR_HOME", MARKER_ENV, PROCESS_ENV}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_:.-]{0,127}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NODE_ID_LINE = re.compile(r"SuperNode ID: (\d+)")
_ADDRESS_IN_USE = re.compile(r"address already in use|Errno 98", re.IGNORECASE)
_ACTIVATION_REFUSED = re.compile(r"Failed to activate SuperNode")
_FINISHED = "finished"
_COMPLETED = "finished:completed"


# --------------------------------------------------------------------------- public types

SuperNodeWrapper = Callable[[list[str], Path, dict[str, str]], list[str]]
"""Turns a SuperNode's argv (given its home directory and environment) into the argv to run."""


@dataclass(frozen=True)
class TlsCertificates:
    """PEM files for TLS: the CA every client trusts, and the SuperLink's certificate and key.

    Only a process that starts a SuperLink needs ``certfile``/``keyfile``; SuperNodes and the
    ``flwr`` CLI need only ``ca_certfile``. The SuperLink certificate must name the address
    clients dial (SAN) *and* the loopback address its own SuperExec uses for the Runtime API
    (``127.0.0.1`` when the SuperLink binds ``0.0.0.0`` or ``127.0.0.1``).
    """

    ca_certfile: Path
    certfile: Path | None = None
    keyfile: Path | None = None

    def __post_init__(self) -> None:
        """Check the types and that every given file exists."""
        for label in ("ca_certfile", "certfile", "keyfile"):
            value = getattr(self, label)
            if value is None and label != "ca_certfile":
                continue
            if not isinstance(value, Path):
                raise TypeError(f"{label} must be a pathlib.Path, got {type(value).__name__}")
            if not value.is_file():
                raise ValueError(f"{label} {value} is not a file")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together: give both or neither")

    @property
    def can_serve(self) -> bool:
        """Whether these files are enough to start a TLS SuperLink."""
        return self.certfile is not None and self.keyfile is not None


@dataclass(frozen=True)
class SuperNodeSpec:
    """What one SuperNode needs: its owner name, node config, extra environment, auth key.

    ``node_config`` reaches every ClientApp of this node as ``context.node_config``;
    ``env`` is added to the SuperNode's environment, which its ClientApp processes inherit.
    ``auth_key`` is an EC private key in OpenSSH format (:func:`write_supernode_auth_key`);
    it is required when the deployment has ``supernode_auth=True``.
    """

    name: str
    node_config: Mapping[str, ConfigValue] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    auth_key: Path | None = None

    def __post_init__(self) -> None:
        """Validate the name, the config values and the environment at once."""
        _check_name(self.name)
        if not isinstance(self.node_config, Mapping):
            raise TypeError("node_config must be a mapping")
        config_toml(self.node_config, what="node_config")  # raises on a bad key or value
        _check_env(self.env, what=f"env of SuperNode {self.name!r}")
        if self.auth_key is not None:
            if not isinstance(self.auth_key, Path):
                raise TypeError("auth_key must be a pathlib.Path")
            if not self.auth_key.is_file():
                raise ValueError(f"auth_key {self.auth_key} is not a file")


@dataclass(frozen=True)
class SuperLinkInfo:
    """A running SuperLink: where clients reach it and how long it took to come up."""

    address: str
    port: int
    pid: int
    log_path: Path
    startup_s: float


@dataclass(frozen=True)
class SuperNodeInfo:
    """A running SuperNode: its owner name, the node id the SuperLink gave it, its ports."""

    name: str
    node_id: int
    runtime_port: int
    pid: int
    log_path: Path
    startup_s: float
    node_config: Mapping[str, ConfigValue]


@dataclass(frozen=True)
class RunResult:
    """How a submitted run ended, as the SuperLink's Control API reports it."""

    run_id: int
    status: str
    details: str
    log_path: Path
    wall_s: float
    info: Mapping[str, Any]

    @property
    def completed(self) -> bool:
        """Whether the ServerApp returned normally (``finished:completed``)."""
        return self.status == _COMPLETED

    @property
    def log(self) -> str:
        """The ServerApp's log as fetched with ``flwr log`` (ANSI colours removed)."""
        return _ANSI.sub("", self.log_path.read_text(encoding="utf-8", errors="replace"))


def write_supernode_auth_key(path: Path) -> Path:
    """Create a SuperNode authentication key pair; return the OpenSSH public key's path.

    The private key (P-384, OpenSSH format, mode 0600) is written to ``path`` and the public
    key to ``path`` + ``.pub``: the SuperNode signs with the first (``auth_key`` of
    :class:`SuperNodeSpec`), the SuperLink operator registers the second.
    """
    if not isinstance(path, Path):
        raise TypeError(f"path must be a pathlib.Path, got {type(path).__name__}")
    key = ec.generate_private_key(ec.SECP384R1())
    atomic_write_bytes(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    public = path.with_name(path.name + ".pub")
    atomic_write_bytes(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ) + b"\n",
    )
    return public


def find_processes(deployment_id: str, process: str | None = None) -> list[tuple[int, str]]:
    """Live processes carrying a deployment's marker (optionally one process's family).

    Returns ``(pid, command line)`` pairs. Works for processes Flower re-parented or moved
    to their own session, because the marker travels in the inherited environment.
    """
    return [(pid, _cmdline(pid)) for pid in _marked_pids(deployment_id, process)]


# --------------------------------------------------------------------------- the deployment


class Deployment:
    """Flower SuperLink + SuperNodes on this machine, and the runs submitted to them.

    ``workdir`` holds everything: per-process ``FLWR_HOME`` and working directory, logs,
    the CLI's connection config, run logs. Use it as a context manager (or call
    :meth:`close`) so every process is stopped, also when an exception escapes.

    Tuning (keyword-only): ``tls`` (``None`` = plaintext, ``--insecure``), ``host`` the
    SuperLink binds, ``superlink_port`` (``None`` = a free port), ``superlink_address`` to
    use an already running SuperLink elsewhere instead of starting one, ``supernode_auth``
    (SuperLink accepts only registered SuperNode keys; needs TLS), ``persist_state`` (keep
    the SuperLink's state in ``superlink/state.db`` so a restart keeps nodes and runs),
    ``env`` added to every process, ``startup_timeout_s`` / ``stop_timeout_s`` /
    ``cli_timeout_s`` bounds, ``flower_bin_dir`` where the Flower executables are,
    ``supernode_wrapper`` a function ``(argv, node home, env) -> argv`` that runs each
    SuperNode inside something (the data owner's bubblewrap jail, ``fedtune.owner.jail``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsCertificates | None = None,
        host: str = "127.0.0.1",
        superlink_port: int | None = None,
        superlink_address: str | None = None,
        supernode_auth: bool = False,
        persist_state: bool = True,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
        cli_timeout_s: float = 60.0,
        flower_bin_dir: Path | None = None,
        supernode_wrapper: SuperNodeWrapper | None = None,
    ) -> None:
        if not isinstance(workdir, Path):
            raise TypeError(f"workdir must be a pathlib.Path, got {type(workdir).__name__}")
        if tls is not None and not isinstance(tls, TlsCertificates):
            raise TypeError("tls must be a TlsCertificates or None")
        if not isinstance(host, str) or not host:
            raise ValueError("host must be a non-empty string such as '127.0.0.1'")
        if superlink_port is not None:
            _check_port(superlink_port, what="superlink_port")
        if superlink_address is not None:
            if not isinstance(superlink_address, str):
                raise TypeError("superlink_address must be 'host:port' or None")
            _split_address(superlink_address)
            if superlink_port is not None:
                raise ValueError("give superlink_port (start one) or superlink_address "
                                 "(use a running one), not both")
        if not isinstance(supernode_auth, bool) or not isinstance(persist_state, bool):
            raise TypeError("supernode_auth and persist_state must be bool")
        if supernode_auth and tls is None:
            raise ValueError("supernode_auth=True needs tls: Flower refuses node "
                             "authentication over plaintext")
        _check_env(env or {}, what="env")
        for label, value in (("startup_timeout_s", startup_timeout_s),
                             ("stop_timeout_s", stop_timeout_s),
                             ("cli_timeout_s", cli_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{label} must be a number of seconds")
            if not 0 < value <= 3600:
                raise ValueError(f"{label} must be in (0, 3600] seconds, got {value}")
        if flower_bin_dir is not None and not isinstance(flower_bin_dir, Path):
            raise TypeError("flower_bin_dir must be a pathlib.Path or None")

        self.workdir = workdir.resolve()
        self.tls = tls
        self.host = host
        self.supernode_auth = supernode_auth
        self.persist_state = persist_state
        self.startup_timeout_s = float(startup_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self.cli_timeout_s = float(cli_timeout_s)
        self.deployment_id = uuid.uuid4().hex
        self._bin = _find_flower_bin(flower_bin_dir)
        if supernode_wrapper is not None and not callable(supernode_wrapper):
            raise TypeError("supernode_wrapper must be callable (argv, home, env) -> argv")
        self._supernode_wrapper = supernode_wrapper
        self._env = dict(env or {})
        self._external_address = superlink_address
        self._superlink_port = superlink_port
        self._processes: dict[str, _Supervised] = {}
        self._supernodes: dict[str, SuperNodeSpec] = {}
        self._node_ports: dict[str, int] = {}
        self._registered: dict[str, int] = {}
        self.superlink: SuperLinkInfo | None = None
        self.nodes: dict[str, SuperNodeInfo] = {}
        self._closed = False

        for sub in ("logs", "runs", "cli", "nodes"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        # If the owner forgets close(), still leave no Flower process of ours behind.
        self._finalizer = weakref.finalize(self, _sweep, self.deployment_id)
        if superlink_address is not None:
            self._write_cli_config(superlink_address)

    # ----------------------------------------------------------------- context management

    def __enter__(self) -> Deployment:
        """Return the deployment; processes start when asked to."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop every process; a teardown problem is attached to an escaping exception."""
        try:
            self.close()
        except TeardownError as err:
            if exc is None:
                raise
            exc.add_note(str(err))

    def close(self) -> None:
        """Stop every SuperNode, then the SuperLink, then sweep up any process of ours."""
        if self._closed:
            return
        self._closed = True
        nodes = [p for name, p in self._processes.items() if name != SUPERLINK]
        _stop_all(nodes, self.deployment_id, self.stop_timeout_s)
        if SUPERLINK in self._processes:
            _stop_all([self._processes[SUPERLINK]], self.deployment_id, self.stop_timeout_s)
        survivors = _sweep(self.deployment_id)
        self._finalizer.detach()
        if survivors:
            raise TeardownError("deployment", survivors)

    # ----------------------------------------------------------------------- SuperLink

    @property
    def superlink_address(self) -> str:
        """``host:port`` where SuperNodes and the CLI reach the SuperLink."""
        if self._external_address is not None:
            return self._external_address
        if self.superlink is None:
            raise DeploymentError(SUPERLINK, "not started yet; call start_superlink() first")
        return self.superlink.address

    def start_superlink(self) -> SuperLinkInfo:
        """Start the SuperLink and wait until its HTTP API answers ``/health``."""
        self._check_open()
        if self._external_address is not None:
            raise DeploymentError(SUPERLINK, f"this deployment uses the SuperLink at "
                                  f"{self._external_address}; it does not start its own")
        if self.tls is not None and not self.tls.can_serve:
            raise ValueError("starting a TLS SuperLink needs tls.certfile and tls.keyfile")
        if SUPERLINK in self._processes and self._processes[SUPERLINK].running:
            raise DeploymentError(SUPERLINK, "already running")
        fixed_port = self._superlink_port is not None
        attempts = 1 if fixed_port else 3
        for attempt in range(attempts):
            port = self._superlink_port if fixed_port else _free_port(self.host)
            assert port is not None
            proc = self._superlink_process(port)
            try:
                started = time.monotonic()
                proc.spawn()
                self._wait_superlink_ready(proc, port, started)
            except ProcessStartError as err:
                if attempt + 1 < attempts and _ADDRESS_IN_USE.search(err.log_tail):
                    continue  # Someone took the free port between our probe and the bind.
                raise
            self._superlink_port = port
            self._processes[SUPERLINK] = proc
            self.superlink = SuperLinkInfo(
                address=_join_address(_connect_host(self.host), port),
                port=port,
                pid=proc.pid,
                log_path=proc.log_path,
                startup_s=time.monotonic() - started,
            )
            self._write_cli_config(self.superlink.address)
            _log.info("SuperLink up on %s in %.1f s", self.superlink.address,
                      self.superlink.startup_s)
            return self.superlink
        raise AssertionError("unreachable")  # pragma: no cover

    def _superlink_process(self, port: int) -> _Supervised:
        home = self.workdir / SUPERLINK
        home.mkdir(exist_ok=True, mode=0o700)
        argv = [str(self._bin / "flower-superlink"), "--host", self.host, "--port", str(port),
                "--disable-runtime-dependency-installation"]
        if self.tls is None:
            argv.append("--insecure")
        else:
            argv += ["--ssl-ca-certfile", str(self.tls.ca_certfile),
                     "--ssl-certfile", str(self.tls.certfile),
                     "--ssl-keyfile", str(self.tls.keyfile)]
        if self.supernode_auth:
            argv.append("--enable-supernode-auth")
        if self.persist_state:
            argv += ["--database", str(home / "state.db")]
        return _Supervised(SUPERLINK, argv, cwd=home, env=self._child_env(SUPERLINK, home),
                           log_path=self.workdir / "logs" / f"{SUPERLINK}.log")

    def _wait_superlink_ready(self, proc: _Supervised, port: int, started: float) -> None:
        deadline = started + self.startup_timeout_s
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(cafile=str(self.tls.ca_certfile))
        host = _connect_host(self.host)
        last_error = "no answer yet"
        while True:
            if not proc.running:
                raise ProcessStartError(
                    proc.name, f"exited with status {proc.returncode} while starting",
                    returncode=proc.returncode, log_path=proc.log_path, log_tail=proc.log_tail())
            try:
                if _health_ok(host, port, ctx):
                    return
            except (OSError, http.client.HTTPException) as err:
                last_error = f"{type(err).__name__}: {err}"
            if time.monotonic() > deadline:
                tail = proc.log_tail()
                _stop_all([proc], self.deployment_id, self.stop_timeout_s)
                raise ProcessStartError(
                    proc.name,
                    f"GET /health on {host}:{port} did not answer 200 within "
                    f"{self.startup_timeout_s:.0f} s (last: {last_error}); it was stopped",
                    returncode=None, log_path=proc.log_path, log_tail=tail)
            time.sleep(0.1)

    # ----------------------------------------------------------------------- SuperNodes

    def add_supernode(self, name: str, *, node_config: Mapping[str, ConfigValue] | None = None,
                      env: Mapping[str, str] | None = None,
                      auth_key: Path | None = None) -> SuperNodeInfo:
        """Start one SuperNode and wait until the SuperLink has given it a node id."""
        spec = SuperNodeSpec(name, dict(node_config or {}), dict(env or {}), auth_key)
        return self.add_supernodes([spec])[0]

    def add_supernodes(self, specs: Iterable[SuperNodeSpec]) -> list[SuperNodeInfo]:
        """Start several SuperNodes at once, then wait for each to connect; return their info.

        If one fails, the ones of this call are stopped again and the error names it.
        """
        self._check_open()
        specs = list(specs)
        for spec in specs:
            if not isinstance(spec, SuperNodeSpec):
                raise TypeError(f"expected SuperNodeSpec, got {type(spec).__name__}")
            if spec.name == SUPERLINK or spec.name in self._supernodes:
                raise ValueError(f"a process named {spec.name!r} already exists here")
            if self.supernode_auth and spec.auth_key is None:
                raise ValueError(f"SuperNode {spec.name!r} needs auth_key: this deployment's "
                                 "SuperLink accepts registered keys only")
        if len({s.name for s in specs}) != len(specs):
            raise ValueError("SuperNode names must be unique")
        _ = self.superlink_address  # raises if there is no SuperLink to join
        started: list[_Supervised] = []
        try:
            for spec in specs:
                self._supernodes[spec.name] = spec
                if spec.auth_key is not None and self.supernode_auth:
                    self._register_own_key(spec)
            for spec in specs:
                started.append(self._spawn_supernode(spec))
            return [self._wait_supernode_ready(proc) for proc in started]
        except BaseException:
            # A respawned SuperNode (port clash) replaced its first process in _processes.
            current = [self._processes[s.name] for s in specs if s.name in self._processes]
            unique = {id(p): p for p in [*started, *current]}
            _stop_all(list(unique.values()), self.deployment_id, self.stop_timeout_s)
            for spec in specs:
                self._supernodes.pop(spec.name, None)
                self._processes.pop(spec.name, None)
                self.nodes.pop(spec.name, None)
            raise

    def _spawn_supernode(self, spec: SuperNodeSpec, *, fresh_port: bool = False) -> _Supervised:
        home = self.workdir / "nodes" / spec.name
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        config_file = home / "node-config.toml"
        atomic_write_bytes(config_file, config_toml(spec.node_config, what="node_config")
                           .encode("utf-8"), mode=0o600)
        if fresh_port or spec.name not in self._node_ports:
            self._node_ports[spec.name] = _free_port("127.0.0.1")
        port = self._node_ports[spec.name]
        argv = [str(self._bin / "flower-supernode"), "--superlink", self.superlink_address,
                "--port", str(port)]
        if spec.node_config:
            # A value ending in .toml is read as a TOML file (flwr.common.config.parse_config_args).
            argv += ["--node-config", str(config_file)]
        if self.tls is None:
            argv.append("--insecure")
        else:
            argv += ["--root-certificates", str(self.tls.ca_certfile)]
        if spec.auth_key is not None:
            argv += ["--auth-supernode-private-key", str(spec.auth_key)]
        env = self._child_env(spec.name, home)
        env.update(spec.env)
        if self._supernode_wrapper is not None:
            argv = list(self._supernode_wrapper(argv, home, dict(env)))
        proc = _Supervised(spec.name, argv, cwd=home, env=env,
                           log_path=self.workdir / "logs" / f"{spec.name}.log")
        proc.spawn()
        self._processes[spec.name] = proc
        return proc

    def _wait_supernode_ready(self, proc: _Supervised, *,
                              retry_activation: bool = False) -> SuperNodeInfo:
        # "SuperNode ID: N" is logged once the SuperLink registered and activated the node.
        deadline = proc.started_at + self.startup_timeout_s
        spec = self._supernodes[proc.name]
        port_retries = 2
        while True:
            match = _NODE_ID_LINE.search(proc.log_since_start())
            if match:
                info = SuperNodeInfo(
                    name=proc.name, node_id=int(match.group(1)),
                    runtime_port=self._node_ports[proc.name], pid=proc.pid,
                    log_path=proc.log_path, startup_s=time.monotonic() - proc.started_at,
                    node_config=dict(spec.node_config))
                self.nodes[proc.name] = info
                _log.info("SuperNode %s up as node %d in %.1f s", info.name, info.node_id,
                          info.startup_s)
                return info
            if not proc.running:
                tail = proc.log_tail()
                if port_retries and _ADDRESS_IN_USE.search(tail):
                    port_retries -= 1
                    proc = self._spawn_supernode(spec, fresh_port=True)
                    continue
                if (retry_activation and _ACTIVATION_REFUSED.search(tail)
                        and time.monotonic() + 3.0 < deadline):
                    # The SuperLink still counts the node's previous process as online
                    # (killed without deactivating): it refuses until the heartbeat
                    # window (2 x 30 s) has passed.
                    time.sleep(3.0)
                    proc = self._spawn_supernode(spec)
                    continue
                raise ProcessStartError(
                    proc.name, f"SuperNode exited with status {proc.returncode} before "
                    "joining the SuperLink", returncode=proc.returncode,
                    log_path=proc.log_path, log_tail=tail)
            if time.monotonic() > deadline:
                tail = proc.log_tail()
                _stop_all([proc], self.deployment_id, self.stop_timeout_s)
                raise ProcessStartError(
                    proc.name,
                    f"SuperNode did not join the SuperLink at {self.superlink_address} "
                    f"within {self.startup_timeout_s:.0f} s (no 'SuperNode ID' log line); "
                    "check the address and, with TLS, the CA and the certificate's "
                    "names. It was stopped.",
                    returncode=None, log_path=proc.log_path, log_tail=tail)
            time.sleep(0.1)

    def register_supernode(self, public_key: Path, name: str) -> int:
        """Register a SuperNode's OpenSSH EC public key under ``name``; return its node id.

        The operator's side of SuperNode authentication (``flwr supernode register``): the
        SuperLink then accepts exactly the SuperNode holding the private key, always under
        this node id, and a ServerApp sees ``name`` in ``grid.get_nodes()``.
        """
        if not isinstance(public_key, Path):
            raise TypeError("public_key must be a pathlib.Path")
        if not public_key.is_file():
            raise ValueError(f"public_key {public_key} is not a file")
        if not isinstance(name, str) or not _NODE_NAME.match(name):
            # Wider than process names: fedtune names nodes by identity fingerprint.
            raise ValueError(f"node name {name!r} must start with a letter and use letters, "
                             "digits, '_', '-', ':' or '.', at most 128 characters")
        reply = self._flwr_json("supernode", "register", str(public_key), CONNECTION_NAME,
                                "--name", name)
        try:
            return int(reply["node-id"])
        except (KeyError, TypeError, ValueError):
            raise FlowerCliError("supernode register", f"no node id in the reply {reply!r}",
                                 returncode=0) from None

    def _register_own_key(self, spec: SuperNodeSpec) -> None:
        assert spec.auth_key is not None
        if spec.name in self._registered:
            return
        home = self.workdir / "nodes" / spec.name
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = serialization.load_ssh_private_key(spec.auth_key.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"auth_key of {spec.name!r} must be an EC key (NIST curve) in "
                             "OpenSSH format; write one with write_supernode_auth_key()")
        public = home / "auth-key.pub"
        atomic_write_bytes(public, key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
        self._registered[spec.name] = self.register_supernode(public, spec.name)

    # ----------------------------------------------------------------- fault injection

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it spawned at once, as if its machine died."""
        proc = self._process(name)
        proc.expected_down = True
        pids = _marked_pids(self.deployment_id, name)
        _signal_pids(pids, signal.SIGKILL)
        proc.signal_group(signal.SIGKILL)
        proc.reap(timeout_s=self.stop_timeout_s)
        _wait_gone(self.deployment_id, name, timeout_s=self.stop_timeout_s)

    def stop(self, name: str) -> None:
        """Stop a process gracefully (SIGTERM, then SIGKILL after ``stop_timeout_s``)."""
        proc = self._process(name)
        _stop_all([proc], self.deployment_id, self.stop_timeout_s)

    def restart(self, name: str) -> SuperLinkInfo | SuperNodeInfo:
        """Stop a process if it runs, start it again with the same settings, wait until ready.

        A SuperLink comes back on the same port (SuperNodes keep pointing at it); a SuperNode
        without an auth key comes back with a *new* node id, one with a registered key keeps
        its id. After :meth:`kill` an authenticated SuperNode is refused until the SuperLink's
        heartbeat window for it ends (up to 60 s); restart retries that long, within
        ``startup_timeout_s`` (see DEPLOYMENT-NOTES.md).
        """
        self._check_open()
        proc = self._process(name)
        if proc.running:
            _stop_all([proc], self.deployment_id, self.stop_timeout_s)
        if name == SUPERLINK:
            self._processes.pop(SUPERLINK)
            return self.start_superlink()
        self.nodes.pop(name, None)
        spec = self._supernodes[name]
        new = self._spawn_supernode(spec)
        try:
            return self._wait_supernode_ready(new, retry_activation=spec.auth_key is not None)
        except BaseException:
            _stop_all([new], self.deployment_id, self.stop_timeout_s)
            raise

    def is_running(self, name: str) -> bool:
        """Whether the named process (``"superlink"`` or a SuperNode name) is alive."""
        return self._process(name).running

    def process_ids(self, name: str) -> list[int]:
        """PIDs of a process and of everything it spawned that is still alive."""
        self._process(name)
        return _marked_pids(self.deployment_id, name)

    def check_alive(self, *names: str) -> None:
        """Raise :class:`ProcessDiedError` if a process (default: any) died unasked."""
        procs = [self._process(n) for n in names] if names else list(self._processes.values())
        for proc in procs:
            if not proc.expected_down and not proc.running:
                raise ProcessDiedError(
                    proc.name, f"exited unexpectedly with status {proc.returncode}",
                    returncode=proc.returncode, log_path=proc.log_path,
                    log_tail=proc.log_tail())

    # ----------------------------------------------------------------------------- runs

    def submit(self, app: AppDir | Path, *,
               run_config: Mapping[str, ConfigValue] | None = None) -> int:
        """Submit ``app`` with ``flwr run`` and return the run id (does not wait)."""
        self._check_open()
        if isinstance(app, Path):
            app = read_app_dir(app)
        if not isinstance(app, AppDir):
            raise TypeError("app must be an AppDir or the pathlib.Path of an app directory")
        overrides = dict(run_config or {})
        app.check_run_config(overrides)
        _ = self.superlink_address  # raises if there is nothing to submit to
        argv = ["run", str(app.path), CONNECTION_NAME, "--format", "json"]
        if overrides:
            # A TOML file sidesteps the quoting rules of --run-config 'k=v' strings.
            config_file = self.workdir / "runs" / f"run-config-{uuid.uuid4().hex[:12]}.toml"
            atomic_write_bytes(config_file,
                               config_toml(overrides, what="run_config").encode("utf-8"))
            argv += ["--run-config", str(config_file)]
        reply = self._flwr_json(*argv)
        try:
            return int(reply["run-id"])
        except (KeyError, TypeError, ValueError):
            raise FlowerCliError("run", f"no run id in the reply {reply!r}",
                                 returncode=0) from None

    def wait(self, run_id: int, *, timeout_s: float = 600.0, check: bool = True) -> RunResult:
        """Wait until a run finishes, fetching its ServerApp log; return how it ended.

        With ``check`` a run that did not complete raises :class:`RunFailedError`; a run
        still going after ``timeout_s`` is stopped (``flwr stop``) and raises
        :class:`RunTimeoutError`. A SuperLink that dies meanwhile raises
        :class:`ProcessDiedError`.
        """
        if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 0:
            raise TypeError("run_id must be a non-negative int")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise TypeError("timeout_s must be a number of seconds")
        if not 0 < timeout_s <= 24 * 3600:
            raise ValueError(f"timeout_s must be in (0, 86400], got {timeout_s}")
        started = time.monotonic()
        deadline = started + timeout_s
        log_path = self.workdir / "runs" / f"{run_id}.log"
        # `flwr log --stream` ends by itself once the run is finished (the Control API's
        # StreamLogs closes the stream), which makes it the cheapest way to wait.
        with log_path.open("wb") as sink:
            streamer = subprocess.Popen(
                [str(self._bin / "flwr"), "log", str(run_id), CONNECTION_NAME, "--stream"],
                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                cwd=self.workdir / "cli", env=self._cli_env(), start_new_session=True)
            try:
                info = self._await_finish(run_id, streamer, deadline)
            finally:
                _terminate_popen(streamer, grace_s=2.0)
        wall = time.monotonic() - started
        if info is None:
            status = self._run_status(run_id)
            try:
                self._flwr_json("stop", str(run_id), CONNECTION_NAME)
            except FlowerCliError as err:
                _log.warning("could not stop run %d after its timeout: %s", run_id, err)
            raise RunTimeoutError(run_id, str(status.get("status", "unknown")),
                                  f"did not finish within {timeout_s:.0f} s and was stopped",
                                  log_path=log_path, log_tail=_tail(log_path))
        result = RunResult(run_id=run_id, status=str(info["status"]),
                           details=_details(info), log_path=log_path, wall_s=wall, info=info)
        if check and not result.completed:
            raise RunFailedError(run_id, result.status, "did not complete",
                                 details=result.details, log_path=log_path,
                                 log_tail=_tail(log_path))
        return result

    def run(self, app: AppDir | Path, *, run_config: Mapping[str, ConfigValue] | None = None,
            timeout_s: float = 600.0, check: bool = True) -> RunResult:
        """Submit ``app`` and wait for it to finish (see :meth:`submit` and :meth:`wait`)."""
        return self.wait(self.submit(app, run_config=run_config), timeout_s=timeout_s,
                         check=check)

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run (``flwr stop``)."""
        self._flwr_json("stop", str(run_id), CONNECTION_NAME)

    def _await_finish(self, run_id: int, streamer: subprocess.Popen[bytes],
                      deadline: float) -> Mapping[str, Any] | None:
        # Each `flwr ls` is a Python start-up (~1.3 s of CPU), so while the log stream is
        # open (it closes when the run finishes) the status is only checked now and then.
        next_status = time.monotonic() + 15.0
        stream_open = True
        while time.monotonic() < deadline:
            if SUPERLINK in self._processes:
                # A dead SuperNode is the ServerApp's business (dropout); a dead SuperLink
                # means nothing will ever finish.
                self.check_alive(SUPERLINK)
            if stream_open and streamer.poll() is not None:
                stream_open = False
                next_status = time.monotonic()
            if time.monotonic() >= next_status:
                info = self._run_status(run_id)
                if str(info.get("status", "")).startswith(_FINISHED):
                    # Let the stream deliver the last log lines it is already sending.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        streamer.wait(timeout=3.0)
                    return info
                # A stream that ended early (connection trouble) is replaced by polling.
                next_status = time.monotonic() + (15.0 if stream_open else 2.0)
            time.sleep(0.2)
        return None

    def _run_status(self, run_id: int) -> Mapping[str, Any]:
        reply = self._flwr_json("ls", CONNECTION_NAME, "--run-id", str(run_id))
        runs = reply.get("runs") or []
        if len(runs) != 1:
            raise RunError(run_id, "unknown", f"is not known to the SuperLink ({reply!r})")
        return dict(runs[0])

    # ----------------------------------------------------------------------- CLI plumbing

    def _flwr_json(self, *args: str) -> dict[str, Any]:
        command = " ".join(args[:2]) if args[0] == "supernode" else args[0]
        argv = [str(self._bin / "flwr"), *args]
        if "--format" not in args:
            argv += ["--format", "json"]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  cwd=self.workdir / "cli", env=self._cli_env(),
                                  timeout=self.cli_timeout_s, check=False)
        except subprocess.TimeoutExpired as err:
            raise FlowerCliError(command, f"gave no answer within {self.cli_timeout_s:.0f} s",
                                 returncode=None, output=_decode(err.output)) from None
        out, errout = _decode(done.stdout), _decode(done.stderr)
        self._append_cli_log(argv, done.returncode, out, errout)
        reply = _json_reply(out)
        if reply is None:
            raise FlowerCliError(command, f"exited with status {done.returncode} without a "
                                 "JSON reply", returncode=done.returncode,
                                 output=_tail_text(out + errout))
        if reply.get("success") is not True or done.returncode != 0:
            message = str(reply.get("error-message", "")).strip() or "reported failure"
            raise FlowerCliError(command, message, returncode=done.returncode,
                                 output=_tail_text(out + errout))
        return reply

    def _append_cli_log(self, argv: list[str], rc: int, out: str, err: str) -> None:
        with (self.workdir / "logs" / "flwr-cli.log").open("a", encoding="utf-8") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} {' '.join(argv)} -> {rc}\n{out}{err}\n")

    def _write_cli_config(self, address: str) -> None:
        lines = ["[superlink]", f'default = "{CONNECTION_NAME}"', "",
                 f"[superlink.{CONNECTION_NAME}]", f'address = "{address}"']
        if self.tls is None:
            lines.append("insecure = true")
        else:
            lines += ["insecure = false",
                      f"root-certificates = {json.dumps(str(self.tls.ca_certfile))}"]
        atomic_write_bytes(self.workdir / "cli" / "config.toml",
                           ("\n".join(lines) + "\n").encode("utf-8"), mode=0o600)

    # ----------------------------------------------------------------------- environment

    def _base_env(self) -> dict[str, str]:
        # Inherited FLWR_* settings (a developer's FLWR_DATABASE, FLWR_HOME...) would make
        # the deployment depend on the shell it was started from.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
        env.update({
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            # SuperNode and SuperLink start `flower-superexec` by bare name.
            "PATH": os.pathsep.join([str(self._bin), env.get("PATH", "")]),
            MARKER_ENV: self.deployment_id,
        })
        env.update(self._env)
        return env

    def _child_env(self, name: str, home: Path) -> dict[str, str]:
        env = self._base_env()
        env["FLWR_HOME"] = str(home / "flwr-home")
        env[PROCESS_ENV] = name
        return env

    def _cli_env(self) -> dict[str, str]:
        env = self._base_env()
        env["FLWR_HOME"] = str(self.workdir / "cli")
        env[PROCESS_ENV] = "flwr-cli"
        return env

    def _process(self, name: str) -> _Supervised:
        if not isinstance(name, str):
            raise TypeError(f"process name must be a str, got {type(name).__name__}")
        try:
            return self._processes[name]
        except KeyError:
            known = ", ".join(sorted(self._processes)) or "none"
            raise ValueError(f"no process named {name!r} here (known: {known})") from None

    def _check_open(self) -> None:
        if self._closed:
            raise DeploymentError("deployment", "already closed; make a new Deployment")


# --------------------------------------------------------------------- process supervision


class _Supervised:
    """One OS process we started, in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str],
                 log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_offset = 0
        self.started_at = 0.0
        self.expected_down = False

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: "
                      f"{' '.join(self.argv)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.started_at = time.monotonic()
            self.expected_down = False
            # Its own session: a signal for the group reaches it and the children it keeps
            # there, and never our own process group.
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def log_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return _ANSI.sub("", log.read().decode("utf-8", errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return _tail_text(self.log_since_start(), lines)

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def reap(self, *, timeout_s: float) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout_s)


def _stop_all(procs: list[_Supervised], deployment_id: str, grace_s: float) -> None:
    """SIGTERM each process family, wait up to ``grace_s``, SIGKILL what is left."""
    procs = [p for p in procs if p.popen is not None]
    for proc in procs:
        proc.expected_down = True
        proc.signal_group(signal.SIGTERM)
        # Flower moves the SuperLink's SuperExec to a session of its own; reach it by marker.
        # Members of the group are not signalled twice: a second SIGTERM arriving after
        # Flower's handler restored the default action kills the process mid-shutdown (an
        # authenticated SuperNode then never deactivates and stays "online" for ~60 s).
        _signal_pids(_outside_group(_marked_pids(deployment_id, proc.name), proc.pid),
                     signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not any(p.running for p in procs) and not any(
                _marked_pids(deployment_id, p.name) for p in procs):
            break
        time.sleep(0.1)
    for proc in procs:
        leftovers = _marked_pids(deployment_id, proc.name)
        if proc.running or leftovers:
            _log.warning("%s did not stop within %.0f s of SIGTERM; sending SIGKILL",
                         proc.name, grace_s)
        proc.signal_group(signal.SIGKILL)
        _signal_pids(leftovers, signal.SIGKILL)
        proc.reap(timeout_s=5.0)
    for proc in procs:
        _wait_gone(deployment_id, proc.name, timeout_s=5.0)


def _sweep(deployment_id: str) -> list[tuple[int, str]]:
    """SIGKILL every live process carrying the deployment marker; return any survivors."""
    pids = _marked_pids(deployment_id)
    if not pids:
        return []
    _signal_pids(pids, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and _marked_pids(deployment_id):
        time.sleep(0.1)
    return find_processes(deployment_id)


def _wait_gone(deployment_id: str, name: str, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _marked_pids(deployment_id, name):
        time.sleep(0.05)


def _terminate_popen(popen: subprocess.Popen[bytes], *, grace_s: float) -> None:
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=5.0)


def _marked_pids(deployment_id: str, process: str | None = None) -> list[int]:
    """Live (non-zombie) processes whose environment carries our markers (Linux /proc)."""
    marker = f"{MARKER_ENV}={deployment_id}".encode()
    name = None if process is None else f"{PROCESS_ENV}={process}".encode()
    found = []
    own = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if state in (b"Z", b"X"):
            continue  # Dead, waiting to be reaped by whoever adopted it.
        if marker in variables and (name is None or name in variables):
            found.append(int(entry.name))
    return found


def _outside_group(pids: Iterable[int], pgid: int) -> list[int]:
    outside = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) != pgid:
                outside.append(pid)
    return outside


def _signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


# ------------------------------------------------------------------------------- helpers


def _find_flower_bin(given: Path | None) -> Path:
    candidates = [given] if given is not None else [Path(sys.executable).parent]
    if given is None and (found := shutil.which("flower-superlink")):
        candidates.append(Path(found).parent)
    for directory in candidates:
        if all((directory / exe).is_file() for exe in
               ("flower-superlink", "flower-supernode", "flower-superexec", "flwr")):
            return directory.resolve()
    raise DeploymentError(
        "flower-superlink",
        f"Flower's executables are not in {', '.join(map(str, candidates))}; install "
        "flwr>=1.41 into this environment or pass flower_bin_dir=")


def _free_port(host: str) -> int:
    bind_host = "127.0.0.1" if host in ("0.0.0.0", "localhost") else host  # noqa: S104
    with socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET) as sock:
        sock.bind((bind_host, 0))
        return int(sock.getsockname()[1])


def _connect_host(bind_host: str) -> str:
    # The address clients on this machine dial; mirrors flwr.supercore.address.
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind_host, bind_host)  # noqa: S104


def _join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _health_ok(host: str, port: int, ctx: ssl.SSLContext | None) -> bool:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(host, port, timeout=2.0)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=2.0, context=ctx)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"process name must be a str, got {type(name).__name__}")
    if not _NAME.match(name) or name in (SUPERLINK, "flwr-cli"):
        raise ValueError(f"name {name!r} must start with a letter, use letters, digits, '_' "
                         "or '-', at most 64 characters, and not be 'superlink' or 'flwr-cli'")


def _check_port(port: object, *, what: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what} must be an int")
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} must be in 1..65535, got {port}")


def _check_env(env: Mapping[str, str], *, what: str) -> None:
    if not isinstance(env, Mapping):
        raise TypeError(f"{what} must be a mapping of str to str")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{what} must map str to str, got {key!r}: {value!r}")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"{what}: {key!r} is not a valid environment variable name")
        if key in _RESERVED_ENV:
            raise ValueError(f"{what}: {key} is set by the deployment itself")


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address {address!r} must be 'host:port'")
    _check_port(int(port), what="port of the address")
    return host, int(port)


def _details(info: Mapping[str, Any]) -> str:
    details = str(info.get("status-details", "") or "")
    return "" if details == "N/A" else details


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return _tail_text(path.read_text(encoding="utf-8", errors="replace"), lines)
    except FileNotFoundError:
        return ""


def _json_reply(text: str) -> dict[str, Any] | None:
    """The JSON object a ``flwr ... --format json`` call printed (it may print other lines)."""
    decoder = json.JSONDecoder()
    found = None
    for start in _brace_positions(text):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found = value
            break
    return found


def _brace_positions(text: str) -> Iterator[int]:
    # Flower pretty-prints the object starting at the beginning of a line.
    for match in re.finditer(r"(?m)^\{", text):
        yield match.start()
