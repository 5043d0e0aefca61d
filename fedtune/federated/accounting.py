"""Privacy accounting for client-level DP-FedAvg: epsilon spent after each round (Opacus RDP).

What is protected. Client-level DP (McMahan et al. 2018, "Learning Differentially Private
Recurrent Language Models"): neighbouring sessions differ in *all* records of one data
owner, so epsilon bounds what the sequence of released aggregates reveals about any one
owner's participation and data, not about one record.

The mechanism per round. Each sampled sandbox clips its update delta to L2 norm C and adds
its share of Gaussian noise (``crypto.dp``); the aggregate carries N(0, (z C)^2 I) in total,
the Gaussian mechanism with noise multiplier z on a sum of sensitivity C. That is exactly
what Opacus' RDP accountant (Mironov 2017; Mironov, Talwar, Zhang 2019) composes, round by
round: one "step" per round with that z and a sampling rate q.

Distributed noise changes nothing in the accounting as long as the summed noise really has
std z C: the parties see only the masked sum (secure aggregation or CKKS), never a single
noised update, and the sandboxes' noise shares are secret to them. The neighbouring
relation is "zero-out" (Kairouz et al. 2021): the owner's update is replaced by zero while
its sandbox still adds its noise share, for which the Poisson-subsampled Gaussian analysis
is the same as add/remove. What *does* change the accounting:

- Dropouts. If only k of the n sandboxes the noise was calibrated for reach the sum, it
  carries z sqrt(k / n) (``crypto.dp.effective_noise_multiplier``). ``record_round`` takes
  ``calibrated_for`` and ``noised`` and accounts the effective multiplier.
- Weighted FedAvg. The sensitivity C holds for the unweighted sum; with example-count
  weights it is C max_weight / total_weight. Run DP rounds with equal weights.
- Colluding parties. A party that knows some sandboxes' noise shares can subtract them;
  the accounting assumes none does (sandboxes are attested, their noise comes from a
  cryptographic RNG inside them).

Sampling. Amplification by subsampling (q < 1 makes each round cheaper) is proved for
Poisson sampling, each owner in a round independently with probability q. Flower samples a
fixed number of owners uniformly, for which accounting it as Poisson with q = sampled /
total is the usual approximation (DP-FedAvg does so), not a proof. So by default this
accountant claims no amplification: every round is accounted at q = 1, which is exact when
every owner takes part and an upper bound for any sampling scheme (a round that did not
sample an owner costs it nothing). ``amplify_by_sampling=True`` opts into q = sampled /
total.

Conversion to (epsilon, delta) is Opacus' ``get_privacy_spent`` (the improved conversion of
Balle et al. 2020, as in Google's dp-accounting), minimised over the RDP orders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier

from crypto.dp import effective_noise_multiplier

__all__ = [
    "DEFAULT_ORDERS",
    "DpFedAvgAccountant",
    "RoundCharge",
    "noise_multiplier_for",
]

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 256, 512, 1024]
)
"""RDP orders searched: Opacus' defaults plus large ones (tight for few rounds with large z).

