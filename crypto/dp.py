"""Client-level differential privacy for FedAvg: L2 clipping and distributed Gaussian noise.

DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models"), with the noise added inside the sandboxes rather than by the server: each of
the n clients of a round clips its update to L2 norm C and adds N(0, sigma^2 I) with

    sigma = z * C / sqrt(n)            (``noise_std``)

so the sum of n noised updates carries N(0, (z C)^2 I), the Gaussian mechanism with
noise multiplier z on a sum of sensitivity C, while no party ever sees the sum without
noise (secure aggregation or CKKS hides the individual noised updates; each alone is
noised only by sigma, so it must never be released unmasked).

Dropouts: if only k of the n clients' updates reach the sum, its noise variance is
k (z C)^2 / n, i.e. an effective multiplier z * sqrt(k / n) (``effective_noise_multiplier``),
and the accountant must be given that, not z. To keep z whatever happens, calibrate with
n = the smallest number of survivors the round accepts (its threshold): then every
accepted round has at least z, and more noise when more clients survive.

Weights: the sensitivity C holds for the unweighted sum. With weighted FedAvg the
accountant's sensitivity is C * max_weight / (total weight); run DP rounds with equal
weights (weight 1 each) unless you account for that.

Randomness: noise never comes from ``numpy.random``. ``CryptoRandom`` reads the
ChaCha20 keystream under a key from ``os.urandom`` (the same primitive as the masks),
turns 64-bit words into uniforms with 53 random bits, and those into normals by the
Box-Muller transform, vectorised.
"""

from __future__ import annotations

import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from numpy.typing import NDArray

__all__ = [
    "CryptoRandom",
    "add_noise",
    "clip_l2",
    "effective_noise_multiplier",
    "noise_std",
    "privatize",
]

_KEY_SIZE = 32


def _check_number(name: str, value: object, *, positive: bool) -> float:
    if not isinstance(value, int | float | np.floating | np.integer) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {value}")
    return value


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be int")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("size must be int")
    if value < 0:
        raise ValueError(f"size must be >= 0, got {value}")
    return value


def _check_vector(update: object) -> NDArray[np.floating]:
    if not isinstance(update, np.ndarray) or update.dtype.kind != "f" or update.ndim != 1:
        raise TypeError("update must be a 1-D float numpy array")
    if not np.isfinite(update).all():
        raise ValueError("update contains NaN or infinite values")
    return update


class CryptoRandom:
    """Uniform and Gaussian samples from the ChaCha20 keystream under a random 256-bit key."""

    def __init__(self, *, key: bytes | None = None) -> None:
        """``key`` fixes the stream (tests only); by default it is fresh from ``os.urandom``."""
        if key is None:
            key = os.urandom(_KEY_SIZE)
        if not isinstance(key, bytes):
            raise TypeError("key must be bytes")
        if len(key) != _KEY_SIZE:
            raise ValueError(f"key must be {_KEY_SIZE} bytes")
        self._encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def words(self, size: int) -> NDArray[np.uint64]:
        """``size`` uniform 64-bit words."""
        size = _check_size(size)
        out = bytearray(8 * size)
        if size:
            self._encryptor.update_into(bytes(8 * size), out)
        return np.frombuffer(out, dtype="<u8")

    def uniform(self, size: int) -> NDArray[np.float64]:
        """``size`` uniforms in (0, 1], each with 53 random bits."""
        words = self.words(size)
        return ((words >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53

    def normal(self, size: int, *, std: float = 1.0) -> NDArray[np.float64]:
        """``size`` independent N(0, std^2) samples (Box-Muller on pairs of uniforms)."""
        std = _check_number("std", std, positive=False)
        half = (_check_size(size) + 1) // 2
        radius = np.sqrt(-2.0 * np.log(self.uniform(half)))
        angle = (2.0 * np.pi) * self.uniform(half)
        out = np.empty(2 * half, dtype=np.float64)
        np.multiply(radius, np.cos(angle), out=out[0::2])
        np.multiply(radius, np.sin(angle), out=out[1::2])
        out *= std
        return out[:size]


def clip_l2(update: NDArray[np.floating], max_norm: float) -> tuple[NDArray[np.floating], float]:
    """Scale ``update`` down to L2 norm ``max_norm`` if longer; return (clipped copy, old norm)."""
    update = _check_vector(update)
    max_norm = _check_number("max_norm", max_norm, positive=True)
    norm = float(np.linalg.norm(update.astype(np.float64, copy=False)))
    if norm <= max_norm:
        return update.copy(), norm
    scaled = update.astype(np.float64) * (max_norm / norm)
    return scaled.astype(update.dtype, copy=False), norm


def noise_std(noise_multiplier: float, clip_norm: float, num_clients: int) -> float:
    """Per-client noise std z * C / sqrt(n), so the sum of n clients' noise has std z * C."""
    z = _check_number("noise_multiplier", noise_multiplier, positive=False)
    c = _check_number("clip_norm", clip_norm, positive=True)
    return z * c / math.sqrt(_check_count("num_clients", num_clients))


def effective_noise_multiplier(noise_multiplier: float, *, planned: int, survived: int) -> float:
    """The multiplier a sum carries when ``survived`` of ``planned`` clients' noise is in it."""
    z = _check_number("noise_multiplier", noise_multiplier, positive=False)
    planned = _check_count("planned", planned)
    survived = _check_count("survived", survived)
    return z * math.sqrt(survived / planned)


def add_noise(
    update: NDArray[np.floating], std: float, *, rng: CryptoRandom | None = None
) -> NDArray[np.floating]:
    """``update`` plus N(0, std^2) per entry, in the update's dtype (a new array)."""
    update = _check_vector(update)
    std = _check_number("std", std, positive=False)
    rng = CryptoRandom() if rng is None else rng
    noisy = update.astype(np.float64) + rng.normal(len(update), std=std)
    return noisy.astype(update.dtype, copy=False)


def privatize(
    update: NDArray[np.floating],
    *,
    clip_norm: float,
    noise_multiplier: float,
    num_clients: int,
    rng: CryptoRandom | None = None,
) -> NDArray[np.floating]:
    """Clip to ``clip_norm`` and add this client's share of the distributed Gaussian noise."""
    clipped, _ = clip_l2(update, clip_norm)
    return add_noise(clipped, noise_std(noise_multiplier, clip_norm, num_clients), rng=rng)
