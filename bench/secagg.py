"""Secure-aggregation cost per round in one process: plaintext FedAvg, ours, stock Flower SecAgg+.

Run: python bench/secagg.py [--quick] [--repeat N] [--n 5,10,50] [--m 100000,1000000,10000000]

Every method runs a whole round in one process with a direct message loop (no network,
no polling), clients and server alike, on the same update vectors (float32, N(0, 1)) and
integer weights (example counts in [1, 1000]):

- ``plain``: plaintext FedAvg. Each client sends its weight and float32 update as bytes;
  the server parses them and averages with Flower's own FedAvg arithmetic
  (``flwr.server.strategy.aggregate.aggregate``), what stock Flower does without secure
  aggregation.
- ``plain-fused``: a hand-tuned plaintext FedAvg (block-wise float64 accumulation in
  cache), to show the ratio against the cheapest plaintext we could write.
- ``ours``: ``crypto.secagg``, all four stages, every client and the server (key
  agreement, Shamir shares, envelopes, masking, summing, unmasking, decoding).
- ``flower``: Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod`` (flwr 1.41) driven in
  process by ``bench/_flower_inproc.py``, with the same neighbourhood size and threshold.
- ``flower-plain``: Flower's ``default_fit_workflow`` (FedAvg) through the same driver, to
  set ``flower / flower-plain`` beside the reference "stock SecAgg+ costs 5-9x plaintext".

Degree and threshold are our defaults (k = smallest even >= log2 n, t = floor((k+1)/2)+1;
Flower gets num_shares = k + 1 and reconstruction_threshold = t). Each time is the least
process CPU time (``time.process_time``: user + system, all threads) of ``--repeat``
rounds (default 3, 2 with --quick, 1 for m = 1e7). Everything runs on one thread, so on
a quiet machine this equals wall time, and on a shared one it is less inflated by other
tenants' load. Large buffers are recycled by the allocator (``_recycle_large_buffers``)
so that first-touch page faults, an OS cost that varies 10x between machines, do not
decide the comparison.

The default grid (n in {5, 10, 50}, m in {1e5, 1e6, 1e7}) takes about 15-25 minutes and
~10 GB of memory at n=50, m=1e7 (Flower's int64 masks); ``--quick`` runs n in {5, 10},
m in {1e5, 1e6} in under a minute.

Columns ``ours-clients``/``ours-server`` split our CPU time by side (all clients together,
the server); ``parallel`` is ours/plain on a round's critical path when every client runs
on its own machine, as in deployment: (server + clients / n) for each method.

The last line is ``RESULT vs_plain=<ours/plain at n=10, m=1e6> vs_flower=<largest
ours/flower> vs_plain_fused=... vs_plain_parallel=... flower_vs_flower_plain=...``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import logging
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _flower_inproc import FlowerRound
from flwr.server.strategy.aggregate import aggregate

from crypto.secagg import RoundParams, SecAggClient, SecAggServer

console = Console(width=180)
SESSION = b"bench-secagg"
_PLAIN_HEADER = struct.Struct(">d")
_BLOCK = 1 << 15


def _recycle_large_buffers() -> bool:
    """Make glibc keep freed large buffers for reuse instead of returning them to the OS.

    By default glibc maps big blocks fresh and unmaps them on free, and how often it does
    depends on the history of the process; every fresh page then costs a first-touch fault,
    which in this VM is ~10x dearer than on bare metal. That would let allocation order,
    not protocol compute, decide the ratios; with this every method reuses its memory.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _inputs(n: int, m: int, seed: int = 0) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    rng = np.random.default_rng(seed)
    pool = [rng.normal(0.0, 1.0, m).astype(np.float32) for _ in range(min(n, 4))]
    ids = [10_000 + 37 * i for i in range(n)]
    updates = {c: pool[i % len(pool)] for i, c in enumerate(ids)}
    weights = {c: int(rng.integers(1, 1001)) for c in ids}
    return updates, weights


# --- plaintext FedAvg ---------------------------------------------------------------------------


def _plain_messages(updates: dict[int, np.ndarray], weights: dict[int, int]) -> dict[int, bytes]:
    return {
        c: b"".join([_PLAIN_HEADER.pack(weights[c]), memoryview(u).cast("B")])
        for c, u in updates.items()
    }


def run_plain(
    updates: dict[int, np.ndarray], weights: dict[int, int], clock: dict[str, float] | None = None
) -> np.ndarray:
    """Clients send (weight, float32 update) bytes; the server runs Flower's FedAvg aggregate."""
    start = time.process_time()
    messages = _plain_messages(updates, weights)
    middle = time.process_time()
    results = []
    for data in messages.values():
        (weight,) = _PLAIN_HEADER.unpack_from(data)
        update = np.frombuffer(data, dtype=np.float32, offset=_PLAIN_HEADER.size)
        results.append(([update], int(weight)))
    average = aggregate(results)[0]
    if clock is not None:
        clock["clients"], clock["server"] = middle - start, time.process_time() - middle
    return average


