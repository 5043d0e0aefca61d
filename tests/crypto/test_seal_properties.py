"""Property tests: any size, any segment size; any single change is refused, never misread."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.datakey import DataKey
from crypto.errors import SealedStreamError
from crypto.hazmat.stream import sealed_size
from crypto.seal import seal, unseal, unseal_to_memory

KEY = DataKey(bytes(range(32)))
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Pipe:
    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(n)


def _seal(data: bytes, seg: int, known: bool) -> bytes:
    out = io.BytesIO()
    seal(io.BytesIO(data) if known else _Pipe(data), out, KEY, segment_size=seg)
    return out.getvalue()


@_SETTINGS
@given(data=st.binary(max_size=3000), seg=st.integers(16, 700), known=st.booleans())
def test_round_trip(data: bytes, seg: int, known: bool) -> None:
    blob = _seal(data, seg, known)
    assert len(blob) == sealed_size(len(data), seg)
    assert bytes(unseal_to_memory(io.BytesIO(blob), KEY)) == data
    out = io.BytesIO()
    unseal(io.BytesIO(blob), out, KEY)
    assert out.getvalue() == data


@_SETTINGS
@given(
    data=st.binary(max_size=2000),
    seg=st.integers(16, 300),
    known=st.booleans(),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_is_refused(
    data: bytes, seg: int, known: bool, where: float, bit: int
) -> None:
    blob = bytearray(_seal(data, seg, known))
    blob[int(where * len(blob))] ^= 1 << bit
    try:
        unseal_to_memory(io.BytesIO(bytes(blob)), KEY)
    except SealedStreamError:
        return
    raise AssertionError("a modified stream was accepted")


@_SETTINGS
@given(
    data=st.binary(max_size=2000), seg=st.integers(16, 300), known=st.booleans(), data2=st.data()
)
def test_any_truncation_or_extension_is_refused(
    data: bytes, seg: int, known: bool, data2: st.DataObject
) -> None:
    blob = _seal(data, seg, known)
    cut = data2.draw(st.integers(0, len(blob) - 1), label="cut")
    extra = data2.draw(st.binary(min_size=1, max_size=100), label="extra")
    for changed in (blob[:cut], blob + extra):
        try:
            unseal_to_memory(io.BytesIO(changed), KEY)
        except SealedStreamError:
            continue
        raise AssertionError("a truncated or extended stream was accepted")
