"""A generic fuzzer for gRPC servicers: random and mutated request messages from descriptors.

Point it at any service whose ``*_pb2`` module exists; it needs no knowledge of the messages::

    from fedtune._proto import registry_pb2
    from tests.fuzz.rpc import check_call, methods, requests

    for method in methods(registry_pb2, "Registry"):
        @fuzz_settings(100)
        @given(request=requests(method.request_class, seeds=[...real requests...]))
        def run(request):
            check_call(channel, method, request, metadata=..., after=invariant)
        run()

``requests(cls)`` draws messages field by field from the descriptor (every scalar type with its
boundary values, open enums with unknown numbers, nested messages to a depth, repeated and map
fields, oneofs) and, given seed messages, byte-level mutations of their wire encoding that still
parse. ``check_call`` sends one request over a real channel and asserts the servicer answered
OK or with a deliberate status: never UNKNOWN (an exception escaped the servicer, which gRPC
turns into "Exception calling application"), never INTERNAL unless the caller adds it to
``allowed``, always with details that say what was wrong, within the deadline. ``after`` runs
an invariant (e.g. "a refused call changed no stored state") after each call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from ._mutate import mutated

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}

# Codes a servicer may answer fuzzed input with: it looked at the request and said no.
DELIBERATE = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass(frozen=True)
class Method:
    """One RPC of a service: its path and message classes."""

    path: str
    request_class: type[Message]
    response_class: type[Message]
    server_streaming: bool
    client_streaming: bool


def methods(pb2: ModuleType, service: str) -> list[Method]:
    """The methods of ``service`` as declared in the generated module ``pb2``."""
    descriptor = pb2.DESCRIPTOR.services_by_name[service]
    return [
        Method(
            path=f"/{descriptor.full_name}/{m.name}",
            request_class=message_factory.GetMessageClass(m.input_type),
            response_class=message_factory.GetMessageClass(m.output_type),
            server_streaming=m.server_streaming,
            client_streaming=m.client_streaming,
        )
        for m in descriptor.methods
    ]


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        edges = sorted(e for e in {lo, hi, 0, 1, 2**31 - 1, 2**31, 2**63, -1} if lo <= e <= hi)
        return st.one_of(st.sampled_from(edges), st.integers(lo, hi))
    if kind == _F.TYPE_BOOL:
        return st.booleans()
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return st.floats(width=32 if kind == _F.TYPE_FLOAT else 64)
    if kind == _F.TYPE_STRING:
        return st.one_of(st.text(max_size=64), st.sampled_from(["", "a" * 5000, "../x", "\x00"]))
    if kind == _F.TYPE_BYTES:
        return st.binary(max_size=256)
    if kind == _F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        # proto3 enums are open: numbers nobody declared arrive as they are.
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    raise TypeError(f"no strategy for field type {kind} of {field.full_name}")


def _repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5.29 spells it is_repeated; label is deprecated there.
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == _F.LABEL_REPEATED


def _fill(draw: st.DrawFn, message: Message, descriptor: Descriptor, depth: int) -> None:
    for field in descriptor.fields:
        if not draw(st.booleans(), label=f"set {field.name}"):
            continue
        is_map = field.type == _F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        if is_map:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            container = getattr(message, field.name)
            for _ in range(draw(st.integers(0, 3))):
                key = draw(_scalar(key_field))
                if value_field.type == _F.TYPE_MESSAGE:
                    if depth > 0:
                        _fill(draw, container[key], value_field.message_type, depth - 1)
                else:
                    container[key] = draw(_scalar(value_field))
        elif field.type == _F.TYPE_MESSAGE:
            if depth <= 0:
                continue
            if _repeated(field):
                container = getattr(message, field.name)
                for _ in range(draw(st.integers(0, 3))):
                    _fill(draw, container.add(), field.message_type, depth - 1)
            else:
                child = getattr(message, field.name)
                child.SetInParent()
                _fill(draw, child, field.message_type, depth - 1)
        elif _repeated(field):
            getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=5)))
        else:
            setattr(message, field.name, draw(_scalar(field)))


@st.composite
def _random_message(draw: st.DrawFn, cls: type[Message], depth: int) -> Message:
    message = cls()
    _fill(draw, message, cls.DESCRIPTOR, depth)
    return message


def _parse(cls: type[Message], data: bytes) -> Message | None:
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None  # the gRPC layer refuses such bytes before a servicer sees them


def requests(
    cls: type[Message], *, seeds: Sequence[Message] = (), max_depth: int = 3
) -> st.SearchStrategy[Message]:
    """Random messages of ``cls`` and, given seeds, wire-level mutations of them that parse."""
    strategies = [_random_message(cls, max_depth)]
    if seeds:
        encoded = [s.SerializeToString() for s in seeds]
        strategies.append(st.sampled_from(list(seeds)))
        strategies.append(
            mutated(encoded).map(lambda data: _parse(cls, data)).filter(lambda m: m is not None)
        )
    return st.one_of(*strategies)


def check_call(
    channel: grpc.Channel,
    method: Method,
    request: Message,
    *,
    metadata: Sequence[tuple[str, str]] | None = None,
    timeout_s: float = 10.0,
    allowed: frozenset[grpc.StatusCode] = DELIBERATE,
    after: Callable[[grpc.StatusCode, Message], None] | None = None,
) -> grpc.StatusCode:
    """Send ``request``; assert the answer is OK or a deliberate, explained refusal."""
    if method.client_streaming:
        raise NotImplementedError("client-streaming methods: send an iterator of requests")
    serialize = method.request_class.SerializeToString
    deserialize = method.response_class.FromString
    if method.server_streaming:
        call = channel.unary_stream(method.path, serialize, deserialize)
    else:
        call = channel.unary_unary(method.path, serialize, deserialize)
    code, details = grpc.StatusCode.OK, ""
    try:
        answer = call(request, timeout=timeout_s, metadata=metadata)
        if method.server_streaming:
            for _ in answer:
                pass
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        raise AssertionError(f"{method.path} did not answer within {timeout_s} s: {request}")
    if code not in allowed:
        raise AssertionError(f"{method.path} answered {code.name} ({details!r}) to {request}")
    if code is not grpc.StatusCode.OK and not details.strip():
        raise AssertionError(f"{method.path} refused with {code.name} but said nothing why")
    if "Exception calling application" in details or "Traceback" in details:
        raise AssertionError(f"{method.path} leaked an exception to the client: {details!r}")
    if after is not None:
        after(code, request)
    return code