def run_plain_fused(updates: dict[int, np.ndarray], weights: dict[int, int]) -> np.ndarray:
    """The same round with a block-wise float64 accumulation that stays in cache."""
    messages = _plain_messages(updates, weights)
    parsed = []
    for data in messages.values():
        (weight,) = _PLAIN_HEADER.unpack_from(data)
        parsed.append((weight, np.frombuffer(data, dtype=np.float32, offset=_PLAIN_HEADER.size)))
    m = len(parsed[0][1])
    total_weight = sum(w for w, _ in parsed)
    out = np.empty(m, dtype=np.float64)
    scratch = np.empty(_BLOCK, dtype=np.float64)
    for start in range(0, m, _BLOCK):
        block = out[start : start + _BLOCK]
        block.fill(0.0)
        tmp = scratch[: len(block)]
        for weight, update in parsed:
            np.multiply(update[start : start + _BLOCK], weight, out=tmp, dtype=np.float64)
            block += tmp
    out /= total_weight
    return out


# --- ours ---------------------------------------------------------------------------------------


def run_ours(
    updates: dict[int, np.ndarray],
    weights: dict[int, int],
    params: RoundParams,
    clock: dict[str, float] | None = None,
) -> tuple[np.ndarray, float]:
    """One full round of crypto.secagg, every client and the server in one loop.

    ``clock``, if given, receives the CPU seconds spent on the client side (all clients
    together) and on the server side.
    """
    spent = {"clients": 0.0, "server": 0.0}

    def server(fn: Callable[..., object], *args: object) -> object:
        start = time.process_time()
        out = fn(*args)
        spent["server"] += time.process_time() - start
        return out

    def clients_answer(fn: Callable[[int, bytes], bytes], requests: dict[int, bytes]) -> dict:
        start = time.process_time()
        out = {c: fn(c, r) for c, r in requests.items()}
        spent["clients"] += time.process_time() - start
        return out

    sid, rnd = params.session_id, params.round_number
    srv = server(SecAggServer, params)
    clients = {c: SecAggClient(c, session_id=sid, round_number=rnd) for c in params.participants}
    requests = server(srv.setup_requests)
    server(srv.receive_setup, clients_answer(lambda c, r: clients[c].setup(r), requests))
    requests = server(srv.share_keys_requests)
    server(srv.receive_share_keys, clients_answer(lambda c, r: clients[c].share_keys(r), requests))
    requests = server(srv.collect_requests)
    vectors = clients_answer(
        lambda c, r: clients[c].collect_masked_vector(r, updates[c], weights[c]), requests
    )
    server(srv.receive_masked_vectors, vectors)
    del vectors
    requests = server(srv.unmask_requests)
    result = server(srv.receive_unmask, clients_answer(lambda c, r: clients[c].unmask(r), requests))
    if clock is not None:
        clock.update(spent)
    return result.average, result.error_bound


