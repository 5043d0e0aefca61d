"""Sealed-stream machinery (format v1): header codec, key derivation, STREAM segment nonces."""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import HeaderMalformedError, UnsupportedFormatError

# Everything below is specified in crypto/SEALED-FORMAT.md; the names follow that file.

MAGIC = b"FTSEALED"
FORMAT_VERSION = 1
# Algorithm ids reuse the numbers of the IANA HPKE registries (RFC 9180 section 7.2/7.3).
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002

DATA_KEY_SIZE = 32
KEY_ID_SIZE = 32
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
MAC_SIZE = 32

MIN_SEGMENT_SIZE = 16
MAX_SEGMENT_SIZE = 1 << 26
DEFAULT_SEGMENT_SIZE = 1 << 20
# The counter is 32 bits wide (STREAM, Hoang et al. 2015: nonce = prefix || counter || last).
MAX_SEGMENTS = 1 << 32
UNKNOWN_SIZE = (1 << 64) - 1

_BODY = struct.Struct(">8sHHHHIQ32s32s7s")
HEADER_BODY_SIZE = _BODY.size
HEADER_SIZE = HEADER_BODY_SIZE + MAC_SIZE

_KEY_ID_INFO = b"fedtune sealed v1 key id"
_HEADER_MAC_INFO = b"fedtune sealed v1 header mac"
_SEGMENT_KEY_INFO = b"fedtune sealed v1 segment key\x00"


