"""Binary encodings of the secure-aggregation messages (format v1), with strict, typed parsing.

The messages cross the wire as opaque bytes (Flower carries them in a ConfigRecord), so
each is self-describing and bound to where it belongs. Every message starts with

    magic "FTSA" | version u8 = 1 | kind u8 | len u8 | session_id | round u64 | client u64

where ``client`` is the recipient of a server request and the sender of a client
response. All integers are big-endian except the masked vector's words, which are
little-endian uint32 (numpy's layout, read without copying). Id lists are strictly
ascending (one canonical encoding, no duplicates). A parser reads exactly the bytes the
kind defines: a short read, trailing bytes, a count out of range, or a header bound to
another session, round, kind or client raise ``SecAggMessageError`` (or its subclasses
``MessageBindingError``, ``VectorLengthError``) naming the field.

Kinds (stage names follow Flower's SecAgg+):

    1 SetupRequest        server -> client   setup: the RoundParams
    2 SetupResponse       client -> server   transport and mask public keys
    3 ShareKeysRequest    server -> client   share_keys: public keys of the client's holders
    4 ShareKeysResponse   client -> server   seed commitment, one envelope per neighbour
    5 CollectRequest      server -> client   collect_masked_vectors: envelopes for the client
    6 MaskedVector        client -> server   whom it masked with, the m + 1 masked words
    7 UnmaskRequest       server -> client   unmask: survivors and dropped clients
    8 UnmaskResponse      client -> server   seed shares of survivors, key shares of dropped
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from crypto.errors import (
    MalformedShareError,
    MessageBindingError,
    SecAggMessageError,
    VectorLengthError,
)
from crypto.quantize import WORD_DTYPE
from crypto.secagg.keys import COMMITMENT_SIZE, ENVELOPE_SIZE, PUBLIC_KEY_SIZE
from crypto.secagg.params import GRAPH_SEED_SIZE, MAX_PARTICIPANTS, RoundParams
from crypto.shamir import SHARE_SIZE, Share

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Binding",
    "CollectRequest",
    "MaskedVector",
    "MessageKind",
    "PublicKeys",
    "SetupRequest",
    "SetupResponse",
    "ShareKeysRequest",
    "ShareKeysResponse",
    "ShareKind",
    "UnmaskRequest",
    "UnmaskResponse",
]

MAGIC = b"FTSA"
FORMAT_VERSION = 1
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_VECTOR_ALIGN = 8


class MessageKind(enum.IntEnum):
    """The kind byte of each message."""

    SETUP_REQUEST = 1
    SETUP_RESPONSE = 2
    SHARE_KEYS_REQUEST = 3
    SHARE_KEYS_RESPONSE = 4
    COLLECT_REQUEST = 5
    MASKED_VECTOR = 6
    UNMASK_REQUEST = 7
    UNMASK_RESPONSE = 8


class ShareKind(enum.IntEnum):
    """Which secret a revealed share belongs to."""

    SEED = 1
    """The self-mask seed b of a survivor."""
    KEY = 2
    """The mask private key of a dropped client."""


@dataclass(frozen=True)
class Binding:
    """Where a message belongs: session, round, and the client it is to or from."""

    session_id: bytes
    round_number: int
    client_id: int

    def header(self, kind: MessageKind) -> bytes:
        """The encoded header of a message of ``kind`` with this binding."""
        return (
            MAGIC
            + _U8.pack(FORMAT_VERSION)
            + _U8.pack(kind)
            + _U8.pack(len(self.session_id))
            + self.session_id
            + _U64.pack(self.round_number)
            + _U64.pack(self.client_id)
        )


class _Reader:
    """Bounds-checked sequential reads; every failure names the field."""

    def __init__(self, data: object) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("a message must be bytes")
        self.view = memoryview(data).cast("B")
        self.pos = 0

    def take(self, size: int, field: str) -> memoryview:
        end = self.pos + size
        if size < 0 or end > len(self.view):
            raise SecAggMessageError(field, "message ends early (truncated)")
        chunk = self.view[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: struct.Struct, field: str) -> int | float:
        return fmt.unpack(self.take(fmt.size, field))[0]

    def count(self, field: str, maximum: int) -> int:
        value = int(self.unpack(_U32, field))
        if value > maximum:
            raise SecAggMessageError(field, f"count {value} exceeds {maximum}")
        return value

    def ids(self, field: str, maximum: int) -> tuple[int, ...]:
        count = self.count(field, maximum)
        values = np.frombuffer(self.take(8 * count, field), dtype=">u8")
        if count > 1 and not bool(np.all(values[1:] > values[:-1])):
            raise SecAggMessageError(field, "ids must be strictly ascending (no duplicates)")
        return tuple(values.tolist())

    def finish(self) -> None:
        if self.pos != len(self.view):
            raise SecAggMessageError("end", f"{len(self.view) - self.pos} trailing bytes")


def _check_ascending(values: tuple[int, ...], field: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(values)):
        raise SecAggMessageError(field, "ids must be strictly ascending (no duplicates)")


def _read_header(reader: _Reader, kind: MessageKind, binding: Binding) -> None:
    if bytes(reader.take(len(MAGIC), "magic")) != MAGIC:
        raise SecAggMessageError("magic", "not a fedtune secure-aggregation message")
    version = reader.unpack(_U8, "version")
    if version != FORMAT_VERSION:
        raise SecAggMessageError("version", f"format {version}, this build reads {FORMAT_VERSION}")
    got_kind = int(reader.unpack(_U8, "kind"))
    if got_kind != kind:
        try:
            got_name: object = MessageKind(got_kind).name
        except ValueError:
            got_name = got_kind
        raise MessageBindingError("kind", expected=kind.name, got=got_name)
    session_id = bytes(reader.take(int(reader.unpack(_U8, "session_id")), "session_id"))
    if session_id != binding.session_id:
        raise MessageBindingError("session", expected=binding.session_id, got=session_id)
    round_number = reader.unpack(_U64, "round")
    if round_number != binding.round_number:
        raise MessageBindingError("round", expected=binding.round_number, got=round_number)
    client_id = reader.unpack(_U64, "client")
    if client_id != binding.client_id:
        raise MessageBindingError("client", expected=binding.client_id, got=client_id)


def _id_list(ids: tuple[int, ...]) -> bytes:
    return _U32.pack(len(ids)) + struct.pack(f">{len(ids)}Q", *ids)


class _Message:
    KIND: ClassVar[MessageKind]

    def _body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _parse_body(cls, reader: _Reader) -> Self:
        raise NotImplementedError

    def to_bytes(self, binding: Binding) -> bytes:
        """Encode this message, bound to ``binding``."""
        return binding.header(self.KIND) + self._body()

    @classmethod
    def from_bytes(cls, data: bytes, binding: Binding) -> Self:
        """Parse a message of this kind that must be bound to ``binding``."""
        reader = _Reader(data)
        _read_header(reader, cls.KIND, binding)
        message = cls._parse_body(reader)
        reader.finish()
        return message


@dataclass(frozen=True)
class PublicKeys:
    """A client's two X25519 public keys for one round."""

    transport: bytes
    mask: bytes

    def __post_init__(self) -> None:
        for key in (self.transport, self.mask):
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE:
                raise ValueError(f"public keys are {PUBLIC_KEY_SIZE} bytes")


