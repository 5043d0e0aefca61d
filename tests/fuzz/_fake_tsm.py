"""A stand-in for the kernel side of configfs-tsm that answers with whatever bytes it is given.

``mkdir`` under the fake root creates the attribute files configfs would, filled with the
fuzzed ``provider``, ``generation``, ``outblob`` and ``auxblob`` contents; ``rmdir`` removes
them (configfs does). Only ``os.mkdir``/``os.rmdir`` for paths directly under the root are
intercepted, inside ``FakeTsm.installed()``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    """What the fake kernel puts in the next report entry's attribute files."""

    provider: bytes
    outblob: bytes
    auxblob: bytes | None
    generation: bytes = b"1\n"


class FakeTsm:
    """The fake report tree under ``root``; ``answer`` fills every entry created."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.answer: Answer | None = None
        self._real_mkdir = os.mkdir
        self._real_rmdir = os.rmdir

    def _ours(self, path: Any) -> bool:
        return Path(path).parent == self.root

    def _mkdir(self, path: Any, mode: int = 0o777, *args: Any, **kwargs: Any) -> None:
        self._real_mkdir(path, mode, *args, **kwargs)
        if not self._ours(path) or self.answer is None:
            return
        entry, answer = Path(path), self.answer
        files = {
            "inblob": b"",
            "provider": answer.provider,
            "outblob": answer.outblob,
            "generation": answer.generation,
        }
        if answer.auxblob is not None:
            files["auxblob"] = answer.auxblob
        for name, content in files.items():
            (entry / name).write_bytes(content)

    def _rmdir(self, path: Any, *args: Any, **kwargs: Any) -> None:
        if self._ours(path):
            for child in Path(path).iterdir():
                child.unlink()
        self._real_rmdir(path, *args, **kwargs)

    @contextlib.contextmanager
    def installed(self) -> Iterator[FakeTsm]:
        """Intercept mkdir/rmdir under the root for the duration of the block."""
        os.mkdir, os.rmdir = self._mkdir, self._rmdir  # type: ignore[assignment]
        try:
            yield self
        finally:
            os.mkdir, os.rmdir = self._real_mkdir, self._real_rmdir  # type: ignore[assignment]

    def leftovers(self) -> list[Path]:
        """Report entries still present (the provider must remove every entry it made)."""
        return sorted(self.root.iterdir())
