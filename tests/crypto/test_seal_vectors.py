"""Known answers for sealed format v1, checked against a reference written from SEALED-FORMAT.md.

The reference below is deliberately naive and independent of ``crypto.hazmat.stream``:
HKDF by hand from RFC 5869 (validated on the RFC's own test case), the header assembled
byte by byte, segments with cryptography's one-shot AESGCM. The pinned hex literals were
produced by this reference and catch any silent change of the format.
"""

from __future__ import annotations

import hashlib
import hmac
import io

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.datakey import DataKey
from crypto.digest import digest_bytes
from crypto.hazmat.stream import HEADER_SIZE, StreamHeader, derive_key_id, segment_nonce
from crypto.seal import seal_with_header, unseal_to_memory

# --- reference implementation ------------------------------------------------------------------


def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def ref_header_body(seg: int, size: int | None, key: bytes, salt: bytes, prefix: bytes) -> bytes:
    size_field = 0xFFFFFFFFFFFFFFFF if size is None else size
    return (
        b"FTSEALED"
        + (1).to_bytes(2, "big")
        + (1).to_bytes(2, "big")
        + (2).to_bytes(2, "big")
        + (0).to_bytes(2, "big")
        + seg.to_bytes(4, "big")
        + size_field.to_bytes(8, "big")
        + ref_hkdf(key, b"", b"fedtune sealed v1 key id")
        + salt
        + prefix
    )


def ref_seal(data: bytes, key: bytes, seg: int, salt: bytes, prefix: bytes) -> bytes:
    body = ref_header_body(seg, len(data), key, salt, prefix)
    mac_key = ref_hkdf(key, salt, b"fedtune sealed v1 header mac")
    seg_key = ref_hkdf(key, salt, b"fedtune sealed v1 segment key\x00" + body)
    out = body + hmac.new(mac_key, body, hashlib.sha256).digest()
    chunks = [data[i : i + seg] for i in range(0, len(data), seg)] or [b""]
    aead = AESGCM(seg_key)
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        out += aead.encrypt(nonce, chunk, None)
    return out


def ref_open(blob: bytes, key: bytes) -> bytes:
    body, mac = blob[:99], blob[99:131]
    seg = int.from_bytes(body[16:20], "big")
    size = int.from_bytes(body[20:28], "big")
    salt, prefix = body[60:92], body[92:99]
    assert hmac.compare_digest(
        hmac.new(
            ref_hkdf(key, salt, b"fedtune sealed v1 header mac"), body, hashlib.sha256
        ).digest(),
        mac,
    )
    aead = AESGCM(ref_hkdf(key, salt, b"fedtune sealed v1 segment key\x00" + body))
    count = max(1, -(-size // seg))
    out, pos = b"", 131
    for i in range(count):
        length = (size - seg * (count - 1) if i == count - 1 else seg) + 16
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if i == count - 1 else b"\x00")
        out += aead.decrypt(nonce, blob[pos : pos + length], None)
        pos += length
    assert pos == len(blob)
    return out


# --- the reference itself, against RFC 5869 ----------------------------------------------------


def test_reference_hkdf_matches_rfc5869_test_case_1() -> None:
    # RFC 5869 appendix A.1.
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = ref_hkdf(ikm, salt, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_reference_hkdf_matches_rfc5869_test_case_3_empty_salt() -> None:
    # RFC 5869 appendix A.3: salt and info empty (our key id derivation has no salt).
    okm = ref_hkdf(bytes.fromhex("0b" * 22), b"", b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


# --- pinned known answers ----------------------------------------------------------------------

KEY = bytes(range(32))
SALT = bytes(range(0x40, 0x60))
PREFIX = bytes.fromhex("a0a1a2a3a4a5a6")
PLAINTEXT = b"fedtune sealed format v1 known-answer plaintext: " + bytes(range(200))
SEG = 64

# Produced by ref_header_body/ref_seal above; any change here is a format change (new version).
KEY_ID_HEX = "736e043eea3a041a717a735fd28b2beecfd704bb629007f0d0e3a45fe57bd369"
BLOB_SHA256 = "bbd69a384e8415bf5a6cb45a6341b95c22f918a04400a83fa5aab4004741062e"
# The manifest's digest of the same bytes (manifest version 2: BLAKE3, checked against the
# official BLAKE3 vectors in test_digest.py).
BLOB_BLAKE3 = "cd0d5c2bece40dac748415181cce5daf0775f9c5b78d6773252822115c4d8b76"


def _header() -> StreamHeader:
    return StreamHeader(
        segment_size=SEG,
        plaintext_size=len(PLAINTEXT),
        key_id=derive_key_id(KEY),
        salt=SALT,
        nonce_prefix=PREFIX,
    )


def test_key_id_of_a_fixed_key() -> None:
    assert derive_key_id(KEY) == ref_hkdf(KEY, b"", b"fedtune sealed v1 key id")
    assert DataKey(KEY).key_id == derive_key_id(KEY).hex() == KEY_ID_HEX


def test_segment_nonce_layout() -> None:
    assert segment_nonce(PREFIX, 0, False).hex() == "a0a1a2a3a4a5a6" + "00000000" + "00"
    assert segment_nonce(PREFIX, 2, True).hex() == "a0a1a2a3a4a5a6" + "00000002" + "01"
    assert segment_nonce(PREFIX, 2**32 - 1, False).hex() == "a0a1a2a3a4a5a6" + "ffffffff" + "00"
    with pytest.raises(ValueError):
        segment_nonce(PREFIX, 2**32, False)


def test_header_body_encoding() -> None:
    header = _header()
    assert header.encode_body() == ref_header_body(SEG, len(PLAINTEXT), KEY, SALT, PREFIX)
    assert header.encode_body()[:28].hex() == (
        "46545345414c454400010001000200000000004000000000000000f9"
    )
    unknown = StreamHeader(
        segment_size=SEG,
        plaintext_size=None,
        key_id=derive_key_id(KEY),
        salt=SALT,
        nonce_prefix=PREFIX,
    )
    assert unknown.encode_body()[20:28] == b"\xff" * 8


def test_whole_sealed_stream_matches_the_reference() -> None:
    out = io.BytesIO()
    result = seal_with_header(io.BytesIO(PLAINTEXT), out, DataKey(KEY), _header())
    blob = out.getvalue()
    expected = ref_seal(PLAINTEXT, KEY, SEG, SALT, PREFIX)
    assert blob == expected
    assert len(blob) == HEADER_SIZE + len(PLAINTEXT) + 16 * 4
    assert hashlib.sha256(blob).hexdigest() == BLOB_SHA256
    assert result.digest_algorithm == "blake3"
    assert result.ciphertext_digest == digest_bytes(expected).hex() == BLOB_BLAKE3


def test_reference_reader_opens_what_we_seal_and_we_open_what_it_seals() -> None:
    out = io.BytesIO()
    seal_with_header(io.BytesIO(PLAINTEXT), out, DataKey(KEY), _header())
    assert ref_open(out.getvalue(), KEY) == PLAINTEXT
    theirs = ref_seal(PLAINTEXT, KEY, SEG, SALT, PREFIX)
    assert bytes(unseal_to_memory(io.BytesIO(theirs), DataKey(KEY))) == PLAINTEXT


def test_seal_with_header_refuses_a_header_for_another_key() -> None:
    with pytest.raises(ValueError):
        seal_with_header(io.BytesIO(b""), io.BytesIO(), DataKey(bytes(32)), _header())
