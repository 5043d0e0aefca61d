"""Example: an auditor reviews the tamper-evident audit log, and catches a rewritten entry.

A small deployment produces a log (enrolments, an upload with its key and release policy, a
session proposed and accepted, and one refused call). The auditor, holding only the log's
verifier key, then runs:

1. ``fedtune audit verify``: every signature, every leaf hash, the Merkle root recomputed; the
   checkpoint it verified is saved for next time;
2. more events happen; ``fedtune audit verify`` again proves the new log *extends* the saved
   checkpoint (a consistency proof: nothing earlier was rewritten or dropped);
3. ``fedtune audit show --html``: the timeline of who did what, refusals highlighted;
4. someone with disk access rewrites one entry of a copy of the store: verify refuses it,
   naming the entry.

Run:  python examples/auditor_review/run.py --out /tmp/audit-example
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/_local.py

from _local import LocalDeployment, fedtune_cli, say, simulated_policy

from crypto.datakey import DataKey
from enclave.ml.modeldir import write_model_dir
from enclave.ml.tiny import tiny_bert_files
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.errors import OrchestratorError
from fedtune.orchestrator.terms import SessionTerms
from fedtune.provider.seal import seal_model_dir

MODEL, VERSION = "acme/tiny-bert", "1"


def make_history(local: LocalDeployment, root: Path) -> None:
    """What the parties do before the auditor looks: upload, a session, one refused call."""
    provider = local.enrol(Role.PROVIDER, "acme")
    owners = [local.enrol(Role.DATA_OWNER, f"owner{i}") for i in range(2)]
    model_dir = write_model_dir(tiny_bert_files(seed=7, hidden_size=16), root / "model")
    artifact = seal_model_dir(model_dir, root / "sealed", name=MODEL, version=VERSION,
                              identity=provider.identity, keys_dir=provider.home / "keys")
    provider.client.upload(artifact.signed, artifact.blob_path)
    provider.client.register_key(MODEL, VERSION, DataKey.load(artifact.key_path),
                                 simulated_policy(provider, MODEL, local.platform))
    terms = SessionTerms(
        session_id=f"audit-{uuid.uuid4().hex[:8]}", model_name=MODEL, model_version=VERSION,
        provider_fingerprint=provider.fingerprint,
        invited_owners=sorted(o.fingerprint for o in owners), rounds=1,
        aggregation="ckks", min_participants=2, labels=["neg", "pos"],
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    provider.client.create_session(terms, provider.identity,
                                   [o.identity.public.raw for o in owners])
    provider.client.invite(terms, provider.identity)
    owners[0].client.accept(terms.session_id, owners[0].identity)
    # A data owner tries to replace the provider's release policy: refused, and on the record.
    try:
        owners[1].client.set_policy(MODEL, simulated_policy(owners[1], MODEL, local.platform,
                                                            version=2))
    except OrchestratorError as exc:
        say(f"owner1 changing acme's policy was refused: {type(exc).__name__}")
    else:
        raise SystemExit("the orchestrator accepted a policy change by a data owner")
    owners[1].client.accept(terms.session_id, owners[1].identity)


def main() -> int:
    """Produce a log, verify it twice, render it, and show a rewrite being caught."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Where audit.html goes.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {}

    with tempfile.TemporaryDirectory(prefix="fedtune-audit-") as tmp:
        root = Path(tmp)
        auditor = root / "auditor"  # the auditor's own home: where its checkpoints live
        auditor.mkdir()
        checkpoint = auditor / "checkpoint.txt"
        with LocalDeployment(root) as local:
            make_history(local, root)
            log_key = local.write_log_key(auditor / "log.vkey")  # published by the operator
            db = local.audit_db
            # 1. First review: verify everything, save the checkpoint.
            first = fedtune_cli("audit", "verify", "--db", str(db), "--log-key", str(log_key),
                                "--since-checkpoint", str(checkpoint))
            summary["first_size"] = local.server.audit_log.size
            # 2. Life goes on: another party enrols, the provider uploads a second version.
            local.enrol(Role.DATA_OWNER, "owner-late")
            second = fedtune_cli("audit", "verify", "--db", str(db), "--log-key", str(log_key),
                                 "--since-checkpoint", str(checkpoint))
            summary["second_size"] = local.server.audit_log.size
            # 3. The timeline, as a terminal table and a self-contained HTML page.
            html = args.out / "audit.html"
            timeline = fedtune_cli("audit", "show", "--db", str(db), "--log-key", str(log_key),
                                   "--since-checkpoint", str(checkpoint), "--html", str(html))
            print(timeline)
            summary["events"] = [f"{e.action.value}:{e.outcome.value}"
                                 for e in local.audit_events()]
        # 4. Tamper with a copy of the store (the server is stopped, the file is complete).
        forged = root / "forged.sqlite"
        shutil.copyfile(db, forged)
        with sqlite3.connect(forged) as conn:
            # Someone with disk access can drop the append-only triggers; the hashes remain.
            conn.execute("DROP TRIGGER leaves_no_update")
            (leaf,) = conn.execute("SELECT leaf FROM leaves WHERE idx = 1").fetchone()
            conn.execute("UPDATE leaves SET leaf = ? WHERE idx = 1",
                         (bytes(leaf).replace(b"ok", b"no", 1),))
        try:
            fedtune_cli("audit", "verify", "--db", str(forged), "--log-key", str(log_key),
                        "--since-checkpoint", str(auditor / "forged-checkpoint.txt"))
        except subprocess.CalledProcessError as exc:
            summary["tampered_refused"] = True
            # Rich wraps the one error line to the terminal's width: unwrap it.
            error = " ".join(exc.stderr.split())
            summary["tampered_error"] = error[error.find("error:"):]
        else:
            summary["tampered_refused"] = False
    # fedtune_cli raises unless the command exited 0: both reviews passed.
    summary["first_verify"] = first.strip().splitlines()[-1] if first.strip() else "ok"
    summary["second_verify"] = second.strip().splitlines()[-1] if second.strip() else "ok"
    summary["html"] = str(html)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if summary["tampered_refused"] else 1


if __name__ == "__main__":
    sys.exit(main())
