"""Fixed-point code: pinned words, clipping, no overflow at the extremes, the documented bound."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import ZeroTotalWeightError
from crypto.quantize import WORD_DTYPE, FixedPoint

INT_MAX = 2**31 - 1


def _sum_words(encodings: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(encodings[0])
    for e in encodings:
        total += e  # uint32 wraps: the modular sum a masked aggregate reveals
    return total


def _plain_fedavg(code: FixedPoint, updates: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Exact (rational) weighted average of the clipped values with the clipped true weights."""
    ws = [Fraction(min(w, code.max_weight)) for w in weights]
    out = []
    for j in range(len(updates[0])):
        num = sum(
            (
                w * Fraction(float(np.clip(u[j], -code.clip, code.clip)))
                for w, u in zip(ws, updates, strict=True)
            )
        )
        out.append(float(num / sum(ws)))
    return np.array(out)


def test_scales_follow_the_documented_formulas() -> None:
    code = FixedPoint(8.0, 1000.0, 10)
    assert code.scale == (INT_MAX / 10 - 1) / 8.0
    assert code.weight_scale == INT_MAX // 10


def test_words_are_pinned_for_a_simple_code() -> None:
    code = FixedPoint(1.0, 1.0, 1)  # s = 2^31 - 2, Q_w = 2^31 - 1
    words = code.encode(np.array([0.5, -0.5, 0.0, 1.0, -1.0], dtype=np.float32), 1.0)
    assert words.dtype == WORD_DTYPE
    assert words.tolist() == [
        INT_MAX,
        2**30 - 1,  # rint(0.5 * (2^31 - 2))
        2**32 - (2**30 - 1),  # two's complement of -(2^30 - 1)
        0,
        2**31 - 2,
        2**32 - (2**31 - 2),
    ]


def test_half_weight_halves_the_value_words() -> None:
    code = FixedPoint(1.0, 10.0, 1)
    words = code.encode(np.array([1.0]), 5.0)
    assert int(words[0]) == round(INT_MAX / 2)
    assert int(words[1]) == round(code.scale * round(INT_MAX / 2) / INT_MAX)
    assert code.effective_weight(int(words[0])) == pytest.approx(5.0, abs=1e-8)


def test_values_and_weights_are_clipped() -> None:
    code = FixedPoint(2.0, 100.0, 4)
    words = code.encode(np.array([1e9, -1e9, 2.0, -3.0]), 1e6)
    top = round(code.scale * 2.0)
    assert int(words[0]) == code.weight_scale
    assert words.view(np.int32)[1:].tolist() == [top, -top, top, -top]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_no_overflow_at_the_extremes(sign: float) -> None:
    n = 50
    code = FixedPoint(8.0, 1000.0, n)
    encodings = [code.encode(np.full(16, sign * 1e30), 1e9) for _ in range(n)]
    average, weight = code.decode(_sum_words(encodings), num_summed=n)
    bound = code.average_error_bound(num_summed=n, total_weight=weight)
    assert np.all(np.abs(average - sign * 8.0) <= bound)
    assert weight == pytest.approx(n * 1000.0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    clip=st.sampled_from([0.015625, 1.0, 8.0, 1024.0]),
    max_weight=st.sampled_from([1.0, 1000.0, 1e6]),
    data=st.data(),
)
def test_decoded_average_is_within_the_documented_bound(
    n: int, clip: float, max_weight: float, data: st.DataObject
) -> None:
    code = FixedPoint(clip, max_weight, 12)
    k = data.draw(st.integers(min_value=1, max_value=n))
    values = st.floats(min_value=-2 * clip, max_value=2 * clip, allow_nan=False, width=32)
    updates = [
        np.array(data.draw(st.lists(values, min_size=5, max_size=5)), dtype=np.float32)
        for _ in range(k)
    ]
    weights = [
        data.draw(st.floats(min_value=max_weight * 1e-3, max_value=2 * max_weight))
        for _ in range(k)
    ]
    encodings = [code.encode(u, w) for u, w in zip(updates, weights, strict=True)]
    average, total_weight = code.decode(_sum_words(encodings), num_summed=k)
    expected = _plain_fedavg(code, updates, weights)
    bound = code.average_error_bound(num_summed=k, total_weight=total_weight)
    assert np.all(np.abs(average - expected) <= bound)
    # Each client's weight is rounded to a multiple of W / Q_w: documented |w' - w| <= W / (2 Q_w).
    weight_bound = k * max_weight / (2 * code.weight_scale) * (1 + 1e-9)
    assert abs(total_weight - sum(min(w, max_weight) for w in weights)) <= weight_bound


def test_bound_without_weight_rounding_holds_against_effective_weights() -> None:
    rng = np.random.default_rng(7)
    code = FixedPoint(8.0, 1000.0, 10)
    updates = [rng.uniform(-8, 8, 1000).astype(np.float32) for _ in range(10)]
    weights = rng.uniform(1, 1000, 10).tolist()
    encodings = [code.encode(u, w) for u, w in zip(updates, weights, strict=True)]
    average, total_weight = code.decode(_sum_words(encodings), num_summed=10)
    effective = [code.effective_weight(code.quantize_weight(w)) for w in weights]
    exact = sum(e * u.astype(np.float64) for e, u in zip(effective, updates, strict=True)) / sum(
        effective
    )
    bound = code.average_error_bound(
        num_summed=10, total_weight=total_weight, include_weight_rounding=False
    )
    assert np.abs(average - exact).max() <= bound
    assert bound < 1e-6  # the docstring's example: ~1e-8 for c = 8, n = 10


def test_rounding_is_deterministic_not_stochastic() -> None:
    code = FixedPoint(8.0, 1000.0, 10)
    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    assert np.array_equal(code.encode(x, 3.0), code.encode(x, 3.0))


def test_decode_refusals() -> None:
    code = FixedPoint(8.0, 1000.0, 3)
    with pytest.raises(ZeroTotalWeightError):
        code.decode(code.encode(np.ones(3), 0.0), num_summed=1)
    with pytest.raises(ValueError, match="num_summed"):
        code.decode(code.encode(np.ones(3), 1.0), num_summed=4)
    with pytest.raises(TypeError):
        code.decode(np.zeros(4, dtype=np.int32), num_summed=1)  # type: ignore[arg-type]
    negative = np.array([2**32 - 1, 0], dtype=WORD_DTYPE)
    with pytest.raises(ValueError, match="negative"):
        code.decode(negative, num_summed=1)


def test_encode_refusals() -> None:
    code = FixedPoint(8.0, 1000.0, 3)
    with pytest.raises(ValueError, match="NaN"):
        code.encode(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        code.encode(np.array([np.inf]), 1.0)
    with pytest.raises(TypeError):
        code.encode(np.array([1, 2]), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        code.encode(np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        code.encode(np.ones(2), -1.0)
    with pytest.raises(ValueError):
        code.encode(np.ones(2), float("nan"))
    with pytest.raises(ValueError):
        FixedPoint(0.0, 1.0, 1)
    with pytest.raises(ValueError):
        FixedPoint(1.0, float("inf"), 1)
    with pytest.raises(ValueError):
        FixedPoint(1.0, 1.0, 0)
    with pytest.raises(TypeError):
        FixedPoint(1.0, 1.0, 2.0)  # type: ignore[arg-type]
