"""Verify an audit log as an outside party: signatures, every entry, and the checkpoint you kept.

``verify_log`` trusts nothing the source says. It checks the latest checkpoint's signature
against the log key you pinned, downloads every entry and rebuilds the RFC 9162 tree, and
compares the root. If the root is wrong it names the *first* bad entry: the log publishes a
signed checkpoint after every batch, so a binary search over those finds the first checkpoint
the downloaded entries no longer reproduce, and inclusion proofs against that signed checkpoint
single out the entry inside its batch. Finally it checks that the log still extends the
checkpoint you saved last time (a smaller log is a truncation, another root at the same size or
a failing consistency proof is a fork) and only then saves the new checkpoint, atomically.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crypto import merkle
from crypto.atomicfile import atomic_write_bytes
from crypto.errors import MerkleProofError, NoteError
from crypto.note import Checkpoint, NoteVerifier, open_checkpoint, parse_note
from fedtune.audit.errors import (
    CheckpointRejectedError,
    EntryMismatchError,
    EntryMissingError,
    InvalidEventError,
    LogForkError,
    LogTruncatedError,
    MalformedEntryError,
)
from fedtune.audit.events import AuditEvent
from fedtune.audit.source import LogSource

__all__ = [
    "Progress",
    "VerifyReport",
    "default_checkpoint_path",
    "read_events",
    "verify_log",
]

# (phase, done, total); the one phase so far is "entries" (the download).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification established."""

    origin: str
    size: int
    root_hash: bytes
    previous_size: int | None  # the saved checkpoint this run was checked against, if any
    previous_root: bytes | None
    entries_checked: int
    saved_to: Path | None
    events: tuple[tuple[int, AuditEvent], ...] = field(default=(), repr=False)


def default_checkpoint_path(origin: str, home: Path) -> Path:
    """Where a party keeps the last checkpoint it verified of the log ``origin``."""
    # Readable, filesystem-safe, and unique per origin even when two origins sanitise alike.
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", origin).strip("._")[:80] or "log"
    digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()[:12]
    return Path(home) / "audit" / f"{safe}-{digest}.checkpoint"


def _open(note: str, verifier: NoteVerifier, origin: str, which: str) -> Checkpoint:
    try:
        checkpoint, _ = open_checkpoint(note, [verifier], origin=origin)
    except NoteError as exc:
        raise CheckpointRejectedError(which, str(exc)) from exc
    return checkpoint


def _load_saved(path: Path, verifier: NoteVerifier, origin: str) -> tuple[Checkpoint, str] | None:
    try:
        note = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointRejectedError(f"saved ({path})", f"unreadable: {exc}") from exc
    return _open(note, verifier, origin, f"saved ({path})"), note


@dataclass
class _Download:
    tree: merkle.MemoryTree
    contiguous: int  # entries 0..contiguous-1 arrived, in order
    first_malformed: tuple[int, str] | None
    events: list[tuple[int, AuditEvent]]


def _download(
    source: LogSource,
    size: int,
    *,
    decode: bool,
    keep: bool,
    progress: Progress | None,
) -> _Download:
    tree = merkle.MemoryTree()
    events: list[tuple[int, AuditEvent]] = []
    first_malformed: tuple[int, str] | None = None
    expected = 0
    gap = False
    while expected < size and not gap:
        before = expected
        for entry in source.entries(expected, size):
            if entry.index != expected or expected >= size:
                gap = True  # a hole (or an out-of-order answer): entries from here on are missing
                break
            tree.append(merkle.leaf_hash(entry.leaf))
            if decode:
                try:
                    event = AuditEvent.from_leaf(entry.leaf)
                except InvalidEventError as exc:
                    if first_malformed is None:
                        first_malformed = (expected, exc.reason)
                else:
                    if keep:
                        events.append((expected, event))
            expected += 1
        if expected == before:
            gap = True  # an empty page before the end: the rest is missing
        if progress is not None:
            progress("entries", expected, size)
    return _Download(tree, expected, first_malformed, events)


def _first_bad_entry(
    source: LogSource,
    verifier: NoteVerifier,
    origin: str,
    tree: merkle.MemoryTree,
    bad: Checkpoint,
) -> EntryMismatchError:
    """Locate the first entry the signed history disagrees with; ``bad`` already disagrees."""

    def agrees(checkpoint: Checkpoint) -> bool:
        return tree.root(checkpoint.size) == checkpoint.root_hash

    # Invariants: the checkpoint at size ``good`` (or the empty tree) agrees; ``bad`` does not;
    # no published checkpoint has a size in (good, low]. Each step halves (low, bad.size).
    good, low = 0, 0
    while low + 1 < bad.size:
        mid = (low + bad.size) // 2
        which = f"the log's checkpoint at or below size {mid}"
        candidate = _open(source.checkpoint(at_or_below=mid), verifier, origin, which)
        if candidate.size > mid:
            raise CheckpointRejectedError(which, f"the log answered with size {candidate.size}")
        if candidate.size <= low:
            low = mid
        elif agrees(candidate):
            good = low = candidate.size
        else:
            bad = candidate
    # The first bad entry lies in the batch [good, bad.size): each entry that is really in the
    # signed tree has a valid inclusion proof against it; the first one without is the culprit.
    for index in range(good, bad.size):
        proof = source.inclusion_proof(index, bad.size)
        try:
            merkle.verify_inclusion(tree.leaf_hash(index), index, bad.size, proof, bad.root_hash)
        except MerkleProofError as exc:
            return EntryMismatchError(
                index,
                bad.size,
                f"its hash has no valid inclusion proof in that checkpoint ({exc.check}); it was "
                "edited, reordered, replaced or inserted",
            )
    return EntryMismatchError(
        good, bad.size, "the entries of this batch do not combine to the signed root"
    )


