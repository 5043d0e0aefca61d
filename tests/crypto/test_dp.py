"""Client-level DP: exact clipping, calibrated distributed noise from a cryptographic stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from crypto import dp


def test_clipping_is_exact() -> None:
    long = np.full(1000, 3.0, dtype=np.float32)
    clipped, norm = dp.clip_l2(long, 2.5)
    assert norm == pytest.approx(3.0 * math.sqrt(1000))
    assert clipped.dtype == np.float32
    assert float(np.linalg.norm(clipped.astype(np.float64))) == pytest.approx(2.5, rel=1e-6)
    assert np.allclose(clipped, long * (2.5 / norm), rtol=1e-6)  # direction kept
    short = np.array([0.3, -0.4], dtype=np.float64)
    same, norm = dp.clip_l2(short, 0.5)
    assert norm == pytest.approx(0.5)
    assert np.array_equal(same, short) and same is not short
    zero, norm = dp.clip_l2(np.zeros(4), 1.0)
    assert norm == 0.0 and not zero.any()


def test_noise_std_formula() -> None:
    assert dp.noise_std(1.1, 2.0, 10) == pytest.approx(1.1 * 2.0 / math.sqrt(10))
    assert dp.noise_std(0.0, 2.0, 10) == 0.0
    assert dp.effective_noise_multiplier(1.0, planned=16, survived=4) == pytest.approx(0.5)


# Statistical tests: N = 1e6 samples. The sample std has relative standard error
# 1/sqrt(2N) = 7.1e-4, so a 0.5% tolerance is a 7-sigma band (false failure < 1e-11); the
# mean's standard error is std/sqrt(N) = 1e-3 std, tolerance 6e-3 std (6 sigma, < 2e-9);
# the Kolmogorov-Smirnov test uses alpha = 1e-9.


def test_normal_samples_match_the_requested_std() -> None:
    samples = dp.CryptoRandom().normal(1_000_000, std=2.0)
    assert abs(samples.std() / 2.0 - 1) < 5e-3
    assert abs(samples.mean()) < 6e-3 * 2.0
    assert stats.kstest(samples / 2.0, "norm").pvalue > 1e-9


def test_distributed_noise_sums_to_the_calibrated_multiplier() -> None:
    n, z, c, m = 20, 1.3, 0.7, 50_000  # 20 x 5e4 = 1e6 draws in all
    total = np.zeros(m)
    for _ in range(n):
        total += dp.add_noise(np.zeros(m), dp.noise_std(z, c, n))
    # The summed noise has std z*C; with m = 5e4 the std's relative standard error is
    # 3.2e-3, so 2.5% is a 7.9-sigma band.
    assert abs(total.std() / (z * c) - 1) < 2.5e-2


def test_uniforms_are_in_the_open_closed_unit_interval_and_uniform() -> None:
    u = dp.CryptoRandom().uniform(1_000_000)
    assert u.min() > 0.0 and u.max() <= 1.0
    counts = np.bincount((u * 1000).astype(np.int64).clip(0, 999), minlength=1000)
    assert stats.chisquare(counts).pvalue > 1e-9


def test_stream_is_keyed() -> None:
    key = bytes(range(32))
    a = dp.CryptoRandom(key=key).normal(10)
    b = dp.CryptoRandom(key=key).normal(10)
    assert np.array_equal(a, b)
    assert not np.array_equal(dp.CryptoRandom().normal(10), dp.CryptoRandom().normal(10))
    # The words are the ChaCha20 keystream (RFC 8439 A.1 #1 for the zero key).
    words = dp.CryptoRandom(key=bytes(32)).words(2)
    assert words.tobytes().hex() == "76b8e0ada0f13d90405d6ae55386bd28"


def test_privatize_clips_then_adds_noise() -> None:
    update = np.full(10_000, 1.0, dtype=np.float32)
    quiet = dp.privatize(update, clip_norm=1.0, noise_multiplier=0.0, num_clients=5)
    assert float(np.linalg.norm(quiet.astype(np.float64))) == pytest.approx(1.0, rel=1e-6)
    noisy = dp.privatize(update, clip_norm=1.0, noise_multiplier=2.0, num_clients=4)
    residual = noisy.astype(np.float64) - quiet.astype(np.float64)
    assert residual.std() == pytest.approx(dp.noise_std(2.0, 1.0, 4), rel=0.05)
    assert noisy.dtype == np.float32


def test_validation() -> None:
    with pytest.raises(ValueError):
        dp.clip_l2(np.ones(3), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        dp.clip_l2(np.array([np.nan]), 1.0)
    with pytest.raises(TypeError):
        dp.clip_l2([1.0], 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        dp.noise_std(-1.0, 1.0, 3)
    with pytest.raises(ValueError):
        dp.noise_std(1.0, 1.0, 0)
    with pytest.raises(ValueError):
        dp.CryptoRandom(key=bytes(31))
    with pytest.raises(ValueError):
        dp.CryptoRandom().normal(-1)
    with pytest.raises(ValueError):
        dp.effective_noise_multiplier(1.0, planned=0, survived=1)
