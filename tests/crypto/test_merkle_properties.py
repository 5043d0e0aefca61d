"""crypto.merkle cross-checked against a slow reference written straight from RFC 9162 §2.1.

The reference below is deliberately naive (recursion over lists, every hash recomputed), in
the spirit of transparency-dev/merkle's ``testonly`` package: it is easy to check against the
RFC text by eye, it is pinned to RFC 6962's known roots, and hypothesis then compares the fast,
storage-friendly code with it on random trees.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import merkle
from crypto.errors import MerkleProofError

# --- reference implementation (tests only) ---------------------------------------------------


def ref_leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def ref_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(hashes: list[bytes]) -> bytes:
    """MTH over leaf hashes, by the recursive definition of RFC 9162 §2.1.1."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = ref_k(n)
    return hashlib.sha256(b"\x01" + ref_mth(hashes[:k]) + ref_mth(hashes[k:])).digest()


def ref_path(m: int, hashes: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(hashes)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_mth(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_mth(hashes[:k])]


def ref_subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(hashes)
    if m == n:
        return [] if b else [ref_mth(hashes)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], b), ref_mth(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_mth(hashes[:k])]


def ref_proof(m: int, hashes: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""
    return ref_subproof(m, hashes, True)


# The reference itself is pinned to outside data: RFC 6962's 8-leaf tree.
RFC6962_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
RFC6962_ROOT8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
RFC6962_ROOT5 = "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"


def test_reference_matches_rfc6962_known_roots():
    hashes = [ref_leaf_hash(x) for x in RFC6962_LEAVES]
    assert ref_mth(hashes).hex() == RFC6962_ROOT8
    assert ref_mth(hashes[:5]).hex() == RFC6962_ROOT5


# --- properties --------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def trees(draw: st.DrawFn, max_size: int = 160) -> list[bytes]:
    size = draw(st.integers(min_value=1, max_value=max_size))
    # Distinct leaves, so a proof for one index can never pass for another by coincidence.
    seed = draw(st.binary(min_size=4, max_size=4))
    return [ref_leaf_hash(seed + i.to_bytes(4, "big")) for i in range(size)]


class CountingStore:
    """A perfect-subtree accessor that counts look-ups, like a node-hash table would serve."""

    def __init__(self, hashes: list[bytes]) -> None:
        self.tree = merkle.MemoryTree.from_leaf_hashes(hashes)
        self.lookups = 0

    def __call__(self, level: int, index: int) -> bytes:
        self.lookups += 1
        return self.tree.subtree_hash(level, index)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@PROPERTY_SETTINGS
@given(hashes=trees(), data=st.data())
def test_roots_match_reference(hashes: list[bytes], data: st.DataObject):
    size = data.draw(st.integers(min_value=0, max_value=len(hashes)))
    want = ref_mth(hashes[:size])
    assert merkle.root_from_leaf_hashes(hashes[:size]) == want
    store = CountingStore(hashes)
    assert merkle.root_from_subtrees(size, store) == want
    assert store.lookups == size.bit_count()


@PROPERTY_SETTINGS
@given(hashes=trees(), data=st.data())
def test_inclusion_proofs_match_reference_and_verify(hashes: list[bytes], data: st.DataObject):
    size = data.draw(st.integers(min_value=1, max_value=len(hashes)))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    store = CountingStore(hashes)
    proof = merkle.inclusion_proof(index, size, store)
    assert proof == ref_path(index, hashes[:size])
    assert store.lookups <= 2 * size.bit_length()
    root = ref_mth(hashes[:size])
    merkle.verify_inclusion(hashes[index], index, size, proof, root)


@PROPERTY_SETTINGS
@given(hashes=trees(), data=st.data())
def test_consistency_proofs_match_reference_and_verify(hashes: list[bytes], data: st.DataObject):
    size2 = data.draw(st.integers(min_value=1, max_value=len(hashes)))
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    store = CountingStore(hashes)
    proof = merkle.consistency_proof(size1, size2, store)
    assert proof == ref_proof(size1, hashes[:size2])
    assert store.lookups <= 2 * size2.bit_length()
    merkle.verify_consistency(size1, size2, proof, ref_mth(hashes[:size1]), ref_mth(hashes[:size2]))


@PROPERTY_SETTINGS
@given(hashes=trees(), data=st.data())
def test_every_one_bit_change_breaks_an_inclusion_proof(hashes: list[bytes], data: st.DataObject):
    size = data.draw(st.integers(min_value=1, max_value=len(hashes)))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = ref_path(index, hashes[:size])
    root = ref_mth(hashes[:size])
    # One bit anywhere in the leaf hash, in any proof hash, or in the root.
    parts = [hashes[index], *proof, root]
    part = data.draw(st.integers(min_value=0, max_value=len(parts) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=8 * merkle.HASH_SIZE - 1))
    parts[part] = _flip(parts[part], bit)
    with pytest.raises(MerkleProofError):
        merkle.verify_inclusion(parts[0], index, size, parts[1:-1], parts[-1])


@PROPERTY_SETTINGS
@given(hashes=trees(), data=st.data())
def test_every_one_bit_change_breaks_a_consistency_proof(hashes: list[bytes], data: st.DataObject):
    size2 = data.draw(st.integers(min_value=1, max_value=len(hashes)))
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    proof = ref_proof(size1, hashes[:size2])
    parts = [ref_mth(hashes[:size1]), *proof, ref_mth(hashes[:size2])]
    part = data.draw(st.integers(min_value=0, max_value=len(parts) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=8 * merkle.HASH_SIZE - 1))
    parts[part] = _flip(parts[part], bit)
    with pytest.raises(MerkleProofError):
        merkle.verify_consistency(size1, size2, parts[1:-1], parts[0], parts[-1])


@PROPERTY_SETTINGS
@given(hashes=trees())
def test_compact_range_and_memory_tree_agree_with_reference(hashes: list[bytes]):
    compact = merkle.CompactRange()
    tree = merkle.MemoryTree()
    stored: dict[tuple[int, int], bytes] = {}
    for i, h in enumerate(hashes):
        for node, value in compact.append(h):
            stored[tuple(node)] = value
        tree.append(h)
        assert compact.root() == tree.root() == ref_mth(hashes[: i + 1])
    # Every perfect subtree the range reported is the reference MTH of its leaves.
    for (level, index), value in stored.items():
        assert value == ref_mth(hashes[index << level : (index + 1) << level])
        assert tree.subtree_hash(level, index) == value
