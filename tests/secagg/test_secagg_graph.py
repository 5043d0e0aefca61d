"""Round parameters and the Harary neighbour graph: defaults, checks, regularity, connectivity."""

from __future__ import annotations

import itertools

import pytest

from crypto.secagg import NeighbourGraph, RoundParams, default_degree, default_threshold


@pytest.mark.parametrize(
    ("n", "k"), [(3, 2), (4, 2), (5, 4), (8, 4), (10, 4), (16, 4), (17, 6), (50, 6), (1000, 10)]
)
def test_default_degree_is_the_smallest_even_k_at_least_log2_n(n: int, k: int) -> None:
    assert default_degree(n) == k


@pytest.mark.parametrize(("k", "t"), [(2, 2), (3, 3), (4, 3), (6, 4), (9, 6), (10, 6)])
def test_default_threshold_is_a_strict_majority_of_holders(k: int, t: int) -> None:
    assert default_threshold(k) == t
    assert 2 * t > k + 1


def _params(n: int, **kw: object) -> RoundParams:
    return RoundParams.create(b"s", 1, range(10, 10 + n), 8, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"degree": 3}, "n \\* k is odd"),  # n = 5
        ({"degree": 5}, "degree"),
        ({"degree": 1}, "degree"),
        ({"degree": 4, "threshold": 2}, "threshold"),  # not a strict majority of 5
        ({"degree": 4, "threshold": 6}, "threshold"),
        ({"clip": 0.0}, "clip"),
        ({"max_weight": float("nan")}, "max_weight"),
        ({"graph_seed": b"short"}, "graph_seed"),
    ],
)
def test_invalid_parameters_are_refused(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _params(5, **kw)


def test_participant_and_session_validation() -> None:
    with pytest.raises(ValueError, match="participants"):
        RoundParams.create(b"s", 1, [1, 2], 8)
    with pytest.raises(ValueError, match="distinct"):
        RoundParams.create(b"s", 1, [1, 2, 2, 3], 8)
    with pytest.raises(ValueError, match="session_id"):
        RoundParams.create(b"", 1, [1, 2, 3], 8)
    with pytest.raises(ValueError, match="session_id"):
        RoundParams.create(b"x" * 65, 1, [1, 2, 3], 8)
    with pytest.raises(TypeError):
        RoundParams.create("s", 1, [1, 2, 3], 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vector_length"):
        RoundParams.create(b"s", 1, [1, 2, 3], 0)
    with pytest.raises(ValueError, match="participant id"):
        RoundParams.create(b"s", 1, [1, 2, 2**64], 8)
    p = RoundParams.create(b"s", 1, [30, 10, 20], 8)
    assert p.participants == (10, 20, 30)
    assert [p.holder_x(c) for c in p.participants] == [1, 2, 3]
    assert p.num_shares == p.degree + 1


@pytest.mark.parametrize(("n", "k"), [(5, 2), (5, 4), (10, 3), (10, 4), (10, 9), (12, 5), (50, 6)])
def test_graph_is_k_regular_and_symmetric(n: int, k: int) -> None:
    graph = NeighbourGraph.build(_params(n, degree=k))
    for c in graph.participants:
        assert len(graph.neighbours(c)) == k
        assert c not in graph.neighbours(c)
        assert graph.holders(c) == graph.neighbours(c) | {c}
        for peer in graph.neighbours(c):
            assert c in graph.neighbours(peer)


@pytest.mark.parametrize(("n", "k"), [(10, 4), (9, 4), (10, 3), (11, 2)])
def test_graph_is_k_connected(n: int, k: int) -> None:
    # Removing any k - 1 clients leaves the rest connected (exhaustive).
    graph = NeighbourGraph.build(_params(n, degree=k))
    ids = graph.participants
    for removed in itertools.combinations(ids, k - 1):
        assert len(graph.components(set(ids) - set(removed))) == 1
    # ...and some k removals do disconnect it (k is exactly the connectivity).
    assert any(
        len(graph.components(set(ids) - set(removed))) > 1
        for removed in itertools.combinations(ids, k)
    )


def test_graph_is_derived_from_the_seed() -> None:
    a = _params(20, graph_seed=bytes(32))
    b = _params(20, graph_seed=bytes(32))
    c = _params(20, graph_seed=b"\x01" + bytes(31))
    ga, gb, gc = (NeighbourGraph.build(p) for p in (a, b, c))
    ids = a.participants
    assert all(ga.neighbours(i) == gb.neighbours(i) for i in ids)
    assert any(ga.neighbours(i) != gc.neighbours(i) for i in ids)


def test_components_refuse_strangers() -> None:
    graph = NeighbourGraph.build(_params(5))
    with pytest.raises(ValueError, match="not participants"):
        graph.components([10, 99])
