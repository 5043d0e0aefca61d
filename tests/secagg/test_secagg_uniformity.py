"""What the server sees of one client is indistinguishable from uniform (chi-square tests).

Each test below is a chi-square goodness-of-fit test against the uniform distribution
with significance alpha = 1e-9: a correct implementation fails one with probability
1e-9, and this file runs fewer than 40 of them, so a spurious failure has probability
below 4e-8 (union bound). Inputs are deliberately structured (every client sends the same
constant vector with the largest weight) so any leak of the plaintext would show. A
power check runs the same tests on the unmasked words and requires them to fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from crypto.hazmat.masks import mask_stream, pairwise_mask_key, self_mask_key
from crypto.secagg import NeighbourGraph
from crypto.secagg.keys import KeyPair, agree
from crypto.secagg.messages import Binding, MaskedVector, SetupResponse, UnmaskResponse
from crypto.shamir import combine

from .secagg_harness import SESSION, Round

ALPHA = 1e-9
M = (1 << 18) - 1  # words per vector (plus the weight word)


def _uniform_p_values(words: np.ndarray) -> tuple[float, float]:
    """p-values of chi-square tests on byte values (256 bins) and top 12 bits (4096 bins)."""
    as_bytes = np.frombuffer(words.astype("<u4").tobytes(), dtype=np.uint8)
    byte_p = stats.chisquare(np.bincount(as_bytes, minlength=256)).pvalue
    top = (words.astype(np.uint32) >> np.uint32(20)).astype(np.int64)
    top_p = stats.chisquare(np.bincount(top, minlength=4096)).pvalue
    return float(byte_p), float(top_p)


def _structured_round(**kw: object) -> Round:
    rnd = Round.make(6, M, seed=1, **kw)
    for c in rnd.params.participants:
        rnd.updates[c] = np.full(M, 0.25, dtype=np.float32)
        rnd.weights[c] = rnd.params.max_weight
    return rnd


def _masked(rnd: Round) -> dict[int, np.ndarray]:
    return {
        c: MaskedVector.from_bytes(d, Binding(SESSION, 1, c)).vector
        for c, d in rnd.responses["collect_masked_vectors"].items()
    }


def test_power_check_unmasked_words_fail_the_tests() -> None:
    rnd = _structured_round()
    code = rnd.params.fixed_point()
    c = rnd.params.participants[0]
    plain = code.encode(rnd.updates[c], rnd.weights[c])
    assert max(_uniform_p_values(plain)) < ALPHA


def test_every_masked_vector_the_server_receives_is_uniform() -> None:
    rnd = _structured_round()
    rnd.run()
    vectors = _masked(rnd)
    assert len(vectors) == 6
    for words in vectors.values():
        assert min(_uniform_p_values(words)) > ALPHA
    # Two clients sent identical plaintexts; their masked vectors must not reveal that.
    a, b = list(vectors.values())[:2]
    assert min(_uniform_p_values(a - b)) > ALPHA


def test_after_unmask_a_survivor_is_still_hidden_by_its_pairwise_masks() -> None:
    # The server learns each survivor's seed b and can strip its self mask; what is left,
    # x + pairwise masks, must still look uniform (the pairwise masks only cancel in sums).
    rnd = _structured_round()
    rnd.run()
    params = rnd.params
    me = params.participants[0]
    shares = [
        UnmaskResponse.from_bytes(d, Binding(SESSION, 1, holder)).seed_shares[me]
        for holder, d in rnd.responses["unmask"].items()
        if me in UnmaskResponse.from_bytes(d, Binding(SESSION, 1, holder)).seed_shares
    ]
    seed = combine(shares, threshold=params.threshold, length=32)
    key = self_mask_key(seed, session_id=SESSION, round_number=1, owner=me)
    stripped = _masked(rnd)[me] - mask_stream(key, M + 1)
    assert min(_uniform_p_values(stripped)) > ALPHA


def test_a_late_vector_of_a_dropped_client_stays_hidden_by_its_self_mask() -> None:
    # The server was told the client dropped and learned its mask key, so it can strip
    # every pairwise mask; if the vector then arrives late, the self mask (whose seed
    # shares were never revealed) still hides it.
    rnd = _structured_round()
    params = rnd.params
    late = params.participants[2]
    rnd.stage("setup")
    rnd.stage("share_keys")
    requests = rnd.server.collect_requests()
    held_back = rnd.clients[late].collect_masked_vector(
        requests[late], rnd.updates[late], rnd.weights[late]
    )
    rnd.stage("collect_masked_vectors", drop={late})
    # Test-only peek at the holders' shares of the late client's seed, to check below that
    # the stripping is right (the server never gets these: survivors keep them).
    seed_shares = [c._seed_shares[late] for c in rnd.clients.values() if late in c._seed_shares]
    rnd.stage("unmask")
    unmask = {
        h: UnmaskResponse.from_bytes(d, Binding(SESSION, 1, h))
        for h, d in rnd.responses["unmask"].items()
    }
    key_shares = [r.key_shares[late] for r in unmask.values() if late in r.key_shares]
    assert all(late not in r.seed_shares for r in unmask.values())
    private = KeyPair.from_private_bytes(combine(key_shares, threshold=params.threshold, length=32))
    graph = NeighbourGraph.build(params)
    publics = {
        c: SetupResponse.from_bytes(d, Binding(SESSION, 1, c)).keys.mask
        for c, d in rnd.responses["setup"].items()
    }
    words = MaskedVector.from_bytes(held_back, Binding(SESSION, 1, late)).vector.copy()
    for peer in graph.neighbours(late):
        key = pairwise_mask_key(
            agree(private, publics[peer]),
            session_id=SESSION,
            round_number=1,
            a=(late, publics[late]),
            b=(peer, publics[peer]),
        )
        stream = mask_stream(key, M + 1)
        words = words - stream if late < peer else words + stream
    assert min(_uniform_p_values(words)) > ALPHA
    # Sanity: with the never-revealed seed as well, exactly the plaintext words come out,
    # so what was tested above is x + self mask and nothing else.
    seed = combine(seed_shares, threshold=params.threshold, length=32)
    own = mask_stream(self_mask_key(seed, session_id=SESSION, round_number=1, owner=late), M + 1)
    code = params.fixed_point()
    assert np.array_equal(words - own, code.encode(rnd.updates[late], rnd.weights[late]))


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_masks_hide_extreme_inputs(weight: float) -> None:
    rnd = _structured_round()
    for c in rnd.params.participants:
        rnd.updates[c] = np.zeros(M, dtype=np.float32)
        rnd.weights[c] = weight
    if weight == 0.0:  # all-zero weights: the round runs, decoding refuses (no weight)
        from crypto.errors import ZeroTotalWeightError

        with pytest.raises(ZeroTotalWeightError):
            rnd.run()
    else:
        rnd.run()
    for words in _masked(rnd).values():
        assert min(_uniform_p_values(words)) > ALPHA
