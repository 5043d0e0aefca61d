"""CKKS (TenSEAL) encryption of weighted updates so the aggregator adds what it cannot read.

Roles. A session's *secret context* (parameters, public key, secret key) is made by
``generate_secret_context`` inside the key broker and released only to the session's
attested sandboxes. The aggregator gets ``public_context(secret)``: the parameters and
public key, no secret key, no relinearisation or Galois keys (addition needs none). Each
sandbox encrypts its weighted update with ``encrypt_update``; the aggregator sums the
blobs with ``add_encrypted``; sandboxes decrypt the sum with ``decrypt_average``. The
aggregator never sees the sum in the clear.

Parameters (fixed, so every party agrees without negotiating): polynomial degree
N = 8192 (4096 slots per ciphertext), coefficient modulus 60 + 60 bits (one 60-bit data
prime and the special prime; 120 bits is below the 218 that the HE standard allows for
128-bit security at N = 8192), scale 2^40.

Precision: a fresh ciphertext decrypts with an absolute error around 2^-25 (measured:
~2e-8 on unit-size values); sums of n ciphertexts add the errors (<= n * 1e-7 is a
generous bound, see tests). Headroom: a slot holds |value| < 2^19 (the 60-bit prime
minus the 40-bit scale, one bit of sign), so values are clipped to ``clip`` and weights
scaled into [0, 1] (w / max_weight) before encryption; a sum of n clients stays below
2^19 as long as n * clip < 2^19 (e.g. 65536 clients at clip 8).

Size cost: each ciphertext is 2 polynomials * 8192 coefficients * 8 bytes = 131 kB for
4096 values: 32 bytes per float (8x a float32), plus ~150 bytes of framing per
ciphertext. A vector of m values packs into ceil((m + 1) / 4096) ciphertexts (one slot
carries the weight); 1e6 floats: 245 ciphertexts, 32 MB. Encryption is the slow step
(~15-25 ms per ciphertext on one core here, so ~5 s per 1e6 floats); addition is cheap.

Packed blob: magic "FTCK" | version u8 | length u64 | count u32 | count x (size u32 |
TenSEAL-serialised CKKS vector). Parsing is strict (``CkksFormatError``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
import tenseal as ts
from numpy.typing import NDArray

from crypto.errors import CkksContextError, CkksFormatError, ZeroTotalWeightError

__all__ = [
    "COEFF_MOD_BIT_SIZES",
    "POLY_MODULUS_DEGREE",
    "SCALE_BITS",
    "SLOTS",
    "add_encrypted",
    "ciphertext_count",
    "decrypt_average",
    "decrypt_vector",
    "encrypt_update",
    "encrypt_vector",
    "generate_secret_context",
    "load_context",
    "public_context",
]

POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = (60, 60)
SCALE_BITS = 40
SLOTS = POLY_MODULUS_DEGREE // 2
MAX_SLOT_VALUE = 2.0**19
MAX_LENGTH = (1 << 32) - 2

_MAGIC = b"FTCK"
_VERSION = 1
_HEAD = struct.Struct(">4sBQI")
_SIZE = struct.Struct(">I")


def generate_secret_context() -> bytes:
    """A fresh serialised CKKS context holding the secret key (for the broker to release)."""
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES),
    )
    context.global_scale = 2.0**SCALE_BITS
    return context.serialize(
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )


def _parse_context(data: object) -> ts.Context:
    if isinstance(data, ts.Context):
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("context must be bytes or a tenseal Context")
    try:
        context = ts.context_from(bytes(data))
    except Exception as exc:  # TenSEAL raises bare ValueError/RuntimeError on bad bytes
        raise CkksContextError("does not deserialise as a TenSEAL context") from exc
    if not context.is_public() and not context.is_private():
        raise CkksContextError("context holds neither a public nor a secret key")
    key_data = context.seal_context().data.key_context_data()
    shape = (key_data.parms().poly_modulus_degree(), key_data.total_coeff_modulus_bit_count())
    if shape != (POLY_MODULUS_DEGREE, sum(COEFF_MOD_BIT_SIZES)):
        raise CkksContextError(
            f"parameters (N, modulus bits) = {shape}, expected "
            f"{(POLY_MODULUS_DEGREE, sum(COEFF_MOD_BIT_SIZES))}"
        )
    context.global_scale = 2.0**SCALE_BITS
    return context


def load_context(data: bytes, *, secret: bool) -> ts.Context:
    """Deserialise a context, refusing one that has (``secret=False``) or lacks the secret key."""
    context = _parse_context(data)
    if secret and not context.is_private():
        raise CkksContextError("a secret context is needed here, this one is public")
    if not secret and context.is_private():
        raise CkksContextError(
            "this context holds the secret key; give the aggregator the public one"
        )
    return context


def public_context(secret_context: bytes) -> bytes:
    """The aggregator's context: parameters and public key, no secret, relin or Galois keys."""
    context = load_context(secret_context, secret=True).copy()
    context.make_context_public()
    return context.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


def ciphertext_count(length: int) -> int:
    """How many ciphertexts a vector of ``length`` values packs into."""
    if not isinstance(length, int) or isinstance(length, bool):
        raise TypeError("length must be int")
    if not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"length must be in [1, {MAX_LENGTH}], got {length}")
    return math.ceil(length / SLOTS)


def _pack(length: int, parts: Sequence[bytes]) -> bytes:
    head = _HEAD.pack(_MAGIC, _VERSION, length, len(parts))
    return head + b"".join(_SIZE.pack(len(p)) + p for p in parts)


