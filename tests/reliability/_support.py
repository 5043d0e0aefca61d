"""Shared helpers of the reliability tests: audit verification, a cuttable TCP link, tmpfs."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from crypto.identity import Identity
from crypto.note import NoteVerifier
from fedtune.audit import AuditEvent, LogReader, SqliteAuditStore
from fedtune.audit.verify import VerifyReport, verify_log
from fedtune.orchestrator.deployment import DeploymentPaths, load_info
from fedtune.orchestrator.server import audit_origin


def verify_audit(root: Path) -> VerifyReport:
    """Verify a deployment's audit log from its store file, as an operator would offline."""
    paths = DeploymentPaths(root)
    origin = audit_origin(load_info(root).name)
    verifier = NoteVerifier.from_public(origin, Identity.load(paths.audit_identity).public)
    store = SqliteAuditStore(paths.audit_log, readonly=True)
    try:
        return verify_log(LogReader(store), verifier, saved_checkpoint=None)
    finally:
        store.close()


def audit_events(root: Path) -> list[AuditEvent]:
    """Every event of a deployment's audit log, decoded, read from its store file."""
    store = SqliteAuditStore(DeploymentPaths(root).audit_log, readonly=True)
    try:
        reader = LogReader(store)
        size, events = reader.size(), []
        while len(events) < size:
            page = reader.entries(len(events), size)
            events += [AuditEvent.from_leaf(e.leaf) for e in page]
        return events
    finally:
        store.close()


def root_problem() -> str | None:
    """Why mounts and namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount, ip netns)"
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``path`` (root only); unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True, capture_output=True, timeout=30,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def resize_tmpfs(path: Path, size: str) -> None:
    """Grow (or shrink) a tmpfs mounted by ``tmpfs``: "the operator freed space"."""
    subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(path)],
        check=True, capture_output=True, timeout=30,
    )


class Link:
    """A TCP relay 127.0.0.1:port -> target that can be cut (every connection reset) and healed.

    Stands for the network between a party and the orchestrator: cutting it drops the
    connections mid-stream without the server process noticing anything but a reset peer.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.relayed = 0  # bytes client -> server
        self._accepting = threading.Thread(target=self._accept, name="link", daemon=True)
        self._accepting.start()

    @property
    def address(self) -> str:
        """HOST:PORT a client connects to."""
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # link down: the connection is refused
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(
                target=self._pump, args=(client, server), name="link-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set() and self._up.is_set():
                for key, _ in sel.select(timeout=0.1):
                    data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                    if key.fileobj is client:
                        self.relayed += len(data)
        except OSError:
            return
        finally:
            sel.close()
            for s in (client, server):
                with contextlib.suppress(OSError):
                    # RST, not FIN: a cable pulled / a router dropping the flow.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()

    def cut(self) -> None:
        """Take the link down: reset every open connection and refuse new ones."""
        self._up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        """Bring the link back up."""
        self._up.set()

    def close(self) -> None:
        """Stop relaying."""
        self._stop.set()
        self.cut()
        self._listener.close()
        self._accepting.join(timeout=5)
