"""The sandbox runtime measurement: reproducible from a checkout, sensitive to every code byte."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from enclave.attest.measurement import MEASUREMENT_SIZE, measured_files, runtime_measurement

REPO = Path(__file__).resolve().parents[3]


def _reference(files: dict[str, bytes]) -> bytes:
    # The encoding as the module documents it, written out independently.
    outer = hashlib.sha384(b"fedtune/v1 sandbox-runtime-measurement\x00")
    outer.update(len(files).to_bytes(4, "big"))
    for name in sorted(files, key=lambda n: n.encode()):
        outer.update(len(name.encode()).to_bytes(4, "big") + name.encode())
        outer.update(hashlib.sha384(files[name]).digest())
    return outer.digest()


def _tree(root: Path, files: dict[str, bytes], order: list[str]) -> None:
    for rel in order:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])


FILES = {
    "pkg/__init__.py": b'"""pkg."""\n',
    "pkg/a.py": b"A = 1\n",
    "pkg/sub/b.py": b"B = 2\n",
    "pkg/sub/root.pem": b"-----BEGIN CERTIFICATE-----\n",
    "pkg/data.json": b"{}",
}


def test_matches_the_documented_encoding(tmp_path):
    _tree(tmp_path, FILES, list(FILES))
    # Not measured: caches, compiled files, docs.
    (tmp_path / "pkg/__pycache__").mkdir()
    (tmp_path / "pkg/__pycache__/a.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "pkg/README.md").write_bytes(b"docs")
    expected = _reference({k: v for k, v in FILES.items()})
    assert runtime_measurement([tmp_path / "pkg"]) == expected


def test_independent_of_creation_order(tmp_path):
    _tree(tmp_path / "one", FILES, list(FILES))
    _tree(tmp_path / "two", FILES, list(reversed(FILES)))
    assert runtime_measurement([tmp_path / "one/pkg"]) == runtime_measurement(
        [tmp_path / "two/pkg"]
    )


def test_default_roots_are_this_checkouts_crypto_and_enclave():
    names = [name for name, _ in measured_files([REPO / "crypto", REPO / "enclave"])]
    assert "enclave/attest/measurement.py" in names
    assert "crypto/identity.py" in names
    assert "enclave/attest/roots/milan.pem" in names
    assert runtime_measurement() == runtime_measurement([REPO / "crypto", REPO / "enclave"])
    assert len(runtime_measurement()) == MEASUREMENT_SIZE


def test_one_changed_byte_in_a_copy_changes_it(tmp_path):
    for pkg in ("crypto", "enclave"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    roots = [tmp_path / "crypto", tmp_path / "enclave"]
    before = runtime_measurement(roots)
    assert before == runtime_measurement([REPO / "crypto", REPO / "enclave"])
    target = tmp_path / "enclave/attest/verify.py"
    data = bytearray(target.read_bytes())
    data[200] ^= 0x01
    target.write_bytes(bytes(data))
    assert runtime_measurement(roots) != before


def test_renaming_or_adding_a_file_changes_it(tmp_path):
    _tree(tmp_path, FILES, list(FILES))
    before = runtime_measurement([tmp_path / "pkg"])
    (tmp_path / "pkg/a.py").rename(tmp_path / "pkg/c.py")
    renamed = runtime_measurement([tmp_path / "pkg"])
    assert renamed != before
    (tmp_path / "pkg/extra.py").write_bytes(b"")
    assert runtime_measurement([tmp_path / "pkg"]) != renamed


def test_bad_roots(tmp_path):
    with pytest.raises(TypeError):
        runtime_measurement(tmp_path)  # a single path, not a sequence
    with pytest.raises(ValueError):
        runtime_measurement([])
    with pytest.raises(ValueError):
        runtime_measurement([tmp_path / "missing"])
    _tree(tmp_path / "x", FILES, list(FILES))
    _tree(tmp_path / "y", FILES, list(FILES))
    with pytest.raises(ValueError, match="both provide"):
        runtime_measurement([tmp_path / "x/pkg", tmp_path / "y/pkg"])
