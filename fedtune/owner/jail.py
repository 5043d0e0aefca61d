"""The bubblewrap jail the owner's Flower SuperNode (and every ClientApp it starts) runs in.

Why (DEPLOYMENT-NOTES.md section 4): anyone who can reach the SuperLink can start a run whose
ClientApp code executes on the owner's machine with the owner's privileges. Inside the jail
that code sees only what the SuperNode needs:

=============================  ===============================================  ==========
inside (same paths as host)    what                                             access
=============================  ===============================================  ==========
/usr /lib* /bin /sbin          system programs and libraries                    read-only
a few /etc files               name resolution, TLS roots, ld.so.cache, time    read-only
interpreter prefixes           the venv and its base Python                     read-only
fedtune, crypto, enclave       the package directories (editable installs)      read-only
the SuperNode's home           its FLWR_HOME, node config, logs of its apps     read-write
the CA file, the node key      the SuperLink's CA; the SuperNode's own key      read-only
the sandbox socket directory   the one way to the sandbox (locked to the terms) read-write
/tmp, /dev/shm                 private tmpfs                                    read-write
=============================  ===============================================  ==========

Not there: the owner's records, the staging directory the sandbox reads, ``$FEDTUNE_HOME``
(identity, client keys), the owner's home, everything else. Network is shared (it must reach
the SuperLink); user, IPC, PID and UTS namespaces are not; all capabilities are dropped, the
environment is cleared and rebuilt from a short allow-list, and the jail dies with the agent.

A bound directory must not contain a protected path (the check refuses, naming both): binding
``/work`` because the venv lives there would also show ``/work/records``.

Process shape: ``python -m fedtune.owner.jail_shim -- bwrap ... -- flower-supernode ...``. The
shim runs bubblewrap in a session of its own and waits for it, so the harness's SIGTERM to the
shim's process group does not kill bubblewrap (which would SIGKILL the SuperNode before it
deactivated at the SuperLink); the SuperNode itself gets the SIGTERM by its deployment marker.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enclave.sandbox.bwrap import SYSTEM_DIRS, interpreter_dirs
from fedtune.federated.deployment import MARKER_ENV, PROCESS_ENV
from fedtune.owner.errors import JailError

ETC_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
)
# The environment a SuperNode keeps (everything else, e.g. FEDTUNE_HOME, tokens, is dropped).
ENV_KEEP = frozenset(
    {"PATH", "LANG", "LC_ALL", "TZ", "PYTHONUNBUFFERED", "PYTHONHASHSEED", MARKER_ENV,
     PROCESS_ENV, "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"}
)
ENV_KEEP_PREFIXES = ("FLWR_",)
SHIM_GRACE_S = 20.0


def package_dirs(names: Iterable[str] = ("fedtune", "crypto", "enclave")) -> tuple[Path, ...]:
    """Where our packages' code lives (editable installs point outside the venv)."""
    import importlib.util

    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise JailError(f"cannot locate the {name} package to bind it into the jail")
        dirs.extend(Path(p).resolve() for p in spec.submodule_search_locations)
    return tuple(dict.fromkeys(dirs))


@dataclass(frozen=True)
class JailSpec:
    """What one SuperNode's jail binds, and the host paths it must never show."""

    socket_dir: Path
    read_only_files: tuple[Path, ...]
    protected: tuple[Path, ...]
    code_dirs: tuple[Path, ...] = field(default_factory=package_dirs)
    interpreter: tuple[Path, ...] = field(default_factory=interpreter_dirs)
    bwrap: str = "bwrap"

    def __post_init__(self) -> None:
        for path in (self.socket_dir, *self.read_only_files, *self.protected):
            if not isinstance(path, Path) or not path.is_absolute():
                raise ValueError(f"{path!r} must be an absolute pathlib.Path")


def check_binds(binds: Iterable[Path], protected: Iterable[Path]) -> None:
    """JailError when a bound path is, or contains, a protected one."""
    resolved = [(b, b.resolve()) for b in binds]
    for guard in protected:
        target = guard.resolve()
        for shown, real in resolved:
            if target == real or target.is_relative_to(real):
                raise JailError(
                    f"binding {shown} into the SuperNode's jail would show {guard}, which the "
                    "relay must never see; keep the venv, the code and the work dir outside "
                    "your records directory and $FEDTUNE_HOME"
                )


