"""Wire format v1 of the secure-aggregation messages: pinned layout and strict, typed parsing."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from crypto.errors import MessageBindingError, SecAggMessageError, VectorLengthError
from crypto.secagg import RoundParams
from crypto.secagg.keys import ENVELOPE_SIZE
from crypto.secagg.messages import (
    Binding,
    CollectRequest,
    MaskedVector,
    PublicKeys,
    SetupRequest,
    SetupResponse,
    ShareKeysRequest,
    ShareKeysResponse,
    UnmaskRequest,
    UnmaskResponse,
)
from crypto.shamir import Share

B = Binding(b"sess", 7, 0x0102030405060708)
KEYS = PublicKeys(bytes(range(32)), bytes(range(32, 64)))
PARAMS = RoundParams.create(b"sess", 7, [5, 6, 7, 0x0102030405060708], 10, graph_seed=bytes(32))

MESSAGES = [
    SetupRequest(PARAMS),
    SetupResponse(KEYS),
    ShareKeysRequest({3: KEYS, 1: PublicKeys(b"\x01" * 32, b"\x02" * 32)}),
    ShareKeysResponse(b"\xcc" * 32, {9: b"\xee" * ENVELOPE_SIZE, 4: b"\xdd" * ENVELOPE_SIZE}),
    CollectRequest({2: b"\xab" * ENVELOPE_SIZE}),
    MaskedVector((1, 4), np.arange(11, dtype="<u4")),
    UnmaskRequest((1, 2, 3), (9,)),
    UnmaskResponse({3: Share(4, 5), 1: Share(4, 6)}, {9: Share(4, 7)}),
]


def test_header_layout_is_pinned() -> None:
    data = SetupResponse(KEYS).to_bytes(B)
    assert data.hex() == (
        "46545341"  # magic "FTSA"
        "01"  # version
        "02"  # kind: SetupResponse
        "04"
        + b"sess".hex()  # session id, length-prefixed
        + "0000000000000007"  # round, u64 big-endian
        + "0102030405060708"  # client, u64 big-endian
        + bytes(range(64)).hex()  # transport key, mask key
    )


def test_masked_vector_layout_is_pinned() -> None:
    data = MaskedVector((1, 4), np.array([1, 0xDEADBEEF], dtype="<u4")).to_bytes(B)
    header = B.header(MaskedVector.KIND)
    body = struct.pack(">IQQQ", 2, 1, 4, 2)
    pad = bytes(-(len(header) + len(body)) % 8)
    assert data == header + body + pad + bytes.fromhex("01000000efbeadde")
    assert (len(header) + len(body) + len(pad)) % 8 == 0


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message) -> None:
    data = message.to_bytes(B)
    parsed = type(message).from_bytes(data, B)
    if isinstance(message, MaskedVector):
        assert parsed.masked_with == message.masked_with
        assert np.array_equal(parsed.vector, message.vector)
        assert not parsed.vector.flags.writeable
    else:
        assert parsed == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_truncation_and_any_trailing_byte_is_refused(message) -> None:
    data = message.to_bytes(B)
    cls = type(message)
    for cut in range(len(data)):
        with pytest.raises(SecAggMessageError):
            cls.from_bytes(data[:cut], B)
    with pytest.raises(SecAggMessageError):
        cls.from_bytes(data + b"\x00", B)


@pytest.mark.parametrize(
    ("binding", "field"),
    [
        (Binding(b"other", 7, B.client_id), "session"),
        (Binding(b"sess", 8, B.client_id), "round"),
        (Binding(b"sess", 7, 5), "client"),
    ],
)
def test_binding_mismatch_is_refused_with_the_field(binding: Binding, field: str) -> None:
    data = SetupResponse(KEYS).to_bytes(B)
    with pytest.raises(MessageBindingError) as info:
        SetupResponse.from_bytes(data, binding)
    assert info.value.field == field


def test_a_message_of_another_kind_is_refused() -> None:
    data = UnmaskRequest((1,), ()).to_bytes(B)
    with pytest.raises(MessageBindingError) as info:
        CollectRequest.from_bytes(data, B)
    assert (info.value.field, info.value.got) == ("kind", "UNMASK_REQUEST")


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [(0, 0x47, "magic"), (4, 2, "version"), (5, 99, "kind")],
)
def test_header_corruption_is_refused(offset: int, value: int, field: str) -> None:
    data = bytearray(SetupResponse(KEYS).to_bytes(B))
    data[offset] = value
    with pytest.raises(SecAggMessageError) as info:
        SetupResponse.from_bytes(bytes(data), B)
    assert info.value.field == field


def test_id_lists_must_be_strictly_ascending() -> None:
    data = bytearray(UnmaskRequest((1, 2), ()).to_bytes(B))
    head = len(B.header(UnmaskRequest.KIND))
    data[head + 4 : head + 20] = struct.pack(">QQ", 2, 2)
    with pytest.raises(SecAggMessageError, match="ascending"):
        UnmaskRequest.from_bytes(bytes(data), B)


def test_masked_vector_length_and_padding_checks() -> None:
    data = MaskedVector((), np.arange(5, dtype="<u4")).to_bytes(B)
    with pytest.raises(VectorLengthError) as info:
        MaskedVector.from_bytes(data, B, length=6)
    assert (info.value.expected, info.value.got) == (6, 5)
    head = len(B.header(MaskedVector.KIND)) + 4 + 8
    if head % 8:
        corrupt = bytearray(data)
        corrupt[head] = 1
        with pytest.raises(SecAggMessageError, match="zero"):
            MaskedVector.from_bytes(bytes(corrupt), B)


def test_setup_request_carries_validated_params() -> None:
    parsed = SetupRequest.from_bytes(SetupRequest(PARAMS).to_bytes(B), B)
    assert parsed.params == PARAMS
    data = bytearray(SetupRequest(PARAMS).to_bytes(B))
    head = len(B.header(SetupRequest.KIND))
    data[head + 8 : head + 10] = struct.pack(">H", 3)  # degree 3 on 4 clients: threshold wrong
    with pytest.raises(SecAggMessageError) as info:
        SetupRequest.from_bytes(bytes(data), B)
    assert info.value.field == "params"
    with pytest.raises(ValueError, match="disagree"):
        SetupRequest(PARAMS).to_bytes(Binding(b"sess", 8, 5))


def test_unknown_share_kind_and_bad_share_are_refused() -> None:
    data = bytearray(UnmaskResponse({1: Share(4, 5)}, {}).to_bytes(B))
    head = len(B.header(UnmaskResponse.KIND)) + 4 + 8
    data[head] = 3
    with pytest.raises(SecAggMessageError, match="kind"):
        UnmaskResponse.from_bytes(bytes(data), B)
    data[head] = 1
    data[head + 1 : head + 5] = bytes(4)  # x = 0
    with pytest.raises(SecAggMessageError, match="x coordinate"):
        UnmaskResponse.from_bytes(bytes(data), B)


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        SetupResponse.from_bytes("text", B)  # type: ignore[arg-type]
