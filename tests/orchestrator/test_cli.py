"""The CLI against a real server: init, invite, enrol, provider upload + policy set, sessions."""

from __future__ import annotations

import datetime as dt
import re

from typer.testing import CliRunner

from crypto.identity import Identity
from crypto.note import NoteVerifier
from enclave.attest import SignedReleasePolicy
from fedtune.cli.main import app
from fedtune.orchestrator.client import ClientConfig
from fedtune.orchestrator.deployment import load_info

from .conftest import make_model_dir, release_policy, simulated_tee, start_server

runner = CliRunner()


def run(args, home=None, ok=True):
    env = {"FEDTUNE_HOME": str(home)} if home else {}
    result = runner.invoke(app, args, env=env)
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def test_operator_provider_owner_walkthrough(tmp_path):
    root = tmp_path / "dep"
    out = run(
        [
            "orchestrator",
            "init",
            "--dir",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--enrol-port",
            "0",
        ]
    ).output
    fingerprint = load_info(root).ca_fingerprint
    assert fingerprint in out
    server = start_server(root)
    try:
        homes = {}
        for role, name in (("provider", "acme"), ("data-owner", "alice"), ("data-owner", "bob")):
            token_out = run(
                ["orchestrator", "invite", "--dir", str(root), "--role", role, "--name", name]
            ).output
            token = re.search(r"fte1_\S+", token_out)[0]
            homes[name] = tmp_path / name
            out = run(
                [
                    "enrol",
                    "--server",
                    f"127.0.0.1:{server.enrol_port}",
                    "--token",
                    token,
                    "--ca-fingerprint",
                    fingerprint,
                ],
                home=homes[name],
            ).output
            assert f"enrolled as {role}" in out
        out = run(
            [
                "provider",
                "broker",
                "init",
                "--dir",
                str(tmp_path / "kb"),
                "--host",
                "127.0.0.1",
                "--port",
                "7999",
            ],
            home=homes["acme"],
        ).output
        assert "TLS pin      sha256:" in out and "127.0.0.1:7999" in out
        model = make_model_dir(tmp_path / "model")
        out = run(
            ["provider", "upload", str(model), "--name", "acme/base", "--chunk-size", "64KiB"],
            home=homes["acme"],
        ).output
        assert "registered acme/base@1" in out
        # Uploading again is idempotent (the version is complete).
        run(["provider", "upload", str(tmp_path / "model.sealed")], home=homes["acme"])
        provider = ClientConfig.load(homes["acme"]).load_identity()
        tee = simulated_tee(tmp_path)

        class P:  # release_policy only needs the identity
            identity = provider
            fingerprint = provider.fingerprint

        for version in (1, 2):
            policy = release_policy(P, "acme/base", tee, version=version)
            (tmp_path / f"p{version}.json").write_text(policy.model_dump_json())
        assert SignedReleasePolicy.load(tmp_path / "p1.json")
        out = run(
            ["provider", "policy", "set", "acme/base", "--policy", str(tmp_path / "p2.json")],
            home=homes["acme"],
        ).output
        assert "now version 2" in out
        down = run(
            ["provider", "policy", "set", "acme/base", "--policy", str(tmp_path / "p1.json")],
            home=homes["acme"],
            ok=False,
        )
        assert down.exit_code != 0 and "higher version" in str(down.exception)
        keys = [
            ClientConfig.load(homes[n]).load_identity().public.raw.hex() for n in ("alice", "bob")
        ]
        out = run(
            [
                "session",
                "create",
                "--model",
                "acme/base@1",
                "--owner",
                keys[0],
                "--owner",
                keys[1],
                "--label",
                "neg",
                "--label",
                "pos",
                "--session-id",
                "cli1",
            ],
            home=homes["acme"],
        ).output
        assert "created" in out
        run(["session", "invite", "cli1"], home=homes["acme"])
        for n in ("alice", "bob"):
            assert "accepted" in run(["session", "accept", "cli1", "--yes"], home=homes[n]).output
        out = run(["session", "start", "cli1"], home=homes["acme"]).output
        assert "running" in out
        out = run(["session", "status", "cli1"], home=homes["alice"]).output
        assert "running" in out and "yes" in out
        run(["session", "cancel", "cli1", "--reason", "demo over"], home=homes["acme"])
        out = run(["session", "status", "cli1", "--watch"], home=homes["alice"]).output
        assert "cancelled" in out
    finally:
        server.stop(0)
    assert dt.datetime.now(dt.UTC)


def test_an_auditor_verifies_the_orchestrators_log_over_mutual_tls(tmp_path):
    root = tmp_path / "dep"
    run(["orchestrator", "init", "--dir", str(root), "--host", "127.0.0.1", "--port", "0",
         "--enrol-port", "0"])
    info = load_info(root)
    server = start_server(root)
    try:
        token_out = run(["orchestrator", "invite", "--dir", str(root), "--role", "auditor",
                         "--name", "eve"]).output
        token = re.search(r"fte1_\S+", token_out)[0]
        home = tmp_path / "eve"
        run(["enrol", "--server", f"127.0.0.1:{server.enrol_port}", "--token", token,
             "--ca-fingerprint", info.ca_fingerprint], home=home)
        key_file = tmp_path / "log.vkey"
        vkey = run(["orchestrator", "log-key", "--dir", str(root), "--out", str(key_file)]
                   ).output.strip()
        assert vkey == server.audit_log.verifier.vkey
        assert key_file.read_text().strip() == vkey

        # No --server/--db: the enrolled orchestrator, authenticated by eve's certificate.
        result = runner.invoke(app, ["audit", "verify", "--log-key", str(key_file)],
                               env={"FEDTUNE_HOME": str(home), "COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        assert "verified" in result.output and "as auditor eve" in result.output
        assert server.audit_log.size > 0

        # Another key under the same log name does not verify this log.
        forged = NoteVerifier.from_public(
            server.audit_log.verifier.name, Identity.generate().public
        ).vkey
        bad = run(["audit", "verify", "--log-key", forged], home=home, ok=False)
        assert bad.exit_code != 0
    finally:
        server.stop(0)
