"""Control-plane benchmark: key-release latency and sealed-upload throughput vs a raw gRPC stream.

Both servers run as child processes on 127.0.0.1 with mutual TLS: the real orchestrator
(``fedtune orchestrator serve``) and a raw server whose one client-streaming RPC discards the
bytes it receives. For 1, 10 and 100 concurrent clients (each its own enrolled identity and
channel) the benchmark

* uploads sealed blobs (BeginUpload, chunks with BLAKE3, CompleteUpload, which checks the
  whole blob against the signed manifest and registers it), and streams the very same bytes
  in the same chunk size over the raw RPC; ``upload_ratio`` = ours / raw throughput;
* runs challenge -> simulated evidence -> Release loops of data owners in a running session
  (each release is verified against the provider's allow_simulated policy, consumes its
  nonce durably and is appended to the audit log), and reports Release latency p50/p99.

Ends with one line: ``RESULT upload_ratio=<100 clients> release_p99_ms=<100 clients> ...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crypto.hpke import RecipientPrivateKey  # noqa: E402
from crypto.identity import Identity  # noqa: E402
from enclave.attest import (  # noqa: E402
    AllowedMeasurement,
    EvidenceKind,
    ReleasePolicy,
    report_data_for,
)
from enclave.attest.simulated import SimulatedTee  # noqa: E402
from fedtune.orchestrator.authz import Role  # noqa: E402
from fedtune.orchestrator.broker import SecretKind  # noqa: E402
from fedtune.orchestrator.client import OrchestratorClient, enrol  # noqa: E402
from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment, read_private  # noqa: E402
from fedtune.orchestrator.enrolment import create_token  # noqa: E402
from fedtune.orchestrator.store.sqlite import SqliteRepository  # noqa: E402
from fedtune.orchestrator.terms import SessionTerms  # noqa: E402
from fedtune.provider.seal import seal_model_dir  # noqa: E402

console = Console(highlight=False, stderr=True)
FEDTUNE = str(Path(sys.executable).parent / "fedtune")
_OPTS = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
RAW_METHOD = "/bench.Raw/Stream"
# Each channel gets its own connection (gRPC otherwise shares one between equal channels).
_OWN = [("grpc.use_local_subchannel_pool", 1)]


# -- the raw baseline server (child process) --------------------------------------------------


def raw_server(root: Path) -> None:
    """Serve one client-streaming RPC that counts and discards bytes, with the same mTLS."""
    paths = DeploymentPaths(root)

    def sink(requests, context):
        n = sum(len(r) for r in requests)
        return str(n).encode()

    server = grpc.server(futures.ThreadPoolExecutor(256), options=_OPTS)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "bench.Raw", {"Stream": grpc.stream_unary_rpc_method_handler(sink)}
            )
        ]
    )
    creds = grpc.ssl_server_credentials(
        [(read_private(paths.server_key), paths.server_cert.read_bytes())],
        root_certificates=paths.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print(f"listening raw={port}", flush=True)
    server.wait_for_termination()


def _spawn(
    args: list[str], pattern: str, env: dict[str, str], log: Path
) -> tuple[subprocess.Popen, re.Match]:
    with open(log, "wb") as errors:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=errors, text=True, env={**os.environ, **env}
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            return proc, match
    proc.kill()
    raise RuntimeError(f"{args[:3]} did not start")


# -- parties ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "deployment"
        self.info = init_deployment(self.root, hosts=["127.0.0.1"], api_port=0, enrol_port=0)
        self.server, m = _spawn(
            [
                FEDTUNE,
                "orchestrator",
                "serve",
                "--dir",
                str(self.root),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--enrol-port",
                "0",
            ],
            r"api=\S+:(\d+) enrol=\S+:(\d+)",
            {"FEDTUNE_ORCHESTRATOR_MAX_WORKERS": "256"},
            work / "server.log",
        )
        self.api, self.enrol_port = int(m[1]), int(m[2])
        self.raw, m = _spawn(
            [sys.executable, __file__, "--raw-server", str(self.root)],
            r"raw=(\d+)",
            {},
            work / "raw.log",
        )
        self.raw_port = int(m[1])
        self.repo = SqliteRepository(DeploymentPaths(self.root).database)
        self._n = 0
        self._lock = threading.Lock()

    def party(self, role: Role) -> OrchestratorClient:
        with self._lock:
            self._n += 1
            name = f"{role.value}-{self._n}"
        token = create_token(
            self.repo, role, name, ttl=dt.timedelta(hours=1), now=dt.datetime.now(dt.UTC)
        )
        config = enrol(
            f"127.0.0.1:{self.enrol_port}",
            token,
            self.info.ca_fingerprint,
            self.work / "homes" / name,
        )
        return OrchestratorClient(config, timeout=600)

    def close(self) -> None:
        self.repo.close()
        for proc in (self.server, self.raw):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- upload -------------------------------------------------------------------------------------


def seal_blobs(bench: Bench, provider: OrchestratorClient, count: int, size: int, tag: str):
    identity = provider.config.load_identity()
    rng = np.random.default_rng(count)
    arts = []
    from safetensors.numpy import save_file

    for i in range(count):
        model = bench.work / "models" / f"{tag}-{i}"
        model.mkdir(parents=True, exist_ok=True)
        save_file(
            {"w": rng.standard_normal(size // 4).astype(np.float32)},
            str(model / "model.safetensors"),
        )
        arts.append(
            seal_model_dir(
                model,
                bench.work / "sealed" / f"{tag}-{i}",
                name=f"b/{tag}",
                version=str(i),
                identity=identity,
                keys_dir=bench.work / "keys",
            )
        )
    return arts


def upload_ours(clients: list[OrchestratorClient], arts, chunk: int) -> float:
    barrier = threading.Barrier(len(clients) + 1)
    errors: list[BaseException] = []

    def run(client, art):
        barrier.wait()
        try:
            client.upload(art.signed, art.blob_path, chunk_size=chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=ca) for ca in zip(clients, arts, strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def upload_raw(channels: list[grpc.Channel], arts, chunk: int) -> float:
    barrier = threading.Barrier(len(channels) + 1)

    def run(channel, art):
        call = channel.stream_unary(RAW_METHOD)
        barrier.wait()

        def pieces():
            fd = os.open(art.blob_path, os.O_RDONLY)
            try:
                offset, size = 0, art.signed.manifest.sealed_size
                while offset < size:
                    data = os.pread(fd, min(chunk, size - offset), offset)
                    offset += len(data)
                    yield data
            finally:
                os.close(fd)

        call(pieces(), timeout=600)

    threads = [threading.Thread(target=run, args=ca) for ca in zip(channels, arts, strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def raw_channel(bench: Bench, client: OrchestratorClient) -> grpc.Channel:
    c = client.config
    creds = grpc.ssl_channel_credentials(
        c.ca_certificate.read_bytes(), c.tls_key.read_bytes(), c.certificate.read_bytes()
    )
    return grpc.secure_channel(f"127.0.0.1:{bench.raw_port}", creds, options=[*_OPTS, *_OWN])


# -- release ------------------------------------------------------------------------------------


def release_session(
    bench: Bench,
    provider: OrchestratorClient,
    owners: list[OrchestratorClient],
    tee: SimulatedTee,
    sid: str,
) -> None:
    from crypto.datakey import DataKey

    identity = provider.config.load_identity()
    name = f"r/{sid}"
    arts = seal_blobs(bench, provider, 1, 64 << 10, f"rel-{sid}")
    art = arts[0]
    # seal_blobs names models b/<tag>; register that one.
    name = art.signed.manifest.model_name
    provider.upload(art.signed, art.blob_path)
    policy = ReleasePolicy(
        name=name,
        version=1,
        issuer=identity.fingerprint,
        issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        allowed_kinds=[EvidenceKind.SIMULATED],
        allowed_measurements=[
            AllowedMeasurement(kind=EvidenceKind.SIMULATED, values={"measurement": tee.measurement})
        ],
        allow_simulated=True,
        simulated_platform_keys=[tee.public_key.fingerprint],
    ).sign(identity)
    provider.register_key(name, "0", DataKey.load(art.key_path), policy)
    n = len(owners)
    owner_ids = [o.config.load_identity() for o in owners]
    terms = SessionTerms(
        session_id=sid,
        model_name=name,
        model_version="0",
        provider_fingerprint=identity.fingerprint,
        invited_owners=sorted(i.fingerprint for i in owner_ids),
        rounds=1,
        aggregation="secagg" if n >= 2 else "ckks",
        min_participants=n,
        secagg_threshold=2 if n >= 2 else None,
        labels=["a", "b"],
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    provider.create_session(terms, identity, [i.public.raw for i in owner_ids])
    provider.invite(terms, identity)
    for owner, oid in zip(owners, owner_ids, strict=True):
        owner.accept(sid, oid)
    provider.start_session(sid)


def release_loop(
    owners: list[OrchestratorClient],
    tee: SimulatedTee,
    sid: str,
    iterations: int,
    *,
    interval_s: float = 0.0,
) -> tuple[list[float], list[float]]:
    """Each owner runs ``iterations`` challenge+release cycles: back to back (closed loop), or
    one every ``interval_s`` seconds from a random phase (paced load)."""
    barrier = threading.Barrier(len(owners))
    release_ms: list[float] = []
    cycle_ms: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(owner):
        eph = RecipientPrivateKey.generate()
        pub = eph.public_key().to_bytes()
        barrier.wait()
        mine, cycles = [], []
        next_at = time.perf_counter() + float(np.random.default_rng().uniform(0, interval_s))
        try:
            for _ in range(iterations):
                if interval_s:
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval_s
                t0 = time.perf_counter()
                nonce = owner.challenge(sid)
                evidence = tee.get_evidence(report_data_for(nonce, pub)).canonical_bytes()
                t1 = time.perf_counter()
                owner.release(sid, SecretKind.MODEL_DATA_KEY, evidence, pub, nonce)
                t2 = time.perf_counter()
                mine.append((t2 - t1) * 1000)
                cycles.append((t2 - t0) * 1000)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            release_ms.extend(mine)
            cycle_ms.extend(cycles)

    threads = [threading.Thread(target=run, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return release_ms, cycle_ms


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 60 s")
    parser.add_argument("--raw-server", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.raw_server:
        raw_server(opts.raw_server)
        return 0
    levels = [1, 10, 100]
    total = (32 << 20) if opts.quick else (256 << 20)
    release_total = 200 if opts.quick else 2000
    chunk_cap = 4 << 20
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fedtune-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            with console.status("enrolling parties") as status:
                started = time.perf_counter()
                with futures.ThreadPoolExecutor(8) as pool:
                    owners = list(
                        pool.map(lambda _: bench.party(Role.DATA_OWNER), range(max(levels)))
                    )
                # One provider identity; each concurrent uploader is its own connection.
                provider = bench.party(Role.PROVIDER)
                providers = [
                    OrchestratorClient(provider.config, timeout=600, channel_options=_OWN)
                    for _ in range(max(levels))
                ]
                console.print(
                    f"enrolled {1 + max(levels)} parties in {time.perf_counter() - started:.1f} s"
                )
                status.update("sealing blobs")
                tee = SimulatedTee(Identity.generate())
                for level in levels:
                    per = total // level
                    chunk = max(64 << 10, min(chunk_cap, per))
                    # Versions of one model, each uploaded on its own connection.
                    signed_arts = seal_blobs(bench, provider, level, per, f"u{level}")
                    status.update(f"uploading with {level} client(s): raw stream")
                    channels = [raw_channel(bench, p) for p in providers[:level]]
                    # Connect (TLS handshakes) before timing, on both sides.
                    for ch, client in zip(channels, providers[:level], strict=True):
                        ch.stream_unary(RAW_METHOD)(iter([b""]), timeout=60)
                        client.list_models()
                    raw_s = upload_raw(channels, signed_arts, chunk)
                    status.update(f"uploading with {level} client(s): orchestrator")
                    ours_s = upload_ours(providers[:level], signed_arts, chunk)
                    for ch in channels:
                        ch.close()
                    size = sum(a.signed.manifest.sealed_size for a in signed_arts)
                    console.print(
                        f"{level} client(s): uploads done at {time.perf_counter() - started:.1f} s"
                    )
                    status.update(f"key release with {level} client(s)")
                    release_session(bench, providers[0], owners[:level], tee, f"rel{level}")
                    iterations = max(2, release_total // level)
                    release_loop(owners[:level], tee, f"rel{level}", 1)  # warm-up
                    rel, cyc = release_loop(owners[:level], tee, f"rel{level}", iterations)
                    paced = {}
                    if level == max(levels):
                        status.update(f"paced key release: {level} clients, one per second each")
                        paced_rel, _ = release_loop(
                            owners[:level],
                            tee,
                            f"rel{level}",
                            2 if opts.quick else 10,
                            interval_s=1.0,
                        )
                        paced = {"paced_p50": pct(paced_rel, 50), "paced_p99": pct(paced_rel, 99)}
                    results[level] = {
                        "bytes": size,
                        "chunk": chunk,
                        "raw_mbs": size / raw_s / 1e6,
                        "ours_mbs": size / ours_s / 1e6,
                        "ratio": raw_s / ours_s,
                        "p50": pct(rel, 50),
                        "p99": pct(rel, 99),
                        "cycle_p99": pct(cyc, 99),
                        "n": len(rel),
                        **paced,
                    }
        except BaseException:
            log = (Path(tmp) / "server.log").read_text()
            console.print(log[-3000:])
            Path("/tmp/fedtune-bench-server.log").write_text(log)
            raise
        finally:
            bench.close()
    table = Table(title="control plane over loopback (mutual TLS)")
    for col in (
        "clients",
        "upload MiB",
        "chunk",
        "raw MB/s",
        "ours MB/s",
        "ratio",
        "release p50 ms",
        "release p99 ms",
        "challenge+release p99 ms",
        "releases",
    ):
        table.add_column(col, justify="right")
    for level, r in results.items():
        table.add_row(
            str(level),
            f"{r['bytes'] / 2**20:.0f}",
            f"{r['chunk'] >> 10} KiB",
            f"{r['raw_mbs']:.0f}",
            f"{r['ours_mbs']:.0f}",
            f"{r['ratio']:.2f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['cycle_p99']:.1f}",
            str(r["n"]),
        )
    Console(highlight=False, width=150).print(table)
    top = results[max(levels)]
    extra = " ".join(
        f"upload_ratio_{lv}={r['ratio']:.3f} release_p50_ms_{lv}={r['p50']:.2f} "
        f"release_p99_ms_{lv}={r['p99']:.2f}"
        for lv, r in results.items()
    )
    console.print(
        f"paced: {max(levels)} clients each releasing once a second: "
        f"p50 {top['paced_p50']:.1f} ms, p99 {top['paced_p99']:.1f} ms"
    )
    print(
        f"RESULT upload_ratio={top['ratio']:.3f} release_p99_ms={top['p99']:.2f} {extra} "
        f"release_p99_ms_paced_{max(levels)}={top['paced_p99']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
