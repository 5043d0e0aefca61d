"""The client side of secure aggregation: a state machine over the four SecAgg+ stages.

One ``SecAggClient`` serves one client in one round (it runs inside the data owner's
sandbox). Each stage method takes the server's request bytes and returns the response
bytes; the stages must come in order, each once:

    setup -> share_keys -> collect_masked_vector -> unmask

A request that does not parse, is bound to another session, round or client, or breaks a
protocol rule raises a ``SecAggError`` subclass and leaves the client failed: every later
call raises ``StageOrderError`` (a client never continues from a state it refused).

Rules the client enforces (so that a curious server learns only sums):

- it reveals, per peer, at most one kind of share: the seed share of a survivor or the
  key share of a dropped client, never both (``ShareRevealRefusedError``);
- it unmasks only if at least ``threshold`` clients survived and the group of survivors
  it belongs to in the neighbour graph has at least ``threshold`` members; as every
  survivor checks its own group, no sum over fewer than ``threshold`` clients can be
  isolated (a small group's seeds are held only inside it);
- it masks with exactly the neighbours whose envelopes authenticate; an envelope that
  fails to authenticate (tampered or replayed from another round) aborts the round for
  this client.

Between stages the client can be exported (``export_state``) and restored
(``SecAggClient.restore``), for runtimes that start a fresh process per message (Flower's
ClientApp does). The state holds private keys and shares: it must never leave the
sandbox unsealed.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import pydantic
from numpy.typing import NDArray

from crypto.canonical import CanonicalModel
from crypto.errors import (
    ClientStateError,
    MalformedShareError,
    ProtocolViolationError,
    SecAggMessageError,
    ShareEnvelopeError,
    ShareRevealRefusedError,
    StageOrderError,
)
from crypto.hazmat.masks import BLOCK_WORDS, MaskStreams, pairwise_mask_key, self_mask_key
from crypto.quantize import FixedPoint, check_update
from crypto.secagg.graph import NeighbourGraph
from crypto.secagg.keys import (
    SEED_SIZE,
    KeyPair,
    agree,
    envelope_keys,
    open_envelope,
    seal_envelope,
    seed_commitment,
)
from crypto.secagg.messages import (
    Binding,
    CollectRequest,
    MaskedVector,
    PublicKeys,
    SetupRequest,
    SetupResponse,
    ShareKeysRequest,
    ShareKeysResponse,
    ShareKind,
    UnmaskRequest,
    UnmaskResponse,
)
from crypto.secagg.params import MAX_SESSION_ID, RoundParams
from crypto.shamir import Share, split

__all__ = ["ClientStage", "SecAggClient"]


class ClientStage(enum.StrEnum):
    """The stage a client expects next (Flower's SecAgg+ stage names)."""

    SETUP = "setup"
    SHARE_KEYS = "share_keys"
    COLLECT_MASKED_VECTORS = "collect_masked_vectors"
    UNMASK = "unmask"
    DONE = "done"
    FAILED = "failed"


class SecAggClient:
    """One client's side of one secure-aggregation round."""

    def __init__(self, client_id: int, *, session_id: bytes, round_number: int) -> None:
        if not isinstance(client_id, int) or isinstance(client_id, bool):
            raise TypeError("client_id must be int")
        if not 0 <= client_id < 1 << 64:
            raise ValueError("client_id must fit in 64 bits unsigned")
        if not isinstance(session_id, bytes):
            raise TypeError("session_id must be bytes")
        if not 1 <= len(session_id) <= MAX_SESSION_ID:
            raise ValueError(f"session_id must be 1..{MAX_SESSION_ID} bytes")
        if not isinstance(round_number, int) or isinstance(round_number, bool):
            raise TypeError("round_number must be int")
        if not 0 <= round_number < 1 << 64:
            raise ValueError("round_number must fit in 64 bits unsigned")
        self.client_id = client_id
        self.binding = Binding(session_id, round_number, client_id)
        self.stage = ClientStage.SETUP
        self._params: RoundParams | None = None
        self._graph: NeighbourGraph | None = None
        self._transport: KeyPair | None = None
        self._mask: KeyPair | None = None
        self._seed = b""
        self._holder_keys: dict[int, PublicKeys] = {}
        self._receive_keys: dict[int, bytes] = {}
        self._seed_shares: dict[int, Share] = {}
        self._key_shares: dict[int, Share] = {}
        self._masked_with: tuple[int, ...] = ()
        self._revealed: dict[int, ShareKind] = {}
        self._setup_request = b""

    def __repr__(self) -> str:
        return f"SecAggClient(client_id={self.client_id}, stage={self.stage.value!r})"

    @property
    def params(self) -> RoundParams:
        """The round's parameters, once setup is done."""
        if self._params is None:
            raise StageOrderError(expected=ClientStage.SETUP.value, got="params")
        return self._params

    def _enter(self, stage: ClientStage) -> None:
        if self.stage is not stage:
            raise StageOrderError(expected=self.stage.value, got=stage.value)

    def _run(self, stage: ClientStage, step: Callable[..., bytes], *args: object) -> bytes:
        self._enter(stage)
        try:
            response = step(*args)
        except BaseException:
            self._fail()
            raise
        return response

    def _fail(self) -> None:
        self.stage = ClientStage.FAILED
        self._seed = b""
        self._mask = self._transport = None
        self._receive_keys.clear()
        self._seed_shares.clear()
        self._key_shares.clear()

    # -- stage 0 ---------------------------------------------------------------------------

    def setup(self, request: bytes) -> bytes:
        """Stage setup: accept the round parameters, answer with fresh public keys."""
        return self._run(ClientStage.SETUP, self._setup, request)

    def _setup(self, request: bytes) -> bytes:
        params = SetupRequest.from_bytes(request, self.binding).params
        if self.client_id not in params.participants:
            raise ProtocolViolationError("participant", "this client is not in the round")
        self._setup_request = bytes(request)
        self._params = params
        self._graph = NeighbourGraph.build(params)
        self._transport = KeyPair.generate()
        self._mask = KeyPair.generate()
        self.stage = ClientStage.SHARE_KEYS
        keys = PublicKeys(self._transport.public, self._mask.public)
        return SetupResponse(keys).to_bytes(self.binding)

    # -- stage 1 ---------------------------------------------------------------------------

    def share_keys(self, request: bytes) -> bytes:
        """Stage share_keys: split the seed and mask key among the holders, one envelope each."""
        return self._run(ClientStage.SHARE_KEYS, self._share_keys, request)

    def _share_keys(self, request: bytes) -> bytes:
        params, graph = self.params, self._graph
        assert graph is not None and self._transport is not None and self._mask is not None
        keys = dict(ShareKeysRequest.from_bytes(request, self.binding).keys)
        me = self.client_id
        if not keys.keys() <= graph.holders(me):
            raise ProtocolViolationError("holders", "keys offered for clients not our neighbours")
        if keys.get(me) != PublicKeys(self._transport.public, self._mask.public):
            raise ProtocolViolationError("own-keys", "our own public keys are missing or altered")
        if len(keys) < params.threshold:
            raise ProtocolViolationError(
                "threshold", f"{len(keys)} holders left, threshold is {params.threshold}"
            )
        every_key = [k.transport for k in keys.values()] + [k.mask for k in keys.values()]
        if len(set(every_key)) != len(every_key):
            raise ProtocolViolationError("distinct-keys", "two public keys offered are equal")

        self._holder_keys = keys
        self._seed = os.urandom(SEED_SIZE)
        holders = sorted(keys)
        xs = [params.holder_x(h) for h in holders]
        seed_shares = split(self._seed, params.threshold, xs)
        key_shares = split(self._mask.private_bytes(), params.threshold, xs)
        envelopes = {}
        for holder, seed_share, key_share in zip(holders, seed_shares, key_shares, strict=True):
            if holder == me:
                self._seed_shares[me] = seed_share
                self._key_shares[me] = key_share
                continue
            send_key, receive_key = envelope_keys(
                self._transport,
                keys[holder].transport,
                session_id=params.session_id,
                round_number=params.round_number,
                me=me,
                peer=holder,
            )
            self._receive_keys[holder] = receive_key
            envelopes[holder] = seal_envelope(
                send_key,
                session_id=params.session_id,
                round_number=params.round_number,
                src=me,
                dst=holder,
                seed_share=seed_share,
                key_share=key_share,
            )
        commitment = seed_commitment(
            self._seed, session_id=params.session_id, round_number=params.round_number, owner=me
        )
        self.stage = ClientStage.COLLECT_MASKED_VECTORS
        return ShareKeysResponse(commitment, envelopes).to_bytes(self.binding)

    # -- stage 2 ---------------------------------------------------------------------------

    def collect_masked_vector(
        self, request: bytes, update: NDArray[np.floating], weight: float
    ) -> bytes:
        """Stage collect_masked_vectors: keep peers' shares, return the masked weighted update.

        ``update`` is the flat float vector (length ``params.vector_length``) and ``weight``
        its FedAvg weight (e.g. the number of examples; clipped to ``params.max_weight``).
        """
        self._enter(ClientStage.COLLECT_MASKED_VECTORS)
        update = check_update(update, self.params.vector_length)
        code = self.params.fixed_point()
        weight_word = code.quantize_weight(weight)
        return self._run(
            ClientStage.COLLECT_MASKED_VECTORS, self._collect, request, update, weight_word, code
        )

    def _collect(
        self, request: bytes, update: NDArray[np.floating], weight_word: int, code: FixedPoint
    ) -> bytes:
        params, me = self.params, self.client_id
        assert self._transport is not None and self._mask is not None
        envelopes = CollectRequest.from_bytes(request, self.binding).envelopes
        peers = self._holder_keys.keys() - {me}
        if not envelopes.keys() <= peers:
            raise ProtocolViolationError("sources", "envelopes from clients we sent no shares to")
        if len(envelopes) + 1 < params.threshold:
            raise ProtocolViolationError(
                "threshold", f"{len(envelopes) + 1} holders left, threshold is {params.threshold}"
            )
        my_x = params.holder_x(me)
        for src, envelope in envelopes.items():
            seed_share, key_share = open_envelope(
                self._receive_keys[src],
                envelope,
                session_id=params.session_id,
                round_number=params.round_number,
                src=src,
                dst=me,
            )
            if seed_share.x != my_x or key_share.x != my_x:
                raise ShareEnvelopeError(src)
            self._seed_shares[src] = seed_share
            self._key_shares[src] = key_share

        own = self_mask_key(
            self._seed, session_id=params.session_id, round_number=params.round_number, owner=me
        )
        add, subtract = [own], []
        for peer in sorted(envelopes):
            secret = agree(self._mask, self._holder_keys[peer].mask)
            key = pairwise_mask_key(
                secret,
                session_id=params.session_id,
                round_number=params.round_number,
                a=(me, self._mask.public),
                b=(peer, self._holder_keys[peer].mask),
            )
            (add if me < peer else subtract).append(key)
        self._masked_with = tuple(sorted(envelopes))

        length = params.vector_length + 1
        buffer, words = MaskedVector.allocate(self.binding, self._masked_with, length)
        streams = MaskStreams(add=add, subtract=subtract)
        scratch = np.empty(BLOCK_WORDS, dtype=np.float64)
        for start in range(0, length, BLOCK_WORDS):
            stop = min(start + BLOCK_WORDS, length)
            block = words[start:stop]
            if start == 0:
                block[0] = weight_word
                code.encode_values_into(update[: stop - 1], weight_word, block[1:], scratch=scratch)
            else:
                code.encode_values_into(
                    update[start - 1 : stop - 1], weight_word, block, scratch=scratch
                )
            streams.apply(block)
        self._seed = b""  # the self mask is applied; only its shares remain, with the holders
        self._receive_keys.clear()
        self.stage = ClientStage.UNMASK
        return buffer.tobytes()

    # -- stage 3 ---------------------------------------------------------------------------

    def unmask(self, request: bytes) -> bytes:
        """Stage unmask: reveal seed shares of survivors and key shares of dropped neighbours."""
        return self._run(ClientStage.UNMASK, self._unmask, request)

    def _unmask(self, request: bytes) -> bytes:
        params, graph, me = self.params, self._graph, self.client_id
        assert graph is not None
        message = UnmaskRequest.from_bytes(request, self.binding)
        alive, dead = set(message.alive), set(message.dead)
        for peer in sorted(alive & dead):
            raise ShareRevealRefusedError(peer)
        members = set(params.participants)
        if not (alive | dead) <= members:
            raise ProtocolViolationError("participants", "lists name clients not in the round")
        if me not in alive:
            raise ProtocolViolationError("self-alive", "this client's vector is listed as dropped")
        if not set(self._masked_with) <= alive | dead:
            raise ProtocolViolationError("coverage", "a peer we masked with is in neither list")
        if len(alive) < params.threshold:
            raise ProtocolViolationError(
                "threshold", f"{len(alive)} survivors, threshold is {params.threshold}"
            )
        # Every survivor checks its own group, so together they refuse any small group.
        if not graph.reaches(me, alive, params.threshold):
            raise ProtocolViolationError(
                "split-survivors",
                f"this client's group of survivors is smaller than threshold {params.threshold}",
            )

        seeds = {o: s for o, s in self._seed_shares.items() if o in alive}
        keys = {o: s for o, s in self._key_shares.items() if o in dead and o != me}
        for owner in seeds:
            self._reveal(owner, ShareKind.SEED)
        for owner in keys:
            self._reveal(owner, ShareKind.KEY)
        self.stage = ClientStage.DONE
        self._seed_shares.clear()
        self._key_shares.clear()
        return UnmaskResponse(seeds, keys).to_bytes(self.binding)

    def _reveal(self, owner: int, kind: ShareKind) -> None:
        previous = self._revealed.get(owner)
        if previous is not None and previous is not kind:
            raise ShareRevealRefusedError(owner)
        self._revealed[owner] = kind

    # -- state across processes --------------------------------------------------------------

    def export_state(self) -> bytes:
        """The client's round state as bytes, to resume in another process with ``restore``.

        The bytes contain private keys and shares: seal them to the sandbox before they
        leave its memory. A failed client has no state to export.
        """
        if self.stage is ClientStage.FAILED:
            raise StageOrderError(expected="a live client", got=ClientStage.FAILED.value)
        state = _ClientState(
            version=1,
            client_id=self.client_id,
            session_id=self.binding.session_id,
            round_number=self.binding.round_number,
            stage=self.stage.value,
            setup_request=self._setup_request,
            transport_key=self._transport.private_bytes() if self._transport else b"",
            mask_key=self._mask.private_bytes() if self._mask else b"",
            seed=self._seed,
            holder_keys={c: (k.transport, k.mask) for c, k in self._holder_keys.items()},
            receive_keys=dict(self._receive_keys),
            seed_shares={c: s.to_bytes() for c, s in self._seed_shares.items()},
            key_shares={c: s.to_bytes() for c, s in self._key_shares.items()},
            masked_with=list(self._masked_with),
            revealed={c: int(k) for c, k in self._revealed.items()},
        )
        return state.canonical_bytes()

    @classmethod
    def restore(
        cls, state: bytes, client_id: int, *, session_id: bytes, round_number: int
    ) -> SecAggClient:
        """Rebuild a client from ``export_state`` bytes, which must be for this client and round."""
        client = cls(client_id, session_id=session_id, round_number=round_number)
        if not isinstance(state, bytes | bytearray | memoryview):
            raise TypeError("state must be bytes")
        try:
            saved = _ClientState.model_validate_json(bytes(state))
        except pydantic.ValidationError as exc:
            raise ClientStateError(f"malformed ({exc.error_count()} errors)") from None
        got = (saved.client_id, saved.session_id, saved.round_number)
        if got != (client_id, session_id, round_number):
            raise ClientStateError("it belongs to another client, session or round")
        try:
            client._load(saved)
        except (SecAggMessageError, MalformedShareError, ValueError) as exc:
            raise ClientStateError(f"inconsistent: {exc}") from None
        return client

    def _load(self, saved: _ClientState) -> None:
        stage = ClientStage(saved.stage)
        if stage is ClientStage.FAILED:
            raise ValueError("a failed client cannot be restored")
        if stage is not ClientStage.SETUP:
            self._params = SetupRequest.from_bytes(saved.setup_request, self.binding).params
            self._graph = NeighbourGraph.build(self._params)
            self._setup_request = saved.setup_request
            self._transport = KeyPair.from_private_bytes(saved.transport_key)
            self._mask = KeyPair.from_private_bytes(saved.mask_key)
        self._seed = saved.seed
        self._holder_keys = {c: PublicKeys(t, m) for c, (t, m) in saved.holder_keys.items()}
        own = self._holder_keys.get(self.client_id)
        mine = (self._transport, self._mask)
        if own is not None and all(mine) and own != PublicKeys(mine[0].public, mine[1].public):
            raise ValueError("private keys do not match the recorded public keys")
        self._receive_keys = dict(saved.receive_keys)
        self._seed_shares = {c: Share.from_bytes(b) for c, b in saved.seed_shares.items()}
        self._key_shares = {c: Share.from_bytes(b) for c, b in saved.key_shares.items()}
        self._masked_with = tuple(saved.masked_with)
        self._revealed = {c: ShareKind(k) for c, k in saved.revealed.items()}
        self.stage = stage


_U64_MAX = (1 << 64) - 1
_Id = pydantic.conint(ge=0, le=_U64_MAX)
_Key32 = pydantic.conbytes(min_length=32, max_length=32)


class _ClientState(CanonicalModel):
    """The exported state of a SecAggClient (format 1)."""

    version: Literal[1]
    client_id: _Id  # type: ignore[valid-type]
    session_id: bytes
    round_number: _Id  # type: ignore[valid-type]
    stage: Literal["setup", "share_keys", "collect_masked_vectors", "unmask", "done"]
    setup_request: bytes
    transport_key: bytes
    mask_key: bytes
    seed: bytes
    holder_keys: dict[_Id, tuple[_Key32, _Key32]]  # type: ignore[valid-type]
    receive_keys: dict[_Id, _Key32]  # type: ignore[valid-type]
    seed_shares: dict[_Id, bytes]  # type: ignore[valid-type]
    key_shares: dict[_Id, bytes]  # type: ignore[valid-type]
    masked_with: list[_Id]  # type: ignore[valid-type]
    revealed: dict[_Id, Literal[1, 2]]  # type: ignore[valid-type]
