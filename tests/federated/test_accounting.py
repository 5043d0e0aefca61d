"""The DP-FedAvg accountant against published values, closed forms and its own invariants."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from crypto.dp import effective_noise_multiplier
from fedtune.federated.accounting import (
    DEFAULT_ORDERS,
    DpFedAvgAccountant,
    noise_multiplier_for,
)

# Opacus' own default orders, for the values pinned from Opacus' test suite.
OPACUS_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def rounds_of(accountant: DpFedAvgAccountant, count: int, z: float, sampled: int) -> None:
    for _ in range(count):
        accountant.record_round(z, sampled=sampled)


# -- known answers from outside ------------------------------------------------------------


def test_opacus_published_rdp_epsilon():
    # pytorch/opacus opacus/tests/accountants_test.py::test_rdp_accountant: z = 1.5,
    # q = 0.04, int(90 / 0.04) = 2250 steps, delta = 1e-5 -> epsilon 7.32911117143.
    accountant = DpFedAvgAccountant(100, amplify_by_sampling=True, orders=OPACUS_ALPHAS)
    rounds_of(accountant, 2250, 1.5, sampled=4)
    assert accountant.epsilon(1e-5) == pytest.approx(7.32911117143, abs=1e-9)


def test_dp_accounting_published_poisson_gaussian_rdp():
    # google/differential-privacy python/dp_accounting/rdp/rdp_privacy_accountant_test.py
    # ::test_compute_rdp_poisson_sampled_gaussian: q = 0.01, z = 2.5, 50 compositions.
    orders = [1.5, 2.5, 5, 50, 100]
    accountant = DpFedAvgAccountant(100, amplify_by_sampling=True, orders=orders)
    rounds_of(accountant, 50, 2.5, sampled=1)
    np.testing.assert_allclose(
        accountant.rdp(), [6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e02], rtol=1e-4
    )


def test_dp_accounting_published_full_participation_gaussian():
    # Same file, ::test_compute_epsilon_delta_gaussian: q = 1, z = 4.530877117 is exactly
    # (1, 1e-6)-DP with orders 1.001 ... 99.999 (step 0.001).
    orders = [0.001 * i for i in range(1001, 100000)]
    accountant = DpFedAvgAccountant(3, orders=orders)
    accountant.record_round(4.530877117, sampled=3)
    assert accountant.epsilon(1e-6) == pytest.approx(1.0, abs=1e-6)


def test_opacus_published_noise_multiplier_for_a_budget():
    # pytorch/opacus accountants_test.py::test_get_noise_multiplier_rdp_steps:
    # epsilon 8, delta 1e-5, q = 0.04, 2000 steps -> z 1.3562 (4 places).
    z = noise_multiplier_for(8.0, 1e-5, rounds=2000, sample_rate=0.04)
    assert z == pytest.approx(1.3562, abs=5e-5)


# -- closed forms and invariants -----------------------------------------------------------


def test_full_participation_is_the_gaussian_mechanism_composed():
    # q = 1: RDP of T Gaussian mechanisms with multiplier z is T * alpha / (2 z^2).
    accountant = DpFedAvgAccountant(5)
    rounds_of(accountant, 7, 1.3, sampled=5)
    expected = [7 * a / (2 * 1.3**2) for a in DEFAULT_ORDERS]
    np.testing.assert_allclose(accountant.rdp(), expected, rtol=1e-12)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    eps_by_round = []
    accountant = DpFedAvgAccountant(10)
    for _ in range(12):
        accountant.record_round(1.0, sampled=10)
        eps_by_round.append(accountant.epsilon(1e-5))
    assert all(b > a for a, b in itertools.pairwise(eps_by_round))

    by_noise = []
    for z in (0.6, 0.9, 1.2, 2.0, 4.0):
        acc = DpFedAvgAccountant(10)
        rounds_of(acc, 5, z, sampled=10)
        by_noise.append(acc.epsilon(1e-5))
    assert all(b < a for a, b in itertools.pairwise(by_noise))


def test_smaller_delta_costs_more_epsilon():
    accountant = DpFedAvgAccountant(4)
    rounds_of(accountant, 3, 1.1, sampled=4)
    assert accountant.epsilon(1e-3) < accountant.epsilon(1e-5) < accountant.epsilon(1e-8)


def test_no_amplification_claimed_by_default():
    # 3 of 30 owners sampled: without amplification each round is charged at q = 1.
    default = DpFedAvgAccountant(30)
    amplified = DpFedAvgAccountant(30, amplify_by_sampling=True)
    full = DpFedAvgAccountant(3)
    for acc in (default, amplified, full):
        rounds_of(acc, 10, 1.0, sampled=3)
    assert default.charges[0].sample_rate == 1.0
    assert amplified.charges[0].sample_rate == pytest.approx(0.1)
    assert default.epsilon(1e-5) == full.epsilon(1e-5)
    assert amplified.epsilon(1e-5) < default.epsilon(1e-5) / 3


def test_dropouts_are_charged_at_the_effective_multiplier():
    # 5 sandboxes calibrated for 5, only 3 noise shares reached the sum.
    dropped = DpFedAvgAccountant(5)
    charge = dropped.record_round(1.2, sampled=5, noised=3)
    assert charge.noise_multiplier == pytest.approx(1.2 * math.sqrt(3 / 5))
    assert charge.noise_multiplier == effective_noise_multiplier(1.2, planned=5, survived=3)
    reference = DpFedAvgAccountant(5)
    reference.record_round(1.2 * math.sqrt(3 / 5), sampled=5)
    assert dropped.epsilon(1e-5) == pytest.approx(reference.epsilon(1e-5), rel=1e-12)
    assert dropped.epsilon(1e-5) > one_round_epsilon(1.2, 5)


def one_round_epsilon(z: float, owners: int) -> float:
    acc = DpFedAvgAccountant(owners)
    acc.record_round(z, sampled=owners)
    return acc.epsilon(1e-5)


def test_calibrating_for_the_threshold_keeps_at_least_z():
    # Noise calibrated for the threshold (3) while 5 sandboxes were sampled and all
    # survived: the sum carries more than z, so the round costs less than at z.
    acc = DpFedAvgAccountant(5)
    charge = acc.record_round(1.0, sampled=5, calibrated_for=3)
    assert charge.noise_multiplier == pytest.approx(math.sqrt(5 / 3))
    assert acc.epsilon(1e-5) < one_round_epsilon(1.0, 5)


def test_before_any_round_nothing_is_spent_and_no_noise_is_unbounded():
    acc = DpFedAvgAccountant(3)
    assert acc.epsilon(1e-5) == 0.0 and acc.rounds == 0
    acc.record_round(0.0, sampled=3)
    eps, order = acc.epsilon_and_order(1e-5)
    assert eps == math.inf and math.isnan(order)


def test_heterogeneous_rounds_compose_additively():
    acc = DpFedAvgAccountant(4)
    acc.record_round(1.0, sampled=4)
    acc.record_round(2.0, sampled=4)
    expected = [a / 2 + a / 8 for a in DEFAULT_ORDERS]
    np.testing.assert_allclose(acc.rdp(), expected, rtol=1e-12)
    assert [c.round for c in acc.charges] == [1, 2]


def test_noise_multiplier_for_meets_the_budget():
    z = noise_multiplier_for(3.0, 1e-5, rounds=10)
    acc = DpFedAvgAccountant(3)
    rounds_of(acc, 10, z, sampled=3)
    assert 2.99 - 0.01 <= acc.epsilon(1e-5) <= 3.0


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"total_owners": 0}, ValueError),
        ({"total_owners": 2.0}, TypeError),
        ({"total_owners": True}, TypeError),
        ({"total_owners": 3, "amplify_by_sampling": 1}, TypeError),
        ({"total_owners": 3, "orders": []}, ValueError),
        ({"total_owners": 3, "orders": [1.0, 2.0]}, ValueError),
        ({"total_owners": 3, "orders": "23"}, TypeError),
        ({"total_owners": 3, "orders": [2, math.inf]}, ValueError),
    ],
)
def test_constructor_validates(kwargs, error):
    total = kwargs.pop("total_owners")
    with pytest.raises(error):
        DpFedAvgAccountant(total, **kwargs)


@pytest.mark.parametrize(
    ("z", "kwargs", "error"),
    [
        (-0.1, {"sampled": 3}, ValueError),
        (math.nan, {"sampled": 3}, ValueError),
        (math.inf, {"sampled": 3}, ValueError),
        ("1.0", {"sampled": 3}, TypeError),
        (1.0, {"sampled": 0}, ValueError),
        (1.0, {"sampled": 4}, ValueError),  # more than the 3 owners
        (1.0, {"sampled": 3, "noised": 4}, ValueError),
        (1.0, {"sampled": 3, "noised": 0}, ValueError),
        (1.0, {"sampled": 3, "calibrated_for": 0}, ValueError),
        (1.0, {"sampled": 3.0}, TypeError),
    ],
)
def test_record_round_validates_and_leaves_state_unchanged(z, kwargs, error):
    acc = DpFedAvgAccountant(3)
    acc.record_round(1.0, sampled=3)
    before = acc.rdp()
    with pytest.raises(error):
        acc.record_round(z, **kwargs)
    assert acc.rdp() == before and acc.rounds == 1


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, math.nan])
def test_epsilon_rejects_bad_delta(delta):
    with pytest.raises(ValueError):
        DpFedAvgAccountant(3).epsilon(delta)


def test_noise_multiplier_for_validates():
    with pytest.raises(ValueError):
        noise_multiplier_for(0.0, 1e-5, rounds=3)
    with pytest.raises(ValueError):
        noise_multiplier_for(1.0, 1e-5, rounds=0)
    with pytest.raises(ValueError):
        noise_multiplier_for(1.0, 1e-5, rounds=3, sample_rate=1.5)
    with pytest.raises(TypeError):
        noise_multiplier_for(1.0, "1e-5", rounds=3)
