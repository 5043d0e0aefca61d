"""crypto.digest against the official BLAKE3 test vectors, plus its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto.digest import (
    DIGEST_ALGORITHM,
    DIGEST_SIZE,
    BulkDigest,
    check_algorithm,
    digest_bytes,
    digest_file,
)
from crypto.errors import CryptoError, UnsupportedDigestError

VECTORS = json.loads((Path(__file__).parents[1] / "data/blake3/vectors.json").read_text())["cases"]


def _input(length: int) -> bytes:
    # The vectors' input: the repeating sequence 0, 1, ..., 250.
    return bytes(i % 251 for i in range(length))


def _expected(case: dict) -> bytes:
    # Each vector is a 131-byte extended output; the default digest is its first 32 bytes.
    return bytes.fromhex(case["hash"])[:DIGEST_SIZE]


def _ids(case: dict) -> str:
    return f"len{case['input_len']}"


def test_algorithm_id_and_size() -> None:
    assert DIGEST_ALGORITHM == "blake3"
    assert DIGEST_SIZE == 32
    assert BulkDigest().algorithm == "blake3"


@pytest.mark.parametrize("case", VECTORS, ids=_ids)
def test_digest_bytes_matches_official_vector(case: dict) -> None:
    assert digest_bytes(_input(case["input_len"])) == _expected(case)


@pytest.mark.parametrize("case", VECTORS, ids=_ids)
@pytest.mark.parametrize("piece", [1, 63, 1000, 4096])
def test_incremental_in_uneven_pieces_matches_vector(case: dict, piece: int) -> None:
    data = memoryview(_input(case["input_len"]))
    hasher = BulkDigest()
    for start in range(0, len(data), piece):
        hasher.update(data[start : start + piece])
    assert hasher.digest() == _expected(case)
    assert hasher.hexdigest() == _expected(case).hex()


@pytest.mark.parametrize("case", VECTORS, ids=_ids)
def test_multithreaded_matches_vector(case: dict) -> None:
    hasher = BulkDigest(bytearray(_input(case["input_len"])), max_threads=4)
    assert hasher.digest() == _expected(case)


@pytest.mark.parametrize("case", VECTORS, ids=_ids)
def test_digest_file_matches_vector(case: dict, tmp_path: Path) -> None:
    path = tmp_path / "input.bin"
    path.write_bytes(_input(case["input_len"]))
    assert digest_file(path) == _expected(case)
    assert digest_file(str(path), max_threads=2) == _expected(case)


def test_copy_is_independent() -> None:
    case = next(c for c in VECTORS if c["input_len"] == 2049)
    data = _input(2049)
    hasher = BulkDigest(data[:1000])
    fork = hasher.copy()
    hasher.update(data[1000:])
    fork.update(b"\x00")
    assert hasher.digest() == _expected(case)
    assert fork.digest() != _expected(case)


@pytest.mark.parametrize("case", [c for c in VECTORS if c["input_len"] > 0], ids=_ids)
def test_one_byte_change_changes_the_digest(case: dict) -> None:
    data = bytearray(_input(case["input_len"]))
    data[len(data) // 2] ^= 0x01
    assert digest_bytes(data) != _expected(case)
    assert digest_bytes(bytes(data[:-1])) != _expected(case)


def test_unknown_algorithm_is_refused_naming_it() -> None:
    with pytest.raises(UnsupportedDigestError) as info:
        BulkDigest(algorithm="sha256")
    assert info.value.algorithm == "sha256"
    assert info.value.supported == ["blake3"]
    assert "sha256" in str(info.value) and "blake3" in str(info.value)
    assert isinstance(info.value, CryptoError) and isinstance(info.value, ValueError)
    with pytest.raises(UnsupportedDigestError):
        digest_bytes(b"x", algorithm="BLAKE3")
    with pytest.raises(UnsupportedDigestError):
        check_algorithm("")


def test_wrong_types_and_values() -> None:
    with pytest.raises(TypeError):
        check_algorithm(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BulkDigest("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BulkDigest(max_threads=True)
    with pytest.raises(ValueError):
        BulkDigest(max_threads=0)
    with pytest.raises(TypeError):
        digest_file(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        digest_file("/nonexistent/fedtune/blob")