@dataclass(frozen=True)
class SetupRequest(_Message):
    """Stage setup, server -> client: the round's parameters."""

    KIND: ClassVar[MessageKind] = MessageKind.SETUP_REQUEST
    params: RoundParams

    def to_bytes(self, binding: Binding) -> bytes:
        """Encode, checking that ``binding`` agrees with the parameters it carries."""
        p = self.params
        if (binding.session_id, binding.round_number) != (p.session_id, p.round_number):
            raise ValueError("binding and params disagree on session or round")
        return super().to_bytes(binding)

    def _body(self) -> bytes:
        p = self.params
        return (
            _U64.pack(p.vector_length)
            + _U16.pack(p.degree)
            + _U16.pack(p.threshold)
            + _F64.pack(p.clip)
            + _F64.pack(p.max_weight)
            + p.graph_seed
            + _id_list(p.participants)
        )

    @classmethod
    def from_bytes(cls, data: bytes, binding: Binding) -> SetupRequest:
        """Parse and validate the parameters (session and round come from the header)."""
        reader = _Reader(data)
        _read_header(reader, cls.KIND, binding)
        vector_length = int(reader.unpack(_U64, "vector_length"))
        degree = int(reader.unpack(_U16, "degree"))
        threshold = int(reader.unpack(_U16, "threshold"))
        clip = float(reader.unpack(_F64, "clip"))
        max_weight = float(reader.unpack(_F64, "max_weight"))
        graph_seed = bytes(reader.take(GRAPH_SEED_SIZE, "graph_seed"))
        participants = reader.ids("participants", MAX_PARTICIPANTS)
        reader.finish()
        try:
            params = RoundParams(
                session_id=binding.session_id,
                round_number=binding.round_number,
                participants=participants,
                vector_length=vector_length,
                degree=degree,
                threshold=threshold,
                clip=clip,
                max_weight=max_weight,
                graph_seed=graph_seed,
            )
        except ValueError as exc:
            raise SecAggMessageError("params", str(exc)) from None
        return cls(params)


