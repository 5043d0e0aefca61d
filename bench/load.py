"""Load test of the orchestrator on loopback: concurrent key-release agents and large uploads.

The real orchestrator runs as a child process (``fedtune orchestrator serve``, mutual TLS on
127.0.0.1), so the RSS measured is the server's alone. Two phases, both at once per phase:

* **release**: N data-owner agents (200; ``--quick`` 50), each its own enrolled identity and
  connection, all invited to one running session, each running challenge -> simulated evidence
  -> Release cycles back to back (every release is verified against the provider's policy,
  consumes its nonce durably and is appended to the audit log);
* **upload**: M concurrent sealed uploads of S MB each (20 x 200 MB; ``--quick`` 4 x 20 MB),
  each on its own connection, against the same bytes streamed over a raw gRPC sink with the
  same mTLS (the baseline; ``upload_ratio`` = ours / raw throughput).

Every failed call counts as an error (the run must end with ``errors=0``). The server's RSS is
sampled from /proc every 100 ms; its peak is reported. Ends with one line::

    RESULT errors=0 release_p99_ms=... release_per_s=... upload_mib_s=... server_rss_mib=...
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from control_plane import (  # the shared bench helpers of this directory
    _OWN,
    RAW_METHOD,
    Bench,
    pct,
    raw_channel,
    release_session,
    seal_blobs,
    upload_raw,
)

from crypto.hpke import RecipientPrivateKey
from crypto.identity import Identity
from enclave.attest import report_data_for
from enclave.attest.simulated import SimulatedTee
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.client import OrchestratorClient

console = Console(highlight=False, stderr=True)


class RssSampler:
    """Samples a process's resident set size from /proc until stopped; keeps the peak."""

    def __init__(self, pid: int, *, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _read(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.peak_kib = max(self.peak_kib, self._read())
            except (FileNotFoundError, ProcessLookupError):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def release_agents(
    owners: list[OrchestratorClient], tee: SimulatedTee, sid: str, duration_s: float
) -> tuple[list[float], int, float]:
    """Every owner cycles challenge+release for ``duration_s``: latencies (ms), errors, elapsed."""
    barrier = threading.Barrier(len(owners) + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    stop_at = [0.0]

    def run(owner: OrchestratorClient) -> None:
        pub = RecipientPrivateKey.generate().public_key().to_bytes()
        barrier.wait()
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < stop_at[0]:
            try:
                nonce = owner.challenge(sid)
                evidence = tee.get_evidence(report_data_for(nonce, pub)).canonical_bytes()
                t0 = time.perf_counter()
                owner.release(sid, SecretKind.MODEL_DATA_KEY, evidence, pub, nonce)
                mine.append((time.perf_counter() - t0) * 1000)
            except Exception as exc:  # counted, and the first few shown: errors must be 0
                failed += 1
                if failed <= 2:
                    console.print(f"[red]release error[/]: {type(exc).__name__}: {exc}")
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=run, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + duration_s
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def concurrent_uploads(
    clients: list[OrchestratorClient], arts: list, chunk: int
) -> tuple[float, list[float], int]:
    """Upload each artifact on its own client at once: elapsed s, per-upload s, errors."""
    barrier = threading.Barrier(len(clients) + 1)
    lock = threading.Lock()
    each: list[float] = []
    errors = [0]

    def run(client: OrchestratorClient, art: object) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        try:
            client.upload(art.signed, art.blob_path, chunk_size=chunk)  # type: ignore[attr-defined]
            with lock:
                each.append(time.perf_counter() - t0)
        except Exception as exc:  # counted: errors must be 0
            console.print(f"[red]upload error[/]: {type(exc).__name__}: {exc}")
            with lock:
                errors[0] += 1

    threads = [threading.Thread(target=run, args=ca) for ca in zip(clients, arts, strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, each, errors[0]


def main() -> int:
    """Run both phases against a child-process orchestrator and print the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 agents, 4 x 20 MB: under 60 s")
    parser.add_argument("--agents", type=int, help="concurrent release agents (default 200)")
    parser.add_argument("--uploads", type=int, help="concurrent uploads (default 20)")
    parser.add_argument("--upload-mb", type=int, help="size of each upload in MB (default 200)")
    parser.add_argument("--release-s", type=float, help="release phase duration (default 30 s)")
    opts = parser.parse_args()
    agents = opts.agents or (50 if opts.quick else 200)
    uploads = opts.uploads or (4 if opts.quick else 20)
    upload_mb = opts.upload_mb or (20 if opts.quick else 200)
    release_s = opts.release_s or (8.0 if opts.quick else 30.0)
    for name, value in (("agents", agents), ("uploads", uploads), ("upload-mb", upload_mb)):
        if value < 1:
            parser.error(f"--{name} must be at least 1")
    chunk = 4 << 20

    with tempfile.TemporaryDirectory(prefix="fedtune-load-") as tmp:
        bench = Bench(Path(tmp))
        try:
            with RssSampler(bench.server.pid) as rss, console.status("enrolling") as status:
                started = time.perf_counter()
                with futures.ThreadPoolExecutor(8) as pool:
                    owners = list(pool.map(lambda _: bench.party(Role.DATA_OWNER), range(agents)))
                provider = bench.party(Role.PROVIDER)
                elapsed = time.perf_counter() - started
                console.print(f"enrolled {agents + 1} parties in {elapsed:.1f} s")
                tee = SimulatedTee(Identity.generate())

                status.update(f"release: session for {agents} agents")
                release_session(bench, provider, owners, tee, "load")
                status.update(f"release: {agents} agents for {release_s:.0f} s")
                latencies, release_errors, release_elapsed = release_agents(
                    owners, tee, "load", release_s
                )
                release_rss = rss.peak_kib

                status.update(f"upload: sealing {uploads} x {upload_mb} MB")
                arts = seal_blobs(bench, provider, uploads, upload_mb * 1_000_000, "load")
                uploaders = [
                    OrchestratorClient(provider.config, timeout=600, channel_options=_OWN)
                    for _ in range(uploads)
                ]
                channels = [raw_channel(bench, p) for p in uploaders]
                for channel, client in zip(channels, uploaders, strict=True):
                    channel.stream_unary(RAW_METHOD)(iter([b""]), timeout=60)  # handshakes first
                    client.list_models()
                status.update(f"upload: {uploads} x {upload_mb} MB over the raw stream")
                raw_s = upload_raw(channels, arts, chunk)
                status.update(f"upload: {uploads} x {upload_mb} MB to the orchestrator")
                upload_s, per_upload, upload_errors = concurrent_uploads(uploaders, arts, chunk)
                for channel in channels:
                    channel.close()
                for client in uploaders:
                    client.close()
            for owner in owners:
                owner.close()
            provider.close()
        except BaseException:
            console.print((Path(tmp) / "server.log").read_text()[-3000:])
            raise
        finally:
            bench.close()

    size = sum(a.signed.manifest.sealed_size for a in arts)
    mib = size / (1 << 20)
    errors = release_errors + upload_errors
    release_p50, release_p99 = pct(latencies, 50), pct(latencies, 99)
    release_per_s = len(latencies) / release_elapsed
    upload_mib_s, raw_mib_s = mib / upload_s, mib / raw_s
    table = Table(title="orchestrator under load (loopback, mutual TLS, server in its own process)")
    for col in ("phase", "concurrency", "done", "throughput", "p50", "p99", "errors", "server RSS"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    table.add_row(
        "challenge + release", str(agents), str(len(latencies)), f"{release_per_s:.0f} /s",
        f"{release_p50:.1f} ms", f"{release_p99:.1f} ms", str(release_errors),
        f"{release_rss / 1024:.0f} MiB",
    )
    table.add_row(
        f"upload {upload_mb} MB", str(uploads), str(len(per_upload)), f"{upload_mib_s:.0f} MiB/s",
        f"{pct(per_upload, 50):.1f} s", f"{pct(per_upload, 99):.1f} s", str(upload_errors),
        f"{rss.peak_kib / 1024:.0f} MiB",
    )
    table.add_row(
        "raw gRPC stream (baseline)", str(uploads), str(uploads), f"{raw_mib_s:.0f} MiB/s",
        "", "", "", "",
    )
    Console(highlight=False, width=120).print(table)
    print(
        f"RESULT errors={errors} release_p99_ms={release_p99:.1f} release_p50_ms={release_p50:.1f} "
        f"release_per_s={release_per_s:.0f} upload_mib_s={upload_mib_s:.1f} "
        f"raw_upload_mib_s={raw_mib_s:.1f} upload_ratio={upload_mib_s / raw_mib_s:.3f} "
        f"server_rss_mib={rss.peak_kib / 1024:.0f} agents={agents} uploads={uploads} "
        f"upload_mb={upload_mb}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
