"""Seconds per round on a real SuperLink + SuperNodes: plain FedAvg vs our secure aggregation.

Run: python bench/secagg_deployment.py [--quick] [--nodes 5] [--length 1000000] [--rounds 2]

Starts Flower's Deployment Engine on 127.0.0.1 (one SuperLink, ``--nodes`` SuperNodes, all
real processes, plaintext transport in both modes), submits one run of
``bench/secagg_bench_app.py`` and reads its timings. The run interleaves, round by round,
plain FedAvg (one exchange: every node sends its float32 update, the server averages) and our
SecAgg+ (``crypto.secagg``: setup, share keys, collect masked vectors, unmask: four
exchanges) over the same synthetic updates (no model, no training, no sandbox), so only the
aggregation differs. A round is timed at the ServerApp from the first push to the decoded
average. The secure average is checked against the plain one (``max_error <= bound``).

What dominates here is Flower's message latency, not cryptography (DEPLOYMENT-NOTES.md,
section 5): each exchange waits for a SuperNode's 3 s poll cadence and a fresh ClientApp
process per message (~3 s of start-up each, times the nodes, on 2 shared cores), so four
exchanges cost about four times one; the masking itself is ~0.1 s per client at m = 1e6
(bench/secagg.py measures the protocol compute in-process).

``--quick`` (under about a minute, more on a loaded machine): m = 1e5, one round of each.
The last line is ``RESULT s_per_round_plain=... s_per_round_secagg=... ratio=<secagg/plain>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Start the deployment, run the interleaved rounds, print the table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="m = 1e5, one round each")
    parser.add_argument("--nodes", type=int, default=5, help="SuperNodes (n, default 5)")
    parser.add_argument("--length", type=int, default=None, help="m (1e6; quick 1e5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each (2; quick 1)")
    args = parser.parse_args(argv)
    m = args.length or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 2)
    if args.nodes < 3 or m < 1 or rounds < 1:
        parser.error("need --nodes >= 3 (secure aggregation), --length >= 1, --rounds >= 1")

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(HERE))
    import secagg_bench_app

    from fedtune.federated.appdir import write_app_dir
    from fedtune.federated.deployment import Deployment, SuperNodeSpec

    console = Console(stderr=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ftbd-") as tmp:
        base = Path(tmp)
        app = write_app_dir(
            base / "app", "fedtune-secagg-bench", "secagg_bench_app:serverapp",
            "secagg_bench_app:clientapp", config=secagg_bench_app.RUN_CONFIG,
            modules={"secagg_bench_app.py": HERE / "secagg_bench_app.py"},
        )
        result_path = base / "result.json"
        with Deployment(base / "flower", startup_timeout_s=180.0) as deployment, \
                console.status("starting the SuperLink and SuperNodes") as status:
            deployment.start_superlink()
            deployment.add_supernodes([SuperNodeSpec(f"node{i}") for i in range(args.nodes)])
            status.update(f"running {rounds} round(s) of each, n={args.nodes}, m={m}")
            run = deployment.run(app, run_config={
                "result-path": str(result_path), "nodes": args.nodes, "length": m,
                "rounds": rounds,
            }, timeout_s=3600.0)
        out = json.loads(result_path.read_text())
    plain = sum(out["plain_s"]) / len(out["plain_s"])
    secure = sum(out["secagg_s"]) / len(out["secagg_s"])
    error, bound = max(out["max_error"]), max(out["bound"])
    table = Table(title=f"deployment mode: n={out['nodes']}, m={m}, {rounds} round(s) each")
    for column in ("mode", "exchanges / round", "seconds per round (each)", "mean"):
        table.add_column(column)
    table.add_row("plain FedAvg", "1", ", ".join(f"{s:.1f}" for s in out["plain_s"]),
                  f"{plain:.1f}")
    table.add_row("fedtune SecAgg+", "4", ", ".join(f"{s:.1f}" for s in out["secagg_s"]),
                  f"{secure:.1f}")
    console.print(table)
    console.print(f"secure vs plain average: max |diff| {error:.2e} (bound {bound:.2e}); "
                  f"run {run.run_id} {run.status} in {run.wall_s:.0f} s, "
                  f"total {time.perf_counter() - started:.0f} s")
    if error > bound + 1e-7:
        console.print("[bold red]the secure aggregate is off the plain average[/]")
        return 1
    print(f"RESULT s_per_round_plain={plain:.2f} s_per_round_secagg={secure:.2f} "
          f"ratio={secure / plain:.2f} nodes={out['nodes']} length={m} rounds={rounds} "
          f"max_error={error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