def jail_environment(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """The SuperNode's environment: the allow-list of ``env``, with HOME and TMPDIR inside."""
    kept = {
        k: v for k, v in env.items()
        if k in ENV_KEEP or any(k.startswith(p) for p in ENV_KEEP_PREFIXES)
    }
    kept["HOME"] = str(home)
    kept["TMPDIR"] = "/tmp"  # noqa: S108 - the jail's private tmpfs
    return kept


def build_jail_argv(
    spec: JailSpec, command: Sequence[str], *, home: Path, env: Mapping[str, str]
) -> list[str]:
    """The bubblewrap argv running ``command`` in the SuperNode jail (see the module doc)."""
    if isinstance(command, str) or not command:
        raise ValueError("command must be a non-empty sequence of arguments")
    if not home.is_absolute():
        raise ValueError("home must be absolute")
    writable = (home, spec.socket_dir)
    check_binds([*spec.interpreter, *spec.code_dirs, *writable, *spec.read_only_files],
                spec.protected)
    argv = [
        spec.bwrap,
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop", "ALL",
        "--hostname", "fedtune-supernode",
    ]
    # Mounts apply in order: the private /tmp comes before the binds, which may lie under /tmp.
    argv += [
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",  # noqa: S108 - private tmpfs inside the jail
        "--tmpfs", "/dev/shm",  # noqa: S108
    ]
    for directory in SYSTEM_DIRS:
        argv += ["--ro-bind-try", directory, directory]
    for file in ETC_FILES:
        argv += ["--ro-bind-try", file, file]
    for directory in (*spec.interpreter, *spec.code_dirs):
        argv += ["--ro-bind", str(directory), str(directory)]
    for file in spec.read_only_files:
        argv += ["--ro-bind", str(file), str(file)]
    for directory in writable:
        argv += ["--bind", str(directory), str(directory)]
    argv += ["--remount-ro", "/", "--clearenv"]
    for key, value in sorted(jail_environment(env, home).items()):
        argv += ["--setenv", key, value]
    argv += ["--chdir", str(home), "--", *command]
    return argv


def shim_argv(bwrap_argv: Sequence[str], *, grace_s: float = SHIM_GRACE_S) -> list[str]:
    """Run ``bwrap_argv`` under the shim (see the module doc for why)."""
    return [sys.executable, "-s", "-m", "fedtune.owner.jail_shim", "--grace", str(grace_s), "--",
            *bwrap_argv]


def bubblewrap_available(bwrap: str = "bwrap") -> str | None:
    """None when bubblewrap can build the jail's namespaces here, else why it cannot."""
    import subprocess

    path = shutil.which(bwrap)
    if path is None:
        return f"bubblewrap ({bwrap}) is not installed"
    true = shutil.which("true") or "/bin/true"
    argv = [path, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
            "--disable-userns", "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/", "/",
            "--", true]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run: {exc}"
    if done.returncode != 0:
        return "bubblewrap cannot create namespaces here: " + (
            done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        )
    return None


class SuperNodeJail:
    """A ``Deployment`` SuperNode wrapper that jails every SuperNode it starts."""

    def __init__(self, spec: JailSpec) -> None:
        if not isinstance(spec, JailSpec):
            raise TypeError("spec must be a JailSpec")
        self.spec = spec
        bwrap = shutil.which(spec.bwrap)
        if bwrap is None:
            raise JailError(f"bubblewrap ({spec.bwrap}) is not installed")
        self._bwrap = bwrap

    def __call__(self, argv: list[str], home: Path, env: dict[str, str]) -> list[str]:
        """The shim + bubblewrap argv for one SuperNode whose own argv is ``argv``."""
        spec = self.spec
        jailed = build_jail_argv(
            JailSpec(spec.socket_dir, spec.read_only_files, spec.protected, spec.code_dirs,
                     spec.interpreter, self._bwrap),
            argv, home=home.resolve(), env=env,
        )
        return shim_argv(jailed)


def protected_paths(*paths: Path | None) -> tuple[Path, ...]:
    """The existing absolute paths among ``paths`` (None and missing ones dropped)."""
    return tuple(Path(os.path.abspath(p)) for p in paths if p is not None and Path(p).exists())
