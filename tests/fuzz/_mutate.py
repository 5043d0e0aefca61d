"""Hypothesis strategies that start from real inputs and break them the ways attackers and disks do.

``mutated(seed)`` stacks one to three of: bit flip, byte overwrite, truncation, extension,
insertion, deletion, a splice from the seed (or another seed) onto itself, and a length-field
edit (1/2/4/8 bytes, either endianness, set to a boundary value) at a random or a named
offset. ``json_mutated(doc)`` edits a JSON document by structure (replace, drop, add a member;
values include the ones parsers get wrong: huge integers, deep nesting, out-of-range dates,
lone surrogates) and emits raw text, so a number of 5,000 digits reaches the parser intact.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Deterministic and database-free so CI runs the same examples every time; scale with
# FEDTUNE_FUZZ_SCALE, a factor on every test's examples (0.2: a quick run, 50: a local soak).
_SCALE = float(os.environ.get("FEDTUNE_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """The settings of one fuzz test: ``examples`` (scaled), derandomized, no database."""
    return settings(
        max_examples=max(1, int(examples * _SCALE)),
        derandomize=True,
        database=None,
        # Per-example bound; the wall-clock guard in _contract.typed catches real hangs.
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )


# Values length fields are most often mishandled at.
_BOUNDARIES = (
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x100000000,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
)


def _write_int(data: bytearray, offset: int, width: int, value: int, order: str) -> None:
    if offset + width > len(data):
        return
    data[offset : offset + width] = (value % (1 << (8 * width))).to_bytes(width, order)  # type: ignore[arg-type]


Op = Callable[[Any, bytearray, Sequence[bytes], Sequence[int]], bytearray]


def _flip(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    if data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    return data


def _set_byte(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    if data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from((0, 0xFF, 0x7F, 0x80, 1)))
    return data


def _truncate(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


def _extend(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    return data + draw(st.binary(min_size=1, max_size=64))


def _insert(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


def _delete(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + data[at + draw(st.integers(1, 64)) :]


def _splice(draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]) -> bytearray:
    donor = draw(st.sampled_from(list(seeds))) if seeds else bytes(data)
    if not donor or not data:
        return data
    start = draw(st.integers(0, len(donor) - 1))
    chunk = donor[start : start + draw(st.integers(1, 256))]
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + chunk + data[at + len(chunk) :]


def _length_field(
    draw: Any, data: bytearray, seeds: Sequence[bytes], hot: Sequence[int]
) -> bytearray:
    if not data:
        return data
    width = draw(st.sampled_from((1, 2, 4, 8)))
    if hot and draw(st.booleans()):
        offset = draw(st.sampled_from(list(hot)))
    else:
        offset = draw(st.integers(0, max(0, len(data) - width)))
    value = draw(
        st.one_of(
            st.sampled_from(_BOUNDARIES),
            st.sampled_from((len(data), len(data) + 1, max(0, len(data) - 1))),
            st.integers(0, (1 << (8 * width)) - 1),
        )
    )
    _write_int(data, offset, width, value, draw(st.sampled_from(("little", "big"))))
    return data


OPS: tuple[Op, ...] = (
    _flip,
    _set_byte,
    _truncate,
    _extend,
    _insert,
    _delete,
    _splice,
    _length_field,
)


# The operations that keep the length (for fixed-size structures such as a sealed header).
IN_PLACE_OPS: tuple[Op, ...] = (_flip, _set_byte, _length_field)


@st.composite
def mutated(
    draw: Any,
    seeds: Sequence[bytes],
    *,
    hot: Sequence[int] = (),
    max_ops: int = 3,
    in_place: bool = False,
) -> bytes:
    """One of ``seeds`` with one to ``max_ops`` mutations applied (``hot``: length offsets)."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(IN_PLACE_OPS if in_place else OPS))
        data = op(draw, data, seeds, hot)
    return bytes(data)


def seeded_bytes(
    seeds: Sequence[bytes], *, hot: Sequence[int] = (), max_random: int = 2048
) -> st.SearchStrategy[bytes]:
    """Mutations of real inputs, mostly, and pure random bytes."""
    return st.one_of(
        mutated(seeds, hot=hot),
        mutated(seeds, hot=hot),
        mutated(seeds, hot=hot),
        st.binary(max_size=max_random),
    )


# --- JSON -------------------------------------------------------------------------------------


class Raw:
    """JSON text emitted verbatim by ``dump`` (numbers too large for json.dumps, deep nests)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def dump(value: Any) -> str:
    """Serialise like json.dumps, but emit ``Raw`` values as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, str):
        # ensure_ascii keeps lone surrogates as \\udXXX escapes, which is how they travel in JSON.
        return json.dumps(value, ensure_ascii=True)
    return json.dumps(value)