@dataclass(frozen=True)
class SetupResponse(_Message):
    """Stage setup, client -> server: the client's public keys."""

    KIND: ClassVar[MessageKind] = MessageKind.SETUP_RESPONSE
    keys: PublicKeys

    def _body(self) -> bytes:
        return self.keys.transport + self.keys.mask

    @classmethod
    def _parse_body(cls, reader: _Reader) -> SetupResponse:
        transport = bytes(reader.take(PUBLIC_KEY_SIZE, "transport_key"))
        mask = bytes(reader.take(PUBLIC_KEY_SIZE, "mask_key"))
        return cls(PublicKeys(transport, mask))


@dataclass(frozen=True)
class ShareKeysRequest(_Message):
    """Stage share_keys, server -> client: public keys of the live holders (incl. itself)."""

    KIND: ClassVar[MessageKind] = MessageKind.SHARE_KEYS_REQUEST
    keys: Mapping[int, PublicKeys]

    def _body(self) -> bytes:
        items = sorted(self.keys.items())
        return _U32.pack(len(items)) + b"".join(
            _U64.pack(i) + k.transport + k.mask for i, k in items
        )

    @classmethod
    def _parse_body(cls, reader: _Reader) -> ShareKeysRequest:
        keys: dict[int, PublicKeys] = {}
        last = -1
        for _ in range(reader.count("keys", MAX_PARTICIPANTS)):
            client = int(reader.unpack(_U64, "keys.id"))
            if client <= last:
                raise SecAggMessageError("keys.id", "ids must be strictly ascending")
            last = client
            transport = bytes(reader.take(PUBLIC_KEY_SIZE, "keys.transport"))
            mask = bytes(reader.take(PUBLIC_KEY_SIZE, "keys.mask"))
            keys[client] = PublicKeys(transport, mask)
        return cls(keys)


def _encode_envelopes(envelopes: Mapping[int, bytes]) -> bytes:
    items = sorted(envelopes.items())
    if any(len(e) != ENVELOPE_SIZE for _, e in items):
        raise ValueError(f"envelopes are {ENVELOPE_SIZE} bytes")
    return _U32.pack(len(items)) + b"".join(_U64.pack(i) + e for i, e in items)


def _parse_envelopes(reader: _Reader, field: str) -> dict[int, bytes]:
    envelopes: dict[int, bytes] = {}
    last = -1
    for _ in range(reader.count(field, MAX_PARTICIPANTS)):
        peer = int(reader.unpack(_U64, f"{field}.id"))
        if peer <= last:
            raise SecAggMessageError(f"{field}.id", "ids must be strictly ascending")
        last = peer
        envelopes[peer] = bytes(reader.take(ENVELOPE_SIZE, f"{field}.envelope"))
    return envelopes


@dataclass(frozen=True)
class ShareKeysResponse(_Message):
    """Stage share_keys, client -> server: seed commitment and envelopes by recipient."""

    KIND: ClassVar[MessageKind] = MessageKind.SHARE_KEYS_RESPONSE
    seed_commitment: bytes
    envelopes: Mapping[int, bytes]

    def _body(self) -> bytes:
        if len(self.seed_commitment) != COMMITMENT_SIZE:
            raise ValueError(f"a commitment is {COMMITMENT_SIZE} bytes")
        return self.seed_commitment + _encode_envelopes(self.envelopes)

    @classmethod
    def _parse_body(cls, reader: _Reader) -> ShareKeysResponse:
        commitment = bytes(reader.take(COMMITMENT_SIZE, "seed_commitment"))
        return cls(commitment, _parse_envelopes(reader, "envelopes"))


@dataclass(frozen=True)
class CollectRequest(_Message):
    """Stage collect_masked_vectors, server -> client: the envelopes addressed to it, by sender."""

    KIND: ClassVar[MessageKind] = MessageKind.COLLECT_REQUEST
    envelopes: Mapping[int, bytes]

    def _body(self) -> bytes:
        return _encode_envelopes(self.envelopes)

    @classmethod
    def _parse_body(cls, reader: _Reader) -> CollectRequest:
        return cls(_parse_envelopes(reader, "envelopes"))


