"""The server side of secure aggregation: a state machine that relays, sums and unmasks.

One ``SecAggServer`` runs one round. For each stage it produces one request per live
client (``*_requests``) and takes the responses that arrived (``receive_*``; a client
without a response has dropped). It never sees an unmasked vector: it learns the
weighted average of the survivors and the total weight.

Exclusions. A response that does not parse, is bound to another session, round, kind or
client, has the wrong length, or breaks a protocol rule excludes its sender for the rest
of the round, recorded in ``exclusions`` with a typed ``ExclusionReason`` (dropouts are
recorded too, as ``NO_RESPONSE``), and is never added to the sum. A client excluded at
collect_masked_vectors is handled exactly like a dropout: its neighbours reveal its key
shares and its pairwise masks are removed; its self mask (which only survivors' seed
shares could remove) keeps whatever it sent opaque.

Failure. If at any stage fewer than ``threshold`` clients remain, a survivor group of
fewer than ``threshold`` is cut off in the graph, or a secret needed for unmasking has
fewer than ``threshold`` live holders, the round fails with a ``RoundFailedError``
subclass before any share is requested, and no sum is returned. Reconstructed secrets are
checked (seeds against their owner's commitment, keys against their public key), so a
wrong share is found and excluded rather than turned into a wrong sum.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from crypto.errors import (
    InconsistentSharesError,
    MessageBindingError,
    NotEnoughSharesError,
    NotEnoughSurvivorsError,
    RoundFailedError,
    SecAggMessageError,
    SecretVerificationError,
    StageOrderError,
    SurvivorGraphSplitError,
    VectorLengthError,
)
from crypto.hazmat.masks import BLOCK_WORDS, MaskStreams, pairwise_mask_key, self_mask_key
from crypto.quantize import WORD_DTYPE, FixedPoint
from crypto.secagg.graph import NeighbourGraph
from crypto.secagg.keys import SEED_SIZE, KeyPair, agree, seed_commitment
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
from crypto.secagg.params import RoundParams
from crypto.shamir import Share, combine

__all__ = [
    "AggregateResult",
    "Exclusion",
    "ExclusionReason",
    "SecAggServer",
    "ServerStage",
]

MAX_RECOVERY_ATTEMPTS = 4096
"""Most share subsets tried to recover a secret when some shares are wrong."""

_SEED_KIND = "self-mask seed"
_KEY_KIND = "mask key"


class ServerStage(enum.StrEnum):
    """The stage whose requests the server sends next (Flower's SecAgg+ stage names)."""

    SETUP = "setup"
    SHARE_KEYS = "share_keys"
    COLLECT_MASKED_VECTORS = "collect_masked_vectors"
    UNMASK = "unmask"
    DONE = "done"
    FAILED = "failed"


class ExclusionReason(enum.StrEnum):
    """Why a client was left out of the rest of the round."""

    NO_RESPONSE = "no-response"
    """No response arrived (dropout)."""
    MALFORMED = "malformed"
    """The response does not parse."""
    WRONG_BINDING = "wrong-binding"
    """The response is bound to another session, round, kind or client (e.g. replayed)."""
    WRONG_LENGTH = "wrong-length"
    """The masked vector has the wrong number of entries."""
    BAD_PUBLIC_KEY = "bad-public-key"
    """A public key is not a usable X25519 key."""
    DUPLICATE_PUBLIC_KEY = "duplicate-public-key"
    """A public key equals another one in the round."""
    WRONG_RECIPIENTS = "wrong-recipients"
    """Share envelopes are not addressed to exactly the client's live neighbours."""
    MASK_SET_MISMATCH = "mask-set-mismatch"
    """The client says it masked with other peers than those it was given shares from."""
    WRONG_SHARE_SET = "wrong-share-set"
    """The revealed shares are not exactly those asked for."""
    INVALID_SHARE = "invalid-share"
    """A revealed share does not lie on its owner's verified sharing polynomial."""
    TOO_FEW_HOLDERS = "too-few-holders"
    """Fewer than threshold of the client's share holders are left, so it cannot take part."""
    NOT_EXPECTED = "not-expected"
    """A response came from a client that was not asked (not in the round, or excluded)."""


@dataclass(frozen=True)
class Exclusion:
    """One client left out at one stage, and why (an auditable event)."""

    client_id: int
    stage: ServerStage
    reason: ExclusionReason
    detail: str = ""


@dataclass(frozen=True)
class AggregateResult:
    """What the server learns: the survivors' weighted average and total weight."""

    average: NDArray[np.float64]
    total_weight: float
    contributors: tuple[int, ...]
    error_bound: float
    """Per entry, |average - plaintext FedAvg of the clipped updates| is at most this."""


def _exclusion_reason(exc: SecAggMessageError) -> ExclusionReason:
    if isinstance(exc, MessageBindingError):
        return ExclusionReason.WRONG_BINDING
    if isinstance(exc, VectorLengthError):
        return ExclusionReason.WRONG_LENGTH
    return ExclusionReason.MALFORMED


# Any scalar works for the check below: X25519 output is all-zero exactly for low-order
# points, whatever the (clamped) scalar; the result is discarded.
_PROBE_KEY = KeyPair.generate()


def _usable_public_key(key: bytes) -> bool:
    """Whether an X25519 exchange with ``key`` yields a non-zero secret (not low-order)."""
    try:
        agree(_PROBE_KEY, key)
    except SecAggMessageError:
        return False
    return True


def _sum_words(vectors: list[NDArray[np.uint32]], length: int) -> NDArray[np.uint32]:
    """The sum modulo 2^32 of equal-length word vectors, block by block so it stays in cache."""
    total = np.empty(length, dtype=WORD_DTYPE)
    for start in range(0, length, BLOCK_WORDS):
        block = total[start : start + BLOCK_WORDS]
        first, *rest = (v[start : start + BLOCK_WORDS] for v in vectors)
        np.copyto(block, first)
        for part in rest:
            np.add(block, part, out=block)
    return total


class SecAggServer:
    """The server side of one secure-aggregation round."""

    def __init__(self, params: RoundParams) -> None:
        if not isinstance(params, RoundParams):
            raise TypeError("params must be RoundParams")
        self.params = params
        self.graph = NeighbourGraph.build(params)
        self.code: FixedPoint = params.fixed_point()
        self.stage = ServerStage.SETUP
        self.exclusions: list[Exclusion] = []
        self.failure: RoundFailedError | None = None
        self.active: frozenset[int] = frozenset(params.participants)
        self._keys: dict[int, PublicKeys] = {}
        self._commitments: dict[int, bytes] = {}
        self._envelopes: dict[int, Mapping[int, bytes]] = {}
        self._u2: frozenset[int] = frozenset()
        self._dead: frozenset[int] = frozenset()
        self._sum: NDArray[np.uint32] | None = None

    def __repr__(self) -> str:
        return f"SecAggServer(stage={self.stage.value!r}, active={len(self.active)})"

    # -- bookkeeping ------------------------------------------------------------------------

    def _binding(self, client_id: int) -> Binding:
        return Binding(self.params.session_id, self.params.round_number, client_id)

    def _expect(self, stage: ServerStage) -> None:
        if self.stage is not stage:
            raise StageOrderError(expected=self.stage.value, got=stage.value)

    def _exclude(self, client_id: int, reason: ExclusionReason, detail: str = "") -> None:
        self.exclusions.append(Exclusion(client_id, self.stage, reason, detail))

    def _fail(self, error: RoundFailedError) -> RoundFailedError:
        self.stage = ServerStage.FAILED
        self.failure = error
        self._sum = None
        self._envelopes.clear()
        return error

    def _parse_all(
        self,
        responses: Mapping[int, bytes],
        parse: Callable[[bytes, Binding], object],
    ) -> dict[int, object]:
        """Parse every expected response; record dropouts, strays and malformed ones."""
        if not isinstance(responses, Mapping):
            raise TypeError("responses must map client ids to bytes")
        parsed: dict[int, object] = {}
        for client_id in sorted(responses.keys() - self.active, key=repr):
            self.exclusions.append(
                Exclusion(
                    client_id if isinstance(client_id, int) else -1,
                    self.stage,
                    ExclusionReason.NOT_EXPECTED,
                    "response from a client that was not asked",
                )
            )
        for client_id in sorted(self.active):
            data = responses.get(client_id)
            if data is None:
                self._exclude(client_id, ExclusionReason.NO_RESPONSE)
                continue
            if not isinstance(data, bytes | bytearray | memoryview):
                self._exclude(client_id, ExclusionReason.MALFORMED, "response is not bytes")
                continue
            try:
                parsed[client_id] = parse(data, self._binding(client_id))
            except SecAggMessageError as exc:
                self._exclude(client_id, _exclusion_reason(exc), str(exc))
        return parsed

    def _prune(self, candidates: Iterable[int]) -> frozenset[int]:
        """Drop clients with fewer than threshold live holders, until none is left to drop."""
        live = set(candidates)
        t = self.params.threshold
        changed = True
        while changed:
            changed = False
            for client_id in sorted(live):
                holders = len(self.graph.holders(client_id) & live)
                if holders < t:
                    live.discard(client_id)
                    self._exclude(
                        client_id,
                        ExclusionReason.TOO_FEW_HOLDERS,
                        f"{holders} live share holders, threshold {t}",
                    )
                    changed = True
        return frozenset(live)

    def _require_survivors(self, live: frozenset[int]) -> None:
        if len(live) < self.params.threshold:
            raise self._fail(
                NotEnoughSurvivorsError(
                    stage=self.stage.value, needed=self.params.threshold, got=len(live)
                )
            )

    # -- stage 0: setup ---------------------------------------------------------------------

    def setup_requests(self) -> dict[int, bytes]:
        """Stage setup: the parameters, one request per sampled client."""
        self._expect(ServerStage.SETUP)
        request = SetupRequest(self.params)
        return {c: request.to_bytes(self._binding(c)) for c in sorted(self.active)}

    def receive_setup(self, responses: Mapping[int, bytes]) -> None:
        """Take the clients' public keys; those without valid, distinct keys are out."""
        self._expect(ServerStage.SETUP)
        parsed = self._parse_all(responses, SetupResponse.from_bytes)
        keys: dict[int, PublicKeys] = {}
        for client_id, message in parsed.items():
            assert isinstance(message, SetupResponse)
            if not all(_usable_public_key(k) for k in (message.keys.transport, message.keys.mask)):
                self._exclude(client_id, ExclusionReason.BAD_PUBLIC_KEY)
                continue
            keys[client_id] = message.keys
        owners: dict[bytes, list[int]] = {}
        for client_id, k in keys.items():
            owners.setdefault(k.transport, []).append(client_id)
            owners.setdefault(k.mask, []).append(client_id)
        duplicated = {c for ids in owners.values() if len(ids) > 1 for c in ids}
        for client_id in sorted(duplicated):
            self._exclude(client_id, ExclusionReason.DUPLICATE_PUBLIC_KEY)
            del keys[client_id]
        live = self._prune(keys)
        self._require_survivors(live)
        self._keys = {c: keys[c] for c in live}
        self.active = live
        self.stage = ServerStage.SHARE_KEYS

    # -- stage 1: share keys ----------------------------------------------------------------

    def share_keys_requests(self) -> dict[int, bytes]:
        """Stage share_keys: each client gets the public keys of its live holders."""
        self._expect(ServerStage.SHARE_KEYS)
        out = {}
        for client_id in sorted(self.active):
            holders = self.graph.holders(client_id) & self.active
            message = ShareKeysRequest({h: self._keys[h] for h in holders})
            out[client_id] = message.to_bytes(self._binding(client_id))
        return out

    def receive_share_keys(self, responses: Mapping[int, bytes]) -> None:
        """Take the seed commitments and envelopes; check each is addressed to the right peers."""
        self._expect(ServerStage.SHARE_KEYS)
        parsed = self._parse_all(responses, ShareKeysResponse.from_bytes)
        valid = []
        for client_id, message in parsed.items():
            assert isinstance(message, ShareKeysResponse)
            expected = self.graph.neighbours(client_id) & self.active
            if set(message.envelopes) != expected:
                self._exclude(
                    client_id,
                    ExclusionReason.WRONG_RECIPIENTS,
                    f"{len(message.envelopes)} envelopes, expected {len(expected)}",
                )
                continue
            self._commitments[client_id] = message.seed_commitment
            self._envelopes[client_id] = message.envelopes
            valid.append(client_id)
        live = self._prune(valid)
        self._require_survivors(live)
        self.active = self._u2 = live
        self.stage = ServerStage.COLLECT_MASKED_VECTORS

    # -- stage 2: collect masked vectors ----------------------------------------------------

    def collect_requests(self) -> dict[int, bytes]:
        """Stage collect_masked_vectors: relay to each client the envelopes addressed to it."""
        self._expect(ServerStage.COLLECT_MASKED_VECTORS)
        out = {}
        for client_id in sorted(self.active):
            sources = self.graph.neighbours(client_id) & self.active
            envelopes = {s: self._envelopes[s][client_id] for s in sources}
            out[client_id] = CollectRequest(envelopes).to_bytes(self._binding(client_id))
        return out

    def receive_masked_vectors(self, responses: Mapping[int, bytes]) -> None:
        """Sum the valid masked vectors; check the survivors can be unmasked safely."""
        self._expect(ServerStage.COLLECT_MASKED_VECTORS)
        length = self.params.vector_length + 1

        def parse(data: bytes, binding: Binding) -> MaskedVector:
            return MaskedVector.from_bytes(data, binding, length=length)

        parsed = self._parse_all(responses, parse)
        self._envelopes.clear()
        vectors = []
        alive = []
        for client_id, message in parsed.items():
            assert isinstance(message, MaskedVector)
            expected = tuple(sorted(self.graph.neighbours(client_id) & self._u2))
            if message.masked_with != expected:
                self._exclude(
                    client_id,
                    ExclusionReason.MASK_SET_MISMATCH,
                    f"masked with {len(message.masked_with)} peers, expected {len(expected)}",
                )
                continue
            vectors.append(message.vector)
            alive.append(client_id)
        survivors = frozenset(alive)
        self._require_survivors(survivors)
        t = self.params.threshold
        smallest = min(len(c) for c in self.graph.components(survivors))
        if smallest < t:
            raise self._fail(SurvivorGraphSplitError(smallest=smallest, needed=t))
        dead = self._u2 - survivors
        for owner in sorted(survivors):
            have = len(self.graph.holders(owner) & survivors)
            if have < t:
                raise self._fail(
                    NotEnoughSharesError(owner=owner, kind=_SEED_KIND, needed=t, got=have)
                )
        for owner in sorted(dead):
            have = len(self.graph.neighbours(owner) & survivors)
            if 0 < have < t:
                raise self._fail(
                    NotEnoughSharesError(owner=owner, kind=_KEY_KIND, needed=t, got=have)
                )
        self._sum = _sum_words(vectors, length)
        self._dead = frozenset(dead)
        self.active = survivors
        self.stage = ServerStage.UNMASK

    # -- stage 3: unmask --------------------------------------------------------------------

    def unmask_requests(self) -> dict[int, bytes]:
        """Stage unmask: tell every survivor who survived and who dropped."""
        self._expect(ServerStage.UNMASK)
        message = UnmaskRequest(tuple(sorted(self.active)), tuple(sorted(self._dead)))
        return {c: message.to_bytes(self._binding(c)) for c in sorted(self.active)}

    def receive_unmask(self, responses: Mapping[int, bytes]) -> AggregateResult:
        """Recover the secrets, strip every remaining mask, and decode the weighted average."""
        self._expect(ServerStage.UNMASK)
        survivors, dead = self.active, self._dead
        parsed = self._parse_all(responses, UnmaskResponse.from_bytes)
        seed_shares: dict[int, dict[int, Share]] = {o: {} for o in survivors}
        key_shares: dict[int, dict[int, Share]] = {o: {} for o in dead}
        for holder, message in parsed.items():
            assert isinstance(message, UnmaskResponse)
            want_seeds = self.graph.holders(holder) & survivors
            want_keys = self.graph.neighbours(holder) & dead
            x = self.params.holder_x(holder)
            if set(message.seed_shares) != want_seeds or set(message.key_shares) != want_keys:
                self._exclude(holder, ExclusionReason.WRONG_SHARE_SET)
                continue
            shares = [*message.seed_shares.values(), *message.key_shares.values()]
            if any(s.x != x for s in shares):
                self._exclude(holder, ExclusionReason.INVALID_SHARE, "share for another holder")
                continue
            for owner, share in message.seed_shares.items():
                seed_shares[owner][holder] = share
            for owner, share in message.key_shares.items():
                key_shares[owner][holder] = share

        sid, rnd = self.params.session_id, self.params.round_number
        subtract: list[bytes] = []
        add: list[bytes] = []
        for owner in sorted(survivors):
            commitment = self._commitments[owner]

            def seed_ok(seed: bytes, owner: int = owner, commitment: bytes = commitment) -> bool:
                return seed_commitment(seed, session_id=sid, round_number=rnd, owner=owner) == (
                    commitment
                )

            seed = self._recover(owner, _SEED_KIND, seed_shares[owner], seed_ok)
            subtract.append(self_mask_key(seed, session_id=sid, round_number=rnd, owner=owner))
        for owner in sorted(dead):
            partners = sorted(self.graph.neighbours(owner) & survivors)
            if not partners:
                continue
            mask_public = self._keys[owner].mask

            def key_ok(private: bytes, public: bytes = mask_public) -> bool:
                return KeyPair.from_private_bytes(private).public == public

            private = KeyPair.from_private_bytes(
                self._recover(owner, _KEY_KIND, key_shares[owner], key_ok)
            )
            for partner in partners:
                partner_public = self._keys[partner].mask
                key = pairwise_mask_key(
                    agree(private, partner_public),
                    session_id=sid,
                    round_number=rnd,
                    a=(owner, mask_public),
                    b=(partner, partner_public),
                )
                # The partner added this mask if partner < owner and subtracted it otherwise.
                (subtract if partner < owner else add).append(key)

        total = self._sum
        assert total is not None
        MaskStreams(add=add, subtract=subtract).apply(total)
        average, total_weight = self.code.decode(total, num_summed=len(survivors))
        bound = self.code.average_error_bound(num_summed=len(survivors), total_weight=total_weight)
        self._sum = None
        self.stage = ServerStage.DONE
        return AggregateResult(average, total_weight, tuple(sorted(survivors)), bound)

    def _recover(
        self,
        owner: int,
        kind: str,
        shares: Mapping[int, Share],
        verify: Callable[[bytes], bool],
    ) -> bytes:
        """Combine ``owner``'s shares into a verified secret, excluding holders of wrong shares."""
        t = self.params.threshold
        if len(shares) < t:
            raise self._fail(
                NotEnoughSharesError(owner=owner, kind=kind, needed=t, got=len(shares))
            )
        try:
            secret = combine(list(shares.values()), threshold=t, length=SEED_SIZE)
            if verify(secret):
                return secret
        except InconsistentSharesError:
            pass  # some share is wrong: look for a threshold subset that verifies
        holders = sorted(shares)
        for subset in itertools.islice(itertools.combinations(holders, t), MAX_RECOVERY_ATTEMPTS):
            basis = [shares[h] for h in subset]
            try:
                secret = combine(basis, threshold=t, length=SEED_SIZE)
            except InconsistentSharesError:
                continue
            if not verify(secret):
                continue
            for holder in holders:
                if holder in subset:
                    continue
                try:
                    combine([*basis, shares[holder]], threshold=t, length=SEED_SIZE)
                except InconsistentSharesError:
                    self._exclude(
                        holder, ExclusionReason.INVALID_SHARE, f"wrong share of {kind} of {owner}"
                    )
            return secret
        raise self._fail(SecretVerificationError(owner=owner, kind=kind))
