"""The sandbox runtime's entry point, ``python -m enclave.sandbox.runtime``, run by the launcher.

Start-up, in order; any failure stops the process before it can hold a secret:

1. harden the process: ``PR_SET_DUMPABLE`` 0 and ``RLIMIT_CORE`` 0, both read back;
2. read the launcher's bootstrap message from the inherited pipe and close it;
3. measure its own code (the ``crypto`` and ``enclave`` packages it imports) and build the
   evidence provider: the simulated TEE with the platform key from the bootstrap, or
   configfs-tsm in a real SEV-SNP/TDX guest;
4. serve the gRPC API on the Unix socket only (there is no TCP listener), and import the ML
   stack in the background so the first Configure does not pay for it.

SIGTERM or SIGINT stops the server and the process; memory is all there is to lose.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.identity import Identity
from enclave.attest.configfs_tsm import ConfigfsTsmProvider
from enclave.attest.measurement import runtime_measurement
from enclave.attest.provider import EvidenceProvider
from enclave.attest.simulated import SimulatedTee
from enclave.errors import EnclaveError
from enclave.sandbox.bootstrap import Bootstrap, read_bootstrap
from enclave.sandbox.errors import SandboxLaunchError
from enclave.sandbox.isolation import (
    IsolationMode,
    die_with_parent,
    harden_process,
    inspect_process,
    log_warnings,
)

_log = logging.getLogger("enclave.sandbox.runtime")
STOP_GRACE_S = 5.0


def _provider(bootstrap: Bootstrap, measurement: bytes) -> tuple[EvidenceProvider, str]:
    if bootstrap.tee == "simulated":
        if bootstrap.simulated_platform_key is None:
            raise SandboxLaunchError("the simulated TEE needs its platform key in the bootstrap")
        key = Identity(Ed25519PrivateKey.from_private_bytes(bootstrap.simulated_platform_key))
        return SimulatedTee(key, measurement=measurement), "simulated"
    provider = ConfigfsTsmProvider()
    if not provider.available():
        raise SandboxLaunchError(f"no configfs-tsm reports at {provider.root}: not a TEE guest")
    return provider, "configfs-tsm"


def _warm_up() -> None:
    """Import the ML stack ahead of the first Configure (they take seconds to import)."""
    try:
        import enclave.ml.lora
        import enclave.ml.model
        import enclave.ml.train  # noqa: F401
    except Exception:
        _log.exception("importing the ML stack failed; Configure will report it")


def serve(socket_path: Path, data_root: Path, bootstrap: Bootstrap) -> NoReturn:
    """Serve until SIGTERM/SIGINT, then end the process (status 0)."""
    from enclave.sandbox.service import create_server
    from enclave.sandbox.state import SandboxState

    report = inspect_process(bootstrap.facts)
    log_warnings(report)
    measurement = runtime_measurement()
    provider, kind = _provider(bootstrap, measurement)
    state = SandboxState(
        provider,
        evidence_kind=kind,
        measurement=measurement,
        isolation=report,
        data_root=data_root,
        num_threads=bootstrap.num_threads,
    )
    socket_path.unlink(missing_ok=True)
    server = create_server(state, str(socket_path))
    os.chmod(socket_path, 0o600)
    _log.info(
        "serving on %s (isolation %s, tee %s, measurement %s)",
        socket_path, report.mode.value, report.tee, measurement.hex()[:16],
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=_warm_up, name="ml-warm-up", daemon=True).start()
    stop.wait()
    _log.info("stopping")
    server.stop(STOP_GRACE_S).wait(STOP_GRACE_S + 1)
    logging.shutdown()
    # Nothing is persisted, so skip the interpreter's teardown (seconds with torch loaded);
    # the kernel releases the memory that held the weights.
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, harden, bootstrap, serve."""
    parser = argparse.ArgumentParser(prog="python -m enclave.sandbox.runtime",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket to serve on")
    parser.add_argument("--data", required=True, type=Path, help="the owner's data directory")
    parser.add_argument("--bootstrap-fd", required=True, type=int, help="inherited pipe")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s sandbox[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    try:
        harden_process()
        bootstrap = read_bootstrap(args.bootstrap_fd)
        if bootstrap.facts.mode is IsolationMode.PLAIN_PROCESS:
            # bubblewrap's --die-with-parent does this in the sandbox; a plain child asks itself.
            die_with_parent()
        serve(args.socket, args.data, bootstrap)
    except EnclaveError as exc:
        _log.error("%s: %s", type(exc).__name__, exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