def _hkdf(ikm: bytes, *, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _check_key(data_key: bytes) -> bytes:
    if not isinstance(data_key, bytes | bytearray | memoryview):
        raise TypeError("data_key must be bytes")
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError(f"a data key is {DATA_KEY_SIZE} bytes, got {len(data_key)}")
    return bytes(data_key)


def derive_key_id(data_key: bytes) -> bytes:
    """Return the 32-byte public commitment to ``data_key`` that sealed headers carry."""
    # A PRF output of the key: names it, commits to it, reveals nothing about it.
    return _hkdf(_check_key(data_key), salt=None, info=_KEY_ID_INFO)


def segment_count(plaintext_size: int, segment_size: int) -> int:
    """Number of segments a plaintext of this size is cut into (at least one, the final one)."""
    if plaintext_size < 0:
        raise ValueError("plaintext_size must be >= 0")
    _check_segment_size(segment_size)
    return max(1, -(-plaintext_size // segment_size))


def sealed_size(plaintext_size: int, segment_size: int) -> int:
    """Exact size in bytes of the sealed stream for a plaintext of this size."""
    return HEADER_SIZE + plaintext_size + TAG_SIZE * segment_count(plaintext_size, segment_size)


def segment_nonce(nonce_prefix: bytes, counter: int, last: bool) -> bytes:
    """The 12-byte AES-GCM nonce of segment ``counter``: prefix || counter (u32 BE) || last flag."""
    if len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise ValueError(f"nonce_prefix must be {NONCE_PREFIX_SIZE} bytes")
    if not 0 <= counter < MAX_SEGMENTS:
        raise ValueError(f"segment counter {counter} outside 0..2^32-1")
    return bytes(nonce_prefix) + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _check_segment_size(segment_size: int) -> None:
    if not isinstance(segment_size, int) or isinstance(segment_size, bool):
        raise TypeError("segment_size must be an int")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes, "
            f"got {segment_size}"
        )


@dataclass(frozen=True)
class StreamHeader:
    """The fixed 131-byte header of a sealed stream, minus its MAC."""

    segment_size: int
    plaintext_size: int | None
    key_id: bytes
    salt: bytes
    nonce_prefix: bytes
    version: int = FORMAT_VERSION
    kdf_id: int = KDF_HKDF_SHA256
    aead_id: int = AEAD_AES_256_GCM

    def __post_init__(self) -> None:
        _check_segment_size(self.segment_size)
        if self.plaintext_size is not None:
            if not 0 <= self.plaintext_size < UNKNOWN_SIZE:
                raise ValueError("plaintext_size out of range")
            if segment_count(self.plaintext_size, self.segment_size) > MAX_SEGMENTS:
                raise ValueError("plaintext too large for this segment size (2^32 segments max)")
        for name, value, size in (
            ("key_id", self.key_id, KEY_ID_SIZE),
            ("salt", self.salt, SALT_SIZE),
            ("nonce_prefix", self.nonce_prefix, NONCE_PREFIX_SIZE),
        ):
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{name} must be {size} bytes")

    @property
    def segment_count(self) -> int | None:
        """Number of segments, when the plaintext size was known at sealing time."""
        if self.plaintext_size is None:
            return None
        return segment_count(self.plaintext_size, self.segment_size)

    @property
    def sealed_size(self) -> int | None:
        """Total sealed stream size, when the plaintext size was known at sealing time."""
        if self.plaintext_size is None:
            return None
        return sealed_size(self.plaintext_size, self.segment_size)

    def encode_body(self) -> bytes:
        """The header bytes the MAC covers (everything but the MAC)."""
        size = UNKNOWN_SIZE if self.plaintext_size is None else self.plaintext_size
        return _BODY.pack(
            MAGIC,
            self.version,
            self.kdf_id,
            self.aead_id,
            0,
            self.segment_size,
            size,
            self.key_id,
            self.salt,
            self.nonce_prefix,
        )

    @classmethod
    def decode(cls, data: bytes) -> tuple[StreamHeader, bytes]:
        """Parse ``HEADER_SIZE`` bytes into (header, mac); raise on anything malformed."""
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            raise HeaderMalformedError("magic", "not a fedtune sealed stream (bad magic bytes)")
        if len(data) != HEADER_SIZE:
            raise ValueError(f"decode needs exactly {HEADER_SIZE} bytes, got {len(data)}")
        (_, version, kdf_id, aead_id, flags, seg, size, key_id, salt, prefix) = _BODY.unpack(
            data[:HEADER_BODY_SIZE]
        )
        if version != FORMAT_VERSION:
            raise UnsupportedFormatError("version", version, FORMAT_VERSION)
        if kdf_id != KDF_HKDF_SHA256:
            raise UnsupportedFormatError("kdf_id", kdf_id, KDF_HKDF_SHA256)
        if aead_id != AEAD_AES_256_GCM:
            raise UnsupportedFormatError("aead_id", aead_id, AEAD_AES_256_GCM)
        if flags != 0:
            raise HeaderMalformedError("flags", f"reserved flags must be zero, got {flags:#06x}")
        if not MIN_SEGMENT_SIZE <= seg <= MAX_SEGMENT_SIZE:
            raise HeaderMalformedError("segment_size", f"segment size {seg} is out of range")
        plaintext_size = None if size == UNKNOWN_SIZE else size
        if plaintext_size is not None and segment_count(plaintext_size, seg) > MAX_SEGMENTS:
            raise HeaderMalformedError("plaintext_size", "more segments than the counter allows")
        header = cls(
            segment_size=seg,
            plaintext_size=plaintext_size,
            key_id=key_id,
            salt=salt,
            nonce_prefix=prefix,
            version=version,
            kdf_id=kdf_id,
            aead_id=aead_id,
        )
        return header, bytes(data[HEADER_BODY_SIZE:])


class StreamKeys:
    """Per-stream subkeys derived from a data key and one header: header MAC, segment AEAD."""

    __slots__ = ("_aead", "_body", "_mac_key", "_prefix", "header")

    def __init__(self, data_key: bytes, header: StreamHeader) -> None:
        key = _check_key(data_key)
        self.header = header
        self._body = header.encode_body()
        self._prefix = header.nonce_prefix
        self._mac_key = _hkdf(key, salt=header.salt, info=_HEADER_MAC_INFO)
        # The segment key is bound to every header byte, so a segment only ever opens under
        # the exact header it was sealed with (and never under another stream's salt).
        self._aead = AESGCM(_hkdf(key, salt=header.salt, info=_SEGMENT_KEY_INFO + self._body))

    def header_mac(self) -> bytes:
        """HMAC-SHA256 over the header body under the header subkey."""
        return hmac.digest(self._mac_key, self._body, "sha256")

    def encoded_header(self) -> bytes:
        """The complete header: body followed by its MAC."""
        return self._body + self.header_mac()

    def header_mac_ok(self, mac: bytes) -> bool:
        """Constant-time check of a header MAC."""
        return hmac.compare_digest(self.header_mac(), bytes(mac))

    def seal_segment_into(
        self, counter: int, plaintext: memoryview | bytes, last: bool, out: memoryview
    ) -> None:
        """Encrypt one segment into ``out`` (exactly ``len(plaintext) + TAG_SIZE`` bytes)."""
        self._aead.encrypt_into(segment_nonce(self._prefix, counter, last), plaintext, None, out)

    def open_segment_into(
        self, counter: int, ciphertext: memoryview | bytes, last: bool, out: memoryview
    ) -> bool:
        """Decrypt one segment into ``out``; False (and ``out`` unspecified) if it does not open."""
        try:
            self._aead.decrypt_into(
                segment_nonce(self._prefix, counter, last), ciphertext, None, out
            )
        except InvalidTag:
            return False
        return True

    def locate_segment(
        self, ciphertext: memoryview | bytes, *, near: int, window: int = 8
    ) -> tuple[int, bool] | None:
        """Find the (counter, last) a misplaced segment opens under, near counter ``near``."""
        # Only called on the failure path: a few trial decryptions turn "does not open" into
        # "is segment j", which tells a reordered or dropped segment from a modified one.
        if len(ciphertext) < TAG_SIZE:
            return None
        scratch = memoryview(bytearray(len(ciphertext) - TAG_SIZE))
        first = max(0, near - window)
        last_counter = min(MAX_SEGMENTS - 1, near + window)
        for counter in sorted(range(first, last_counter + 1), key=lambda c: abs(c - near)):
            for last in (False, True):
                if self.open_segment_into(counter, ciphertext, last, scratch):
                    return counter, last
        return None