# --- timing -------------------------------------------------------------------------------------


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Least CPU time of ``repeat`` calls (process CPU, so other tenants' load is not counted)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def measure(n: int, m: int, repeat: int) -> dict[str, float]:
    """Seconds per round of each method at one (n, m) point, with correctness checks."""
    updates, weights = _inputs(n, m)
    ids = sorted(updates)
    probe = RoundParams.create(SESSION, 1, ids, m)
    k, t = probe.degree, probe.threshold
    times: dict[str, float] = {}
    plain_split = {"clients": float("inf"), "server": float("inf")}

    def plain_round() -> np.ndarray:
        clock: dict[str, float] = {}
        out = run_plain(updates, weights, clock)
        for side in plain_split:
            plain_split[side] = min(plain_split[side], clock[side])
        return out

    times["plain"], plain = _best(plain_round, repeat)
    times["plain-clients"], times["plain-server"] = plain_split["clients"], plain_split["server"]
    times["plain-fused"], fused = _best(lambda: run_plain_fused(updates, weights), repeat)
    reference = np.asarray(fused)
    assert np.abs(np.asarray(plain, dtype=np.float64) - reference).max() < 1e-5

    round_number = iter(range(1, 1_000_000))

    split: dict[str, float] = {"clients": float("inf"), "server": float("inf")}

    def ours() -> tuple[np.ndarray, float]:
        params = RoundParams.create(SESSION, next(round_number), ids, m, degree=k, threshold=t)
        clock: dict[str, float] = {}
        out = run_ours(updates, weights, params, clock)
        for side in split:
            split[side] = min(split[side], clock[side])
        return out

    times["ours"], (average, bound) = _best(ours, repeat)
    times["ours-clients"], times["ours-server"] = split["clients"], split["server"]
    error = float(np.abs(average - reference).max())
    assert error <= bound + 1e-9, (error, bound)
    del average

    def flower(secure: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            return FlowerRound(updates, weights, secure=secure, num_shares=k + 1, threshold=t).run()

        return run

    times["flower-plain"], out = _best(flower(False), repeat)
    assert np.abs(np.asarray(out, dtype=np.float64) - reference).max() < 1e-5
    times["flower"], out = _best(flower(True), repeat)
    # Flower quantises to 2^22 levels over [-8, 8] with stochastic rounding: ~4e-6 per value.
    assert np.abs(np.asarray(out, dtype=np.float64) - reference).max() < 1e-3
    del out
    times["k"], times["t"], times["error"], times["bound"] = k, t, error, bound
    return times


def _parallel(r: dict[str, float], n: int) -> float:
    """Ours / plain on the critical path when clients run in parallel: server + one client."""
    return (r["ours-server"] + r["ours-clients"] / n) / (r["plain-server"] + r["plain-clients"] / n)


def main(argv: list[str] | None = None) -> int:
    """Run the grid, print the table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n in {5,10}, m in {1e5,1e6}")
    parser.add_argument(
        "--repeat", type=int, default=None, help="rounds per method and point (3; --quick: 2)"
    )
    parser.add_argument("--n", default=None, help="comma-separated client counts")
    parser.add_argument("--m", default=None, help="comma-separated vector lengths")
    args = parser.parse_args(argv)
    ns = [5, 10] if args.quick else [5, 10, 50]
    ms = [100_000, 1_000_000] if args.quick else [100_000, 1_000_000, 10_000_000]
    if args.n:
        ns = [int(v) for v in args.n.split(",")]
    if args.m:
        ms = [int(float(v)) for v in args.m.split(",")]
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    logging.getLogger("flwr").setLevel(logging.ERROR)  # Flower logs every stage at INFO
    recycled = _recycle_large_buffers()

    rows = []
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("secure aggregation rounds", total=len(ns) * len(ms))
        for n in ns:
            for m in ms:
                progress.update(task, description=f"n={n} m={m:.0e}")
                repeat = 1 if m >= 10_000_000 else args.repeat
                rows.append((n, m, measure(n, m, repeat)))
                progress.advance(task)
                gc.collect()

    table = Table(
        title="CPU seconds per round (best of repeats; ours-clients/-server: best of each side), "
        "one process, direct message loop"
    )
    columns = (
        "plain",
        "plain-fused",
        "ours",
        "ours-clients",
        "ours-server",
        "flower-plain",
        "flower",
    )
    for column in ("n", "m", "k/t", *columns):
        table.add_column(column, justify="right")
    for column in ("ours/plain", "ours/fused", "parallel", "ours/flower", "flower/flower-plain"):
        table.add_column(column, justify="right", style="bold")
    for n, m, r in rows:
        table.add_row(
            str(n),
            f"{m:.0e}",
            f"{int(r['k'])}/{int(r['t'])}",
            *(f"{r[key]:.4f}" for key in columns),
            f"{r['ours'] / r['plain']:.2f}",
            f"{r['ours'] / r['plain-fused']:.2f}",
            f"{_parallel(r, n):.2f}",
            f"{r['ours'] / r['flower']:.3f}",
            f"{r['flower'] / r['flower-plain']:.2f}",
        )
    console.print(table)
    worst = max(rows, key=lambda row: row[2]["error"] / row[2]["bound"])
    console.print(
        f"ours vs plaintext: largest |error| {worst[2]['error']:.2e} within its bound "
        f"{worst[2]['bound']:.2e} (n={worst[0]}, m={worst[1]:.0e}); "
        f"{time.perf_counter() - started:.0f} s in all, {os.cpu_count()} CPUs visible, "
        f"large buffers {'recycled (mallopt)' if recycled else 'default allocator'}"
    )

    at = {(n, m): r for n, m, r in rows}
    anchor = at.get((10, 1_000_000))
    vs_plain = f"{anchor['ours'] / anchor['plain']:.2f}" if anchor else "nan"
    vs_fused = f"{anchor['ours'] / anchor['plain-fused']:.2f}" if anchor else "nan"
    vs_flower = max(r["ours"] / r["flower"] for _, _, r in rows)
    flower_vs_plain = f"{anchor['flower'] / anchor['flower-plain']:.2f}" if anchor else "nan"
    parallel = f"{_parallel(anchor, 10):.2f}" if anchor else "nan"
    print(
        f"RESULT vs_plain={vs_plain} vs_flower={vs_flower:.3f} vs_plain_fused={vs_fused} "
        f"vs_plain_parallel={parallel} flower_vs_flower_plain={flower_vs_plain}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
