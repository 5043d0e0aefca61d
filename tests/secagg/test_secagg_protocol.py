"""The secure-aggregation round end to end: correct sums, dropouts, exclusions, refusals."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.errors import (
    MessageBindingError,
    NotEnoughSharesError,
    NotEnoughSurvivorsError,
    ProtocolViolationError,
    SecretVerificationError,
    ShareEnvelopeError,
    ShareRevealRefusedError,
    StageOrderError,
    SurvivorGraphSplitError,
)
from crypto.hazmat.masks import BLOCK_WORDS
from crypto.secagg import ClientStage, ExclusionReason, NeighbourGraph, ServerStage
from crypto.secagg.messages import (
    Binding,
    CollectRequest,
    MaskedVector,
    PublicKeys,
    SetupResponse,
    ShareKeysRequest,
    ShareKeysResponse,
    UnmaskRequest,
    UnmaskResponse,
)
from crypto.shamir import PRIME, Share

from .secagg_harness import SESSION, Round


def _assert_matches_plaintext(rnd: Round, result, contributors) -> None:
    expected, total = rnd.plaintext_fedavg(contributors)
    assert result.contributors == tuple(sorted(contributors))
    code = rnd.params.fixed_point()
    weight_rounding = len(result.contributors) * code.max_weight / (2 * code.weight_scale)
    assert abs(result.total_weight - total) <= weight_rounding * (1 + 1e-9)
    assert np.abs(result.average - expected).max() <= result.error_bound


def _reasons(rnd: Round) -> dict[int, ExclusionReason]:
    return {e.client_id: e.reason for e in rnd.server.exclusions}


# --- correct sums -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(3, 1), (5, 100), (10, 257), (17, 64), (6, BLOCK_WORDS + 3)])
def test_sum_equals_plaintext_fedavg_within_the_bound(n: int, m: int) -> None:
    rnd = Round.make(n, m, seed=n * 1000 + m)
    result = rnd.run()
    _assert_matches_plaintext(rnd, result, rnd.params.participants)
    assert result.error_bound < 1e-6  # c = 8, weights up to W: the quantisation is fine
    assert rnd.server.exclusions == []
    assert rnd.server.stage is ServerStage.DONE
    assert all(c.stage is ClientStage.DONE for c in rnd.clients.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=3, max_value=9),
    m=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_random_rounds_match_plaintext(n: int, m: int, data: st.DataObject) -> None:
    degree = data.draw(st.sampled_from([k for k in range(2, n) if (n * k) % 2 == 0]))
    threshold = data.draw(st.integers(min_value=(degree + 1) // 2 + 1, max_value=degree + 1))
    clip = data.draw(st.sampled_from([0.5, 8.0, 100.0]))
    rnd = Round.make(
        n,
        m,
        seed=data.draw(st.integers(0, 2**32)),
        degree=degree,
        threshold=threshold,
        clip=clip,
        max_weight=50.0,
    )
    extremes = st.sampled_from([0.0, clip, -clip, 3 * clip, -3 * clip, 1e-7])
    for c in rnd.params.participants:
        if data.draw(st.booleans()):
            rnd.updates[c] = np.array(
                data.draw(st.lists(extremes, min_size=m, max_size=m)), dtype=np.float32
            )
        rnd.weights[c] = data.draw(st.floats(min_value=0.01, max_value=200.0))
    result = rnd.run()
    _assert_matches_plaintext(rnd, result, rnd.params.participants)


# --- dropouts ---------------------------------------------------------------------------------


def _complete(n: int = 7, m: int = 50, **kw: object) -> Round:
    return Round.make(n, m, degree=n - 1, **kw)  # threshold defaults to 4 of 7


@pytest.mark.parametrize("dropped", [0, 1, 2, 3])
def test_dropouts_up_to_n_minus_threshold_at_masked_upload(dropped: int) -> None:
    rnd = _complete(seed=dropped)
    ids = rnd.params.participants
    assert rnd.params.threshold == 4
    gone = set(ids[:dropped])
    result = rnd.run(drop={"collect_masked_vectors": gone})
    _assert_matches_plaintext(rnd, result, set(ids) - gone)
    assert {e.client_id for e in rnd.server.exclusions} == gone
    assert all(e.reason is ExclusionReason.NO_RESPONSE for e in rnd.server.exclusions)


def test_one_dropout_beyond_threshold_fails_cleanly() -> None:
    rnd = _complete()
    gone = set(rnd.params.participants[:4])
    with pytest.raises(NotEnoughSurvivorsError) as info:
        rnd.run(drop={"collect_masked_vectors": gone})
    assert (info.value.needed, info.value.got) == (4, 3)
    assert info.value.stage == "collect_masked_vectors"
    assert rnd.server.stage is ServerStage.FAILED
    assert rnd.server.failure is info.value
    assert "unmask" not in rnd.requests  # no share was asked for
    with pytest.raises(StageOrderError):
        rnd.server.unmask_requests()


@pytest.mark.parametrize("stage", ["setup", "share_keys"])
@pytest.mark.parametrize("dropped", [3, 4])
def test_dropouts_before_masking(stage: str, dropped: int) -> None:
    rnd = _complete(seed=dropped)
    gone = set(rnd.params.participants[-dropped:])
    if dropped <= 3:
        result = rnd.run(drop={stage: gone})
        _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - gone)
    else:
        with pytest.raises(NotEnoughSurvivorsError):
            rnd.run(drop={stage: gone})
        assert rnd.server.stage is ServerStage.FAILED


def test_dropouts_at_every_stage_add_up() -> None:
    rnd = Round.make(9, 30, degree=8, threshold=5, seed=3)
    ids = rnd.params.participants
    result = rnd.run(
        drop={"setup": {ids[0]}, "share_keys": {ids[1]}, "collect_masked_vectors": {ids[2]}}
    )
    _assert_matches_plaintext(rnd, result, set(ids[3:]))


@pytest.mark.parametrize("dropped", [1, 2, 3])
def test_dropouts_during_unmask(dropped: int) -> None:
    # Vectors are in; up to |survivors| - threshold holders may vanish before revealing.
    rnd = _complete(seed=10 + dropped)
    gone = set(rnd.params.participants[:dropped])
    result = rnd.run(drop={"unmask": gone})
    _assert_matches_plaintext(rnd, result, rnd.params.participants)


def test_too_many_dropouts_during_unmask_fail_without_a_sum() -> None:
    rnd = _complete()
    gone = set(rnd.params.participants[:4])
    with pytest.raises(NotEnoughSharesError) as info:
        rnd.run(drop={"unmask": gone})
    assert (info.value.needed, info.value.got) == (4, 3)
    assert rnd.server.stage is ServerStage.FAILED


def test_sparse_graph_tolerates_scattered_dropouts() -> None:
    rnd = Round.make(12, 40, seed=5)  # k = 4, t = 3
    assert (rnd.params.degree, rnd.params.threshold) == (4, 3)
    graph = NeighbourGraph.build(rnd.params)
    victim = rnd.params.participants[0]
    gone = set(sorted(graph.neighbours(victim))[:2])  # victim keeps itself + 2 holders
    result = rnd.run(drop={"collect_masked_vectors": gone})
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - gone)


def test_sparse_graph_fails_when_one_neighbourhood_loses_too_many() -> None:
    rnd = Round.make(12, 40, seed=6)
    graph = NeighbourGraph.build(rnd.params)
    victim = rnd.params.participants[0]
    gone = set(sorted(graph.neighbours(victim))[:3])  # only 3 of 12 drop, all around victim
    with pytest.raises(NotEnoughSharesError) as info:
        rnd.run(drop={"collect_masked_vectors": gone})
    assert info.value.owner == victim
    assert rnd.server.stage is ServerStage.FAILED


def test_survivors_cut_into_a_small_group_fail_the_round() -> None:
    rnd = Round.make(12, 10, degree=2, threshold=2, seed=7)  # a ring
    graph = NeighbourGraph.build(rnd.params)
    victim = rnd.params.participants[3]
    with pytest.raises(SurvivorGraphSplitError) as info:
        rnd.run(drop={"collect_masked_vectors": graph.neighbours(victim)})
    assert info.value.smallest == 1


def test_client_with_too_few_live_holders_is_left_out_at_setup() -> None:
    rnd = Round.make(12, 10, seed=8)  # k = 4, t = 3
    graph = NeighbourGraph.build(rnd.params)
    victim = rnd.params.participants[5]
    gone = set(sorted(graph.neighbours(victim))[:3])
    result = rnd.run(drop={"setup": gone})
    reasons = _reasons(rnd)
    assert reasons[victim] is ExclusionReason.TOO_FEW_HOLDERS
    # Leaving the victim out may cascade to a neighbour that then has too few holders.
    pruned = {c for c, r in reasons.items() if r is ExclusionReason.TOO_FEW_HOLDERS}
    assert all(r is ExclusionReason.NO_RESPONSE for c, r in reasons.items() if c in gone)
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - gone - pruned)


# --- exclusions of bad responses ---------------------------------------------------------------


def _other_round_response(
    rnd: Round, client_id: int, *, round_number: int = 1, session: bytes = SESSION
) -> bytes:
    """Client ``client_id``'s masked vector from a different round or session, same ids."""
    other = Round.make(
        len(rnd.params.participants),
        rnd.params.vector_length,
        ids=rnd.params.participants,
        round_number=round_number,
        session=session,
    )
    for name in ("setup", "share_keys"):
        other.stage(name)
    requests = other.server.collect_requests()
    return other.clients[client_id].collect_masked_vector(
        requests[client_id], other.updates[client_id], other.weights[client_id]
    )


