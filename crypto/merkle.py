"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs: pure functions, no I/O.

Names follow RFC 9162 §2.1 (which keeps RFC 6962's tree): ``MTH`` is the Merkle Tree Hash,
``D[k1:k2]`` the leaves from ``k1`` inclusive to ``k2`` exclusive. The tree over ``n`` leaves
splits at ``k``, the largest power of two smaller than ``n``, so every subtree that is not on
the right border is *perfect* (a power of two of leaves, aligned to its size). Proof generation
asks an accessor for the hashes of perfect subtrees only (``subtree_hash(level, index)`` covers
leaves ``[index * 2**level, (index + 1) * 2**level)``); a store that keeps those hashes serves a
proof over millions of leaves with O(log n) look-ups. The right-border ("ragged") subtrees are
rebuilt from perfect ones here.

Verification follows the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step. Failures
raise ``MerkleProofError`` (``RootMismatchError`` when only the final comparison fails) naming
the check with what was got and what was wanted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from crypto.errors import MerkleProofError, RootMismatchError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_HASH_PREFIX",
    "NODE_HASH_PREFIX",
    "CompactRange",
    "MemoryTree",
    "NodeId",
    "SubtreeHashes",
    "consistency_proof",
    "inclusion_proof",
    "inclusion_proof_length",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_from_subtrees",
    "verify_consistency",
    "verify_inclusion",
]

# RFC 9162 §2.1.1: the hash algorithm of RFC 6962 logs and of C2SP checkpoints is SHA-256.
HASH_SIZE = 32
# RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0)).
LEAF_HASH_PREFIX = b"\x00"
# RFC 9162 §2.1.1: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
NODE_HASH_PREFIX = b"\x01"
# RFC 9162 §2.1.1: the hash of an empty list is the hash of an empty string, MTH({}) = HASH().
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Tree sizes and indices are uint64 in RFC 9162 and in checkpoints.
_MAX_UINT64 = (1 << 64) - 1

_sha256 = hashlib.sha256


class NodeId(NamedTuple):
    """A perfect subtree: ``2**level`` leaves starting at leaf ``index * 2**level``."""

    level: int
    index: int


class SubtreeHashes(Protocol):
    """Returns MTH of the perfect subtree ``(level, index)``; level 0 is the leaf hash."""

    def __call__(self, level: int, index: int, /) -> bytes:
        """The 32-byte hash of the perfect subtree at ``level`` and ``index``."""
        ...


