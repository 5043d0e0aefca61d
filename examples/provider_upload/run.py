"""Example: a model provider seals a model, uploads it and registers its key under a release policy.

What the provider runs, with the ``fedtune`` CLI, against a local orchestrator:

1. ``fedtune attest policy create``: a release policy signed with the provider's identity,
   naming which sandbox builds may receive the model's data key (here: this install's
   sandbox under the *simulated* TEE, which is for development only);
2. ``fedtune provider upload``: seal the safetensors directory (AES-256-GCM STREAM under a
   fresh data key, signed manifest), upload it resumably, register the data key with the key
   broker together with the policy;
3. ``fedtune provider verify``: anyone holding the sealed artifact can check it without the key.

Run:  python examples/provider_upload/run.py --out /tmp/provider-example
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/_local.py

from _local import LocalDeployment, fedtune_cli, say

from enclave.ml.modeldir import write_model_dir
from enclave.ml.tiny import tiny_bert_files
from fedtune.orchestrator.authz import Role

MODEL, VERSION = "acme/tiny-bert", "1"


def main() -> int:
    """Seal, upload and register a tiny model; write summary.json into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Where summary.json goes.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fedtune-provider-") as tmp, \
            LocalDeployment(Path(tmp)) as local:
        root = Path(tmp)
        provider = local.enrol(Role.PROVIDER, "acme")  # fedtune enrol --server ... --token ...
        home = str(provider.home)

        # The provider's model: a tiny BERT built from a config (random weights, real
        # tokenizer); any directory of safetensors + config/tokenizer files works the same.
        model_dir = write_model_dir(tiny_bert_files(seed=7, hidden_size=32), root / "model")

        # 1. The release policy: which TEE kinds and measurements may receive the key.
        policy = root / "policy.json"
        fedtune_cli(
            "attest", "policy", "create", "--name", MODEL, "--version", "1",
            "--key", str(provider.home / "identity.pem"), "--out", str(policy),
            "--kind", "simulated", "--simulated-measurement", "runtime",
            "--allow-simulated", "--simulated-key", local.platform.fingerprint,
            "--expires", "30d",
        )
        shown = fedtune_cli("attest", "policy", "show", str(policy))

        # 2. Seal + upload + register the data key under that policy.
        sealed = root / "sealed"
        fedtune_cli("provider", "upload", str(model_dir), "--name", MODEL, "--version",
                    VERSION, "--out", str(sealed), "--policy", str(policy),
                    "--chunk-size", "64KiB", "--home", home)

        # 3. Anyone can check the artifact without the key (the provider's key is pinned).
        provider.identity.public.save(root / "acme.pub.pem")
        fedtune_cli("provider", "verify", str(sealed), "--provider", str(root / "acme.pub.pem"))

        # What the orchestrator now holds, and what its audit log recorded.
        manifest = json.loads((sealed / "manifest.json").read_text())["manifest"]
        events = [f"{e.action.value}:{e.outcome.value}" for e in local.audit_events()]
        say("audit log: " + ", ".join(events))

    summary = {
        "model": MODEL,
        "version": VERSION,
        "provider": provider.fingerprint,
        "sealed_size": manifest["sealed_size"],
        "segments": manifest["segment_count"],
        "data_key_id": manifest["data_key_id"],
        "policy_allows_simulated": "simulated" in shown,
        "verified_without_key": True,  # fedtune provider verify exited 0
        "audit_events": events,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