Every order gives a valid bound; more orders can only make the reported epsilon smaller.
"""


def _check_number(name: str, value: object) -> float:
    if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _check_count(name: str, value: object, *, minimum: int = 1) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_delta(delta: object) -> float:
    delta = _check_number("delta", delta)
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}; a common choice is 1 / owners^1.1")
    return delta


def _check_orders(orders: object) -> tuple[float, ...]:
    if isinstance(orders, str | bytes) or not isinstance(orders, Sequence):
        raise TypeError("orders must be a sequence of numbers")
    checked = tuple(_check_number("every RDP order", o) for o in orders)
    if not checked:
        raise ValueError("orders must hold at least one RDP order")
    bad = [o for o in checked if not (o > 1.0 and math.isfinite(o))]
    if bad:
        raise ValueError(f"RDP orders must be finite and > 1, got {bad[:3]}")
    return checked


@dataclass(frozen=True, slots=True)
class RoundCharge:
    """What one round cost: the multiplier the aggregate carried and the rate it was sampled at."""

    round: int
    noise_multiplier: float  # effective: after dropouts
    sample_rate: float  # as accounted (1.0 unless amplification by sampling was claimed)
    sampled: int
    total_owners: int


class DpFedAvgAccountant:
    """Epsilon spent by client-level DP-FedAvg over a session's rounds (Opacus' RDP analysis)."""

    def __init__(
        self,
        total_owners: int,
        *,
        amplify_by_sampling: bool = False,
        orders: Sequence[float] = DEFAULT_ORDERS,
    ) -> None:
        """``total_owners``: the owners rounds sample from; see the module text for the rest."""
        self._total = _check_count("total_owners", total_owners)
        if not isinstance(amplify_by_sampling, bool):
            raise TypeError("amplify_by_sampling must be a bool")
        self._amplify = amplify_by_sampling
        self._orders = _check_orders(orders)
        self._rdp = np.zeros(len(self._orders), dtype=np.float64)
        self._charges: list[RoundCharge] = []
        self._cache: dict[tuple[float, float], np.ndarray] = {}

    def __repr__(self) -> str:
        return (
            f"DpFedAvgAccountant(total_owners={self._total}, rounds={len(self._charges)}, "
            f"amplify_by_sampling={self._amplify})"
        )

    @property
    def total_owners(self) -> int:
        """The number of owners rounds sample from."""
        return self._total

    @property
    def rounds(self) -> int:
        """Rounds accounted so far."""
        return len(self._charges)

    @property
    def charges(self) -> tuple[RoundCharge, ...]:
        """Every accounted round, in order."""
        return tuple(self._charges)

    def record_round(
        self,
        noise_multiplier: float,
        *,
        sampled: int,
        calibrated_for: int | None = None,
        noised: int | None = None,
    ) -> RoundCharge:
        """Account one released aggregate; returns what it was charged at.

        ``noise_multiplier`` is the z the sandboxes were configured with; ``sampled`` the
        owners sampled for the round; ``calibrated_for`` the n each sandbox divided its noise
        by (``crypto.dp.noise_std``; default ``sampled``); ``noised`` how many sandboxes'
        noise reached the released sum (default ``sampled``: nobody dropped). The round is
        charged at the effective multiplier z sqrt(noised / calibrated_for).
        """
        z = _check_number("noise_multiplier", noise_multiplier)
        if not (math.isfinite(z) and z >= 0):
            raise ValueError(f"noise_multiplier must be finite and >= 0, got {z}")
        sampled = _check_count("sampled", sampled)
        if sampled > self._total:
            raise ValueError(
                f"sampled ({sampled}) exceeds the owners rounds sample from ({self._total})"
            )
        calibrated = (
            sampled if calibrated_for is None else _check_count("calibrated_for", calibrated_for)
        )
        survived = sampled if noised is None else _check_count("noised", noised)
        if survived > sampled:
            raise ValueError(
                f"noised ({survived}) cannot exceed the owners sampled for the round ({sampled})"
            )
        effective = effective_noise_multiplier(z, planned=calibrated, survived=survived)
        rate = sampled / self._total if self._amplify else 1.0
        self._rdp = self._rdp + self._round_rdp(effective, rate)
        charge = RoundCharge(
            round=len(self._charges) + 1,
            noise_multiplier=effective,
            sample_rate=rate,
            sampled=sampled,
            total_owners=self._total,
        )
        self._charges.append(charge)
        return charge

    def _round_rdp(self, noise_multiplier: float, rate: float) -> np.ndarray:
        # Rounds mostly repeat one (z, q); the subsampled-Gaussian RDP at large integer
        # orders costs a sum over the order's binomial terms, so compute each pair once.
        key = (noise_multiplier, rate)
        if key not in self._cache:
            self._cache[key] = np.asarray(
                rdp_analysis.compute_rdp(
                    q=rate, noise_multiplier=noise_multiplier, steps=1, orders=list(self._orders)
                ),
                dtype=np.float64,
            )
        return self._cache[key]

    def rdp(self) -> tuple[float, ...]:
        """The composed RDP guarantee at each of ``orders`` (inf where unbounded)."""
        return tuple(float(v) for v in self._rdp)

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far for ``delta`` (0.0 before any round, inf without noise)."""
        return self.epsilon_and_order(delta)[0]

    def epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(epsilon, the RDP order that gave it) for ``delta``; the order is nan when unbounded."""
        delta = _check_delta(delta)
        if not self._charges:
            return 0.0, math.nan
        if not np.isfinite(self._rdp).any():  # a round without noise: nothing is bounded
            return math.inf, math.nan
        eps, order = rdp_analysis.get_privacy_spent(
            orders=list(self._orders), rdp=self._rdp, delta=delta
        )
        return float(eps), float(order)


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    *,
    rounds: int,
    sample_rate: float = 1.0,
    tolerance: float = 0.01,
) -> float:
    """The smallest z (within ``tolerance`` in epsilon) keeping ``rounds`` rounds within budget."""
    target = _check_number("target_epsilon", target_epsilon)
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target_epsilon must be finite and > 0, got {target}")
    delta = _check_delta(delta)
    rounds = _check_count("rounds", rounds)
    rate = _check_number("sample_rate", sample_rate)
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {rate}")
    tol = _check_number("tolerance", tolerance)
    if not 0.0 < tol < target:
        raise ValueError(f"tolerance must be in (0, target_epsilon), got {tol}")
    return float(
        get_noise_multiplier(
            target_epsilon=target,
            target_delta=delta,
            sample_rate=rate,
            steps=rounds,
            accountant="rdp",
            epsilon_tolerance=tol,
            alphas=list(DEFAULT_ORDERS),
        )
    )