def _bad_vectors(rnd: Round, victim: int, kind: str, in_flight: dict[int, bytes]):
    def tamper(client_id: int, data: bytes) -> bytes | None:
        if client_id != victim:
            return data
        binding = Binding(SESSION, rnd.params.round_number, client_id)
        parsed = MaskedVector.from_bytes(data, binding)
        if kind == "garbage":
            return b"\x00" * len(data)
        if kind == "truncated":
            return data[:-1]
        if kind == "trailing":
            return data + b"\x00\x00\x00\x00"
        if kind == "short-vector":
            return MaskedVector(parsed.masked_with, parsed.vector[:-1]).to_bytes(binding)
        if kind == "long-vector":
            longer = np.concatenate([parsed.vector, parsed.vector[:1]])
            return MaskedVector(parsed.masked_with, longer).to_bytes(binding)
        if kind == "other-round":
            return _other_round_response(rnd, client_id, round_number=0)
        if kind == "other-session":
            return _other_round_response(rnd, client_id, session=b"another-session")
        if kind == "other-client":
            return in_flight[next(c for c in in_flight if c != victim)]
        if kind == "mask-set":
            return MaskedVector(parsed.masked_with[1:], parsed.vector).to_bytes(binding)
        raise AssertionError(kind)

    return tamper


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage", ExclusionReason.MALFORMED),
        ("truncated", ExclusionReason.MALFORMED),
        ("trailing", ExclusionReason.MALFORMED),
        ("short-vector", ExclusionReason.WRONG_LENGTH),
        ("long-vector", ExclusionReason.WRONG_LENGTH),
        ("other-round", ExclusionReason.WRONG_BINDING),
        ("other-session", ExclusionReason.WRONG_BINDING),
        ("other-client", ExclusionReason.WRONG_BINDING),
        ("mask-set", ExclusionReason.MASK_SET_MISMATCH),
    ],
)
def test_bad_masked_vector_is_excluded_and_never_corrupts_the_sum(
    kind: str, reason: ExclusionReason
) -> None:
    rnd = Round.make(8, 60, seed=11)
    victim = rnd.params.participants[2]
    for name in ("setup", "share_keys"):
        rnd.stage(name)
    requests = rnd.server.collect_requests()
    in_flight = {
        c: rnd.clients[c].collect_masked_vector(r, rnd.updates[c], rnd.weights[c])
        for c, r in requests.items()
    }
    tamper = _bad_vectors(rnd, victim, kind, in_flight)
    responses = {c: tamper(c, d) for c, d in in_flight.items()}
    rnd.server.receive_masked_vectors(responses)
    assert _reasons(rnd) == {victim: reason}
    exclusion = rnd.server.exclusions[0]
    assert exclusion.stage is ServerStage.COLLECT_MASKED_VECTORS
    assert exclusion.detail  # an auditable reason, not just a code
    result = rnd.stage("unmask")
    # The victim is handled as dropped: its pairwise masks are removed, it is not summed.
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - {victim})


