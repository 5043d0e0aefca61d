"""Deployment arguments are checked before anything starts; markers find our processes."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.supernode.register import try_load_public_key

from fedtune.federated.deployment import (
    MARKER_ENV,
    PROCESS_ENV,
    Deployment,
    SuperNodeSpec,
    TlsCertificates,
    find_processes,
    write_supernode_auth_key,
)
from fedtune.federated.errors import DeploymentError


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"workdir": "/tmp/x"}, TypeError, "workdir"),
    ({"tls": "cert.pem"}, TypeError, "tls"),
    ({"host": ""}, ValueError, "host"),
    ({"superlink_port": 0}, ValueError, "superlink_port"),
    ({"superlink_port": 70000}, ValueError, "superlink_port"),
    ({"superlink_port": True}, TypeError, "superlink_port"),
    ({"superlink_address": "no-port"}, ValueError, "host:port"),
    ({"superlink_address": "h:1", "superlink_port": 9}, ValueError, "not both"),
    ({"supernode_auth": True}, ValueError, "tls"),
    ({"persist_state": 1}, TypeError, "bool"),
    ({"env": {"FLWR_HOME": "/x"}}, ValueError, "FLWR_HOME"),
    ({"env": {MARKER_ENV: "x"}}, ValueError, MARKER_ENV),
    ({"env": {"A": 1}}, TypeError, "str"),
    ({"env": {"A=B": "1"}}, ValueError, "valid"),
    ({"startup_timeout_s": 0}, ValueError, "startup_timeout_s"),
    ({"stop_timeout_s": -1}, ValueError, "stop_timeout_s"),
    ({"cli_timeout_s": "10"}, TypeError, "cli_timeout_s"),
    ({"flower_bin_dir": "/usr/bin"}, TypeError, "flower_bin_dir"),
])
def test_deployment_refuses_bad_arguments(tmp_path: Path, kwargs: dict[str, object],
                                          error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"workdir": tmp_path / "d"}
    args.update(kwargs)
    workdir = args.pop("workdir")
    with pytest.raises(error, match=match):
        Deployment(workdir, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()


def test_missing_flower_executables_are_named(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="flower-superlink"):
        Deployment(tmp_path / "d", flower_bin_dir=tmp_path)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": "superlink"}, ValueError, "superlink"),
    ({"name": "flwr-cli"}, ValueError, "flwr-cli"),
    ({"name": "1alice"}, ValueError, "letter"),
    ({"name": "al ice"}, ValueError, "letter"),
    ({"name": None}, TypeError, "str"),
    ({"node_config": {"owner": None}}, TypeError, "owner"),
    ({"node_config": {"bad key": 1}}, ValueError, "key"),
    ({"node_config": [("owner", "a")]}, TypeError, "mapping"),
    ({"env": {"FLWR_HOME": "/x"}}, ValueError, "FLWR_HOME"),
    ({"env": {PROCESS_ENV: "x"}}, ValueError, PROCESS_ENV),
    ({"auth_key": "key"}, TypeError, "auth_key"),
    ({"auth_key": Path("/nonexistent/key")}, ValueError, "not a file"),
])
def test_supernode_spec_refuses(kwargs: dict[str, object], error: type[Exception],
                                match: str) -> None:
    args: dict[str, object] = {"name": "alice"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SuperNodeSpec(**args)  # type: ignore[arg-type]


def test_tls_certificates_checks_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert not TlsCertificates(ca).can_serve
    with pytest.raises(ValueError, match="not a file"):
        TlsCertificates(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="together"):
        TlsCertificates(ca, certfile=ca)
    with pytest.raises(TypeError, match="ca_certfile"):
        TlsCertificates(str(ca))  # type: ignore[arg-type]
    assert TlsCertificates(ca, ca, ca).can_serve


def test_nothing_to_join_or_submit_before_a_superlink(tmp_path: Path, harness_dir) -> None:
    with Deployment(tmp_path / "d") as deployment:
        with pytest.raises(DeploymentError, match="start_superlink"):
            deployment.add_supernode("alice")
        with pytest.raises(DeploymentError, match="start_superlink"):
            deployment.submit(harness_dir)
        with pytest.raises(ValueError, match="no process named"):
            deployment.kill("alice")
    with pytest.raises(DeploymentError, match="closed"):
        deployment.start_superlink()


def test_tls_superlink_needs_its_certificate(tmp_path: Path, tls_files) -> None:
    ca, _, _ = tls_files
    with (Deployment(tmp_path / "d", tls=TlsCertificates(ca)) as deployment,
          pytest.raises(ValueError, match="certfile")):
        deployment.start_superlink()


def test_external_superlink_is_not_started_here(tmp_path: Path) -> None:
    with Deployment(tmp_path / "d", superlink_address="10.0.0.1:9093") as deployment:
        assert deployment.superlink_address == "10.0.0.1:9093"
        config = (tmp_path / "d" / "cli" / "config.toml").read_text()
        assert 'address = "10.0.0.1:9093"' in config
        assert "insecure = true" in config
        with pytest.raises(DeploymentError, match="does not start its own"):
            deployment.start_superlink()


def test_find_processes_follows_the_markers(tmp_path: Path) -> None:
    """The marker travels to grandchildren, even ones that left our session."""
    env = dict(os.environ, **{MARKER_ENV: "test-marker-1", PROCESS_ENV: "alice"})
    # A shell that starts a grandchild in a session of its own, like Flower's SuperLink.
    child = subprocess.Popen(
        ["sh", "-c", "setsid sleep 30 & sleep 30"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(find_processes("test-marker-1")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        found = find_processes("test-marker-1", "alice")
        assert len(found) == 3, found
        assert {pid for pid, _ in found} >= {child.pid}
        assert find_processes("test-marker-1", "bob") == []
        assert find_processes("another-marker") == []
    finally:
        for pid, _ in find_processes("test-marker-1"):
            os.kill(pid, 9)
        child.wait(timeout=10)
    deadline = time.monotonic() + 10
    while find_processes("test-marker-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert find_processes("test-marker-1") == []


def test_supernode_auth_key_is_what_flower_expects(tmp_path: Path) -> None:
    public = write_supernode_auth_key(tmp_path / "keys" / "alice")
    private = tmp_path / "keys" / "alice"
    assert public == tmp_path / "keys" / "alice.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp384r1"
    # The bytes `flwr supernode register` sends are the ones the SuperNode will sign with.
    registered = try_load_public_key(public)
    assert registered == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
