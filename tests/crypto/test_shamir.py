"""Shamir sharing over GF(2^521 - 1): known answers, thresholds, and every refusal combine makes."""

from __future__ import annotations

import contextlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import (
    DuplicateShareError,
    InconsistentSharesError,
    InsufficientSharesError,
    MalformedShareError,
)
from crypto.shamir import MAX_SECRET_LENGTH, PRIME, SHARE_SIZE, Share, combine, split

SECRET = bytes.fromhex("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")


def _poly(coefficients: list[int], x: int) -> int:
    """Plain evaluation, independent of the module's Horner loop."""
    return sum(a * pow(x, i, PRIME) for i, a in enumerate(coefficients)) % PRIME


def _is_probable_prime(n: int) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_field_is_the_mersenne_prime_m521_and_holds_every_secret() -> None:
    assert PRIME == 2**521 - 1
    assert _is_probable_prime(PRIME)
    assert 256**MAX_SECRET_LENGTH < PRIME
    assert SHARE_SIZE == 4 + 66


def test_combine_recovers_a_hand_made_polynomial() -> None:
    # f(X) = s + 3X + 5X^2: the points below are computed here, not by crypto.shamir.
    s = int.from_bytes(SECRET, "big")
    shares = [Share(x, _poly([s, 3, 5], x)) for x in (1, 2, 3)]
    assert shares[0].y == s + 8 and shares[1].y == s + 26 and shares[2].y == s + 54
    assert combine(shares, threshold=3, length=32) == SECRET


def test_combine_recovers_with_large_x_and_wrapping_coefficients() -> None:
    s = int.from_bytes(SECRET, "big")
    coefficients = [s, PRIME - 1, PRIME - 2, 12345678901234567890]
    shares = [Share(x, _poly(coefficients, x)) for x in (7, 1000, 2**31, 2**32 - 1)]
    assert combine(shares, threshold=4, length=32) == SECRET


def test_share_encoding_is_pinned() -> None:
    assert Share(1, 2).to_bytes().hex() == "00000001" + "00" * 65 + "02"
    big = Share(0x01020304, PRIME - 1)
    assert big.to_bytes() == bytes.fromhex("01020304") + (PRIME - 1).to_bytes(66, "big")
    assert Share.from_bytes(big.to_bytes()) == big


def test_split_points_lie_on_a_polynomial_with_the_secret_at_zero() -> None:
    shares = split(SECRET, 3, [1, 2, 3, 4, 5])
    assert [s.x for s in shares] == [1, 2, 3, 4, 5]
    # Independent check: Lagrange at 0 with exact rationals over the integers mod p.
    pts = shares[:3]
    total = 0
    for i, pi in enumerate(pts):
        num = den = 1
        for j, pj in enumerate(pts):
            if i != j:
                num *= -pj.x
                den *= pi.x - pj.x
        total += pi.y * num * pow(den, -1, PRIME)
    assert (total % PRIME).to_bytes(32, "big") == SECRET


def test_split_is_randomised() -> None:
    assert split(SECRET, 2, [1, 2]) != split(SECRET, 2, [1, 2])


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=MAX_SECRET_LENGTH),
    holders=st.integers(min_value=1, max_value=9),
    data=st.data(),
)
def test_any_threshold_subset_recovers(secret: bytes, holders: int, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(min_value=1, max_value=holders))
    xs = data.draw(
        st.lists(
            st.integers(min_value=1, max_value=2**32 - 1),
            min_size=holders,
            max_size=holders,
            unique=True,
        )
    )
    shares = split(secret, threshold, xs)
    for subset in itertools.islice(itertools.combinations(shares, threshold), 20):
        assert combine(list(subset), threshold=threshold, length=len(secret)) == secret
    assert combine(shares, threshold=threshold, length=len(secret)) == secret


def test_fewer_than_threshold_is_refused() -> None:
    shares = split(SECRET, 3, [1, 2, 3])
    with pytest.raises(InsufficientSharesError) as info:
        combine(shares[:2], threshold=3, length=32)
    assert (info.value.needed, info.value.got) == (3, 2)


def test_duplicate_holder_is_refused() -> None:
    shares = split(SECRET, 2, [1, 2, 3])
    with pytest.raises(DuplicateShareError) as info:
        combine([shares[0], shares[1], shares[1]], threshold=2, length=32)
    assert info.value.x == 2
    forged = Share(shares[0].x, (shares[0].y + 1) % PRIME)
    with pytest.raises(DuplicateShareError):
        combine([shares[0], forged, shares[2]], threshold=2, length=32)


@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_a_wrong_share_among_more_than_threshold_is_detected(position: int) -> None:
    shares = split(SECRET, 3, [1, 2, 3, 4])
    bad = shares[position]
    shares[position] = Share(bad.x, (bad.y + 1) % PRIME)
    with pytest.raises(InconsistentSharesError):
        combine(shares, threshold=3, length=32)


def test_a_wrong_share_at_exactly_threshold_gives_a_different_secret_or_refusal() -> None:
    # With no redundancy a wrong share cannot be detected by Shamir alone; callers verify
    # the result against a commitment (secure aggregation does). It must not be the secret.
    shares = split(SECRET, 3, [1, 2, 3])
    shares[1] = Share(2, (shares[1].y + 1) % PRIME)
    with contextlib.suppress(InconsistentSharesError):
        assert combine(shares, threshold=3, length=32) != SECRET


def test_secret_longer_than_length_is_inconsistent() -> None:
    shares = split(b"\x01" + bytes(32), 2, [1, 2])
    with pytest.raises(InconsistentSharesError):
        combine(shares, threshold=2, length=32)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(SHARE_SIZE - 1), "70 bytes"),
        (bytes(SHARE_SIZE + 1), "70 bytes"),
        (bytes(4) + (5).to_bytes(66, "big"), "x coordinate 0"),
        ((1).to_bytes(4, "big") + PRIME.to_bytes(66, "big"), "not a field element"),
    ],
)
def test_malformed_share_bytes_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedShareError, match=reason):
        Share.from_bytes(data)


def test_split_validates_its_arguments() -> None:
    with pytest.raises(TypeError):
        split("secret", 2, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1\.\.65 bytes"):
        split(b"", 2, [1, 2])
    with pytest.raises(ValueError, match=r"1\.\.65 bytes"):
        split(bytes(66), 2, [1, 2])
    with pytest.raises(ValueError, match="exceeds"):
        split(SECRET, 3, [1, 2])
    with pytest.raises(ValueError, match="distinct"):
        split(SECRET, 2, [1, 1])
    with pytest.raises(ValueError, match="coordinates"):
        split(SECRET, 1, [0])
    with pytest.raises(TypeError):
        split(SECRET, True, [1])
    with pytest.raises(ValueError):
        split(SECRET, 0, [1])
    with pytest.raises(TypeError):
        combine([(1, 2)], threshold=1, length=32)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Share(0, 1)
    with pytest.raises(ValueError):
        Share(1, PRIME)


def test_one_share_below_threshold_is_uniform_whatever_the_secret() -> None:
    # For t = 2 the single share y = s + a x (a uniform) hides s: shares of two different
    # secrets at the same x have the same distribution. Check the top byte of y is spread
    # evenly over many dealings (a share leaking s would concentrate it).
    rng = random.Random(0)
    for secret in (bytes(32), b"\xff" * 32):
        tops = [split(secret, 2, [rng.randint(1, 999), 1000])[0].y >> 513 for _ in range(2000)]
        counts = [tops.count(v) for v in range(256)]
        assert max(counts) < 30  # expected ~7.8 per value; a fixed value would give 2000
