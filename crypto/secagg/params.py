"""The parameters of one secure-aggregation round, their defaults and their validation.

Terms (Bell et al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead", and Flower's SecAgg+):

- ``participants``: the clients sampled for the round (their 64-bit ids, e.g. Flower
  node ids). Their count n fixes the fixed-point scale (``crypto.quantize``).
- ``degree`` k: each client masks with, and shares its secrets among, its k neighbours in
  a k-regular graph (``crypto.secagg.graph``); per-client cost grows with k, not n.
  Default: the smallest even k >= log2(n), at least 2, at most n - 1 (complete graph).
  The graph is k-vertex-connected, so survivors stay connected unless k clients drop.
- ``threshold`` t: each client's two secrets are split into k + 1 Shamir shares (its
  neighbours and itself); t of them recover a secret. t must be a strict majority of the
  k + 1 holders, so a server cannot gather t shares of a client's mask seed *and* t of its
  key from disjoint holders. The same t is the smallest group whose sum may be revealed:
  fewer than t survivors, or a survivor group cut off from the rest with fewer than t
  members, fails the round. Default: floor((k + 1) / 2) + 1.
  Dropout tolerance: each client's neighbourhood may lose k + 1 - t members; with the
  complete graph (k = n - 1) that is any n - t clients.
- ``clip`` c and ``max_weight`` W: the fixed-point code (``crypto.quantize.FixedPoint``).
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from crypto.quantize import FixedPoint

__all__ = [
    "DEFAULT_CLIP",
    "DEFAULT_MAX_WEIGHT",
    "MAX_PARTICIPANTS",
    "MAX_SESSION_ID",
    "MAX_VECTOR_LENGTH",
    "MIN_PARTICIPANTS",
    "RoundParams",
    "default_degree",
    "default_threshold",
]

DEFAULT_CLIP = 8.0
DEFAULT_MAX_WEIGHT = 1000.0
MIN_PARTICIPANTS = 3
MAX_PARTICIPANTS = 1 << 16
MAX_SESSION_ID = 64
MAX_VECTOR_LENGTH = (1 << 30) - 1
GRAPH_SEED_SIZE = 32


def default_degree(num_participants: int) -> int:
    """The neighbour count k for n participants: smallest even k >= log2(n), in [2, n - 1]."""
    if not isinstance(num_participants, int) or isinstance(num_participants, bool):
        raise TypeError("num_participants must be int")
    if num_participants < MIN_PARTICIPANTS:
        raise ValueError(f"need at least {MIN_PARTICIPANTS} participants")
    k = 2 * math.ceil(math.log2(num_participants) / 2)
    return min(num_participants - 1, max(2, k))


def default_threshold(degree: int) -> int:
    """The share threshold t for degree k: a strict majority of the k + 1 holders."""
    if not isinstance(degree, int) or isinstance(degree, bool):
        raise TypeError("degree must be int")
    if degree < 2:
        raise ValueError("degree must be at least 2")
    return (degree + 1) // 2 + 1


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be int")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


@dataclass(frozen=True)
class RoundParams:
    """Everything both sides must agree on for one round; the setup request carries it."""

    session_id: bytes
    round_number: int
    participants: tuple[int, ...]
    vector_length: int
    degree: int
    threshold: int
    clip: float
    max_weight: float
    graph_seed: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes):
            raise TypeError("session_id must be bytes")
        if not 1 <= len(self.session_id) <= MAX_SESSION_ID:
            raise ValueError(f"session_id must be 1..{MAX_SESSION_ID} bytes")
        _check_int("round_number", self.round_number, 0, (1 << 64) - 1)
        if not isinstance(self.participants, tuple):
            raise TypeError("participants must be a tuple")
        ids = self.participants
        if not set(map(type, ids)) <= {int}:
            raise TypeError("participant ids must be int")
        if ids and not (min(ids) >= 0 and max(ids) <= (1 << 64) - 1):
            raise ValueError("participant ids must be in [0, 2^64 - 1]")
        n = len(ids)
        if not MIN_PARTICIPANTS <= n <= MAX_PARTICIPANTS:
            raise ValueError(f"need {MIN_PARTICIPANTS}..{MAX_PARTICIPANTS} participants, got {n}")
        if len(set(ids)) != n or list(ids) != sorted(ids):
            raise ValueError("participants must be distinct and sorted ascending")
        _check_int("vector_length", self.vector_length, 1, MAX_VECTOR_LENGTH)
        _check_int("degree", self.degree, 2, n - 1)
        if (n * self.degree) % 2:
            raise ValueError(f"no {self.degree}-regular graph on {n} clients (n * k is odd)")
        low = (self.degree + 1) // 2 + 1
        _check_int("threshold", self.threshold, low, self.degree + 1)
        if not isinstance(self.graph_seed, bytes):
            raise TypeError("graph_seed must be bytes")
        if len(self.graph_seed) != GRAPH_SEED_SIZE:
            raise ValueError(f"graph_seed must be {GRAPH_SEED_SIZE} bytes")
        code = FixedPoint(self.clip, self.max_weight, n)  # validates clip and max_weight
        object.__setattr__(self, "clip", code.clip)
        object.__setattr__(self, "max_weight", code.max_weight)

    @classmethod
    def create(
        cls,
        session_id: bytes,
        round_number: int,
        participants: Iterable[int],
        vector_length: int,
        *,
        degree: int | None = None,
        threshold: int | None = None,
        clip: float = DEFAULT_CLIP,
        max_weight: float = DEFAULT_MAX_WEIGHT,
        graph_seed: bytes | None = None,
    ) -> RoundParams:
        """Build validated parameters, filling defaults (and a fresh random graph seed)."""
        ids = list(participants)
        if len(set(ids)) != len(ids):
            raise ValueError("participants must be distinct")
        ids.sort()
        if degree is None:
            degree = default_degree(len(ids))
        if threshold is None:
            threshold = default_threshold(degree)
        return cls(
            session_id=session_id,
            round_number=round_number,
            participants=tuple(ids),
            vector_length=vector_length,
            degree=degree,
            threshold=threshold,
            clip=clip,
            max_weight=max_weight,
            graph_seed=os.urandom(GRAPH_SEED_SIZE) if graph_seed is None else graph_seed,
        )

    @property
    def num_shares(self) -> int:
        """Holders of each client's shares: its k neighbours and itself (Flower's num_shares)."""
        return self.degree + 1

    def holder_x(self, client_id: int) -> int:
        """The Shamir x coordinate of ``client_id``: its 1-based rank among the participants."""
        i = bisect.bisect_left(self.participants, client_id)
        if i == len(self.participants) or self.participants[i] != client_id:
            raise KeyError(client_id)
        return i + 1

    def fixed_point(self) -> FixedPoint:
        """The fixed-point code of this round (scale sized for all participants)."""
        return FixedPoint(self.clip, self.max_weight, len(self.participants))