def verify_log(
    source: LogSource,
    verifier: NoteVerifier,
    *,
    saved_checkpoint: Path | None,
    origin: str | None = None,
    update_saved: bool = True,
    decode_events: bool = True,
    keep_events: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the whole log from ``source`` against the pinned ``verifier`` key; raise on any fault.

    ``origin`` defaults to the key name (C2SP: the log's key name matches its origin line).
    ``saved_checkpoint`` is the file holding the checkpoint verified last time (absent on a
    first run); it is replaced by the new checkpoint only after everything verified.
    """
    if not isinstance(verifier, NoteVerifier):
        raise TypeError(f"verifier must be a NoteVerifier, got {type(verifier).__name__}")
    origin = verifier.name if origin is None else origin
    saved_path = Path(saved_checkpoint) if saved_checkpoint is not None else None

    latest_note = source.checkpoint()
    latest = _open(latest_note, verifier, origin, "the log's latest")
    saved = _load_saved(saved_path, verifier, origin) if saved_path is not None else None

    download = _download(
        source,
        latest.size,
        decode=decode_events,
        keep=keep_events,
        progress=progress,
    )
    tree = download.tree
    # The downloaded prefix must reproduce the log's own signed history ...
    if download.contiguous == latest.size:
        newest_covered = latest
    else:
        which = f"the log's checkpoint at or below size {download.contiguous}"
        newest_covered = _open(
            source.checkpoint(at_or_below=download.contiguous), verifier, origin, which
        )
        if newest_covered.size > download.contiguous:
            raise CheckpointRejectedError(which, f"the log answered size {newest_covered.size}")
    if tree.root(newest_covered.size) != newest_covered.root_hash:
        raise _first_bad_entry(source, verifier, origin, tree, newest_covered)
    # ... and every entry the latest checkpoint covers must be there.
    if download.contiguous < latest.size:
        raise EntryMissingError(download.contiguous, latest.size)
    if download.first_malformed is not None:
        raise MalformedEntryError(*download.first_malformed)

    previous: Checkpoint | None = saved[0] if saved is not None else None
    if previous is not None:
        _check_extends(source, tree, previous, latest)

    saved_to = None
    if saved_path is not None and update_saved:
        atomic_write_bytes(saved_path, latest_note.encode("utf-8"), mode=0o644)
        saved_to = saved_path
    return VerifyReport(
        origin=latest.origin,
        size=latest.size,
        root_hash=latest.root_hash,
        previous_size=previous.size if previous else None,
        previous_root=previous.root_hash if previous else None,
        entries_checked=latest.size,
        saved_to=saved_to,
        events=tuple(download.events),
    )


def _check_extends(
    source: LogSource, tree: merkle.MemoryTree, saved: Checkpoint, latest: Checkpoint
) -> None:
    """The latest checkpoint must extend the saved one (RFC 9162 consistency)."""
    if latest.size < saved.size:
        raise LogTruncatedError(saved.size, latest.size)
    fork = {
        "saved_size": saved.size,
        "saved_root": saved.root_hash,
        "size": latest.size,
        "root": latest.root_hash,
    }
    if latest.size == saved.size:
        if latest.root_hash != saved.root_hash:
            raise LogForkError(reason="the log signed two different trees of the same size", **fork)
        return
    if saved.size == 0:
        return  # every tree extends the empty one
    proof = source.consistency_proof(saved.size, latest.size)
    try:
        merkle.verify_consistency(saved.size, latest.size, proof, saved.root_hash, latest.root_hash)
    except MerkleProofError as exc:
        raise LogForkError(
            reason=f"the log cannot prove its tree extends your saved one ({exc.check} failed): "
            f"entries before {saved.size} were rewritten",
            **fork,
        ) from exc
    # The entries themselves say the same (they reproduced ``latest`` already).
    if tree.root(saved.size) != saved.root_hash:
        raise LogForkError(
            reason=f"the entries before {saved.size} no longer match your saved checkpoint", **fork
        )


def read_events(
    source: LogSource, *, progress: Progress | None = None
) -> tuple[Checkpoint, list[tuple[int, AuditEvent]]]:
    """Read every event WITHOUT verifying anything (for display when no log key is at hand)."""
    note = source.checkpoint()
    try:
        checkpoint = Checkpoint.from_text(parse_note(note)[0])
    except NoteError as exc:
        raise CheckpointRejectedError("the log's latest", str(exc)) from exc
    download = _download(source, checkpoint.size, decode=True, keep=True, progress=progress)
    if download.first_malformed is not None:
        raise MalformedEntryError(*download.first_malformed)
    if download.contiguous < checkpoint.size:
        raise EntryMissingError(download.contiguous, checkpoint.size)
    return checkpoint, download.events
