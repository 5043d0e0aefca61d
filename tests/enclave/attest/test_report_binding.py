"""The report-data binding SHA-512(nonce || public key), pinned to an outside known answer."""

from __future__ import annotations

import pytest

from enclave.attest.binding import NONCE_SIZE, new_nonce, report_data_for

# SHA-512 of the 64 bytes 00 01 .. 3f, computed with `openssl dgst -sha512`.
KNOWN = bytes.fromhex(
    "ee4320ebaf3fdb4f2c832b137200c08e235e0fa7bbd0eb1740c7063ba8a0d151"
    "da77e003398e1714a955d475b05e3e950b639503b452ec185de4229bc4873949"
)


def test_known_answer():
    assert report_data_for(bytes(range(32)), bytes(range(32, 64))) == KNOWN


def test_nonce_and_key_both_matter():
    nonce, key = bytes(range(32)), bytes(range(32, 64))
    assert report_data_for(new_nonce(), key) != KNOWN
    assert report_data_for(nonce, key[:-1] + b"\x00") != KNOWN


def test_new_nonces_are_fresh():
    assert len({new_nonce() for _ in range(16)}) == 16
    assert len(new_nonce()) == NONCE_SIZE


@pytest.mark.parametrize(
    ("nonce", "key", "error"),
    [
        (bytes(31), b"k", ValueError),  # a short nonce would make nonce || key ambiguous
        (bytes(33), b"k", ValueError),
        (bytes(32), b"", ValueError),
        ("00" * 32, b"k", TypeError),
        (bytes(32), "key", TypeError),
    ],
)
def test_bad_arguments(nonce, key, error):
    with pytest.raises(error):
        report_data_for(nonce, key)