def test_duplicate_and_low_order_public_keys_are_excluded_at_setup() -> None:
    rnd = Round.make(9, 10, degree=8, threshold=5, seed=12)
    a, b, c = rnd.params.participants[:3]
    seen: dict[int, bytes] = {}  # responses are produced in id order, so a's comes first

    def tamper(client_id: int, data: bytes) -> bytes:
        binding = Binding(SESSION, rnd.params.round_number, client_id)
        if client_id == b:  # b presents a's keys
            keys = SetupResponse.from_bytes(seen[a], Binding(SESSION, 1, a)).keys
            return SetupResponse(keys).to_bytes(binding)
        if client_id == c:  # c presents the low-order point 0
            keys = SetupResponse.from_bytes(data, binding).keys
            return SetupResponse(type(keys)(bytes(32), keys.mask)).to_bytes(binding)
        if client_id == a:
            seen[a] = data
        return data

    result = rnd.run(tamper_response={"setup": tamper})
    reasons = _reasons(rnd)
    assert reasons == {
        a: ExclusionReason.DUPLICATE_PUBLIC_KEY,
        b: ExclusionReason.DUPLICATE_PUBLIC_KEY,
        c: ExclusionReason.BAD_PUBLIC_KEY,
    }
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - {a, b, c})


def test_share_envelopes_to_the_wrong_peers_are_excluded() -> None:
    rnd = _complete(seed=13)
    victim = rnd.params.participants[1]

    def tamper(client_id: int, data: bytes) -> bytes:
        if client_id != victim:
            return data
        binding = Binding(SESSION, 1, client_id)
        parsed = ShareKeysResponse.from_bytes(data, binding)
        fewer = dict(list(parsed.envelopes.items())[1:])
        return ShareKeysResponse(parsed.seed_commitment, fewer).to_bytes(binding)

    result = rnd.run(tamper_response={"share_keys": tamper})
    assert _reasons(rnd) == {victim: ExclusionReason.WRONG_RECIPIENTS}
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - {victim})


