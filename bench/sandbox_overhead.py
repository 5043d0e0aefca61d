"""LoRA training inside the sandbox against the same training in plain PyTorch: the overhead.

Run: python bench/sandbox_overhead.py [--quick] [--rounds N] [--records N] [--threads N]

--quick: 15 rounds over 48 records (under a minute); default: 40 rounds over 96 records.

Both sides run the same LoRA training steps on the same tiny BERT (built from a config, sealed
by the provider tooling) and the same batches: one round is ``local_epochs`` passes over the
owner's records with the session's batch size and the round's seed, starting from the initial
adapter, computing the update ``new - start`` at the end.

- ``plain``: ``enclave.sandbox.training.TrainingSession`` built in this process from the
  plaintext model directory (plain PyTorch, no sandbox, no RPC);
- ``sandbox``: the ``Train`` RPC of a runtime started by the launcher (bubblewrap when usable)
  that attested, received the data key through a verified release, unsealed the model into
  memory and was configured with the same terms; timed at the client, so the gRPC round trip
  over the Unix socket and the sandbox's bookkeeping are in it.

Setup (sealing, starting, loading, configuring, imports) is not timed. Rounds alternate
between the two sides so machine load hits both alike; both use the same torch thread count.
Each round's losses must be identical on both sides (``same_losses=1``), which shows the same
steps ran. ``overhead`` is the median sandbox round time over the median plain round time
(medians resist the load spikes of a shared machine); the totals' ratio is printed too.

The last line is ``RESULT overhead=<median ratio> total_ratio=... plain_steps_per_s=...
sandbox_steps_per_s=... same_losses=0|1 isolation=bubblewrap|plain-process``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

console = Console(stderr=True, highlight=False)


def _records(path: Path, count: int) -> list[str]:
    """Real labelled text (stdlib docstrings by package family) as JSONL records."""
    from fedtune.datasets.stdlib_corpus import build_corpus

    corpus = build_corpus(max_per_label=max(2, count // 3), max_chars=300, seed=1)
    labels = list(corpus.labels)
    records = list(corpus.records)[:count]
    path.write_text("".join(json.dumps({"text": r.text, "label": r.label}) + "\n"
                            for r in records))
    return labels


def main(argv: list[str] | None = None) -> int:
    """Set both sides up, time interleaved rounds, print the table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and records")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side (40; quick 15)")
    parser.add_argument("--records", type=int, default=None, help="owner records (96; quick 48)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    parser.add_argument("--hidden", type=int, default=64, help="tiny BERT width")
    args = parser.parse_args(argv)
    rounds = args.rounds or (15 if args.quick else 40)
    count = args.records or (48 if args.quick else 96)
    if rounds < 1 or count < 6 or args.threads < 1:
        parser.error("need --rounds >= 1, --records >= 6, --threads >= 1")

    from crypto.hpke import RecipientPublicKey, wrap_key
    from crypto.identity import Identity
    from enclave.attest import (
        AllowedMeasurement,
        EvidenceKind,
        ReleasePolicy,
        new_nonce,
        report_data_for,
        runtime_measurement,
        verify,
    )
    from enclave.ml.modeldir import read_model_dir, write_model_dir
    from enclave.ml.tiny import tiny_bert_files
    from enclave.sandbox import (
        PartySignature,
        SandboxLauncher,
        SecretKind,
        SignedSessionTerms,
        derive_sandbox_terms,
        parse_session_terms,
    )
    from enclave.sandbox.training import TrainingSession
    from fedtune.orchestrator.terms import SessionTerms
    from fedtune.provider.seal import seal_model_dir
    from fedtune.sandbox_client import SandboxClient

    with tempfile.TemporaryDirectory(prefix="fedtune-bench-") as tmp, \
            Progress(console=console, transient=True) as progress:
        base = Path(tmp)
        setup = progress.add_task("setting up (sealing, starting the sandbox, loading)", total=None)
        provider = Identity.generate()
        platform = Identity.generate()
        model_dir = write_model_dir(tiny_bert_files(seed=3, hidden_size=args.hidden),
                                    base / "model")
        artifact = seal_model_dir(model_dir, base / "sealed", name="bench/tiny", version="1",
                                  identity=provider, keys_dir=base / "keys")
        data = base / "data"
        data.mkdir()
        labels = _records(data / "train.jsonl", count)
        owners = sorted((Identity.generate() for _ in range(3)), key=lambda i: i.fingerprint)
        document = SessionTerms(
            session_id="bench", model_name="bench/tiny", model_version="1",
            provider_fingerprint=provider.fingerprint,
            invited_owners=[o.fingerprint for o in owners], rounds=rounds + 1,
            min_participants=3, secagg_threshold=2, task="classification", labels=labels,
            learning_rate=1e-3, batch_size=8, max_length=64, created_at=datetime.now(UTC),
        ).canonical_bytes()
        signed = SignedSessionTerms(
            document,
            PartySignature(provider.public.raw, provider.sign(document, context="session-terms")),
            PartySignature(owners[0].public.raw,
                           owners[0].sign(document, context="session-terms")),
        )
        terms = derive_sandbox_terms(parse_session_terms(document))

        handle = SandboxLauncher(data, work_dir=base / "work", platform_key=platform,
                                 num_threads=args.threads, allow_weak_isolation=True).start()
        try:
            client = SandboxClient(handle.socket_path)
            nonce = new_nonce()
            attested = client.attest(nonce)
            policy = ReleasePolicy(
                name="bench/tiny", version=1, issuer=provider.fingerprint,
                issued_at=datetime.now(UTC), allowed_kinds=[EvidenceKind.SIMULATED],
                allowed_measurements=[AllowedMeasurement(
                    kind=EvidenceKind.SIMULATED, values={"measurement": runtime_measurement()})],
                allow_simulated=True, simulated_platform_keys=[platform.fingerprint],
            ).sign(provider)
            verify(attested.evidence, policy, report_data_for(nonce, attested.ephemeral_public_key),
                   trusted_policy_issuers=[provider.public]).raise_for_failure()
            key = artifact.key_path.read_bytes()
            from crypto.datakey import DataKey

            wrapped = wrap_key(DataKey.from_pem(key).raw,
                               RecipientPublicKey.from_bytes(attested.ephemeral_public_key),
                               model_id="bench/tiny@1", session_id="bench")
            client.install_key(SecretKind.MODEL_DATA_KEY, wrapped, model_id="bench/tiny@1",
                               session_id="bench")
            client.load_model(artifact.manifest_path.read_bytes(), artifact.blob_path.read_bytes(),
                              provider=provider.public)
            configured = client.configure(signed, train_file="train.jsonl")
            plain = TrainingSession(terms, read_model_dir(model_dir), data,
                                    train_file="train.jsonl", eval_file=None,
                                    num_threads=args.threads)
            assert plain.adapter_fingerprint == configured.adapter_fingerprint
            # One untimed round each: first-call allocations and lazy initialisation.
            plain.train(1, plain.initial)
            client.train(1)
            progress.remove_task(setup)

            task = progress.add_task("interleaved training rounds", total=rounds)
            plain_times, sandbox_times, same = [], [], True
            steps = 0
            for number in range(2, rounds + 2):
                # Alternate which side goes first, so neither always runs right after the other.
                for side in ("plain", "sandbox") if number % 2 else ("sandbox", "plain"):
                    started = time.perf_counter()
                    if side == "plain":
                        outcome, _ = plain.train(number, plain.initial)
                        plain_times.append(time.perf_counter() - started)
                    else:
                        remote = client.train(number)
                        sandbox_times.append(time.perf_counter() - started)
                steps = int(outcome.metrics["steps"])
                same &= all(remote.metrics[k] == outcome.metrics[k]
                            for k in ("first_loss", "last_loss", "mean_loss"))
                progress.advance(task)
            mode = handle.isolation.mode.value
            client.close()
        finally:
            handle.stop()

    plain_median = statistics.median(plain_times)
    sandbox_median = statistics.median(sandbox_times)
    overhead = sandbox_median / plain_median
    total_ratio = sum(sandbox_times) / sum(plain_times)
    table = Table(title=f"LoRA training rounds ({steps} steps each, {args.threads} thread(s), "
                        f"{configured.train_examples} examples, sandbox: {mode})")
    for column in ("side", "median s/round", "min s/round", "steps/s (median)"):
        table.add_column(column, justify="right")
    for name, times in (("plain PyTorch", plain_times), ("through the sandbox", sandbox_times)):
        median = statistics.median(times)
        table.add_row(name, f"{median:.4f}", f"{min(times):.4f}", f"{steps / median:.1f}")
    console.print(table)
    console.print(f"overhead (median sandbox / median plain): {overhead:.3f}; "
                  f"totals: {total_ratio:.3f}; identical losses: {same}")
    print(
        f"RESULT overhead={overhead:.3f} total_ratio={total_ratio:.3f} "
        f"plain_steps_per_s={steps / plain_median:.2f} "
        f"sandbox_steps_per_s={steps / sandbox_median:.2f} same_losses={int(same)} "
        f"rounds={rounds} steps_per_round={steps} threads={args.threads} isolation={mode}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
