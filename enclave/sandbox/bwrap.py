"""The bubblewrap command line that isolates the sandbox runtime, and its minimal environment.

What the runtime sees (everything else of the host does not exist for it):

=========================  =====================================================  ==========
inside                     from the host                                          access
=========================  =====================================================  ==========
/usr /lib* /bin /sbin      the system's programs and shared libraries             read-only
a few /etc files           ld.so.cache, localtime (nothing else of /etc)          read-only
<interpreter prefixes>     ``sys.base_prefix`` and the venv ``sys.prefix``,       read-only
                           at their own paths (a venv finds its base there)
/opt/fedtune/code/crypto   the ``crypto`` package directory                       read-only
/opt/fedtune/code/enclave  the ``enclave`` package directory (not ``fedtune``)    read-only
/data                      the owner's data directory                             read-only
/run/fedtune               the socket directory (holds only the gRPC socket)      read-write
/tmp, /dev/shm             private tmpfs (memory, invisible to the host)          read-write
/dev, /proc                minimal devices; a proc of the sandbox's PID namespace
/sys/kernel/config/tsm/..  only with a real TEE (configfs-tsm reports)            read-write
=========================  =====================================================  ==========

The root and /dev are remounted read-only. Flags: ``--unshare-all`` (user, IPC, PID, network,
UTS, cgroup namespaces; the network namespace holds only a loopback interface),
``--unshare-user`` and ``--disable-userns`` (no nested user namespaces, so no way to regain
capabilities), ``--cap-drop ALL``, ``--die-with-parent``, ``--new-session`` (no terminal
injection), ``--clearenv`` with an explicit environment (no proxies, offline Hugging Face,
fixed thread counts). The owner's home and ``$FEDTUNE_HOME`` are not bound; only the
interpreter's own directories are, even when they lie under the home.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DATA_MOUNT = PurePosixPath("/data")
SOCKET_MOUNT = PurePosixPath("/run/fedtune")
CODE_MOUNT = PurePosixPath("/opt/fedtune/code")
CONFIGFS_TSM = Path("/sys/kernel/config/tsm/report")
# The private tmpfs inside the sandbox (memory, invisible to the host): not a shared /tmp.
SANDBOX_TMP = "/tmp"  # noqa: S108
SANDBOX_SHM = "/dev/shm"  # noqa: S108
SOCKET_NAME = "sandbox.sock"
HOSTNAME = "fedtune-sandbox"

SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")


@dataclass(frozen=True)
class SandboxMounts:
    """The host paths a sandbox is built from."""

    data_dir: Path
    socket_dir: Path
    code_roots: tuple[Path, ...]
    interpreter_dirs: tuple[Path, ...]
    configfs: Path | None = None
    extra_ro: tuple[tuple[Path, PurePosixPath], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("data_dir", "socket_dir"):
            value = getattr(self, name)
            if not isinstance(value, Path) or not value.is_absolute():
                raise ValueError(f"{name} must be an absolute Path, got {value!r}")
        if not self.code_roots:
            raise ValueError("code_roots must name the crypto and enclave package directories")
        names = [root.name for root in self.code_roots]
        if len(set(names)) != len(names):
            raise ValueError(f"code roots must have distinct names, got {names}")
        for path in (*self.code_roots, *self.interpreter_dirs):
            if not path.is_absolute():
                raise ValueError(f"{path} must be absolute")


def interpreter_dirs() -> tuple[Path, ...]:
    """The directories this Python needs to start: its prefixes (venv and base), resolved."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    # The interpreter binary may be a symlink into yet another directory (pyenv shims, ...).
    real_bin = Path(os.path.realpath(sys.executable)).parent
    candidates.add(str(real_bin.parent))
    dirs: list[Path] = []
    for candidate in sorted(candidates):
        path = Path(candidate)
        if path.is_dir() and not _covered(path, [Path(d) for d in SYSTEM_DIRS]):
            dirs.append(path)
    # Drop directories nested in another one that is bound anyway.
    return tuple(d for d in dirs if not any(d != o and d.is_relative_to(o) for o in dirs))


def _covered(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def sandbox_environment(*, num_threads: int, pythonpath: str, home: str) -> dict[str, str]:
    """The runtime's whole environment: nothing inherited, offline, fixed thread counts."""
    if not isinstance(num_threads, int) or isinstance(num_threads, bool):
        raise TypeError("num_threads must be an int")
    if num_threads < 1:
        raise ValueError("num_threads must be at least 1")
    threads = str(num_threads)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": pythonpath,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # Nothing may be downloaded, and caches stay in the private tmpfs.
        "HF_HOME": f"{home}/hf",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "XDG_CACHE_HOME": f"{home}/cache",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
    }


def build_bwrap_argv(
    mounts: SandboxMounts,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    bwrap: str = "bwrap",
    info_fd: int | None = None,
) -> list[str]:
    """The full bubblewrap argv running ``command`` inside the sandbox described above."""
    if not isinstance(mounts, SandboxMounts):
        raise TypeError("mounts must be SandboxMounts")
    if isinstance(command, str) or not command:
        raise ValueError("command must be a non-empty sequence of arguments")
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--hostname", HOSTNAME,
    ]
    for directory in SYSTEM_DIRS:
        argv += ["--ro-bind-try", directory, directory]
    for file in SYSTEM_FILES:
        argv += ["--ro-bind-try", file, file]
    # The private tmpfs goes in before the binds: a bind under /tmp (a virtualenv or checkout
    # living there) must land on top of it, not be hidden by it.
    argv += [
        "--dev", "/dev",
        "--tmpfs", SANDBOX_SHM,
        "--proc", "/proc",
        "--tmpfs", SANDBOX_TMP,
    ]
    for directory in mounts.interpreter_dirs:
        argv += ["--ro-bind", str(directory), str(directory)]
    for root in mounts.code_roots:
        argv += ["--ro-bind", str(root), str(CODE_MOUNT / root.name)]
    for source, target in mounts.extra_ro:
        argv += ["--ro-bind", str(source), str(target)]
    argv += ["--ro-bind", str(mounts.data_dir), str(DATA_MOUNT)]
    argv += ["--bind", str(mounts.socket_dir), str(SOCKET_MOUNT)]
    if mounts.configfs is not None:
        argv += ["--bind", str(mounts.configfs), str(mounts.configfs)]
    argv += [
        # After every mount point is in place: nothing but the tmpfs and the socket dir is
        # writable (bubblewrap's own root and /dev are tmpfs until remounted).
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--clearenv",
    ]
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    argv += ["--chdir", SANDBOX_TMP]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv += ["--", *command]
    return argv
