"""How the sandbox runtime is isolated: process hardening, self-inspection, the IsolationReport.

Two parties contribute to the report. The launcher verifies from the outside which namespaces
the runtime does not share with it (comparing ``/proc/<pid>/ns/*`` with its own) and hands
those facts to the runtime at start (:class:`LaunchFacts`). The runtime hardens itself
(``PR_SET_DUMPABLE`` 0, ``RLIMIT_CORE`` 0, both read back) and inspects what it can see
(network interfaces, effective capabilities). The report travels with ``Attest`` and
``Status`` so the owner and any verdict see when isolation is weaker than intended. It is
informational: the evidence binds only the nonce and key, not this report.

Under the simulated TEE all of this is process-level protection on the owner's own machine:
whoever controls the machine (root, the kernel) can still read the runtime's memory. Only a
real TEE (SEV-SNP, TDX) protects the weights from the machine's owner.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
from enum import StrEnum
from pathlib import Path

from pydantic import Field

from crypto.canonical import CanonicalModel
from enclave.sandbox.errors import HardeningFailed

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4

# Every namespace bubblewrap's --unshare-all (plus --unshare-user) creates.
EXPECTED_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")

SIMULATED_TEE_WARNING = (
    "simulated TEE: the weights are protected at process level only (namespaces, "
    "non-dumpable process); the machine's owner (root) can still read the sandbox's memory. "
    "Development only"
)
PLAIN_PROCESS_WARNING = (
    "WEAKER ISOLATION: the runtime runs as a plain child process without bubblewrap: no "
    "network, mount or PID namespaces; it can reach the network and read and write every "
    "file its user can"
)

_log = logging.getLogger(__name__)


class IsolationMode(StrEnum):
    """How the launcher started the runtime."""

    BUBBLEWRAP = "bubblewrap"
    PLAIN_PROCESS = "plain-process"


class LaunchFacts(CanonicalModel):
    """What the launcher set up and verified from outside the sandbox."""

    mode: IsolationMode
    namespaces: list[str] = Field(default_factory=list)
    filesystem_isolated: bool = False
    tee: str = "simulated"


class IsolationReport(CanonicalModel):
    """The runtime's isolation as the owner and verdicts see it (see the module doc)."""

    mode: IsolationMode
    namespaces: list[str]
    network_isolated: bool
    interfaces: list[str]
    filesystem_isolated: bool
    dumpable: bool
    core_limit: int
    capabilities: str
    tee: str
    warnings: list[str]

    @property
    def weaker(self) -> bool:
        """True when any protection the bubblewrap sandbox is meant to give is missing."""
        return (
            self.mode is not IsolationMode.BUBBLEWRAP
            or not set(EXPECTED_NAMESPACES) <= set(self.namespaces)
            or not self.network_isolated
            or not self.filesystem_isolated
            or self.dumpable
            or self.core_limit != 0
        )


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, arg: int = 0) -> int:
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    result = libc.prctl(option, arg, 0, 0, 0)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}) failed: {os.strerror(errno)}")
    return int(result)


def harden_process() -> None:
    """Make this process non-dumpable with no core dumps, and check both took effect."""
    # Non-dumpable: no core files, no ptrace or /proc/<pid>/mem access by same-user processes.
    _prctl(PR_SET_DUMPABLE, 0)
    # Hard limit 0 too, so nothing in the process can raise it again.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    dumpable = _prctl(PR_GET_DUMPABLE)
    if dumpable != 0:
        raise HardeningFailed("PR_SET_DUMPABLE", expected="0", got=str(dumpable))
    core = resource.getrlimit(resource.RLIMIT_CORE)
    if core != (0, 0):
        raise HardeningFailed("RLIMIT_CORE", expected="(0, 0)", got=str(core))


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent exits (plain-process mode)."""
    _prctl(PR_SET_PDEATHSIG, 9)  # SIGKILL


def is_dumpable() -> bool:
    """The process's PR_GET_DUMPABLE flag."""
    return _prctl(PR_GET_DUMPABLE) != 0


def core_limit() -> int:
    """The soft RLIMIT_CORE, -1 for unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_CORE)
    return -1 if soft == resource.RLIM_INFINITY else int(soft)


def visible_interfaces(proc: Path = Path("/proc")) -> list[str]:
    """Network interfaces this process's network namespace holds, from /proc/net/dev."""
    try:
        lines = (proc / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return []
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def effective_capabilities(proc: Path = Path("/proc")) -> str:
    """CapEff of this process (hex), from /proc/self/status; "" when it cannot be read."""
    try:
        for line in (proc / "self" / "status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return ""
    return ""


def inspect_process(facts: LaunchFacts) -> IsolationReport:
    """Combine the launcher's facts with what this process observes about itself."""
    interfaces = visible_interfaces()
    report = IsolationReport(
        mode=facts.mode,
        namespaces=sorted(facts.namespaces),
        network_isolated=bool(interfaces) and set(interfaces) <= {"lo"},
        interfaces=interfaces,
        filesystem_isolated=facts.filesystem_isolated,
        dumpable=is_dumpable(),
        core_limit=core_limit(),
        capabilities=effective_capabilities(),
        tee=facts.tee,
        warnings=[],
    )
    return report.model_copy(update={"warnings": isolation_warnings(report)})


def isolation_warnings(report: IsolationReport) -> list[str]:
    """The warnings a report deserves, loudest first."""
    warnings = []
    if report.mode is IsolationMode.PLAIN_PROCESS:
        warnings.append(PLAIN_PROCESS_WARNING)
    else:
        missing = sorted(set(EXPECTED_NAMESPACES) - set(report.namespaces))
        if missing:
            warnings.append(
                f"WEAKER ISOLATION: namespaces shared with the host: {', '.join(missing)}"
            )
        if not report.network_isolated:
            warnings.append(
                "WEAKER ISOLATION: the runtime sees network interfaces other than loopback: "
                + ", ".join(report.interfaces)
            )
    if report.dumpable:
        warnings.append("WEAKER ISOLATION: the runtime process is dumpable")
    if report.core_limit != 0:
        warnings.append("WEAKER ISOLATION: core dumps are enabled for the runtime")
    if report.tee == "simulated":
        warnings.append(SIMULATED_TEE_WARNING)
    return warnings


def log_warnings(report: IsolationReport) -> None:
    """Log every warning of ``report`` at WARNING level, one line each."""
    for warning in report.warnings:
        _log.warning("%s", warning)
