"""An auditor's ``verify_log`` against a hostile log server and a damaged saved checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedtune.audit.errors import AuditError
from fedtune.audit.log import AuditLog
from fedtune.audit.source import Entry
from fedtune.audit.verify import read_events, verify_log

from . import _seeds as seeds
from . import targets
from ._contract import typed
from ._mutate import fuzz_settings, mutated

pytestmark = pytest.mark.timeout(300)

NOTES = seeds.notes()


class HostileSource:
    """The real log as served by a server that alters one answer (the attacker's choice)."""

    def __init__(
        self,
        log: AuditLog,
        *,
        latest: str | None = None,
        leaf: tuple[int, bytes] | None = None,
        drop: int | None = None,
        proofs: list[bytes] | None = None,
    ) -> None:
        self._log = log
        self._latest = latest
        self._leaf = leaf
        self._drop = drop
        self._proofs = proofs

    def checkpoint(self, *, at_or_below: int | None = None) -> str:
        if at_or_below is None and self._latest is not None:
            return self._latest
        return self._log.checkpoint(at_or_below=at_or_below)

    def entries(self, start: int, end: int) -> Iterator[Entry]:
        for entry in self._log.entries(start, end):
            if entry.index == self._drop:
                continue
            if self._leaf is not None and entry.index == self._leaf[0]:
                yield Entry(entry.index, self._leaf[1])
            else:
                yield entry

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        real = self._log.inclusion_proof(index, size)
        return real if self._proofs is None else self._proofs

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        real = self._log.consistency_proof(size1, size2)
        return real if self._proofs is None else self._proofs


def _log() -> AuditLog:
    return targets._audit_log()[0]


def _real_states() -> set[tuple[int, bytes]]:
    return {(size, NOTES.tree.root(size)) for size in range(0, len(NOTES.leaves) + 1)} | {
        (0, bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
    }


def _check(source: HostileSource, saved: Path | None) -> None:
    before = saved.read_bytes() if saved is not None else None
    outcome = typed(
        verify_log,
        source,
        _log().verifier,
        saved_checkpoint=saved,
        keep_events=True,
        allowed=(AuditError,),
    )
    if outcome.ok:
        report = outcome.value
        assert (report.size, report.root_hash) in _real_states()
        assert [e.leaf() for _, e in report.events] == list(NOTES.leaves[: report.size])
    elif saved is not None:
        assert saved.read_bytes() == before, "a refused verification changed the saved checkpoint"


hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=4)


@fuzz_settings(40)
@given(data=st.data())
def test_hostile_server(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    log = _log()
    attack = data.draw(st.sampled_from(("latest", "leaf", "drop", "proofs")), label="attack")
    kwargs: dict[str, object] = {}
    if attack == "latest":
        kwargs["latest"] = data.draw(
            mutated([log.checkpoint().encode(), NOTES.cosigned.encode()]).map(
                lambda b: b.decode("utf-8", "surrogateescape")
            )
        )
    elif attack == "leaf":
        index = data.draw(st.integers(0, len(NOTES.leaves) - 1))
        kwargs["leaf"] = (index, data.draw(mutated([NOTES.leaves[index]])))
    elif attack == "drop":
        kwargs["drop"] = data.draw(st.integers(0, len(NOTES.leaves) - 1))
        kwargs["leaf"] = None
    else:
        index = data.draw(st.integers(0, len(NOTES.leaves) - 1))
        kwargs["leaf"] = (index, data.draw(mutated([NOTES.leaves[index]])))
        kwargs["proofs"] = data.draw(hashes)
    saved = tmp_path_factory.mktemp("saved") / "log.checkpoint"
    saved.write_text(log.checkpoint(at_or_below=data.draw(st.integers(0, 4))))
    _check(HostileSource(log, **kwargs), saved)  # type: ignore[arg-type]


@fuzz_settings(40)
@given(note=mutated([c.encode() for c in NOTES.checkpoints]))
def test_damaged_saved_checkpoint_is_refused_and_kept(note: bytes) -> None:
    targets.audit_saved_checkpoint(note)


@fuzz_settings(40)
@given(note=mutated([NOTES.cosigned.encode()]).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_read_events_on_an_unverified_checkpoint(note: str) -> None:
    # read_events shows a log without a key: it parses the checkpoint but trusts nothing.
    typed(read_events, HostileSource(_log(), latest=note), allowed=(AuditError,))
