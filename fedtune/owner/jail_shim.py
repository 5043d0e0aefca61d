"""Run bubblewrap in a session of its own and wait for it: ``python -m fedtune.owner.jail_shim``.

Usage: ``python -m fedtune.owner.jail_shim [--grace S] -- bwrap ARGS...``.

bubblewrap dies at once on SIGTERM, and its ``--die-with-parent`` then SIGKILLs the jailed
SuperNode before Flower's graceful exit could deactivate the node at the SuperLink (which then
refuses the node's key for up to a minute). The deployment harness stops a process by signalling
its process group, so this shim is what it starts: bubblewrap runs in another session (the
group signal reaches only the shim) with the deployment markers removed from its environment
(the harness's marker-based signal reaches only the jailed processes, which carry them inside).
On SIGTERM or SIGINT the shim waits up to ``--grace`` seconds for bubblewrap to end, then kills
it. The shim dies with the agent thread that started it (``PR_SET_PDEATHSIG``), and bubblewrap
with the shim.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

from fedtune.federated.deployment import MARKER_ENV, PROCESS_ENV

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def main(argv: list[str] | None = None) -> int:
    """Start bubblewrap, wait for it, pass on its exit status."""
    parser = argparse.ArgumentParser(prog="fedtune.owner.jail_shim")
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the bubblewrap command after --")
    _die_with_parent()
    env = {k: v for k, v in os.environ.items() if k not in (MARKER_ENV, PROCESS_ENV)}
    stopping: list[float] = []

    def on_signal(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(time.monotonic())

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    child = subprocess.Popen(command, env=env, start_new_session=True)
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if stopping and time.monotonic() - stopping[0] > args.grace:
            # The jailed processes did not finish: end the jail (its namespace dies with it).
            os.killpg(child.pid, signal.SIGKILL)
            return child.wait()


if __name__ == "__main__":
    sys.exit(main())