def leaf_hash(leaf: bytes) -> bytes:
    """MTH of a one-leaf tree: SHA-256(0x00 || leaf) (RFC 9162 §2.1.1)."""
    if not isinstance(leaf, bytes | bytearray | memoryview):
        raise TypeError(f"leaf must be bytes, got {type(leaf).__name__}")
    return _sha256(LEAF_HASH_PREFIX + bytes(leaf)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash: SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    _require_hash("left", left)
    _require_hash("right", right)
    return _node(bytes(left), bytes(right))


def _node(left: bytes, right: bytes) -> bytes:
    # The unchecked form used inside loops whose inputs were checked once at the boundary.
    return _sha256(NODE_HASH_PREFIX + left + right).digest()


def _require_hash(name: str, value: object) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ValueError(f"{name} must be {HASH_SIZE} bytes, got {len(value)}")


def _require_uint64(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _MAX_UINT64:
        raise ValueError(f"{name} must be a uint64 (0 <= {name} < 2**64), got {value}")
    return value


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 §2.1.1: the largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes, in O(n) hashing and O(log n) memory."""
    compact = CompactRange()
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes | bytearray | memoryview) or len(h) != HASH_SIZE:
            raise ValueError(f"leaf_hashes[{i}] must be {HASH_SIZE} bytes")
        compact.append(bytes(h))
    return compact.root()


def perfect_subtrees(begin: int, end: int) -> list[NodeId]:
    """Split the leaf range ``[begin, end)`` into the fewest aligned perfect subtrees, in order."""
    _require_uint64("begin", begin)
    _require_uint64("end", end)
    if begin > end:
        raise ValueError(f"requires begin <= end, got begin={begin} end={end}")
    nodes: list[NodeId] = []
    while begin < end:
        # The largest block aligned at ``begin`` (its lowest set bit) that still fits.
        block = begin & -begin if begin else 1 << 64
        while block > end - begin:
            block >>= 1
        level = block.bit_length() - 1
        nodes.append(NodeId(level, begin >> level))
        begin += block
    return nodes


class _SubtreeReader:
    """Memoising access to perfect subtrees, and MTH of right-border subtrees built from them."""

    __slots__ = ("_cache", "_fetch", "_ranges")

    def __init__(self, fetch: SubtreeHashes) -> None:
        self._fetch = fetch
        self._cache: dict[tuple[int, int], bytes] = {}
        self._ranges: dict[tuple[int, int], bytes] = {}

    def perfect(self, level: int, index: int) -> bytes:
        key = (level, index)
        found = self._cache.get(key)
        if found is None:
            found = self._fetch(level, index)
            if not isinstance(found, bytes) or len(found) != HASH_SIZE:
                raise ValueError(
                    f"subtree_hash({level}, {index}) returned "
                    f"{len(found) if isinstance(found, bytes) else type(found).__name__}, "
                    f"want {HASH_SIZE} bytes"
                )
            self._cache[key] = found
        return found

    def mth(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) for an RFC subtree: ``begin`` aligned to a power >= end - begin."""
        found = self._ranges.get((begin, end))
        if found is not None:
            return found
        nodes = perfect_subtrees(begin, end)
        # MTH splits at the largest power of two, so a ragged subtree is its first perfect
        # block joined to MTH of the rest: fold the blocks from the right.
        result = self.perfect(*nodes[-1])
        for node in reversed(nodes[:-1]):
            result = _node(self.perfect(*node), result)
        self._ranges[(begin, end)] = result
        return result


def root_from_subtrees(size: int, subtree_hash: SubtreeHashes) -> bytes:
    """MTH of the tree of ``size`` leaves, from at most log2(size) perfect-subtree look-ups."""
    _require_uint64("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _SubtreeReader(subtree_hash).mth(0, size)


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHashes) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1; requires 0 <= index < size."""
    _require_uint64("index", index)
    _require_uint64("size", size)
    if index >= size:
        raise ValueError(f"requires 0 <= index < size, got index={index} size={size}")
    reader = _SubtreeReader(subtree_hash)
    proof: list[bytes] = []
    # Bottom-up: at each level the sibling of the path node is either a perfect subtree, a
    # ragged subtree on the right border, or absent (the path node is carried up unchanged,
    # which is how MTH treats an unbalanced right edge).
    level, node = 0, index
    while (size - 1) >> level:
        sibling = node ^ 1
        begin = sibling << level
        if begin < size:
            end = begin + (1 << level)
            if end <= size:
                proof.append(reader.perfect(level, sibling))
            else:
                proof.append(reader.mth(begin, size))
        level += 1
        node >>= 1
    return proof


def consistency_proof(size1: int, size2: int, subtree_hash: SubtreeHashes) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1; requires 0 < size1 <= size2."""
    _require_uint64("size1", size1)
    _require_uint64("size2", size2)
    if size1 == 0:
        raise ValueError("requires 0 < size1: every tree extends the empty tree, nothing to prove")
    if size1 > size2:
        raise ValueError(f"requires size1 <= size2, got size1={size1} size2={size2}")
    reader = _SubtreeReader(subtree_hash)
    # SUBPROOF(m, D[begin:begin+n], b) unrolled; each step's own hash comes *after* its
    # sub-proof in the RFC's order, so collect top-down and reverse at the end.
    top_down: list[bytes] = []
    m, begin, n, whole = size1, 0, size2, True
    while m != n:
        k = _largest_power_of_two_below(n)
        if m <= k:
            top_down.append(reader.mth(begin + k, begin + n))
            n = k
        else:
            top_down.append(reader.mth(begin, begin + k))
            begin, m, n, whole = begin + k, m - k, n - k, False
    if not whole:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old tree's own (perfect) subtree.
        top_down.append(reader.mth(begin, begin + m))
    top_down.reverse()
    return top_down


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[size]) has; requires 0 <= index < size."""
    _require_uint64("index", index)
    _require_uint64("size", size)
    if index >= size:
        raise ValueError(f"requires 0 <= index < size, got index={index} size={size}")
    # Below the level where the paths to ``index`` and ``size - 1`` meet every sibling exists;
    # above it only left siblings on the right border remain.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(size1: int, size2: int) -> int:
    # Mirrors inclusion_proof_length for the last old leaf, minus the levels covered by the
    # old tree's largest perfect right subtree, plus that subtree's hash unless it is the root.
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    seed_included = 0 if size1 == 1 << shift else 1
    return seed_included + (inner - shift) + border


def _checked_proof(proof: Sequence[bytes] | None) -> list[bytes]:
    if proof is None:
        return []
    if isinstance(proof, bytes | bytearray | str):
        raise TypeError("proof must be a sequence of hashes, not a single bytes/str value")
    checked: list[bytes] = []
    for i, h in enumerate(proof):
        if not isinstance(h, bytes | bytearray | memoryview):
            raise TypeError(f"proof[{i}] must be bytes, got {type(h).__name__}")
        if len(h) != HASH_SIZE:
            raise MerkleProofError(
                f"proof[{i}] size", got=f"{len(h)} bytes", want=f"{HASH_SIZE} bytes"
            )
        checked.append(bytes(h))
    return checked


def _checked_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise MerkleProofError(f"{name} size", got=f"{len(value)} bytes", want=f"{HASH_SIZE} bytes")
    return bytes(value)


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes] | None
) -> bytes:
    """The root PATH ``proof`` leads to from ``leaf_hash`` at ``index``; requires index < size."""
    _require_uint64("index", index)
    _require_uint64("size", size)
    if index >= size:
        raise MerkleProofError("index", got=index, want=f"< size {size}")
    r = _checked_hash("leaf hash", leaf_hash)
    path = _checked_proof(proof)
    want = inclusion_proof_length(index, size)
    if len(path) != want:
        raise MerkleProofError("proof length", got=len(path), want=want)
    # RFC 9162 §2.1.3.2, steps 2-5.
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            raise MerkleProofError("proof length", got=len(path), want=want)
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("proof length", got=len(path), want=want)
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes] | None, root: bytes
) -> None:
    """Raise unless ``proof`` shows ``leaf_hash`` at ``index`` in the tree ``(size, root)``."""
    expected = _checked_hash("root", root)
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != expected:
        raise RootMismatchError("root", calculated=calculated, expected=expected)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes] | None, root1: bytes, root2: bytes
) -> None:
    """Raise unless ``proof`` shows tree ``(size2, root2)`` extends ``(size1, root1)``.

    Requires 0 < size1 <= size2: every tree extends the empty one, so a proof from size 0
    proves nothing and is refused rather than waved through.
    """
    _require_uint64("size1", size1)
    _require_uint64("size2", size2)
    for name, value in (("root1", root1), ("root2", root2)):
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    path = _checked_proof(proof)
    given = len(path)
    if size1 > size2:
        raise MerkleProofError("size1", got=size1, want=f"<= size2 {size2}")
    if size1 == 0:
        raise MerkleProofError("size1", got=0, want="> 0 (nothing to prove from an empty tree)")
    if size1 == size2:
        # The same tree twice: the proof is empty and the roots are one value (RFC 9162
        # §2.1.4.1: SUBPROOF(m, D[m], true) = {}).
        if path:
            raise MerkleProofError("proof length", got=len(path), want=0)
        if bytes(root1) != bytes(root2):
            raise RootMismatchError("root2", calculated=bytes(root1), expected=bytes(root2))
        return
    first = _checked_hash("root1", root1)
    second = _checked_hash("root2", root2)
    want = _consistency_proof_length(size1, size2)
    if len(path) != want:
        raise MerkleProofError("proof length", got=len(path), want=want)
    # RFC 9162 §2.1.4.2, steps 2-7.
    if (size1 & (size1 - 1)) == 0:
        # The old tree is itself a perfect subtree: its root seeds both computations.
        path.insert(0, first)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofError("proof length", got=given, want=want)
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("proof length", got=given, want=want)
    if fr != first:
        raise RootMismatchError("root1", calculated=fr, expected=first)
    if sr != second:
        raise RootMismatchError("root2", calculated=sr, expected=second)


class CompactRange:
    """The perfect subtrees covering leaves ``[0, size)``: append leaves, get the root.

    This is the "frontier" a log keeps in memory: one hash per set bit of ``size``. Appending
    returns the perfect subtrees it completes (level >= 1) so a store can persist them for
    O(log n) proofs later.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_subtrees(cls, size: int, subtree_hash: SubtreeHashes) -> CompactRange:
        """Rebuild the range over ``[0, size)`` from stored perfect-subtree hashes."""
        _require_uint64("size", size)
        compact = cls()
        for node in perfect_subtrees(0, size):
            h = subtree_hash(node.level, node.index)
            _require_hash(f"subtree_hash{tuple(node)}", h)
            compact._hashes.append(bytes(h))
        compact._size = size
        return compact

    @property
    def size(self) -> int:
        """How many leaves the range covers."""
        return self._size

    def nodes(self) -> list[tuple[NodeId, bytes]]:
        """The covering perfect subtrees, left to right, with their hashes."""
        return list(zip(perfect_subtrees(0, self._size), self._hashes, strict=True))

    def copy(self) -> CompactRange:
        """An independent copy (to roll back a failed batch)."""
        twin = CompactRange()
        twin._size = self._size
        twin._hashes = list(self._hashes)
        return twin

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Add one leaf hash; return the perfect subtrees of level >= 1 this completes."""
        _require_hash("leaf_hash", leaf_hash)
        created: list[tuple[NodeId, bytes]] = []
        h = bytes(leaf_hash)
        level, index = 0, self._size
        # Like a binary increment: each trailing one bit of size is a finished left sibling.
        while (self._size >> level) & 1:
            h = _node(self._hashes.pop(), h)
            level += 1
            index >>= 1
            created.append((NodeId(level, index), h))
        self._hashes.append(h)
        self._size += 1
        return created

    def root(self) -> bytes:
        """MTH(D[0:size])."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            result = _node(h, result)
        return result


class MemoryTree:
    """Every perfect subtree hash of a list of leaves, in memory, for verifiers and tests.

    Each level is one ``bytearray`` of 32-byte hashes (about 64 bytes per leaf in all), so a
    verifier can rebuild a log it downloaded and answer roots and proofs at any earlier size.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Sequence[bytes]) -> MemoryTree:
        """Build from leaf hashes (each 32 bytes)."""
        tree = cls()
        for h in leaf_hashes:
            tree.append(h)
        return tree

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash and complete the perfect subtrees it closes."""
        _require_hash("leaf_hash", leaf_hash)
        levels = self._levels
        levels[0] += leaf_hash
        level = 0
        while (len(levels[level]) // HASH_SIZE) % 2 == 0:
            row = levels[level]
            pair = bytes(row[-2 * HASH_SIZE :])
            if level + 1 == len(levels):
                levels.append(bytearray())
            levels[level + 1] += _node(pair[:HASH_SIZE], pair[HASH_SIZE:])
            level += 1

    def leaf_hash(self, index: int) -> bytes:
        """The hash of leaf ``index``."""
        return self.subtree_hash(0, index)

    def subtree_hash(self, level: int, index: int) -> bytes:
        """MTH of the perfect subtree ``(level, index)``; it must lie inside the tree."""
        if level < 0 or index < 0 or level >= len(self._levels):
            raise IndexError(f"no perfect subtree ({level}, {index}) in a tree of {self.size}")
        row = self._levels[level]
        start = index * HASH_SIZE
        if start + HASH_SIZE > len(row):
            raise IndexError(f"no perfect subtree ({level}, {index}) in a tree of {self.size}")
        return bytes(row[start : start + HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"requires size <= {self.size}, got {size}")
        return root_from_subtrees(size, self.subtree_hash)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size])."""
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"requires size <= {self.size}, got {size}")
        return inclusion_proof(index, size, self.subtree_hash)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2])."""
        size2 = self.size if size2 is None else size2
        if size2 > self.size:
            raise ValueError(f"requires size2 <= {self.size}, got {size2}")
        return consistency_proof(size1, size2, self.subtree_hash)
