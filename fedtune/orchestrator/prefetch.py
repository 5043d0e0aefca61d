"""Read an iterator ahead on a helper thread, so producing and consuming items overlap.

A gRPC stream asks its transport for the next message only when the application takes it;
reading one or two chunks ahead keeps bytes flowing while the current chunk is hashed and
written. The queue is bounded (memory stays ``depth`` items), errors are re-raised in the
consumer, and closing the generator stops the reader.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterable[T], *, depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order, produced up to ``depth`` ahead on another thread."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
