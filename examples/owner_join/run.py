"""Example: a data owner joins a session: checks the sandbox, then lets it have the keys and model.

The provider has uploaded a sealed model and proposed a session; the owner accepts the terms
(signing the same bytes) and its agent then, on the owner's machine:

1. launches the sandbox (bubblewrap) over an *empty* staging directory;
2. checks the sandbox's fresh evidence against the **owner's own policy** (which sandbox build
   it trusts): only then are the record files staged, read-only, for the sandbox;
3. relays the broker's nonce and the sandbox's evidence: the key broker checks them against
   the **provider's** release policy and releases the model's data key wrapped (HPKE) to a
   key only the sandbox holds; the agent sees ciphertext only;
4. streams the sealed model into the sandbox, which decrypts it in memory;
5. configures the sandbox with the signed terms (it verifies the provider's and the owner's
   signatures itself and locks its set-up), and registers a SuperNode key.

The rounds would follow (``fedtune owner join`` does all of this and then serves them; see
``examples/ckks_session``). Run:  python examples/owner_join/run.py --out /tmp/owner-example
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

from _local import LocalDeployment, fedtune_cli, say, simulated_policy

from crypto.datakey import DataKey
from enclave.ml.modeldir import write_model_dir
from enclave.ml.tiny import tiny_bert_files
from fedtune.datasets import build_corpus, split_non_iid, write_split
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.terms import SessionTerms
from fedtune.owner import JoinSpec, OwnerAgent
from fedtune.owner.config import OwnerConfig
from fedtune.provider.seal import seal_model_dir

MODEL, VERSION = "acme/tiny-bert", "1"
FAMILIES = {"email": ("email", "mailbox"), "xml": ("xml", "html")}


def main() -> int:
    """Prepare one owner's sandbox for a session and write summary.json into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Where summary.json goes.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fedtune-owner-") as tmp, \
            LocalDeployment(Path(tmp)) as local:
        root = Path(tmp)
        provider = local.enrol(Role.PROVIDER, "acme")
        owner = local.enrol(Role.DATA_OWNER, "alice")
        bob = local.enrol(Role.DATA_OWNER, "bob")  # the other owner (joins on his own machine)

        # The provider's side, done beforehand (see examples/provider_upload).
        model_dir = write_model_dir(tiny_bert_files(seed=7, hidden_size=32), root / "model")
        artifact = seal_model_dir(model_dir, root / "sealed", name=MODEL, version=VERSION,
                                  identity=provider.identity, keys_dir=provider.home / "keys")
        provider.client.upload(artifact.signed, artifact.blob_path)
        provider.client.register_key(MODEL, VERSION, DataKey.load(artifact.key_path),
                                     simulated_policy(provider, MODEL, local.platform))
        terms = SessionTerms(
            session_id=f"join-{uuid.uuid4().hex[:8]}", model_name=MODEL, model_version=VERSION,
            provider_fingerprint=provider.fingerprint,
            invited_owners=sorted([owner.fingerprint, bob.fingerprint]),
            rounds=1, aggregation="ckks", min_participants=2, labels=sorted(FAMILIES),
            created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        provider.client.create_session(terms, provider.identity,
                                       [owner.identity.public.raw, bob.identity.public.raw])
        provider.client.invite(terms, provider.identity)

        # The owner's records: they never leave this directory except into the sandbox.
        corpus = build_corpus(families=FAMILIES, seed=3, max_per_label=15, max_chars=300)
        split = split_non_iid(corpus.records, 1, labels=corpus.labels, seed=5)
        write_split(split, root / "alice-data")
        data_dir = root / "alice-data" / split.owners[0].name

        # The owner reads the terms and signs them (``fedtune session accept``).
        owner.client.accept(terms.session_id, owner.identity)
        bob.client.accept(terms.session_id, bob.identity)
        provider.client.start_session(terms.session_id)

        # The owner's own policy, in owner.toml: which sandbox build it trusts. ``owner init``
        # pins the build installed here; a careful owner re-measures the checkout it reviewed
        # (``fedtune sandbox measure --checkout DIR``) and edits [policy].
        owner_toml = root / "alice-owner.toml"
        fedtune_cli("owner", "init", str(owner_toml), "--superlink", "127.0.0.1:9092",
                    "--simulated")
        policy = OwnerConfig.load(owner_toml).policy
        spec = JoinSpec(
            session_id=terms.session_id, data_dir=data_dir, train_file="train.jsonl",
            eval_file="eval.jsonl", work_dir=local.owner_work_dir(terms.session_id, 0),
            superlink_address="127.0.0.1:9092",  # the operator's; dialled only for the rounds
            platform_key=local.platform, num_threads=1, policy=policy,
        )
        with OwnerAgent(owner.config, spec, progress=say) as agent:
            prepared = agent.prepare()
            summary = {
                "session": terms.session_id,
                "owner": owner.fingerprint,
                "owner_policy_ok": prepared.owner_check is not None and prepared.owner_check.ok,
                # What the sandbox derived from the signed terms and the staged records.
                "sandbox_session": prepared.configured.session_id,
                "adapter_parameters": prepared.configured.adapter_length,
                "train_examples": prepared.configured.train_examples,
                "eval_examples": prepared.configured.eval_examples,
                "supernode_key": prepared.node_public_key.decode().split()[0],
            }
        events = [e for e in local.audit_events() if e.session == terms.session_id]
        summary["audit_events"] = [f"{e.action.value}:{e.outcome.value}" for e in events]

    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