def _rewrite_unmask(rnd: Round, victim: int, change) -> callable:
    def tamper(client_id: int, data: bytes) -> bytes:
        if client_id != victim:
            return data
        binding = Binding(SESSION, 1, client_id)
        parsed = UnmaskResponse.from_bytes(data, binding)
        seeds, keys = change(dict(parsed.seed_shares), dict(parsed.key_shares))
        return UnmaskResponse(seeds, keys).to_bytes(binding)

    return tamper


def _off_by_one(share: Share) -> Share:
    return Share(share.x, (share.y + 1) % PRIME)


def test_malformed_unmask_response_is_excluded_and_the_sum_survives() -> None:
    rnd = _complete(seed=14)
    victim = rnd.params.participants[0]
    result = rnd.run(tamper_response={"unmask": lambda c, d: d[:-3] if c == victim else d})
    assert _reasons(rnd) == {victim: ExclusionReason.MALFORMED}
    _assert_matches_plaintext(rnd, result, rnd.params.participants)


def test_unmask_response_with_the_wrong_share_set_is_excluded() -> None:
    rnd = _complete(seed=15)
    victim = rnd.params.participants[0]
    tamper = _rewrite_unmask(rnd, victim, lambda s, k: (dict(list(s.items())[1:]), k))
    result = rnd.run(tamper_response={"unmask": tamper})
    assert _reasons(rnd) == {victim: ExclusionReason.WRONG_SHARE_SET}
    _assert_matches_plaintext(rnd, result, rnd.params.participants)


def test_a_wrong_seed_share_is_found_and_excluded() -> None:
    rnd = _complete(seed=16)
    victim, owner = rnd.params.participants[:2]

    def change(seeds, keys):
        seeds[owner] = _off_by_one(seeds[owner])
        return seeds, keys

    result = rnd.run(tamper_response={"unmask": _rewrite_unmask(rnd, victim, change)})
    assert _reasons(rnd) == {victim: ExclusionReason.INVALID_SHARE}
    _assert_matches_plaintext(rnd, result, rnd.params.participants)


def test_a_wrong_key_share_is_found_and_excluded() -> None:
    rnd = _complete(seed=17)
    dead, victim = rnd.params.participants[:2]

    def change(seeds, keys):
        keys[dead] = _off_by_one(keys[dead])
        return seeds, keys

    result = rnd.run(
        drop={"collect_masked_vectors": {dead}},
        tamper_response={"unmask": _rewrite_unmask(rnd, victim, change)},
    )
    reasons = _reasons(rnd)
    assert reasons[victim] is ExclusionReason.INVALID_SHARE
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - {dead})


