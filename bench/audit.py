"""Audit-log benchmark: durable appends/s (group commit vs one transaction per append), and
inclusion/consistency proof generation + verification at 10^3, 10^5 and 10^6 entries.

Run: python bench/audit.py [--quick] [--dir DIR] [--threads N]

Appends are durable when acknowledged (SQLite WAL, synchronous=FULL: the WAL is fsynced at every
commit). Both modes run in this process, on the same disk, with the same concurrent appenders.
Proof generation reads O(log n) stored subtree hashes; the baseline recomputes the proof from all
n leaf hashes, as a log without stored subtree hashes would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from crypto import merkle
from crypto.identity import Identity
from crypto.note import Checkpoint, NoteSigner, open_checkpoint, sign_checkpoint
from fedtune.audit import AuditEvent, AuditLog, ObjectIds, SqliteAuditStore
from fedtune.audit.store import LogBinding, StoredCheckpoint

ORIGIN = "bench.fedtune/audit"
console = Console(stderr=True)


def _event(actor: Identity, i: int) -> AuditEvent:
    return AuditEvent(
        time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=i),
        actor=actor.fingerprint,
        role="system",
        action="round-finish",
        session="bench-session",
        objects=ObjectIds(round=i % 1000, model="acme/base@1"),
        reference=f"ref-{i:09d}",
        details={"participants": 8, "loss": 0.125},
    )


# --- appends -------------------------------------------------------------------------------------


def fsync_ms(workdir: Path, rounds: int = 100) -> float:
    """Median latency of write+fsync of 4 KiB here: the floor under one durable commit."""
    probe = workdir / "fsync.probe"
    samples = []
    with open(probe, "wb") as handle:
        for _ in range(rounds):
            t0 = time.perf_counter()
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
            samples.append(time.perf_counter() - t0)
    probe.unlink()
    return statistics.median(samples) * 1e3


def bench_appends(
    workdir: Path, identity: Identity, *, batching: bool, total: int, threads: int
) -> dict[str, float]:
    """Appends/s with ``threads`` concurrent appenders, each waiting for durable acknowledgement."""
    path = workdir / f"appends-{'batched' if batching else 'unbatched'}.db"
    per_thread = total // threads
    events = [
        [_event(identity, t * per_thread + i) for i in range(per_thread)] for t in range(threads)
    ]
    audit_log = AuditLog.open(path, identity, ORIGIN, batching=batching)
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def appender(batch: list[AuditEvent]) -> None:
        barrier.wait()
        try:
            for event in batch:
                audit_log.append(event)
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    workers = [threading.Thread(target=appender, args=(events[t],)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join(timeout=600)
    elapsed = time.perf_counter() - start
    if errors or any(w.is_alive() for w in workers):
        raise SystemExit(f"append run failed: {errors[:1]}")
    size = audit_log.size
    audit_log.close()
    with SqliteAuditStore(path, readonly=True) as store:
        transactions = _count_checkpoints(store) - 1  # minus the empty tree's
    return {
        "appends": size,
        "seconds": elapsed,
        "per_s": size / elapsed,
        "transactions": transactions,
        "mean_batch": size / max(transactions, 1),
    }


def _count_checkpoints(store: SqliteAuditStore) -> int:
    return int(store._read("SELECT COUNT(*) FROM checkpoints")[0][0])


# --- proofs --------------------------------------------------------------------------------------


def bulk_load(path: Path, identity: Identity, size: int, progress: Progress) -> None:
    """Build a ``size``-entry log quickly: real canonical events, big transactions."""
    template = _event(identity, 0).leaf()
    marker = b"ref-000000000"
    assert template.count(marker) == 1
    # Each leaf is the template with its reference renumbered: still a canonical event.
    assert AuditEvent.from_leaf(template.replace(marker, b"ref-000000007")).reference == (
        "ref-000000007"
    )
    signer = NoteSigner.from_identity(ORIGIN, identity)
    chunk = 50_000
    compact = merkle.CompactRange()
    task = progress.add_task(f"loading {size:,} entries", total=size)
    with SqliteAuditStore(path) as store:
        store.bind(LogBinding(ORIGIN, signer.verifier.vkey))
        empty = sign_checkpoint(Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT), signer)
        store.append_batch(0, [], [], StoredCheckpoint(0, empty))
        for start in range(0, size, chunk):
            leaves = [
                template.replace(marker, b"ref-%09d" % i)
                for i in range(start, min(size, start + chunk))
            ]
            nodes: list[tuple[int, int, bytes]] = []
            for i, leaf in enumerate(leaves, start=start):
                h = merkle.leaf_hash(leaf)
                nodes.append((0, i, h))
                nodes.extend((n.level, n.index, v) for n, v in compact.append(h))
            note = sign_checkpoint(Checkpoint(ORIGIN, compact.size, compact.root()), signer)
            store.append_batch(start, leaves, nodes, StoredCheckpoint(compact.size, note))
            progress.update(task, completed=compact.size)
    progress.remove_task(task)


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench_proofs(
    workdir: Path, identity: Identity, size: int, progress: Progress, *, samples: int
) -> dict[str, float]:
    """Median proof generation and verification times at one log size, plus the O(n) baseline."""
    path = workdir / f"proofs-{size}.db"
    load_start = time.perf_counter()
    bulk_load(path, identity, size, progress)
    load_s = time.perf_counter() - load_start
    open_start = time.perf_counter()
    audit_log = AuditLog.open(path, identity, ORIGIN)  # checks the tree against its checkpoint
    open_s = time.perf_counter() - open_start
    rng = random.Random(size)
    try:
        checkpoint, _ = open_checkpoint(audit_log.checkpoint(), [audit_log.verifier])
        assert checkpoint.size == size
        leaves = {}
        gen, ver, cgen, cver, lengths = [], [], [], [], []
        for _ in range(samples):
            index = rng.randrange(size)
            leaf = audit_log.entries(index, index + 1)[0].leaf
            leaves[index] = merkle.leaf_hash(leaf)
            t0 = time.perf_counter()
            proof = audit_log.inclusion_proof(index, size)
            t1 = time.perf_counter()
            merkle.verify_inclusion(leaves[index], index, size, proof, checkpoint.root_hash)
            t2 = time.perf_counter()
            gen.append(t1 - t0)
            ver.append(t2 - t1)
            lengths.append(len(proof))
            old = rng.randrange(1, size)
            old_root = merkle.root_from_subtrees(old, audit_log._reader.store.subtree_hash)
            t0 = time.perf_counter()
            cproof = audit_log.consistency_proof(old, size)
            t1 = time.perf_counter()
            merkle.verify_consistency(old, size, cproof, old_root, checkpoint.root_hash)
            t2 = time.perf_counter()
            cgen.append(t1 - t0)
            cver.append(t2 - t1)
        # Baseline: no stored subtree hashes, so every proof starts from all n leaf hashes.
        baseline = []
        store = audit_log._reader.store
        for _ in range(3 if size <= 100_000 else 1):
            index = rng.randrange(size)
            t0 = time.perf_counter()
            rows = store._read("SELECT hash FROM nodes WHERE level = 0 ORDER BY idx")
            tree = merkle.MemoryTree.from_leaf_hashes([r[0] for r in rows])
            naive = tree.inclusion_proof(index, size)
            baseline.append(time.perf_counter() - t0)
            assert naive == audit_log.inclusion_proof(index, size)
    finally:
        audit_log.close()
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return {
        "size": size,
        "load_s": load_s,
        "open_ms": open_s * 1e3,
        "proof_len": statistics.mean(lengths),
        "gen_us": _median_us(gen),
        "verify_us": _median_us(ver),
        "cgen_us": _median_us(cgen),
        "cverify_us": _median_us(cver),
        "naive_ms": statistics.median(baseline) * 1e3,
    }


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, top size 10^5 (<60 s)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temporary logs")
    parser.add_argument("--threads", type=int, default=32, help="concurrent appenders")
    opts = parser.parse_args()

    sizes = [10**3, 10**4, 10**5] if opts.quick else [10**3, 10**5, 10**6]
    batched_total = 6_000 if opts.quick else 30_000
    unbatched_total = 1_500 if opts.quick else 6_000
    samples = 100 if opts.quick else 300
    if opts.quick:
        console.print("[yellow]--quick: top proof size is 10^5 (not 10^6); fewer appends[/]")

    identity = Identity.generate()
    workdir = Path(tempfile.mkdtemp(prefix="fedtune-bench-audit-", dir=opts.dir))
    console.print(f"logs in {workdir} (durable commits on this disk)")
    try:
        fsync = fsync_ms(workdir)
        console.print(f"fsync of 4 KiB on this disk: {fsync:.2f} ms (median)")
        console.print(f"appends: {opts.threads} concurrent appenders, durable acknowledgement")
        unbatched = bench_appends(
            workdir, identity, batching=False, total=unbatched_total, threads=opts.threads
        )
        batched = bench_appends(
            workdir, identity, batching=True, total=batched_total, threads=opts.threads
        )
        proof_rows = []
        with Progress(console=console, transient=True) as progress:
            for size in sizes:
                proof_rows.append(bench_proofs(workdir, identity, size, progress, samples=samples))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    out = Console(width=150)
    appends = Table(title="durable appends (SQLite WAL, synchronous=FULL)")
    for col in ("mode", "appends", "seconds", "appends/s", "transactions", "mean batch"):
        appends.add_column(col, justify="right")
    for name, row in (("one transaction per append", unbatched), ("group commit", batched)):
        appends.add_row(
            name,
            f"{row['appends']:,.0f}",
            f"{row['seconds']:.2f}",
            f"{row['per_s']:,.0f}",
            f"{row['transactions']:,.0f}",
            f"{row['mean_batch']:.1f}",
        )
    out.print(appends)
    ratio = batched["per_s"] / unbatched["per_s"]
    out.print(
        f"group commit / one transaction per append: {ratio:.2f}x "
        f"(fsync median {fsync:.2f} ms on this disk during the run)"
    )

    proofs = Table(title=f"proofs (median of {samples}; baseline rebuilds from all leaves)")
    for col in (
        "entries",
        "load s",
        "open ms",
        "proof len",
        "incl gen us",
        "incl verify us",
        "cons gen us",
        "cons verify us",
        "baseline ms",
        "baseline/ours",
    ):
        proofs.add_column(col, justify="right")
    for r in proof_rows:
        proofs.add_row(
            f"{r['size']:,}",
            f"{r['load_s']:.1f}",
            f"{r['open_ms']:.1f}",
            f"{r['proof_len']:.1f}",
            f"{r['gen_us']:.0f}",
            f"{r['verify_us']:.1f}",
            f"{r['cgen_us']:.0f}",
            f"{r['cverify_us']:.1f}",
            f"{r['naive_ms']:.1f}",
            f"{r['naive_ms'] * 1e3 / r['gen_us']:,.0f}x",
        )
    out.print(proofs)
    first, top = proof_rows[0], proof_rows[-1]
    log_ratio = math.log2(top["size"]) / math.log2(first["size"])
    out.print(
        f"from {first['size']:,} to {top['size']:,} entries (x{top['size'] // first['size']:,}): "
        f"proof generation x{top['gen_us'] / first['gen_us']:.2f}, verification "
        f"x{top['verify_us'] / first['verify_us']:.2f}; log2 n grows x{log_ratio:.2f}"
    )
    print(
        f"RESULT appends_per_s={batched['per_s']:.0f} "
        f"unbatched_appends_per_s={unbatched['per_s']:.0f} batching_ratio={ratio:.2f} "
        f"verify_ms={top['verify_us'] / 1e3:.3f} proof_gen_ms={top['gen_us'] / 1e3:.3f} "
        f"baseline_proof_ratio={top['naive_ms'] * 1e3 / top['gen_us']:.0f} "
        f"top_size={top['size']} fsync_ms={fsync:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
