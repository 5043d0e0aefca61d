"""``fedtune attest``: verify real and simulated evidence, create and show signed policies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crypto.identity import Identity
from enclave.attest.measurement import runtime_measurement
from enclave.attest.simulated import SIMULATED_WARNING
from fedtune.cli.main import app

DATA = Path(__file__).resolve().parents[1] / "data" / "attestation"
SNP = DATA / "sev-snp"
TDX = DATA / "tdx"
AT = "2025-06-01T00:00:00Z"
VIRTEE = [
    str(SNP / "virtee-report-milan.hex"),
    "--kind",
    "sev-snp",
    "--vcek",
    str(SNP / "virtee-vcek-milan.der"),
    "--chain",
    str(SNP / "virtee-cert-chain-milan.pem"),
    "--at",
    AT,
]
VIRTEE_REPORT_DATA = (
    "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063"
    "fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
)
VIRTEE_MEASUREMENT = (
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480"
    "cd81841f"
)


def run(*args: str):
    result = CliRunner().invoke(app, ["attest", *args], env={"COLUMNS": "200"})
    return result


@pytest.fixture
def issuer(tmp_path) -> tuple[Identity, Path]:
    identity = Identity.generate()
    path = tmp_path / "issuer.pem"
    identity.save(path)
    return identity, path


def test_real_snp_report_passes():
    result = run("verify", *VIRTEE)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output
    for name in ("snp.signature", "snp.vcek.chain", "snp.vcek.tcb.microcode", "snp.vcek.hwid"):
        assert name in result.output
    assert "authenticity only" in result.output


def test_binary_report_with_vcek_only_passes():
    result = run(
        "verify",
        str(SNP / "gsg-attestation.bin"),
        "--kind",
        "sev-snp",
        "--vcek",
        str(SNP / "gsg-vcek.der"),
        "--at",
        AT,
    )
    assert result.exit_code == 0, result.output


def test_json_verdict():
    result = run("verify", *VIRTEE, "--json", "--report-data", VIRTEE_REPORT_DATA)
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["ok"] is True and verdict["kind"] == "sev-snp"
    statuses = {c["name"]: c["status"] for c in verdict["checks"]}
    assert statuses["snp.signature"] == "passed"
    assert statuses["policy.report_data"] == "passed"


@pytest.mark.parametrize(
    ("extra", "failed"),
    [
        (["--report-data", "00" * 64], "policy.report_data"),
        (["--at", "2031-01-01T00:00:00Z"], "snp.vcek.chain"),
    ],
)
def test_failures_exit_1_and_name_the_check(extra, failed):
    result = run("verify", *VIRTEE, *extra)
    assert result.exit_code == 1
    assert "FAIL" in result.output and failed in result.output


def test_wrong_product_chain_fails():
    args = list(VIRTEE)
    args[args.index("--chain") + 1] = str(SNP / "ask_ark_genoa.pem")
    result = run("verify", *args, "--json")
    assert result.exit_code == 1
    failed = {c["name"] for c in json.loads(result.stdout)["checks"] if c["status"] == "failed"}
    assert {"snp.ark", "snp.ask", "snp.vcek.chain"} <= failed


def test_truncated_report_is_a_usage_error(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes((SNP / "gsg-attestation.bin").read_bytes()[:1000])
    result = run("verify", str(short), "--kind", "sev-snp")
    assert result.exit_code == 2
    assert "1184" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "2025-06-01T00:00:00"], "timezone"),
        (["--at", "yesterday"], "ISO-8601"),
        (["--report-data", "abcd"], "64 bytes"),
        (["--report-data", "zz" * 64], "not hex"),
    ],
)
def test_bad_options(args, message):
    result = run("verify", *VIRTEE, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_snp_policy_round_trip(tmp_path, issuer):
    identity, key = issuer
    policy = tmp_path / "policy.json"
    created = run(
        "policy",
        "create",
        "--name",
        "acme/base-v1",
        "--version",
        "2",
        "--key",
        str(key),
        "--out",
        str(policy),
        "--snp-measurement",
        VIRTEE_MEASUREMENT,
        "--min-tcb",
        "sev-snp:snp=8",
        "--min-tcb",
        "sev-snp:microcode=115",
        "--expires",
        "30d",
    )
    assert created.exit_code == 0, created.output
    document = json.loads(policy.read_text())
    assert document["policy"]["issuer"] == identity.fingerprint
    assert document["policy"]["allowed_kinds"] == ["sev-snp"]

    shown = run("policy", "show", str(policy), "--policy-issuer", identity.fingerprint)
    assert shown.exit_code == 0, shown.output
    assert "signature valid" in shown.output and "issuer trusted" in shown.output

    args = ["--policy", str(policy), "--policy-issuer", identity.fingerprint]
    ok = run("verify", *VIRTEE, *args, "--report-data", VIRTEE_REPORT_DATA)
    assert ok.exit_code == 0, ok.output
    assert "policy.measurement" in ok.output and "policy.tcb.microcode" in ok.output

    # The issuer can also be given as a PEM public key file.
    pub = tmp_path / "issuer.pub"
    identity.public.save(pub)
    by_file = run(
        "verify",
        *VIRTEE,
        "--policy",
        str(policy),
        "--policy-issuer",
        str(pub),
        "--report-data",
        VIRTEE_REPORT_DATA,
    )
    assert by_file.exit_code == 0, by_file.output

    replayed = run("verify", *VIRTEE, *args, "--report-data", "11" * 64)
    assert replayed.exit_code == 1 and "policy.report_data" in replayed.output

    stranger = Identity.generate().fingerprint
    untrusted = run("verify", *VIRTEE, "--policy", str(policy), "--policy-issuer", stranger)
    assert untrusted.exit_code == 1 and "policy.issuer" in untrusted.output


def test_policy_needs_a_trusted_issuer(tmp_path, issuer):
    _, key = issuer
    policy = tmp_path / "p.json"
    run(
        "policy",
        "create",
        "--name",
        "n",
        "--version",
        "1",
        "--key",
        str(key),
        "--out",
        str(policy),
        "--snp-measurement",
        VIRTEE_MEASUREMENT,
    )
    result = run("verify", *VIRTEE, "--policy", str(policy))
    assert result.exit_code == 2
    assert "--policy-issuer" in result.output


def test_tampered_policy_shows_invalid(tmp_path, issuer):
    _, key = issuer
    policy = tmp_path / "p.json"
    run(
        "policy",
        "create",
        "--name",
        "n",
        "--version",
        "1",
        "--key",
        str(key),
        "--out",
        str(policy),
        "--snp-measurement",
        VIRTEE_MEASUREMENT,
    )
    document = json.loads(policy.read_text())
    document["policy"]["allow_debug"] = True
    policy.write_text(json.dumps(document))
    result = run("policy", "show", str(policy))
    assert result.exit_code == 1
    assert "signature INVALID" in result.output


def test_simulated_flow_warns_and_production_policy_refuses(tmp_path, issuer):
    identity, key = issuer
    home = tmp_path / "home"
    evidence = tmp_path / "evidence.json"
    made = run("simulate", "--report-data", "ab" * 64, "--out", str(evidence), "--home", str(home))
    assert made.exit_code == 0, made.output
    assert SIMULATED_WARNING in made.output
    platform = next(line.split()[-1] for line in made.stdout.splitlines() if "platform key" in line)
    assert runtime_measurement().hex() in made.stdout

    dev = tmp_path / "dev.json"
    created = run(
        "policy",
        "create",
        "--name",
        "dev",
        "--version",
        "1",
        "--key",
        str(key),
        "--out",
        str(dev),
        "--simulated-measurement",
        "runtime",
        "--allow-simulated",
        "--simulated-key",
        platform,
    )
    assert created.exit_code == 0, created.output
    assert SIMULATED_WARNING in created.output

    trust = ["--policy-issuer", identity.fingerprint, "--report-data", "ab" * 64]
    passed = run("verify", str(evidence), "--kind", "simulated", "--policy", str(dev), *trust)
    assert passed.exit_code == 0, passed.output
    assert "WARNING" in passed.output and SIMULATED_WARNING in passed.output

    prod = tmp_path / "prod.json"
    run(
        "policy",
        "create",
        "--name",
        "prod",
        "--version",
        "1",
        "--key",
        str(key),
        "--out",
        str(prod),
        "--snp-measurement",
        VIRTEE_MEASUREMENT,
    )
    refused = run(
        "verify",
        str(evidence),
        "--kind",
        "simulated",
        "--policy",
        str(prod),
        *trust,
        "--simulated-key",
        platform,
    )
    assert refused.exit_code == 1
    assert "policy.simulated" in refused.output and "production policy" in refused.output


def test_simulated_measurement_needs_allow_simulated(tmp_path, issuer):
    _, key = issuer
    result = run(
        "policy",
        "create",
        "--name",
        "n",
        "--version",
        "1",
        "--key",
        str(key),
        "--out",
        str(tmp_path / "p.json"),
        "--simulated-measurement",
        "runtime",
    )
    assert result.exit_code == 2
    assert "--allow-simulated" in result.output


def test_evidence_json_document_is_accepted(tmp_path):
    from enclave.attest.evidence import Evidence, EvidenceKind
    from enclave.attest.snp import load_report

    document = Evidence(
        kind=EvidenceKind.SEV_SNP,
        raw=load_report((SNP / "virtee-report-milan.hex").read_bytes()),
        certificates=[(SNP / "virtee-vcek-milan.der").read_bytes()],
    )
    path = tmp_path / "evidence.json"
    path.write_text(document.model_dump_json())
    assert run("verify", str(path), "--kind", "sev-snp", "--at", AT).exit_code == 0
    wrong = run("verify", str(path), "--kind", "tdx", "--at", AT)
    assert wrong.exit_code == 2 and "holds sev-snp evidence" in wrong.output


def test_tdx_quote_with_collateral():
    result = run(
        "verify",
        str(TDX / "dcapqvl-quote-v4.bin"),
        "--kind",
        "tdx",
        "--collateral",
        str(TDX / "dcapqvl-quote-v4-collateral.json"),
        "--at",
        "2025-07-01T00:00:00Z",
        "--json",
    )
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    names = {c["name"] for c in verdict["checks"] if c["status"] == "passed"}
    assert {"tdx.quote.signature", "tdx.pck.chain", "tdx.tcb.status"} <= names


def test_tdx_collateral_out_of_date_fails():
    result = run(
        "verify",
        str(TDX / "dcapqvl-quote-v4.bin"),
        "--kind",
        "tdx",
        "--collateral",
        str(TDX / "dcapqvl-quote-v4-collateral.json"),
        "--at",
        "2025-09-01T00:00:00Z",
    )
    assert result.exit_code == 1


def test_console_script_reports_domain_errors(tmp_path):
    # Through the real entry point: a broken policy file is one red line and exit 1.
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    fedtune = Path(sys.executable).with_name("fedtune")
    result = subprocess.run(
        [
            str(fedtune),
            "attest",
            "verify",
            *VIRTEE,
            "--policy",
            str(bad),
            "--policy-issuer",
            Identity.generate().fingerprint,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 1
    assert "PolicyError" in result.stderr and "not a signed release policy" in result.stderr