_TRICKY_STRINGS = (
    "",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00",
    "\ud800",
    "\x00",
    "A" * 3000,
    "ed25519:" + "0" * 64,
    "../../etc/passwd",
    "=",
    "AAAA",
    "00" * 48,
    "zz",
)
_TRICKY_RAW = (
    "1" * 5000,
    "-" + "9" * 4400,
    "1e999999",
    "-0",
    "1.5e-400",
    "18446744073709551616",
    "9223372036854775808",
    "-1",
    "[" * 3000 + "]" * 3000,
    '{"a":' * 2000 + "0" + "}" * 2000,
    "null",
    "true",
    "NaN",
    "Infinity",
)


def json_leaf() -> st.SearchStrategy[Any]:
    """A JSON scalar, or a raw token chosen to break parsers."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(1 << 70), max_value=1 << 70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
        st.sampled_from(_TRICKY_STRINGS),
        st.sampled_from(_TRICKY_RAW).map(Raw),
    )


def json_value() -> st.SearchStrategy[Any]:
    """Any JSON value of modest size, tricky leaves included."""
    return st.recursive(
        json_leaf(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=12), children, max_size=4),
        ),
        max_leaves=12,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T")
# Dates that are valid ISO 8601 yet break code that converts them (year 0 or 10000 in UTC),
# or that are not what they look like (no time zone, no such day, a 24-hour offset).
_TRICKY_DATES = (
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00+24:00",
    "1970-01-01T00:00:00Z",
)
_TRICKY_INTS = ("1" * 5000, "-1", "18446744073709551616", "9223372036854775808", "1e999", "-0")
_NOT_CONTAINERS = (Raw("5"), "x", None, Raw("true"))


def _tweak(draw: Any, value: Any) -> Any:
    """A value of the same kind as ``value`` that parsers of that field tend to get wrong."""
    if isinstance(value, str) and _DATE.match(value):
        return draw(st.sampled_from(_TRICKY_DATES))
    if isinstance(value, bool):
        return draw(st.sampled_from((not value, Raw("1"), "true")))
    if isinstance(value, int | float):
        return draw(st.one_of(st.sampled_from(_TRICKY_INTS).map(Raw), st.just(value + 1)))
    if isinstance(value, str):
        return draw(
            st.one_of(
                st.sampled_from(_TRICKY_STRINGS),
                st.just(value[:-1]),
                st.just(value + draw(st.characters())),
                st.just(value.upper()),
            )
        )
    if isinstance(value, list | dict):
        return draw(st.sampled_from(_NOT_CONTAINERS))
    return draw(json_leaf())


def _replace_all(doc: Any, match: Callable[[Any], bool], new: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _replace_all(v, match, new) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_replace_all(v, match, new) for v in doc]
    return new if match(doc) else doc


@st.composite
def json_mutated(draw: Any, docs: Sequence[Any], *, max_ops: int = 2) -> str:
    """One of ``docs`` (parsed JSON) with members tweaked, replaced, dropped or added, as text.

    Most edits are type-aware (a date becomes a boundary date, a number a 5,000-digit one, a
    list a number); some replace every date or every integer at once, since a document has
    many fields and the bug is often in how one kind of value is converted.
    """
    doc = json.loads(json.dumps(draw(st.sampled_from(list(docs)))))  # a private deep copy
    for _ in range(draw(st.integers(1, max_ops))):
        action = draw(
            st.sampled_from(
                ("tweak", "tweak", "tweak", "replace", "drop", "add", "retype", "dates", "ints")
            )
        )
        if action == "dates":
            date = draw(st.sampled_from(_TRICKY_DATES))
            doc = _replace_all(doc, lambda v: isinstance(v, str) and bool(_DATE.match(v)), date)
            continue
        if action == "ints":
            big = Raw(draw(st.sampled_from(_TRICKY_INTS)))
            doc = _replace_all(doc, lambda v: isinstance(v, int) and not isinstance(v, bool), big)
            continue
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            if action in ("replace", "retype", "tweak"):
                doc = draw(json_value())
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        if isinstance(parent, Raw):
            continue
        if action == "drop":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_value())
        elif action == "retype":
            current = parent[last]
            parent[last] = [current] if not isinstance(current, list) else {"x": current}
        elif action == "tweak":
            parent[last] = _tweak(draw, parent[last])
        else:
            parent[last] = draw(json_value())
    return dump(doc)


def json_text(docs: Sequence[Any], texts: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Structure-aware JSON mutations, byte-level mutations of the real texts, random bytes."""
    return st.one_of(
        json_mutated(docs).map(lambda t: t.encode("utf-8", "surrogatepass")),
        json_mutated(docs).map(lambda t: t.encode("utf-8", "surrogatepass")),
        mutated(texts),
        st.binary(max_size=512),
    )