@dataclass(frozen=True)
class MaskedVector(_Message):
    """Stage collect_masked_vectors, client -> server: peers masked with, and the masked words."""

    KIND: ClassVar[MessageKind] = MessageKind.MASKED_VECTOR
    masked_with: tuple[int, ...]
    vector: NDArray[np.uint32]

    @staticmethod
    def allocate(
        binding: Binding, masked_with: tuple[int, ...], length: int
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint32]]:
        """An uninitialised message buffer with its header written, and the view of its words.

        The caller must fill every word of the view, then send ``buffer.tobytes()``; writing
        in place spares a zero-fill and a copy of the vector.
        """
        _check_ascending(masked_with, "masked_with")
        head = binding.header(MessageKind.MASKED_VECTOR) + _id_list(masked_with)
        head += _U64.pack(length)
        head += bytes(-len(head) % _VECTOR_ALIGN)
        buffer = np.empty(len(head) + 4 * length, dtype=np.uint8)
        buffer[: len(head)] = np.frombuffer(head, dtype=np.uint8)
        return buffer, buffer[len(head) :].view(WORD_DTYPE)

    def to_bytes(self, binding: Binding) -> bytes:
        """Encode (copies the vector; clients use ``allocate`` to write in place)."""
        buffer, view = self.allocate(binding, self.masked_with, len(self.vector))
        view[:] = self.vector
        return buffer.tobytes()

    @classmethod
    def from_bytes(
        cls, data: bytes, binding: Binding, *, length: int | None = None
    ) -> MaskedVector:
        """Parse; ``vector`` is a read-only view into ``data``, of exactly ``length`` words."""
        reader = _Reader(data)
        _read_header(reader, cls.KIND, binding)
        masked_with = reader.ids("masked_with", MAX_PARTICIPANTS)
        declared = int(reader.unpack(_U64, "length"))
        if length is not None and declared != length:
            raise VectorLengthError(expected=length, got=declared)
        pad = bytes(reader.take(-reader.pos % _VECTOR_ALIGN, "padding"))
        if any(pad):
            raise SecAggMessageError("padding", "must be zero")
        body = len(reader.view) - reader.pos
        if body != 4 * declared:
            if body < 4 * declared:
                raise SecAggMessageError("vector", "message ends early (truncated)")
            raise SecAggMessageError("end", f"{body - 4 * declared} trailing bytes")
        vector = np.frombuffer(reader.view, dtype=WORD_DTYPE, offset=reader.pos, count=declared)
        vector.flags.writeable = False
        return cls(masked_with, vector)


@dataclass(frozen=True)
class UnmaskRequest(_Message):
    """Stage unmask, server -> client: who survived (masked vector in) and who dropped."""

    KIND: ClassVar[MessageKind] = MessageKind.UNMASK_REQUEST
    alive: tuple[int, ...]
    dead: tuple[int, ...]

    def _body(self) -> bytes:
        return _id_list(tuple(sorted(self.alive))) + _id_list(tuple(sorted(self.dead)))

    @classmethod
    def _parse_body(cls, reader: _Reader) -> UnmaskRequest:
        alive = reader.ids("alive", MAX_PARTICIPANTS)
        dead = reader.ids("dead", MAX_PARTICIPANTS)
        return cls(alive, dead)


@dataclass(frozen=True)
class UnmaskResponse(_Message):
    """Stage unmask, client -> server: seed shares of survivors, key shares of dropped clients."""

    KIND: ClassVar[MessageKind] = MessageKind.UNMASK_RESPONSE
    seed_shares: Mapping[int, Share]
    key_shares: Mapping[int, Share]

    def _body(self) -> bytes:
        items = [(o, ShareKind.SEED, s) for o, s in self.seed_shares.items()]
        items += [(o, ShareKind.KEY, s) for o, s in self.key_shares.items()]
        items.sort(key=lambda t: (t[0], t[1]))
        return _U32.pack(len(items)) + b"".join(
            _U64.pack(o) + _U8.pack(k) + s.to_bytes() for o, k, s in items
        )

    @classmethod
    def _parse_body(cls, reader: _Reader) -> UnmaskResponse:
        seeds: dict[int, Share] = {}
        keys: dict[int, Share] = {}
        last = (-1, 0)
        for _ in range(reader.count("shares", 2 * MAX_PARTICIPANTS)):
            owner = int(reader.unpack(_U64, "shares.owner"))
            kind_byte = int(reader.unpack(_U8, "shares.kind"))
            if (owner, kind_byte) <= last:
                raise SecAggMessageError("shares.owner", "entries must be strictly ascending")
            last = (owner, kind_byte)
            try:
                kind = ShareKind(kind_byte)
            except ValueError:
                raise SecAggMessageError("shares.kind", f"unknown share kind {kind_byte}") from None
            try:
                share = Share.from_bytes(bytes(reader.take(SHARE_SIZE, "shares.share")))
            except MalformedShareError as exc:
                raise SecAggMessageError("shares.share", exc.reason) from None
            (seeds if kind is ShareKind.SEED else keys)[owner] = share
        return cls(seeds, keys)
