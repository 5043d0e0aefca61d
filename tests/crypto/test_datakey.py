"""Data keys: ids that commit without revealing, 0600 key files, refusals of unsafe files."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest

from crypto.datakey import DataKey
from crypto.errors import KeyFileError


def _reference_key_id(key: bytes) -> str:
    # HKDF-SHA256 (RFC 5869) by hand: extract with a zero salt, one expand block.
    prk = hmac.new(bytes(32), key, hashlib.sha256).digest()
    return hmac.new(prk, b"fedtune sealed v1 key id\x01", hashlib.sha256).hexdigest()


def test_key_id_is_the_hkdf_commitment() -> None:
    key = DataKey(bytes(32))
    assert key.key_id == _reference_key_id(bytes(32))
    assert key.short_id == key.key_id[:16]
    assert bytes(32).hex() not in key.key_id


def test_generated_keys_differ_and_ids_differ() -> None:
    one, two = DataKey.generate(), DataKey.generate()
    assert one != two and one.key_id != two.key_id
    assert DataKey(one.raw) == one and hash(DataKey(one.raw)) == hash(one)


def test_save_is_0600_and_load_round_trips(tmp_path) -> None:
    key = DataKey.generate()
    path = tmp_path / "keys" / f"{key.key_id}.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DataKey.load(path) == key
    assert b"FEDTUNE DATA KEY" in path.read_bytes()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_load_refuses_readable_by_others(tmp_path, mode: int) -> None:
    path = tmp_path / "k.key"
    DataKey.generate().save(path)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        DataKey.load(path)
    assert "chmod 600" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"-----BEGIN FEDTUNE DATA KEY-----\n!!!\n-----END FEDTUNE DATA KEY-----\n",
        b"-----BEGIN FEDTUNE DATA KEY-----\nAAAA\n-----END FEDTUNE DATA KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_load_refuses_malformed_files(tmp_path, content: bytes) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        DataKey.load(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(KeyFileError):
        DataKey.load(tmp_path / "absent.key")


def test_repr_never_shows_the_key() -> None:
    key = DataKey(bytes(range(32)))
    assert key.raw.hex() not in repr(key)
    assert key.short_id in repr(key)


def test_validation() -> None:
    with pytest.raises(ValueError):
        DataKey(bytes(31))
    with pytest.raises(TypeError):
        DataKey("00" * 32)  # type: ignore[arg-type]
