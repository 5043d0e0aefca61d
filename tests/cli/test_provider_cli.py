"""``fedtune provider seal|verify|identity`` and ``fedtune demo``, run as a user runs them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save_file

from crypto.datakey import DataKey
from crypto.digest import digest_bytes
from crypto.hazmat.stream import HEADER_SIZE
from fedtune.cli.main import main
from fedtune.provider import unseal_artifact

FEDTUNE = str(Path(sys.executable).parent / "fedtune")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    rng = np.random.default_rng(7)
    save_file(
        {
            "layer.0.weight": rng.standard_normal((64, 32)).astype(np.float32),
            "layer.0.bias": rng.standard_normal(32).astype(np.float32),
        },
        root / "model.safetensors",
    )
    (root / "config.json").write_text('{"model_type": "toy"}')
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main")
    return root


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    """Run ``fedtune ARGS`` in-process through the real entry point; return (code, out, err)."""
    monkeypatch.setenv("FEDTUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["fedtune", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return exited.value.code or 0, captured.out, captured.err

    return run


def _seal(cli, model_dir: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return cli("provider", "seal", str(model_dir), "--name", "acme/base", "--out", str(out), *extra)


def test_seal_writes_artifact_and_key_and_verify_passes(cli, model_dir, tmp_path) -> None:
    out = tmp_path / "sealed"
    code, stdout, stderr = _seal(cli, model_dir, out, "--segment-size", "4KiB")
    assert code == 0, stderr
    assert "Created a new provider identity" in stderr
    assert ".git/" in stderr  # hidden entries are left out, and the user is told
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.sealed"]
    key_id = stdout.strip().splitlines()[-1].removeprefix("data key id: ")
    key_file = tmp_path / "home" / "provider" / "keys" / f"{key_id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home" / "identity.pem").stat().st_mode) == 0o600
    manifest = json.loads((out / "manifest.json").read_text())["manifest"]
    assert manifest["data_key_id"] == key_id
    assert manifest["segment_size"] == 4096
    assert [f["path"] for f in manifest["files"]] == ["config.json", "model.safetensors"]

    code, stdout, stderr = cli("provider", "verify", str(out))
    assert code == 0, stderr
    assert "intact" in stdout
    assert "no --provider key given" in stderr

    # The stored key really opens it, and the weights come back bit for bit.
    unsealed = unseal_artifact(out, DataKey.load(key_file))
    restored = load_safetensors(bytes(unsealed.files["model.safetensors"]))
    original = load_safetensors((model_dir / "model.safetensors").read_bytes())
    assert restored.keys() == original.keys()
    assert all(np.array_equal(restored[k], original[k]) for k in original)


def test_verify_with_a_pinned_provider_key(cli, model_dir, tmp_path) -> None:
    out = tmp_path / "sealed"
    assert _seal(cli, model_dir, out)[0] == 0
    pub = tmp_path / "provider.pem"
    code, stdout, _ = cli("provider", "identity", "--export-public", str(pub))
    assert code == 0 and "ed25519:" in stdout
    code, stdout, stderr = cli("provider", "verify", str(out), "--provider", str(pub))
    assert code == 0 and "pinned key" in stdout and "no --provider" not in stderr
    # Another provider's key: refused, naming the field.
    other = tmp_path / "other-home"
    code, _, _ = cli("provider", "identity", "--home", str(other), "--export-public", str(pub))
    assert code == 0
    code, _, stderr = cli("provider", "verify", str(out), "--provider", str(pub))
    assert code == 1
    assert "ManifestMismatchError" in stderr and "provider_public_key" in stderr


def _sealed(cli, model_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sealed"
    code, _, stderr = _seal(cli, model_dir, out, "--segment-size", "4KiB")
    assert code == 0, stderr
    return out


def test_flipped_blob_byte_fails_with_the_digest(cli, model_dir, tmp_path) -> None:
    out = _sealed(cli, model_dir, tmp_path)
    blob = bytearray((out / "model.sealed").read_bytes())
    blob[HEADER_SIZE + 5000] ^= 0x10
    (out / "model.sealed").write_bytes(bytes(blob))
    code, stdout, stderr = cli("provider", "verify", str(out))
    assert code == 1
    assert "ciphertext_digest" in stderr and "intact" not in stdout
    # Both digests are named: the signed one and the BLAKE3 of the bytes on disk.
    flat = "".join(stderr.split())
    signed = json.loads((out / "manifest.json").read_text())["manifest"]
    assert signed["digest_algorithm"] == "blake3"
    assert signed["ciphertext_digest"] in flat
    assert digest_bytes(bytes(blob)).hex() in flat


def test_truncated_and_extended_blob(cli, model_dir, tmp_path) -> None:
    out = _sealed(cli, model_dir, tmp_path)
    blob = (out / "model.sealed").read_bytes()
    (out / "model.sealed").write_bytes(blob[:-100])
    code, _, stderr = cli("provider", "verify", str(out))
    assert code == 1 and "sealed_size" in stderr and "truncated" in stderr
    (out / "model.sealed").write_bytes(blob + b"extra")
    code, _, stderr = cli("provider", "verify", str(out))
    assert code == 1 and "sealed_size" in stderr and "extra bytes" in stderr


def test_altered_blob_header_names_the_field(cli, model_dir, tmp_path) -> None:
    out = _sealed(cli, model_dir, tmp_path)
    blob = bytearray((out / "model.sealed").read_bytes())
    blob[30] ^= 0x01  # inside the key id
    (out / "model.sealed").write_bytes(bytes(blob))
    code, _, stderr = cli("provider", "verify", str(out))
    assert code == 1 and "data_key_id" in stderr


def test_altered_manifest_fails_the_signature(cli, model_dir, tmp_path) -> None:
    out = _sealed(cli, model_dir, tmp_path)
    doc = json.loads((out / "manifest.json").read_text())
    doc["manifest"]["model_version"] = "2"
    (out / "manifest.json").write_text(json.dumps(doc))
    code, _, stderr = cli("provider", "verify", str(out))
    assert code == 1 and "ManifestSignatureError" in stderr


def test_malformed_or_missing_pieces(cli, model_dir, tmp_path) -> None:
    out = _sealed(cli, model_dir, tmp_path)
    manifest = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(manifest[:-40])
    code, _, stderr = cli("provider", "verify", str(out))
    assert code == 1 and "ManifestFormatError" in stderr
    (out / "manifest.json").write_text(manifest)
    (out / "model.sealed").unlink()
    code, _, stderr = cli("provider", "verify", str(out))
    assert code == 1 and "ArtifactError" in stderr and "model.sealed" in stderr
    code, _, stderr = cli("provider", "verify", str(tmp_path / "nowhere"))
    assert code == 1 and "no manifest.json" in stderr


def test_seal_refuses_to_overwrite_without_force(cli, model_dir, tmp_path) -> None:
    out = _sealed(cli, model_dir, tmp_path)
    first = (out / "manifest.json").read_bytes()
    code, _, stderr = _seal(cli, model_dir, out)
    assert code == 1 and "--force" in stderr
    assert (out / "manifest.json").read_bytes() == first
    code, _, stderr = _seal(cli, model_dir, out, "--force")
    assert code == 0, stderr
    assert (out / "manifest.json").read_bytes() != first
    assert cli("provider", "verify", str(out))[0] == 0


def test_seal_refusals(cli, model_dir, tmp_path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "weights.bin").write_bytes(b"pickle")
    code, _, stderr = _seal(cli, empty, tmp_path / "o1")
    assert code == 1 and "ModelDirError" in stderr and "safetensors" in stderr
    code, _, stderr = _seal(cli, model_dir, model_dir / "inside")
    assert code == 1 and "inside the model directory" in stderr
    code, _, stderr = _seal(cli, model_dir, tmp_path / "o2", "--segment-size", "8")
    assert code == 2 and "segment size" in stderr
    (model_dir / "broken.safetensors").write_bytes(b"\x10" + bytes(7) + b"{not json}")
    code, _, stderr = _seal(cli, model_dir, tmp_path / "o3")
    assert code == 1 and "broken.safetensors" in stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3" / "manifest.json").exists()


def test_world_readable_identity_is_refused(cli, model_dir, tmp_path) -> None:
    assert cli("provider", "identity")[0] == 0
    os.chmod(tmp_path / "home" / "identity.pem", 0o644)
    code, _, stderr = _seal(cli, model_dir, tmp_path / "sealed")
    assert code == 1 and "KeyFileError" in stderr and "chmod 600" in stderr
    assert not (tmp_path / "sealed").exists()


def test_real_entry_point_exit_codes(model_dir, tmp_path) -> None:
    """The installed ``fedtune`` script: 0 when intact, 1 with the reason when altered."""
    env = {**os.environ, "FEDTUNE_HOME": str(tmp_path / "home"), "COLUMNS": "250"}
    out = tmp_path / "sealed"
    run = subprocess.run(
        [FEDTUNE, "provider", "seal", str(model_dir), "--name", "acme/base", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    verify = [FEDTUNE, "provider", "verify", str(out)]
    ok = subprocess.run(verify, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0 and "intact" in ok.stdout
    with open(out / "model.sealed", "r+b") as handle:
        handle.seek(HEADER_SIZE + 10)
        byte = handle.read(1)
        handle.seek(HEADER_SIZE + 10)
        handle.write(bytes([byte[0] ^ 1]))
    bad = subprocess.run(verify, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 1
    assert "error:" in bad.stderr and "ciphertext_digest" in bad.stderr

