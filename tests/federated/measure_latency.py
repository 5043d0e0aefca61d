"""Measure Deployment Engine latencies on this machine (the numbers in DEPLOYMENT-NOTES.md).

Run from the repository root::

    python tests/federated/measure_latency.py --nodes 3 --rounds 4

For each variant it starts a fresh SuperLink and ``--nodes`` SuperNodes on 127.0.0.1, then
times: SuperLink start-up (until ``/health`` answers), SuperNode start-up (until the node
logs its node id), one server -> clients -> server exchange (median over ``--rounds``
rounds of the harness app), and a whole 2-round run from ``flwr run`` to ``finished``.

Variants: ``send-and-receive`` (the ServerApp uses ``Grid.send_and_receive``, which sleeps
3 s between pulls), ``poll-0.2`` (the ServerApp pulls every 0.2 s with
``Grid.pull_messages``), ``poll-0.2+exec-0.1`` (also sets the undocumented
``FLWR_SUPEREXEC_TASK_POLL_INTERVAL=0.1`` on every process). Not a test: pytest does not
collect it, and it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness_app  # noqa: E402

from fedtune.federated.appdir import write_app_dir  # noqa: E402
from fedtune.federated.deployment import Deployment, SuperNodeSpec  # noqa: E402

VARIANTS = {
    "send-and-receive": (0.0, {}),
    "poll-0.2": (0.2, {}),
    "poll-0.2+exec-0.1": (0.2, {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1"}),
}


def measure(variant: str, nodes: int, rounds: int, root: Path) -> dict[str, float]:
    """Start a deployment, time start-up, an exchange and a 2-round run; tear it down."""
    poll, env = VARIANTS[variant]
    owners = [f"owner{i}" for i in range(nodes)]
    app = write_app_dir(root / variant / "app", "harness", "harness_app:serverapp",
                        "harness_app:clientapp", config=harness_app.RUN_CONFIG,
                        modules={"harness_app.py": HERE / "harness_app.py"})
    with Deployment(root / variant / "deployment", env=env) as deployment:
        link = deployment.start_superlink()
        started = time.monotonic()
        infos = deployment.add_supernodes([SuperNodeSpec(o, {"owner": o}) for o in owners])
        all_nodes_s = time.monotonic() - started
        base = {"expected-nodes": nodes, "poll-interval-s": poll}
        deployment.run(app, run_config={**base, "num-rounds": rounds,
                                        "result-path": str(root / variant / "rounds.json")},
                       timeout_s=600)
        per_round = [r["seconds"] for r in
                     json.loads((root / variant / "rounds.json").read_text())["rounds"]]
        started = time.monotonic()
        two = deployment.run(app, run_config={**base, "num-rounds": 2,
                                              "result-path": str(root / variant / "two.json")},
                             timeout_s=600)
        two_round_wall = time.monotonic() - started
    return {
        "superlink_start_s": link.startup_s,
        "supernode_start_s": statistics.median(i.startup_s for i in infos),
        "all_supernodes_s": all_nodes_s,
        "exchange_median_s": statistics.median(per_round[1:] or per_round),
        "exchange_first_s": per_round[0],
        "two_round_run_s": two_round_wall,
        "two_round_serverapp_s": float(two.info.get("elapsed", 0.0)),
    }


def main() -> None:
    """Parse arguments, run the variants, print a table and one RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown or not 1 <= args.nodes <= 8 or not 1 <= args.rounds <= 20:
        parser.error(f"variants from {list(VARIANTS)}, 1..8 nodes, 1..20 rounds")
    results = {}
    with tempfile.TemporaryDirectory(prefix="ft-latency-") as tmp:
        for variant in variants:
            results[variant] = measure(variant, args.nodes, args.rounds, Path(tmp))
    table = Table(title=f"Deployment Engine on 127.0.0.1, {args.nodes} SuperNodes (seconds)")
    table.add_column("measure")
    for variant in variants:
        table.add_column(variant, justify="right")
    for key in next(iter(results.values())):
        table.add_row(key, *(f"{results[v][key]:.1f}" for v in variants))
    Console().print(table)
    print("RESULT " + " ".join(f"{v}.{k}={results[v][k]:.2f}" for v in variants
                               for k in ("exchange_median_s", "two_round_run_s")))


if __name__ == "__main__":
    main()
