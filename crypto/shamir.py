"""Shamir secret sharing of short byte strings over the prime field GF(2^521 - 1).

Why this field: the secrets shared by secure aggregation are 32-byte values (a mask seed
and an X25519 private key), so the field must hold every 256-bit integer. The Mersenne
prime p = 2^521 - 1 (used by NIST P-521) holds any secret of up to 65 bytes in one field
element, needs no chunking, and keeps the arithmetic to a few Python big-int operations
per share: splitting costs O(threshold * holders), combining O(threshold^2).

A secret of ``length`` bytes is the big-endian integer s < 256^length; the dealer draws
``threshold - 1`` uniform coefficients a_1.. with ``secrets.randbelow(p)`` and hands holder
x the point (x, f(x)) of f(X) = s + a_1 X + ... . Any ``threshold`` points determine f and
so s = f(0) (Lagrange interpolation at 0); fewer reveal nothing about s. Holders are named
by their x coordinate (1 <= x < 2^32), which every share carries.

``combine`` refuses: fewer than ``threshold`` shares (InsufficientSharesError), two shares
with the same x (DuplicateShareError), and shares that do not lie on one polynomial of
degree ``threshold - 1`` or decode to no ``length``-byte secret (InconsistentSharesError).
Extra shares beyond ``threshold`` are not ignored: each is checked against the polynomial
the first ``threshold`` define, so a wrong share among them is detected, not outvoted.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.errors import (
    DuplicateShareError,
    InconsistentSharesError,
    InsufficientSharesError,
    MalformedShareError,
)

__all__ = [
    "MAX_SECRET_LENGTH",
    "MAX_X",
    "PRIME",
    "SHARE_SIZE",
    "Share",
    "combine",
    "split",
]

PRIME = (1 << 521) - 1
"""The field modulus: the Mersenne prime 2^521 - 1."""

MAX_SECRET_LENGTH = 65
"""Longest secret (bytes) that fits one field element: 256^65 = 2^520 < p."""

MAX_X = (1 << 32) - 1
"""Largest holder coordinate; x is encoded in 4 bytes."""

_X_SIZE = 4
_Y_SIZE = 66  # ceil(521 / 8)
SHARE_SIZE = _X_SIZE + _Y_SIZE
"""Bytes of one encoded share: x (4, big-endian) then y (66, big-endian)."""


@dataclass(frozen=True, slots=True)
class Share:
    """One point (x, y) of a sharing polynomial; ``x`` names the holder."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not isinstance(self.x, int) or not isinstance(self.y, int):
            raise TypeError("share coordinates must be int")
        if not 1 <= self.x <= MAX_X:
            raise ValueError(f"share x must be in [1, {MAX_X}], got {self.x}")
        if not 0 <= self.y < PRIME:
            raise ValueError("share y must be a field element in [0, p)")

    def to_bytes(self) -> bytes:
        """Encode as ``SHARE_SIZE`` bytes: x then y, both big-endian."""
        return self.x.to_bytes(_X_SIZE, "big") + self.y.to_bytes(_Y_SIZE, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Decode a share, refusing a wrong length, x = 0 or y outside the field."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("share must be bytes")
        data = bytes(data)
        if len(data) != SHARE_SIZE:
            raise MalformedShareError(f"a share is {SHARE_SIZE} bytes, got {len(data)}")
        x = int.from_bytes(data[:_X_SIZE], "big")
        y = int.from_bytes(data[_X_SIZE:], "big")
        if x == 0:
            raise MalformedShareError("x coordinate 0 would be the secret itself")
        if y >= PRIME:
            raise MalformedShareError("y coordinate is not a field element")
        return cls(x, y)


def _check_threshold(threshold: int) -> None:
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise TypeError("threshold must be int")
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")


def split(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Share ``secret`` so that any ``threshold`` of the holders ``xs`` recover it."""
    if not isinstance(secret, bytes | bytearray | memoryview):
        raise TypeError("secret must be bytes")
    secret = bytes(secret)
    if not 1 <= len(secret) <= MAX_SECRET_LENGTH:
        raise ValueError(f"secret must be 1..{MAX_SECRET_LENGTH} bytes, got {len(secret)}")
    _check_threshold(threshold)
    xs = list(xs)
    if any(not isinstance(x, int) or isinstance(x, bool) for x in xs):
        raise TypeError("holder coordinates must be int")
    if any(not 1 <= x <= MAX_X for x in xs):
        raise ValueError(f"holder coordinates must be in [1, {MAX_X}]")
    if len(set(xs)) != len(xs):
        raise ValueError("holder coordinates must be distinct")
    if threshold > len(xs):
        raise ValueError(f"threshold {threshold} exceeds the {len(xs)} holders")

    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for a in reversed(coefficients):  # Horner
            y = (y * x + a) % PRIME
        shares.append(Share(x, y))
    return shares


def _interpolate(points: Sequence[Share], at: int) -> int:
    """Evaluate at ``at`` the polynomial of degree len(points)-1 through ``points``."""
    total = 0
    for i, pi in enumerate(points):
        num, den = 1, 1
        for j, pj in enumerate(points):
            if i != j:
                num = num * (at - pj.x) % PRIME
                den = den * (pi.x - pj.x) % PRIME
        total = (total + pi.y * num * pow(den, -1, PRIME)) % PRIME
    return total


def combine(shares: Sequence[Share], *, threshold: int, length: int) -> bytes:
    """Recover the ``length``-byte secret from at least ``threshold`` consistent shares."""
    _check_threshold(threshold)
    if not isinstance(length, int) or isinstance(length, bool):
        raise TypeError("length must be int")
    if not 1 <= length <= MAX_SECRET_LENGTH:
        raise ValueError(f"length must be 1..{MAX_SECRET_LENGTH}, got {length}")
    shares = list(shares)
    if any(not isinstance(s, Share) for s in shares):
        raise TypeError("shares must be Share instances")
    seen: set[int] = set()
    for s in shares:
        if s.x in seen:
            raise DuplicateShareError(s.x)
        seen.add(s.x)
    if len(shares) < threshold:
        raise InsufficientSharesError(needed=threshold, got=len(shares))

    basis, extra = shares[:threshold], shares[threshold:]
    for s in extra:
        if _interpolate(basis, s.x) != s.y:
            raise InconsistentSharesError()
    value = _interpolate(basis, 0)
    if value >= 1 << (8 * length):
        raise InconsistentSharesError()
    return value.to_bytes(length, "big")
