"""``fedtune owner join`` against a real deployment, and exports that need every party's approval.

Everything is real: the orchestrator (mutual TLS, key broker, audit log), sandboxes under
bubblewrap, the SuperLink and SuperNodes, the sealed adapter, the HPKE-wrapped export key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from enclave.attest import runtime_measurement
from enclave.attest.simulated import platform_key_path
from fedtune.cli.main import app as cli
from fedtune.cli.owner import run_join
from fedtune.orchestrator.terms import DifferentialPrivacy, SessionTerms
from fedtune.owner import JoinSpec, OwnerAgent
from fedtune.owner.config import OwnerConfig
from fedtune.owner.errors import ExportRefused, SandboxRefused
from fedtune.owner.jail import bubblewrap_available
from fedtune.owner.participation import STATES
from tests.federated.session_world import LABELS, MODEL, VERSION, Owner, SessionWorld

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def _owner_toml(world: SessionWorld, path: Path, *, measurement: bytes, work_dir: Path) -> Path:
    assert world.runner is not None and world.runner.deployment is not None
    path.write_text(
        f'work_dir = "{work_dir}"\n'
        "[policy]\n"
        'tee = "simulated"\n'
        "allow_simulated = true\n"
        "[[policy.allowed]]\n"
        'kind = "simulated"\n'
        f'values = {{ measurement = "{measurement.hex()}" }}\n'
        "[data]\n"
        'train = "train.jsonl"\n'
        'eval = "eval.jsonl"\n'
        "[superlink]\n"
        f'address = "{world.runner.deployment.superlink_address}"\n'
        "[limits]\n"
        "threads = 1\n"
        "reconnect_attempts = 2\n"
        "reconnect_backoff_s = 1.0\n"
        "session_wait_s = 300.0\n",
        encoding="utf-8",
    )
    return path


def _use_world_platform(world: SessionWorld, owner: Owner) -> None:
    """The owner's simulated TEE signs with the platform key the provider's policy accepts."""
    path = platform_key_path(owner.party.home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        world.platform.save(path)


def _proposed_without(world: SessionWorld, joining: Owner) -> SessionTerms:
    """A one-round session every party accepted except ``joining`` (not started yet)."""
    world._pin_current_build()
    terms = SessionTerms(
        session_id=f"s{uuid.uuid4().hex[:10]}", model_name=MODEL, model_version=VERSION,
        provider_fingerprint=world.provider.fingerprint,
        invited_owners=sorted(o.fingerprint for o in world.owners),
        rounds=1, aggregation="secagg", min_participants=2, secagg_threshold=2,
        dp=DifferentialPrivacy(), learning_rate=5e-2, batch_size=8, max_length=48,
        task="classification", labels=LABELS,
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    client = world.provider.client
    client.create_session(terms, world.provider.identity,
                          [o.party.identity.public.raw for o in world.owners])
    client.invite(terms, world.provider.identity)
    for owner in world.owners:
        if owner is not joining:
            owner.party.client.accept(terms.session_id, owner.party.identity)
    return terms


def _state(world: SessionWorld, sid: str) -> str:
    return STATES[world.provider.client.get_session(sid).state]


def _all_accepted(world: SessionWorld, sid: str) -> bool:
    return all(p.accepted for p in world.provider.client.get_session(sid).participants)


def test_join_refuses_a_sandbox_its_policy_rejects_before_staging_any_record(
    world: SessionWorld, tmp_path: Path
) -> None:
    terms = world.new_session(rounds=1)
    sid = terms.session_id
    owner = world.owners[0]
    _use_world_platform(world, owner)
    work = world.short / "refuse"
    # The owner pins a build that is not the one running: its policy must refuse.
    config = _owner_toml(world, tmp_path / "owner.toml", measurement=bytes(48), work_dir=work)
    with pytest.raises(SandboxRefused) as caught:
        run_join(sid, owner.data_dir, config, home=owner.party.home, yes=True, jail=False,
                 console=Console(file=io.StringIO()))
    assert caught.value.stage == "join" and "measurement" in caught.value.failed
    assert "none of your records was shown" in str(caught.value)
    staging = work / sid[:16] / "staging"
    assert staging.is_dir() and list(staging.iterdir()) == []
    events = world.events(sid)
    verdicts = [e for e in events
                if e.action.value == "attestation-verdict" and e.actor == owner.fingerprint]
    assert len(verdicts) == 1
    assert verdicts[0].outcome.value == "refused" and "measurement" in (verdicts[0].reason or "")
    assert verdicts[0].details["stage"] == "join"
    assert verdicts[0].details["relying_party"] == "data-owner"
    # Refused before any key was released to that sandbox.
    assert not [e for e in events if e.action.value == "key-release"
                and e.actor == owner.fingerprint]
    world.provider.client.cancel_session(sid, "the owner refused its sandbox")


def test_owner_join_runs_a_session_and_the_export_needs_every_approval(
    world: SessionWorld, tmp_path: Path
) -> None:
    assert world.runner is not None
    runner = world.runner
    me, others = world.owners[0], world.owners[1:]
    terms = _proposed_without(world, me)  # the joining owner signs through the CLI path
    sid = terms.session_id
    _use_world_platform(world, me)
    config = _owner_toml(world, tmp_path / "owner.toml", measurement=runtime_measurement(),
                         work_dir=world.short / "join")
    policy = OwnerConfig.load(config).policy
    address = runner.deployment.superlink_address  # type: ignore[union-attr]
    failures: list[BaseException] = []
    checks: list[object] = []
    macs: list[str] = []

    def provider_and_operator() -> None:
        # The other owners' sandboxes live in this thread (they die with the thread that
        # started them), so they also seal their adapter here once the session finished.
        agents: list[OwnerAgent] = []
        try:
            deadline = time.monotonic() + 600
            while not _all_accepted(world, sid):
                assert time.monotonic() < deadline, "the joining owner never accepted"
                time.sleep(1.0)
            world.provider.client.start_session(sid)
            for index, owner in enumerate(others, start=1):
                spec = JoinSpec(
                    session_id=sid, data_dir=owner.data_dir, train_file="train.jsonl",
                    eval_file="eval.jsonl", work_dir=world.short / f"{sid[:6]}-o{index}",
                    superlink_address=address, platform_key=world.platform, num_threads=1,
                    # the first also checks its sandbox against its own policy (mutual)
                    policy=policy if index == 1 else None,
                )
                agents.append(OwnerAgent(owner.party.config, spec))
                agents[-1].prepare()
            checks.append(agents[0].prepared.owner_check)  # type: ignore[union-attr]
            # A re-attestation while the session runs: the broker's policy and the owner's.
            checks.append(agents[0].reattest())
            while any(not o.node_key for o in runner.verified(sid).owners):
                assert time.monotonic() < deadline, "the joining owner registered no key"
                time.sleep(1.0)
            runner.admit_owners(sid)
            for agent in agents:
                agent.start_supernode()
            # A SuperNode that went away comes back with its registered key (reconnect).
            assert agents[1].deployment is not None
            agents[1].deployment.stop("owner")
            assert not agents[1].supernode_running()
            agents[1].restart_supernode()
            assert agents[1].supernode_running() and agents[1].restarts == 1
            runner.wait(runner.submit(sid))
            while _state(world, sid) != "finished":
                assert time.monotonic() < deadline, "the session never finished"
                time.sleep(1.0)
            # The other owners' sandboxes sealed the same final adapter: confirmations.
            macs.extend(agent.seal_adapter()[0].content_mac for agent in agents)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            for agent in agents:
                agent.close()

    thread = threading.Thread(target=provider_and_operator, daemon=True)
    thread.start()
    output = io.StringIO()
    outcome = run_join(sid, me.data_dir, config, home=me.party.home, yes=True,
                       jail=bubblewrap_available() is None,
                       console=Console(file=output, width=200))
    thread.join(timeout=600)
    assert not thread.is_alive() and not failures, failures
    assert all(check is not None for check in checks) and len(checks) == 2
    assert outcome.sealed is not None and macs == [outcome.sealed.content_mac] * 2
    # The join signed the terms, and left no link to the records behind.
    assert "signed your acceptance" in output.getvalue()
    assert list((world.short / "join" / sid[:16] / "staging").iterdir()) == []

    # The joining owner's view: rounds, its before/after metrics, where the sealed adapter is.
    assert outcome.state == "finished" and outcome.rounds_trained == 1
    assert outcome.before is not None and outcome.after is not None
    assert {"accuracy", "loss"} <= set(outcome.after.metrics)
    assert outcome.sealed is not None and outcome.sealed_path is not None
    local = outcome.sealed_path.read_bytes()
    assert "sha256:" + hashlib.sha256(local).hexdigest() == outcome.sealed.sealed_sha256
    text = output.getvalue()
    assert "your metrics" in text and str(outcome.sealed_path) in text

    # Results need both sides: refused, with the missing approvals named, until all approved.
    cli_runner = CliRunner()

    def invoke(home: Path, *args: str) -> object:
        return cli_runner.invoke(cli, [*args, "--home", str(home)])

    out_dir = tmp_path / "adapter"
    everyone = {world.provider.fingerprint, *(o.fingerprint for o in world.owners)}
    refused = invoke(me.party.home, "session", "export", sid, "--out", str(out_dir))
    assert isinstance(refused.exception, ExportRefused), refused.output  # type: ignore[attr-defined]
    assert {fp for _, fp in refused.exception.missing} == everyone  # type: ignore[attr-defined]
    assert not out_dir.exists()
    for home in (world.provider.home, me.party.home, others[0].party.home):
        approved = invoke(home, "session", "approve-export", sid)
        assert approved.exit_code == 0, approved.output  # type: ignore[attr-defined]
    refused = invoke(world.provider.home, "session", "export", sid, "--out", str(out_dir))
    assert isinstance(refused.exception, ExportRefused)  # type: ignore[attr-defined]
    assert refused.exception.missing == [("data-owner", others[1].fingerprint)]  # type: ignore[attr-defined]
    assert others[1].fingerprint in str(refused.exception)  # type: ignore[attr-defined]
    assert not out_dir.exists()
    approved = invoke(others[1].party.home, "session", "approve-export", sid)
    assert approved.exit_code == 0, approved.output  # type: ignore[attr-defined]
    assert "every party approved" in " ".join(approved.output.split())  # type: ignore[attr-defined]
    exported = invoke(me.party.home, "session", "export", sid, "--out", str(out_dir))
    assert exported.exit_code == 0, exported.output  # type: ignore[attr-defined]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]

    # A PEFT adapter directory: loads on the base model, and it carries trained weights.
    from peft import PeftModel

    from enclave.ml.model import build_model

    base = build_model(world.model_files, task="classification", labels=LABELS, seed=0).model
    config_doc = json.loads((out_dir / "adapter_config.json").read_text("utf-8"))
    assert config_doc["base_model_name_or_path"] == f"{MODEL}@{VERSION}"
    loaded = PeftModel.from_pretrained(base, out_dir)
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(bool(torch.any(p != 0)) for p in lora_b)

    # Every step is on the audit log: uploads, approvals, both refusals, the export.
    events = world.events(sid)
    uploads = [e for e in events if e.action.value == "upload"]
    assert sorted(e.details["step"] for e in uploads) == ["confirm", "confirm", "store"]
    assert {e.actor for e in events if e.action.value == "export-approval"} == everyone
    exports = [e for e in events if e.action.value == "export"]
    assert [e.outcome.value for e in exports] == ["refused", "refused", "ok"]
    assert others[1].fingerprint in (exports[1].reason or "")
    stored = "sha256:" + hashlib.sha256(world.provider.client.get_sealed_adapter(sid)).hexdigest()
    assert all(e.objects.artifact == stored for e in exports)
    owner_verdicts = [e for e in events if e.action.value == "attestation-verdict"
                      and e.details.get("relying_party") == "data-owner"]
    assert {(e.actor, e.details["stage"], e.outcome.value) for e in owner_verdicts} == {
        (me.fingerprint, "join", "ok"), (others[0].fingerprint, "join", "ok"),
        (others[0].fingerprint, "reattest", "ok")}