def _unpack(blob: object) -> tuple[int, list[bytes]]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError("a packed CKKS vector must be bytes")
    view = memoryview(blob).cast("B")
    if len(view) < _HEAD.size:
        raise CkksFormatError("shorter than its header")
    magic, version, length, count = _HEAD.unpack(view[: _HEAD.size])
    if magic != _MAGIC:
        raise CkksFormatError("not a fedtune packed CKKS vector")
    if version != _VERSION:
        raise CkksFormatError(f"format {version}, this build reads {_VERSION}")
    if not 1 <= length <= MAX_LENGTH or count != math.ceil(length / SLOTS):
        raise CkksFormatError(f"{count} ciphertexts cannot hold {length} values")
    parts, pos = [], _HEAD.size
    for _ in range(count):
        if pos + _SIZE.size > len(view):
            raise CkksFormatError("truncated")
        (size,) = _SIZE.unpack(view[pos : pos + _SIZE.size])
        pos += _SIZE.size
        if pos + size > len(view):
            raise CkksFormatError("truncated")
        parts.append(bytes(view[pos : pos + size]))
        pos += size
    if pos != len(view):
        raise CkksFormatError(f"{len(view) - pos} trailing bytes")
    return length, parts


def _load_vector(context: ts.Context, part: bytes) -> ts.CKKSVector:
    try:
        return ts.ckks_vector_from(context, part)
    except Exception as exc:  # TenSEAL raises bare ValueError/RuntimeError on bad bytes
        raise CkksFormatError("a ciphertext does not deserialise") from exc


def encrypt_vector(context: bytes | ts.Context, vector: NDArray[np.floating]) -> bytes:
    """Encrypt a 1-D float vector (|values| < 2^19) into a packed blob, 4096 values each."""
    ctx = _parse_context(context)
    if not isinstance(vector, np.ndarray) or vector.dtype.kind != "f" or vector.ndim != 1:
        raise TypeError("vector must be a 1-D float numpy array")
    length = len(vector)
    ciphertext_count(length)
    if not np.isfinite(vector).all():
        raise ValueError("vector contains NaN or infinite values")
    if np.abs(vector).max() >= MAX_SLOT_VALUE:
        raise ValueError(f"|values| must stay below {MAX_SLOT_VALUE:g} (CKKS headroom)")
    values = vector.astype(np.float64, copy=False)
    parts = [
        ts.ckks_vector(ctx, values[start : start + SLOTS]).serialize()
        for start in range(0, length, SLOTS)
    ]
    return _pack(length, parts)


def add_encrypted(context: bytes | ts.Context, blobs: Sequence[bytes]) -> bytes:
    """Sum packed blobs of equal length, without decrypting (the aggregator's only operation)."""
    ctx = _parse_context(context)
    blobs = list(blobs)
    if not blobs:
        raise ValueError("nothing to add")
    length, total_parts = _unpack(blobs[0])
    totals = [_load_vector(ctx, p) for p in total_parts]
    for blob in blobs[1:]:
        other_length, parts = _unpack(blob)
        if other_length != length:
            raise CkksFormatError(f"length {other_length} differs from the first blob's {length}")
        for total, part in zip(totals, parts, strict=True):
            total.add_(_load_vector(ctx, part))
    return _pack(length, [t.serialize() for t in totals])


def decrypt_vector(secret_context: bytes | ts.Context, blob: bytes) -> NDArray[np.float64]:
    """Decrypt a packed blob with the secret context."""
    ctx = _parse_context(secret_context)
    if not ctx.is_private():
        raise CkksContextError("decryption needs the secret context")
    length, parts = _unpack(blob)
    out = np.empty(length, dtype=np.float64)
    for index, part in enumerate(parts):
        values = _load_vector(ctx, part).decrypt()
        start = index * SLOTS
        expected = min(SLOTS, length - start)
        if len(values) != expected:
            raise CkksFormatError(
                f"ciphertext {index} holds {len(values)} values, expected {expected}"
            )
        out[start : start + expected] = values
    return out


def encrypt_update(
    context: bytes | ts.Context,
    update: NDArray[np.floating],
    weight: float,
    *,
    max_weight: float,
    clip: float = 8.0,
) -> bytes:
    """Encrypt a FedAvg contribution: [w/W, (w/W) * clip(x)], with w clipped to ``max_weight``."""
    for name, value in (("max_weight", max_weight), ("clip", clip)):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be finite and > 0")
    if not isinstance(weight, int | float | np.number) or isinstance(weight, bool):
        raise TypeError("weight must be a number")
    if not math.isfinite(weight) or weight < 0:
        raise ValueError("weight must be finite and >= 0")
    if not isinstance(update, np.ndarray) or update.dtype.kind != "f" or update.ndim != 1:
        raise TypeError("update must be a 1-D float numpy array")
    if not np.isfinite(update).all():
        raise ValueError("update contains NaN or infinite values")
    share = min(float(weight), float(max_weight)) / float(max_weight)
    packed = np.empty(len(update) + 1, dtype=np.float64)
    packed[0] = share
    np.clip(update, -clip, clip, out=packed[1:])
    packed[1:] *= share
    return encrypt_vector(context, packed)


def decrypt_average(
    secret_context: bytes | ts.Context, blob: bytes, *, max_weight: float
) -> tuple[NDArray[np.float64], float]:
    """Decrypt a sum of ``encrypt_update`` blobs into (weighted average, total weight)."""
    total = decrypt_vector(secret_context, blob)
    units = float(total[0])
    if units <= 2.0**-20:  # below the CKKS noise floor: no client contributed weight
        raise ZeroTotalWeightError()
    return total[1:] / units, units * max_weight
