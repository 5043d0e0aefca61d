"""An isolation probe, run inside a sandbox: it tries what the sandbox must forbid and reports JSON.

``python -m enclave.sandbox.probe --connect 127.0.0.1:PORT --write /data/x --read /etc/passwd``
prints one JSON object: for each attempt whether it succeeded and, if not, the OS error. The
launcher runs it with exactly the runtime's bubblewrap configuration
(:meth:`enclave.sandbox.launcher.SandboxLauncher.run_probe`); ``fedtune sandbox check`` and the
isolation tests read its answers. It changes nothing: a write that succeeds is removed again.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence

from enclave.sandbox.isolation import visible_interfaces

CONNECT_TIMEOUT_S = 3.0


def _error(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def try_connect(target: str) -> dict[str, object]:
    """Open a TCP connection to ``host:port``."""
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            return {"target": target, "ok": True, "error": ""}
    except OSError as exc:
        return {"target": target, "ok": False, "error": _error(exc)}


def try_read(path: str) -> dict[str, object]:
    """Read the first bytes of a file, or list a directory."""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as handle:
                handle.read(16)
        return {"target": path, "ok": True, "error": ""}
    except OSError as exc:
        return {"target": path, "ok": False, "error": _error(exc)}


def try_write(path: str) -> dict[str, object]:
    """Create a new file at ``path`` (removed again when that worked)."""
    try:
        with open(path, "xb") as handle:
            handle.write(b"probe")
    except OSError as exc:
        return {"target": path, "ok": False, "error": _error(exc)}
    try:
        os.unlink(path)
    except OSError as exc:
        return {"target": path, "ok": True, "error": f"written but not removed: {_error(exc)}"}
    return {"target": path, "ok": True, "error": ""}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested attempts and print their outcomes as one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m enclave.sandbox.probe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--connect", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--read", action="append", default=[], metavar="PATH")
    parser.add_argument("--write", action="append", default=[], metavar="PATH")
    args = parser.parse_args(argv)
    result = {
        "connect": [try_connect(t) for t in args.connect],
        "read": [try_read(p) for p in args.read],
        "write": [try_write(p) for p in args.write],
        "interfaces": visible_interfaces(),
        "uid": os.getuid(),
        "pid": os.getpid(),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