def test_a_wrong_share_without_redundancy_fails_rather_than_lies() -> None:
    rnd = _complete(seed=18)
    ids = rnd.params.participants
    victim, owner = ids[3], ids[4]

    def change(seeds, keys):
        seeds[owner] = _off_by_one(seeds[owner])
        return seeds, keys

    # 3 holders vanish during unmask, so exactly threshold = 4 shares of each seed remain.
    with pytest.raises(SecretVerificationError) as info:
        rnd.run(
            drop={"unmask": set(ids[:3])},
            tamper_response={"unmask": _rewrite_unmask(rnd, victim, change)},
        )
    assert info.value.owner == owner
    assert rnd.server.stage is ServerStage.FAILED


def test_responses_from_strangers_are_recorded_and_ignored() -> None:
    rnd = _complete(seed=19)
    rnd.stage("setup")
    requests = rnd.server.share_keys_requests()
    responses = {c: rnd.clients[c].share_keys(r) for c, r in requests.items()}
    responses[99999] = b"hello"
    rnd.server.receive_share_keys(responses)
    assert _reasons(rnd) == {99999: ExclusionReason.NOT_EXPECTED}


# --- client refusals --------------------------------------------------------------------------


def test_tampered_envelope_makes_the_client_refuse_and_the_round_goes_on() -> None:
    rnd = _complete(seed=20)
    victim = rnd.params.participants[2]

    def tamper(client_id: int, data: bytes) -> bytes:
        if client_id != victim:
            return data
        binding = Binding(SESSION, 1, client_id)
        envelopes = dict(CollectRequest.from_bytes(data, binding).envelopes)
        src = next(iter(envelopes))
        broken = bytearray(envelopes[src])
        broken[40] ^= 1
        envelopes[src] = bytes(broken)
        return CollectRequest(envelopes).to_bytes(binding)

    result = rnd.run(tamper_request={"collect_masked_vectors": tamper})
    assert isinstance(rnd.client_errors[victim], ShareEnvelopeError)
    assert rnd.clients[victim].stage is ClientStage.FAILED
    _assert_matches_plaintext(rnd, result, set(rnd.params.participants) - {victim})


def test_envelope_replayed_from_another_round_is_refused() -> None:
    ids = list(range(50, 57))
    old = Round.make(7, 5, ids=ids, degree=6, round_number=1)
    new = Round.make(7, 5, ids=ids, degree=6, round_number=2)
    for name in ("setup", "share_keys"):
        old.stage(name)
        new.stage(name)
    victim = ids[0]
    old_envelopes = CollectRequest.from_bytes(
        old.server.collect_requests()[victim], Binding(SESSION, 1, victim)
    ).envelopes
    replay = CollectRequest(old_envelopes).to_bytes(Binding(SESSION, 2, victim))
    with pytest.raises(ShareEnvelopeError):
        new.clients[victim].collect_masked_vector(replay, new.updates[victim], 1.0)
    stale = old.server.collect_requests()[victim]
    fresh_client = Round.make(7, 5, ids=ids, degree=6, round_number=2)
    fresh_client.stage("setup")
    fresh_client.stage("share_keys")
    with pytest.raises(MessageBindingError) as info:
        fresh_client.clients[victim].collect_masked_vector(stale, new.updates[victim], 1.0)
    assert info.value.field == "round"


def _to_unmask(rnd: Round) -> None:
    for name in ("setup", "share_keys", "collect_masked_vectors"):
        rnd.stage(name)


def test_client_never_reveals_both_shares_of_a_peer() -> None:
    rnd = _complete(seed=21)
    _to_unmask(rnd)
    ids = rnd.params.participants
    me, peer = ids[0], ids[1]
    forged = UnmaskRequest(tuple(ids), (peer,)).to_bytes(Binding(SESSION, 1, me))
    with pytest.raises(ShareRevealRefusedError) as info:
        rnd.clients[me].unmask(forged)
    assert info.value.peer == peer
    assert rnd.clients[me].stage is ClientStage.FAILED
    honest = rnd.server.unmask_requests()[me]
    with pytest.raises(StageOrderError):  # no second chance to ask for the other share
        rnd.clients[me].unmask(honest)


def test_client_reveals_seed_shares_of_survivors_and_key_shares_of_the_dropped_only() -> None:
    rnd = _complete(seed=22)
    ids = rnd.params.participants
    dead = ids[5]
    rnd.stage("setup")
    rnd.stage("share_keys")
    rnd.stage("collect_masked_vectors", drop={dead})
    me = ids[0]
    data = rnd.clients[me].unmask(rnd.server.unmask_requests()[me])
    revealed = UnmaskResponse.from_bytes(data, Binding(SESSION, 1, me))
    assert set(revealed.key_shares) == {dead}
    assert set(revealed.seed_shares) == set(ids) - {dead}
    assert not set(revealed.key_shares) & set(revealed.seed_shares)


