"""Initial tensor values derived from a session seed and the tensor's name, the same everywhere.

Every owner's sandbox must start round 1 from bit-identical adapter and head weights, or
FedAvg averages updates taken from different points. Drawing them from torch's global RNG
would tie that to module construction order and to everything else that consumed random
numbers first; here each tensor gets its own NumPy PCG64 stream keyed by (seed, SHA-256 of
its name), which is platform independent and order independent.
"""

from __future__ import annotations

import hashlib

import numpy as np

MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> int:
    """``seed`` if it is an int in [0, 2**63 - 1]; TypeError / ValueError otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63 - 1], got {seed}")
    return seed


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    """An independent random stream for the tensor called ``name`` under session ``seed``."""
    check_seed(seed)
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def seeded_normal(seed: int, name: str, shape: tuple[int, ...], std: float) -> np.ndarray:
    """float32 N(0, std^2) values for tensor ``name``."""
    return (tensor_rng(seed, name).standard_normal(shape) * std).astype(np.float32)


def seeded_uniform(seed: int, name: str, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """float32 U(-bound, bound) values for tensor ``name``."""
    return tensor_rng(seed, name).uniform(-bound, bound, shape).astype(np.float32)
