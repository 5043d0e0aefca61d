"""The launcher's one message to a starting runtime, passed through an inherited pipe.

It carries what the runtime cannot learn by itself: the isolation the launcher verified from
outside, which TEE to use, the thread count, and for the simulated TEE the platform's signing
key. A pipe keeps that key out of the sandbox's filesystem (no bind of ``$FEDTUNE_HOME``, no
file to find): the runtime reads the message once at start and closes the descriptor.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationError

from crypto.canonical import CanonicalModel
from enclave.sandbox.errors import SandboxLaunchError
from enclave.sandbox.isolation import LaunchFacts

BOOTSTRAP_FORMAT = "fedtune.sandbox-bootstrap/v1"
MAX_BOOTSTRAP_SIZE = 64 * 1024


class Bootstrap(CanonicalModel):
    """What the launcher tells the runtime at start."""

    format: Literal["fedtune.sandbox-bootstrap/v1"] = BOOTSTRAP_FORMAT
    facts: LaunchFacts
    tee: Literal["simulated", "configfs"]
    # Raw 32-byte Ed25519 private key of the simulated platform; None with a real TEE.
    simulated_platform_key: bytes | None = None
    num_threads: int = Field(ge=1, le=1024)

    def __repr__(self) -> str:
        # Never the platform key: reprs end up in logs and tracebacks.
        return f"Bootstrap(tee={self.tee!r}, mode={self.facts.mode.value!r})"

    __str__ = __repr__


def write_bootstrap(fd: int, bootstrap: Bootstrap) -> None:
    """Write ``bootstrap`` to the pipe ``fd`` and close it (the reader sees EOF)."""
    data = bootstrap.canonical_bytes()
    if len(data) > MAX_BOOTSTRAP_SIZE:
        raise ValueError("bootstrap message too large")
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def read_bootstrap(fd: int) -> Bootstrap:
    """Read the launcher's message from ``fd`` until EOF, close it, and parse it."""
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_BOOTSTRAP_SIZE:
                raise SandboxLaunchError("the bootstrap message is larger than allowed")
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data:
        raise SandboxLaunchError("the launcher closed the bootstrap pipe without a message")
    try:
        return Bootstrap.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise SandboxLaunchError(f"bad bootstrap message at {where}: {first['msg']}") from None