@pytest.mark.parametrize("case", ["few-alive", "self-dead", "split", "stranger", "uncovered"])
def test_client_refuses_unsafe_unmask_requests(case: str) -> None:
    rnd = Round.make(12, 5, degree=2, threshold=2, seed=23)  # ring: easy to split
    _to_unmask(rnd)
    ids = list(rnd.params.participants)
    graph = NeighbourGraph.build(rnd.params)
    me = ids[0]
    others = [c for c in ids if c != me]
    if case == "few-alive":
        alive, dead = (me,), tuple(others)
    elif case == "self-dead":
        alive, dead = tuple(others), (me,)
    elif case == "split":
        alive = tuple(c for c in ids if c not in graph.neighbours(me))
        dead = tuple(sorted(graph.neighbours(me)))
    elif case == "stranger":
        alive, dead = tuple(ids), (123456789,)
    else:
        alive, dead = tuple(c for c in ids if c not in graph.neighbours(me)), ()
    forged = UnmaskRequest(alive, dead).to_bytes(Binding(SESSION, 1, me))
    with pytest.raises(ProtocolViolationError):
        rnd.clients[me].unmask(forged)


def test_client_enforces_stage_order_and_stays_failed() -> None:
    rnd = _complete(seed=24)
    me = rnd.params.participants[0]
    client = rnd.clients[me]
    setup = rnd.server.setup_requests()[me]
    with pytest.raises(StageOrderError):
        client.share_keys(setup)
    client.setup(setup)
    with pytest.raises(StageOrderError):
        client.setup(setup)
    with pytest.raises(MessageBindingError):  # a setup request is not a share-keys request
        client.share_keys(setup)
    assert client.stage is ClientStage.FAILED
    with pytest.raises(StageOrderError):
        client.share_keys(setup)


def test_client_outside_the_round_refuses_setup() -> None:
    rnd = _complete(seed=25)
    from crypto.secagg import SecAggClient

    stranger = SecAggClient(4242, session_id=SESSION, round_number=1)
    request = rnd.server.setup_requests()[rnd.params.participants[0]]
    with pytest.raises(MessageBindingError):  # addressed to someone else
        stranger.setup(request)


def test_client_checks_the_public_keys_it_is_given() -> None:
    rnd = _complete(seed=26)
    rnd.stage("setup")
    me, other, third = rnd.params.participants[:3]
    binding = Binding(SESSION, 1, me)
    keys = dict(ShareKeysRequest.from_bytes(rnd.server.share_keys_requests()[me], binding).keys)
    cases = {
        "distinct-keys": {**keys, other: PublicKeys(keys[third].transport, keys[other].mask)},
        "own-keys": {**keys, me: PublicKeys(keys[other].transport, keys[me].mask)},
        "threshold": {me: keys[me], other: keys[other]},
    }
    for rule, forged in cases.items():
        client = copy.deepcopy(rnd.clients[me])
        with pytest.raises(ProtocolViolationError) as info:
            client.share_keys(ShareKeysRequest(forged).to_bytes(binding))
        assert info.value.rule == rule
    sparse = Round.make(12, 5, seed=26)
    sparse.stage("setup")
    me = sparse.params.participants[0]
    graph = NeighbourGraph.build(sparse.params)
    stranger = next(c for c in sparse.params.participants if c not in graph.holders(me))
    binding = Binding(SESSION, 1, me)
    keys = dict(ShareKeysRequest.from_bytes(sparse.server.share_keys_requests()[me], binding).keys)
    keys[stranger] = PublicKeys(bytes([9]) * 32, bytes([8]) * 32)
    with pytest.raises(ProtocolViolationError) as info:
        sparse.clients[me].share_keys(ShareKeysRequest(keys).to_bytes(binding))
    assert info.value.rule == "holders"


def test_server_enforces_stage_order() -> None:
    rnd = _complete(seed=27)
    with pytest.raises(StageOrderError):
        rnd.server.receive_share_keys({})
    with pytest.raises(StageOrderError):
        rnd.server.collect_requests()
    rnd.stage("setup")
    with pytest.raises(StageOrderError):
        rnd.server.setup_requests()
