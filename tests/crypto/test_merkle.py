"""crypto.merkle against the transparency-dev vectors and RFC 6962's known tree, plus edge cases."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from crypto import merkle
from crypto.errors import CryptoError, MerkleProofError, RootMismatchError

DATA = Path(__file__).resolve().parent.parent / "data" / "merkle"


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _vectors(kind: str) -> list[tuple[str, dict]]:
    """Every JSON vector under tests/data/merkle/<kind>/, one loader for all (STYLE habit 7)."""
    files = sorted((DATA / kind).rglob("*.json"))
    assert files, f"no vectors under {DATA / kind}"
    return [(str(f.relative_to(DATA)), json.loads(f.read_text())) for f in files]


INCLUSION = _vectors("inclusion")
CONSISTENCY = _vectors("consistency")


def test_every_vector_file_is_loaded():
    # 196 files in transparency-dev/merkle@417fb0c3 testdata; catches a partial copy.
    assert len(INCLUSION) + len(CONSISTENCY) == 196
    assert sum(not v["wantErr"] for _, v in INCLUSION) >= 6
    assert sum(not v["wantErr"] for _, v in CONSISTENCY) >= 6


@pytest.mark.parametrize(("name", "vec"), INCLUSION, ids=[n for n, _ in INCLUSION])
def test_inclusion_vector(name: str, vec: dict):
    proof = [_b64(p) for p in (vec["proof"] or [])]
    args = (_b64(vec["leafHash"]), vec["leafIdx"], vec["treeSize"], proof, _b64(vec["root"]))
    if vec["wantErr"]:
        with pytest.raises(MerkleProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize(("name", "vec"), CONSISTENCY, ids=[n for n, _ in CONSISTENCY])
def test_consistency_vector(name: str, vec: dict):
    proof = [_b64(p) for p in (vec["proof"] or [])]
    args = (vec["size1"], vec["size2"], proof, _b64(vec["root1"]), _b64(vec["root2"]))
    if vec["wantErr"]:
        with pytest.raises(MerkleProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


# RFC 6962's reference tree as used by transparency-dev/merkle proof/verify_test.go: the eight
# leaves, the root at every size 1..8, and the published proofs (leaf numbers there are 1-based).
LEAVES = [
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
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _hx(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


INCLUSION_PROOFS = [  # (index, size, proof)
    (
        0,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hx(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hx(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

CONSISTENCY_PROOFS = [  # (size1, size2, proof)
    (1, 1, []),
    (
        1,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hx(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


@pytest.fixture(scope="module")
def tree() -> merkle.MemoryTree:
    return merkle.MemoryTree.from_leaf_hashes([merkle.leaf_hash(x) for x in LEAVES])


def test_constants_are_the_rfc_values():
    assert merkle.LEAF_HASH_PREFIX == b"\x00"
    assert merkle.NODE_HASH_PREFIX == b"\x01"
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_leaf_and_node_hash_known_answers():
    assert merkle.leaf_hash(b"") == ROOTS[0]
    assert merkle.node_hash(merkle.leaf_hash(LEAVES[0]), merkle.leaf_hash(LEAVES[1])) == ROOTS[1]
    with pytest.raises(TypeError):
        merkle.leaf_hash("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        merkle.node_hash(b"short", ROOTS[0])


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_at_every_size(tree: merkle.MemoryTree, size: int):
    hashes = [merkle.leaf_hash(x) for x in LEAVES[:size]]
    assert merkle.root_from_leaf_hashes(hashes) == ROOTS[size - 1]
    assert tree.root(size) == ROOTS[size - 1]
    compact = merkle.CompactRange()
    for h in hashes:
        compact.append(h)
    assert compact.root() == ROOTS[size - 1]


def test_empty_tree_root():
    assert merkle.root_from_leaf_hashes([]) == merkle.EMPTY_ROOT
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT
    assert merkle.MemoryTree().root() == merkle.EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION_PROOFS)
def test_inclusion_proof_generation_known_answers(tree, index, size, want):
    assert tree.inclusion_proof(index, size) == want
    assert merkle.inclusion_proof_length(index, size) == len(want)
    merkle.verify_inclusion(tree.leaf_hash(index), index, size, want, ROOTS[size - 1])


@pytest.mark.parametrize(("size1", "size2", "want"), CONSISTENCY_PROOFS)
def test_consistency_proof_generation_known_answers(tree, size1, size2, want):
    assert tree.consistency_proof(size1, size2) == want
    merkle.verify_consistency(size1, size2, want, ROOTS[size1 - 1], ROOTS[size2 - 1])


def test_inclusion_errors_name_got_and_want(tree):
    proof = tree.inclusion_proof(5, 8)
    with pytest.raises(MerkleProofError) as short:
        merkle.verify_inclusion(tree.leaf_hash(5), 5, 8, proof[:-1], ROOTS[7])
    assert short.value.check == "proof length"
    assert (short.value.got, short.value.want) == (2, 3)
    with pytest.raises(RootMismatchError) as wrong:
        merkle.verify_inclusion(tree.leaf_hash(4), 5, 8, proof, ROOTS[7])
    assert wrong.value.expected == ROOTS[7]
    assert isinstance(wrong.value, CryptoError)
    with pytest.raises(MerkleProofError) as beyond:
        merkle.verify_inclusion(tree.leaf_hash(5), 8, 8, proof, ROOTS[7])
    assert beyond.value.check == "index"


def test_consistency_errors_name_the_root_that_failed(tree):
    proof = tree.consistency_proof(6, 8)
    with pytest.raises(RootMismatchError) as first:
        merkle.verify_consistency(6, 8, proof, ROOTS[4], ROOTS[7])
    assert first.value.check == "root1"
    with pytest.raises(RootMismatchError) as second:
        merkle.verify_consistency(6, 8, proof, ROOTS[5], ROOTS[6])
    assert second.value.check == "root2"
    with pytest.raises(MerkleProofError) as empty_old:
        merkle.verify_consistency(0, 8, [], merkle.EMPTY_ROOT, ROOTS[7])
    assert empty_old.value.check == "size1"


def test_generation_preconditions(tree):
    with pytest.raises(ValueError, match="index < size"):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ValueError, match="0 < size1"):
        tree.consistency_proof(0, 8)
    with pytest.raises(ValueError, match="size1 <= size2"):
        merkle.consistency_proof(5, 4, tree.subtree_hash)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(-1, 4, tree.subtree_hash)
    with pytest.raises(TypeError):
        merkle.inclusion_proof(1.0, 4, tree.subtree_hash)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        merkle.verify_inclusion(tree.leaf_hash(0), 0, 8, b"x" * 32, ROOTS[7])  # type: ignore[arg-type]


def test_perfect_subtrees_decomposition():
    n = merkle.NodeId
    assert merkle.perfect_subtrees(0, 0) == []
    assert merkle.perfect_subtrees(0, 7) == [n(2, 0), n(1, 2), n(0, 6)]
    assert merkle.perfect_subtrees(3, 11) == [n(0, 3), n(2, 1), n(1, 4), n(0, 10)]
    assert merkle.perfect_subtrees(8, 16) == [n(3, 1)]
    with pytest.raises(ValueError):
        merkle.perfect_subtrees(5, 4)


def test_compact_range_reports_completed_subtrees_and_rebuilds(tree):
    compact = merkle.CompactRange()
    created = []
    for i in range(8):
        created += compact.append(tree.leaf_hash(i))
    n = merkle.NodeId
    assert [node for node, _ in created] == [
        n(1, 0),
        n(1, 1),
        n(2, 0),
        n(1, 2),
        n(1, 3),
        n(2, 1),
        n(3, 0),
    ]
    for node, h in created:
        assert tree.subtree_hash(*node) == h
    rebuilt = merkle.CompactRange.from_subtrees(7, tree.subtree_hash)
    assert rebuilt.size == 7
    assert rebuilt.root() == ROOTS[6]
    twin = rebuilt.copy()
    twin.append(tree.leaf_hash(7))
    assert (twin.root(), rebuilt.root()) == (ROOTS[7], ROOTS[6])


def test_proof_generation_uses_logarithmic_lookups():
    size = 1_000_003
    calls: list[tuple[int, int]] = []

    def fake_subtree(level: int, index: int) -> bytes:
        # Any 32 bytes do: this test counts look-ups, it does not check hashes.
        calls.append((level, index))
        assert (index + 1) << level <= size, "asked for a subtree beyond the tree"
        return (level * 1_000_003 + index).to_bytes(32, "big")

    merkle.inclusion_proof(size - 1, size, fake_subtree)
    assert len(calls) <= 2 * size.bit_length()
    calls.clear()
    merkle.consistency_proof(500_001, size, fake_subtree)
    assert len(calls) <= 2 * size.bit_length()
    calls.clear()
    merkle.root_from_subtrees(size, fake_subtree)
    assert len(calls) == size.bit_count()
