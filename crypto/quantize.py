"""Fixed-point encoding of weighted updates as uint32 words summing modulo 2^32, with error bound.

Encoding (one client). Parameters: value clip ``c``, maximum weight ``W``, and ``n``, the
most clients whose encodings will ever be summed. With the constants

    s   = ((2^31 - 1) / n - 1) / c          value scale (units per 1.0 of weight * value)
    Q_w = floor((2^31 - 1) / n)             weight scale

a client with update x (floats, length m) and weight w >= 0 sends m + 1 words:

    word 0      q_w = round(Q_w * min(w, W) / W)                       (the weight)
    word 1 + j  v_j = round(s * (q_w / Q_w) * clip(x_j, -c, c))       (the weighted value)

each an int32 stored in two's complement as uint32. Rounding is to nearest (ties to even),
deterministic, so the bound below holds surely, not in expectation. The client's
effective weight is w' = W * q_w / Q_w (the weight it actually applied, |w' - min(w, W)|
<= W / (2 Q_w)); weights above W are clipped to W, values outside [-c, c] to +-c.

Why the sum is exact: |v_j| <= s c + 1/2 + 2^-20 (the last term covers float64 rounding in
s * (q_w/Q_w) * x, whose magnitude is below 2^31), so for k <= n clients
|sum v_j| <= n (s c + 1/2 + 2^-20) < 2^31 - 1 and sum q_w <= n Q_w <= 2^31 - 1: the wrapped
uint32 sum read as int32 is the true integer sum. No overflow is possible whatever the
inputs; that is what ``n`` is for.

Decoding the sum of k clients: T = sum q_w / Q_w (total weight in units of W) and

    average_j = (sum_i v_ij) / (s T)

Error bound (per entry, ``average_error_bound``). Against the exact weighted average of
the clipped values under the effective weights w'_i:

    |average_j - sum_i w'_i clip(x_ij) / sum_i w'_i|  <=  k (1/2 + 2^-20) / (s T) + c 2^-48

(k roundings of at most 1/2 + 2^-20 units each, divided by s T; the last term is float64
decoding). Against plaintext FedAvg with the clipped true weights min(w_i, W), add the
weight rounding: |w'_i/W - min(w_i, W)/W| <= 1/(2 Q_w) moves the average by at most
k (1/(2 Q_w)) (2c) / T. The bound grows with k^2/T: with weights far below W, T is
small and precision drops; pick W near the real largest weight. Example: c = 8, n = 10,
all 10 weights = W: s ~= 2.68e7, T = 10, error <= 1.9e-8 (+ 3.7e-8 for weight rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from crypto.errors import ZeroTotalWeightError

__all__ = ["WORD_DTYPE", "FixedPoint", "check_update"]

WORD_DTYPE = np.dtype("<u4")
_INT_DTYPE = np.dtype("<i4")
_INT_MAX = (1 << 31) - 1
_ROUNDING_SLACK = 2.0**-20
_DECODE_SLACK = 2.0**-48


def _check_positive(name: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


@dataclass(frozen=True)
class FixedPoint:
    """The fixed-point code of an aggregation: clip ``c``, max weight ``W``, up to ``n`` clients."""

    clip: float
    max_weight: float
    max_clients: int
    scale: float = field(init=False)
    weight_scale: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip", _check_positive("clip", self.clip))
        object.__setattr__(self, "max_weight", _check_positive("max_weight", self.max_weight))
        n = self.max_clients
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("max_clients must be int")
        if not 1 <= n <= 1 << 20:
            raise ValueError(f"max_clients must be in [1, 2^20], got {n}")
        scale = (_INT_MAX / n - 1) / self.clip
        if not scale > 0:
            raise ValueError("clip is too large for a useful fixed-point scale")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "weight_scale", _INT_MAX // n)

    # -- client side ------------------------------------------------------------------------

    def quantize_weight(self, weight: float) -> int:
        """Return q_w, the integer weight word for ``weight`` (clipped to max_weight)."""
        if not isinstance(weight, int | float | np.floating | np.integer) or isinstance(
            weight, bool
        ):
            raise TypeError("weight must be a number")
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be finite and >= 0, got {weight}")
        return round(self.weight_scale * min(weight, self.max_weight) / self.max_weight)

    def effective_weight(self, weight_word: int) -> float:
        """The weight a client with weight word ``weight_word`` actually applies."""
        return self.max_weight * weight_word / self.weight_scale

    def value_factor(self, weight_word: int) -> float:
        """Multiplier from a clipped value to its unrounded value word."""
        return self.scale * weight_word / self.weight_scale

    def encode_values_into(
        self,
        values: NDArray[np.floating],
        weight_word: int,
        out: NDArray[np.uint32],
        *,
        scratch: NDArray[np.float64] | None = None,
    ) -> None:
        """Write the value words of ``values`` (finite floats) into ``out`` (same length).

        ``scratch``, a float64 array of at least ``len(values)`` entries, avoids allocating
        one per call when encoding block by block.
        """
        factor = self.value_factor(weight_word)
        bound = self.clip * factor
        if scratch is None:
            scaled = np.multiply(values, factor, dtype=np.float64)
        else:
            scaled = scratch[: len(values)]
            np.multiply(values, factor, out=scaled, dtype=np.float64)
        np.clip(scaled, -bound, bound, out=scaled)
        np.rint(scaled, out=scaled)
        np.copyto(out.view(_INT_DTYPE), scaled, casting="unsafe")

    def encode(self, update: NDArray[np.floating], weight: float) -> NDArray[np.uint32]:
        """Encode ``update`` with ``weight`` as m + 1 words: the weight word, then the values."""
        update = check_update(update)
        q_w = self.quantize_weight(weight)
        out = np.empty(len(update) + 1, dtype=WORD_DTYPE)
        out[0] = q_w
        self.encode_values_into(update, q_w, out[1:])
        return out

    # -- server side ------------------------------------------------------------------------

    def decode(
        self, total: NDArray[np.uint32], *, num_summed: int
    ) -> tuple[NDArray[np.float64], float]:
        """Decode the modular sum of ``num_summed`` encodings: (weighted average, total weight)."""
        if not isinstance(total, np.ndarray) or total.dtype != WORD_DTYPE or total.ndim != 1:
            raise TypeError("total must be a 1-D little-endian uint32 array")
        if len(total) < 1:
            raise ValueError("total must hold at least the weight word")
        self._check_summed(num_summed)
        signed = total.view(_INT_DTYPE)
        weight_sum = int(signed[0])
        if weight_sum < 0:
            raise ValueError("the weight word of the sum is negative: not a sum of encodings")
        if weight_sum == 0:
            raise ZeroTotalWeightError()
        units = weight_sum / self.weight_scale
        average = np.multiply(signed[1:], 1.0 / (self.scale * units), dtype=np.float64)
        return average, units * self.max_weight

    def _check_summed(self, num_summed: object) -> int:
        if not isinstance(num_summed, int) or isinstance(num_summed, bool):
            raise TypeError("num_summed must be int")
        if not 1 <= num_summed <= self.max_clients:
            raise ValueError(f"num_summed must be in [1, {self.max_clients}], got {num_summed}")
        return num_summed

    def average_error_bound(
        self, *, num_summed: int, total_weight: float, include_weight_rounding: bool = True
    ) -> float:
        """Largest possible |decoded average - plaintext weighted average| of one entry.

        With ``include_weight_rounding`` the reference is plaintext FedAvg over the clipped
        values with the clipped true weights; without, it is the same average under the
        effective (quantised) weights. ``total_weight`` is the decoded total weight.
        """
        k = self._check_summed(num_summed)
        units = _check_positive("total_weight", total_weight) / self.max_weight
        bound = k * (0.5 + _ROUNDING_SLACK) / (self.scale * units) + self.clip * _DECODE_SLACK
        if include_weight_rounding:
            bound += k * (1.0 / (2 * self.weight_scale)) * (2 * self.clip) / units
        return bound


def check_update(update: object, length: int | None = None) -> NDArray[np.floating]:
    """Validate an update: a 1-D finite float numpy array (of ``length`` entries if given)."""
    if not isinstance(update, np.ndarray):
        raise TypeError("update must be a numpy array")
    if update.dtype.kind != "f":
        raise TypeError(f"update must be a float array, got dtype {update.dtype}")
    if update.ndim != 1:
        raise ValueError(f"update must be 1-D (flatten it), got shape {update.shape}")
    if length is not None and len(update) != length:
        raise ValueError(f"update must have {length} entries, got {len(update)}")
    if not np.isfinite(update).all():
        raise ValueError("update contains NaN or infinite values")
    return update
