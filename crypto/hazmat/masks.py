"""Mask streams for secure aggregation: ChaCha20 keystreams as uint32 vectors, keyed per purpose.

Why this exists: Flower's stock SecAgg+ draws masks from ``numpy.random.RandomState``
(MT19937) seeded with a 32-bit fold of the agreed key, so 2^32 guesses strip a mask.
Here every mask is the ChaCha20 keystream (RFC 8439, via ``cryptography``/OpenSSL) under
a 256-bit key that is the full HKDF-SHA256 output, read as little-endian uint32 words.
Masks are added modulo 2^32, which numpy's uint32 arithmetic does by wrapping.

Domain separation: a key is derived for exactly one (purpose, session, round, owner or
pair) by HKDF with that tuple, length-prefixed, in ``info``; so a key, and with it the
(key, nonce) pair, is never reused, and the all-zero ChaCha20 nonce and counter 0 are safe.
One stream yields at most 2^32 blocks of 64 bytes (the 32-bit block counter), i.e. 2^36
words; ``MAX_MASK_LENGTH`` keeps vectors far below that.

Speed: keystream is produced in blocks of ``BLOCK_WORDS`` words into one reused buffer
and added into the target block while both are in cache; ``MaskStreams.apply`` lets a
caller interleave its own per-block work (quantisation) with masking.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

__all__ = [
    "BLOCK_WORDS",
    "KEY_SIZE",
    "MASK_DTYPE",
    "MAX_MASK_LENGTH",
    "MaskPurpose",
    "MaskStreams",
    "apply_masks",
    "derive_mask_key",
    "mask_stream",
    "pairwise_mask_key",
    "self_mask_key",
]

KEY_SIZE = 32
MASK_DTYPE = np.dtype("<u4")
MAX_MASK_LENGTH = 1 << 32
"""Longest mask (words); the ChaCha20 block counter would allow 2^36."""

BLOCK_WORDS = 1 << 15
"""Words generated per keystream call: 128 KiB, so target block and keystream stay in L2."""

# cryptography's ChaCha20 takes a 16-byte "nonce": the 32-bit little-endian initial block
# counter followed by the 96-bit RFC 8439 nonce. Counter 0, nonce 0: each key is single-use.
_NONCE = bytes(16)
_ZEROS = bytes(4 * BLOCK_WORDS)
_SALT = b"fedtune secagg v1 mask key"
_U64 = struct.Struct(">Q")


class MaskPurpose(enum.StrEnum):
    """What a mask key is for; part of every mask key's HKDF info."""

    SELF = "self-mask"
    PAIRWISE = "pairwise-mask"


def _check_bytes(name: str, value: object, size: int | None = None) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes")
    value = bytes(value)
    if size is not None and len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return value


def _check_u64(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be int")
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{name} must fit in 64 bits unsigned, got {value}")
    return value


def derive_mask_key(
    ikm: bytes,
    *,
    purpose: MaskPurpose,
    session_id: bytes,
    round_number: int,
    ids: Sequence[int],
    context: bytes = b"",
) -> bytes:
    """Derive the 256-bit stream key for one (purpose, session, round, ids, context) tuple."""
    ikm = _check_bytes("ikm", ikm)
    if len(ikm) < KEY_SIZE:
        raise ValueError(f"ikm must carry at least {KEY_SIZE} bytes of secret, got {len(ikm)}")
    if not isinstance(purpose, MaskPurpose):
        raise TypeError("purpose must be a MaskPurpose")
    session_id = _check_bytes("session_id", session_id)
    context = _check_bytes("context", context)
    _check_u64("round_number", round_number)
    ids = [_check_u64("id", i) for i in ids]
    fields = [purpose.value.encode(), session_id, _U64.pack(round_number)]
    fields += [_U64.pack(i) for i in ids]
    fields.append(context)
    info = b"".join(struct.pack(">H", len(f)) + f for f in fields)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=_SALT, info=info).derive(ikm)


def self_mask_key(seed: bytes, *, session_id: bytes, round_number: int, owner: int) -> bytes:
    """Key of the self mask that client ``owner`` derives from its seed b."""
    return derive_mask_key(
        seed,
        purpose=MaskPurpose.SELF,
        session_id=session_id,
        round_number=round_number,
        ids=(owner,),
    )


def pairwise_mask_key(
    shared_secret: bytes,
    *,
    session_id: bytes,
    round_number: int,
    a: tuple[int, bytes],
    b: tuple[int, bytes],
) -> bytes:
    """Key of the mask two clients share; ``a``/``b`` are (id, mask public key), any order."""
    (ia, pa), (ib, pb) = sorted((a, b), key=lambda t: t[0])
    if ia == ib:
        raise ValueError("a pairwise mask needs two distinct clients")
    return derive_mask_key(
        shared_secret,
        purpose=MaskPurpose.PAIRWISE,
        session_id=session_id,
        round_number=round_number,
        ids=(ia, ib),
        context=_check_bytes("public key", pa, 32) + _check_bytes("public key", pb, 32),
    )


def _encryptor(key: bytes) -> CipherContext:
    key = _check_bytes("key", key, KEY_SIZE)
    return Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()


def _check_length(length: object) -> int:
    if not isinstance(length, int) or isinstance(length, bool):
        raise TypeError("length must be int")
    if not 0 <= length <= MAX_MASK_LENGTH:
        raise ValueError(f"length must be in [0, {MAX_MASK_LENGTH}], got {length}")
    return length


def mask_stream(key: bytes, length: int) -> NDArray[np.uint32]:
    """Return the first ``length`` words of the mask stream under ``key``."""
    length = _check_length(length)
    out = bytearray(4 * length)
    if length:
        _encryptor(key).update_into(bytes(4 * length), out)
    return np.frombuffer(out, dtype=MASK_DTYPE)


class MaskStreams:
    """A set of mask streams, each added (+) or subtracted (-), advanced block by block."""

    def __init__(self, *, add: Sequence[bytes] = (), subtract: Sequence[bytes] = ()) -> None:
        self._streams = [(_encryptor(k), np.add) for k in add]
        self._streams += [(_encryptor(k), np.subtract) for k in subtract]
        self._buffer = bytearray(4 * BLOCK_WORDS)
        self._words = np.frombuffer(self._buffer, dtype=MASK_DTYPE)
        self.position = 0
        """Words consumed so far from every stream."""

    def __len__(self) -> int:
        return len(self._streams)

    def apply(self, block: NDArray[np.uint32]) -> None:
        """Combine the next ``len(block)`` words of every stream into ``block``, in place."""
        if not isinstance(block, np.ndarray) or block.dtype != MASK_DTYPE or block.ndim != 1:
            raise TypeError("block must be a 1-D little-endian uint32 numpy array")
        if not block.flags.writeable:
            raise ValueError("block must be writable")
        total = len(block)
        if self.position + total > MAX_MASK_LENGTH:
            raise ValueError("mask streams exhausted")
        for start in range(0, total, BLOCK_WORDS):
            part = block[start : start + BLOCK_WORDS]
            words = len(part)
            zeros = memoryview(_ZEROS)[: 4 * words]
            keystream = self._words[:words]
            for encryptor, combine in self._streams:
                encryptor.update_into(zeros, self._buffer)
                combine(part, keystream, out=part)
        self.position += total


def apply_masks(
    vector: NDArray[np.uint32], *, add: Sequence[bytes] = (), subtract: Sequence[bytes] = ()
) -> None:
    """Add the streams under ``add`` and subtract those under ``subtract`` from ``vector``."""
    MaskStreams(add=add, subtract=subtract).apply(vector)
