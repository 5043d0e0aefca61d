"""Inclusion and consistency proofs, signed checkpoints and note keys under mutation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import MerkleProofError, NoteError
from crypto.merkle import inclusion_proof, verify_consistency, verify_inclusion
from crypto.note import Checkpoint, NoteVerifier, parse_note

from . import _seeds as seeds
from . import targets
from ._contract import typed
from ._mutate import fuzz_settings, mutated

pytestmark = pytest.mark.timeout(300)

NOTES = seeds.notes()
TREE = NOTES.tree
COUNT = len(NOTES.leaves)


@st.composite
def _changed_proof(draw: st.DrawFn, proof: list[bytes]) -> list[bytes]:
    """The proof with a hash flipped, dropped, added, duplicated, truncated or reordered."""
    changed = list(proof)
    action = draw(st.sampled_from(("flip", "drop", "add", "dup", "short", "swap", "bytes")))
    if action == "flip" and changed:
        i = draw(st.integers(0, len(changed) - 1))
        h = bytearray(changed[i])
        h[draw(st.integers(0, 31))] ^= 1 << draw(st.integers(0, 7))
        changed[i] = bytes(h)
    elif action == "drop" and changed:
        del changed[draw(st.integers(0, len(changed) - 1))]
    elif action == "add":
        changed.insert(
            draw(st.integers(0, len(changed))), draw(st.binary(min_size=32, max_size=32))
        )
    elif action == "dup" and changed:
        i = draw(st.integers(0, len(changed) - 1))
        changed.insert(i, changed[i])
    elif action == "short" and changed:
        i = draw(st.integers(0, len(changed) - 1))
        changed[i] = changed[i][: draw(st.integers(0, 31))]
    elif action == "swap" and len(changed) > 1:
        i = draw(st.integers(0, len(changed) - 2))
        changed[i], changed[i + 1] = changed[i + 1], changed[i]
    else:
        changed = draw(st.lists(st.binary(min_size=0, max_size=40), max_size=6))
    return changed


@fuzz_settings(300)
@given(data=st.data())
def test_inclusion_proofs_verify_only_as_computed(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, COUNT))
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, TREE.subtree_hash)
    changed = data.draw(_changed_proof(proof))
    claimed_index = data.draw(st.sampled_from((index, index ^ 1, index + 1, size, 2**64 - 1)))
    claimed_size = data.draw(st.sampled_from((size, size + 1, size - 1, 2**63)))
    args = (TREE.leaf_hash(index), claimed_index, claimed_size, changed, TREE.root(size))
    outcome = typed(
        verify_inclusion,
        *args,
        allowed=(MerkleProofError,),
    )
    if outcome.ok:
        assert (changed, claimed_index, claimed_size) == (proof, index, size)


@fuzz_settings(300)
@given(data=st.data())
def test_consistency_proofs_verify_only_as_computed(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(2, COUNT))
    size1 = data.draw(st.integers(1, size2 - 1))
    proof = TREE.consistency_proof(size1, size2)
    changed = data.draw(_changed_proof(proof))
    root1 = data.draw(st.sampled_from((TREE.root(size1), TREE.root(size1 + 1), b"\x00" * 31)))
    outcome = typed(
        verify_consistency,
        size1,
        size2,
        changed,
        root1,
        TREE.root(size2),
        allowed=(MerkleProofError,),
    )
    if outcome.ok:
        assert changed == proof and root1 == TREE.root(size1)


CHECKPOINT_NOTES = [c.encode() for c in (*NOTES.checkpoints, NOTES.cosigned)]


@fuzz_settings(300)
@given(data=mutated(CHECKPOINT_NOTES, hot=()))
def test_signed_checkpoints_open_only_unchanged(data: bytes) -> None:
    targets.note(b"\x00" + data)


_BODY = parse_note(NOTES.cosigned)[0]
_ORIGIN, _SIZE, _ROOT, *_EXTENSIONS = _BODY[:-1].split("\n")


# Sizes that are not a uint64 in its one spelling (Arabic-Indic digits are digits to int()).
_SIZES = (_SIZE, "0", "01", "-1", "+1", "1.0", "18446744073709551615", "18446744073709551616")
_SIZES += ("1" * 21, "1" * 5000, "\u0661\u0662", " 7")


@st.composite
def checkpoint_bodies(draw: st.DrawFn) -> str:
    """Checkpoint texts built line by line from real and boundary values (tlog-checkpoint)."""
    origin = draw(st.sampled_from([_ORIGIN, "", " ", "o\x00", "x" * 9000]) | st.text(max_size=20))
    size = draw(st.sampled_from(_SIZES))
    root = draw(st.sampled_from([_ROOT, _ROOT[:-1], _ROOT + "=", "", "A" * 44, _ROOT.lower()]))
    extensions = draw(st.lists(st.sampled_from(["", "x", "ext line", "\t"]), max_size=2))
    end = draw(st.sampled_from(["\n", "", "\n\n"]))
    return "\n".join([origin, size, root, *extensions]) + end


@fuzz_settings(300)
@given(
    text=checkpoint_bodies()
    | st.text(max_size=200)
    | mutated([_BODY.encode()]).map(lambda b: b.decode("utf-8", "surrogateescape"))
)
def test_checkpoint_bodies(text: str) -> None:
    outcome = typed(Checkpoint.from_text, text, allowed=(NoteError,))
    if outcome.ok:
        assert outcome.value.text == text  # one body, one spelling


@fuzz_settings(200)
@given(
    vkey=st.text(max_size=80)
    | mutated([NOTES.signer.verifier.vkey.encode()]).map(
        lambda b: b.decode("utf-8", "surrogateescape")
    )
)
def test_verifier_keys(vkey: str) -> None:
    outcome = typed(NoteVerifier.from_vkey, vkey, allowed=(NoteError,))
    if outcome.ok:
        assert outcome.value.vkey == vkey
