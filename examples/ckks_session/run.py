"""Example: a federated LoRA session whose updates are aggregated under CKKS encryption.

Two data owners fine-tune a provider's tiny BERT on their own records (docstrings of three
stdlib package families, split non-IID). Each round every sandbox CKKS-encrypts its update;
the aggregator adds ciphertexts and never sees a sum in the clear. Run:

    python examples/ckks_session/run.py --out /tmp/ckks-example
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/_local.py

from _local import LocalDeployment, say, simulated_policy

from crypto.datakey import DataKey
from enclave.ml.modeldir import write_model_dir
from enclave.ml.tiny import tiny_bert_files
from fedtune.datasets import build_corpus, split_non_iid, write_split
from fedtune.federated.report import render_console
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.terms import SessionTerms
from fedtune.provider.seal import seal_model_dir

MODEL, VERSION = "acme/tiny-bert", "1"
FAMILIES = {
    "asyncio": ("asyncio",),
    "email": ("email", "mailbox", "smtplib", "imaplib", "poplib", "mimetypes"),
    "xml": ("xml", "html"),
}


def main() -> int:
    """Run one CKKS session end to end and write report.json into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Where report.json goes.")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--owners", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fedtune-ckks-") as tmp, \
            LocalDeployment(Path(tmp)) as local:
        root = Path(tmp)
        provider = local.enrol(Role.PROVIDER, "acme")
        owners = [local.enrol(Role.DATA_OWNER, f"owner{i}") for i in range(args.owners)]

        # Provider: seal a tiny BERT (built from a config), upload it, key under a policy.
        model_dir = write_model_dir(tiny_bert_files(seed=7, hidden_size=32), root / "model")
        artifact = seal_model_dir(model_dir, root / "sealed", name=MODEL, version=VERSION,
                                  identity=provider.identity, keys_dir=provider.home / "keys")
        provider.client.upload(artifact.signed, artifact.blob_path)
        provider.client.register_key(MODEL, VERSION, DataKey.load(artifact.key_path),
                                     simulated_policy(provider, MODEL, local.platform))
        say(f"provider uploaded {MODEL}@{VERSION} (sealed) and registered its key")

        # Owners: their records stay on their machines (here: one directory each).
        corpus = build_corpus(families=FAMILIES, seed=3, max_per_label=20, max_chars=300)
        split = split_non_iid(corpus.records, args.owners, labels=corpus.labels, seed=5,
                              alpha=0.8)
        write_split(split, root / "owner-data")
        data_dirs = [root / "owner-data" / shard.name for shard in split.owners]

        # Terms: CKKS aggregation; every owner must take part (a CKKS sum of fewer would tell
        # each decrypting sandbox too much about the others).
        terms = SessionTerms(
            session_id=f"ckks-{uuid.uuid4().hex[:8]}", model_name=MODEL, model_version=VERSION,
            provider_fingerprint=provider.fingerprint,
            invited_owners=sorted(o.fingerprint for o in owners),
            rounds=args.rounds, aggregation="ckks", min_participants=args.owners,
            learning_rate=5e-2, batch_size=8, max_length=48,
            task="classification", labels=sorted(FAMILIES),
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        provider.client.create_session(terms, provider.identity,
                                       [o.identity.public.raw for o in owners])
        provider.client.invite(terms, provider.identity)
        for owner in owners:
            owner.client.accept(terms.session_id, owner.identity)  # signs the same terms bytes
        provider.client.start_session(terms.session_id)
        say(f"session {terms.session_id} accepted by every owner and started")

        local.start_superlink()
        report = local.run_session(terms.session_id, list(zip(owners, data_dirs, strict=True)))

    from rich.console import Console

    Console(width=120).print(render_console(report))
    report.save(args.out / "report.json")
    return 0 if report.status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
