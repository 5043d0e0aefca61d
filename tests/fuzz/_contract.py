"""The fuzzing contract: a parser returns, or raises a typed error with a message, in bounded time.

Shared by the hypothesis tests and the atheris harnesses. ``typed(fn, *args)`` runs one call
under a wall-clock limit and an RSS growth limit and returns an ``Outcome``; any exception
outside the allowed hierarchy (``IndexError``, ``struct.error``, ``OverflowError``, a raw
``cryptography``/``pydantic`` exception, ...) becomes ``UntypedError``, a hang ``HangError``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from crypto.errors import CryptoError
from enclave.errors import EnclaveError
from fedtune.errors import FedtuneError

# The three bases of DESIGN.md promise 6: anything a parser raises on bad input derives from one.
TYPED: tuple[type[BaseException], ...] = (CryptoError, EnclaveError, FedtuneError)

# Generous: the slowest call fuzzed here (verify_tdx with collateral) takes ~20 ms; a call that
# runs for seconds on a few KB of input is a hang in the making (a loop driven by a length
# field). Scaled by FEDTUNE_FUZZ_TIME_SCALE on slow or busy machines.
CALL_SECONDS = 10.0 * float(os.environ.get("FEDTUNE_FUZZ_TIME_SCALE", "1"))
# A parser given a few KB must not allocate hundreds of MB because a length field said so.
RSS_GROWTH_LIMIT_MB = 512
# libFuzzer keeps SIGALRM for its own -timeout; the atheris harnesses turn ours off.
USE_ALARM = True


class UntypedError(AssertionError):
    """A parser let an exception outside the typed hierarchy escape."""


class HangError(AssertionError):
    """A parser ran past the per-call time limit."""


class MemoryGrowthError(AssertionError):
    """A parser made the process's peak RSS grow past the limit."""


@dataclass(frozen=True)
class Outcome:
    """What one call did: returned ``value``, or raised the typed ``error``."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the call returned normally."""
        return self.error is None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``HangError`` in the calling (main) thread when the block runs past ``seconds``."""
    if not USE_ALARM or threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; elsewhere an outer timeout bounds the call
        return

    def _expired(signum: int, frame: object) -> None:
        raise HangError(f"call still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    # An outer timer (pytest-timeout's signal method uses the same one) is put back afterwards
    # with the time it had left, so this limit never switches the outer one off.
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            left = max(outer_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def _name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def typed(
    fn: Callable[..., Any],
    *args: Any,
    allowed: tuple[type[BaseException], ...] = TYPED,
    seconds: float = CALL_SECONDS,
    **kwargs: Any,
) -> Outcome:
    """Call ``fn``; return its Outcome, or raise when it breaks the contract."""
    before = _peak_rss_mb()
    try:
        with time_limit(seconds):
            value = fn(*args, **kwargs)
    except HangError:
        raise
    except allowed as exc:
        if not str(exc).strip():
            raise UntypedError(
                f"{_name(fn)} raised {type(exc).__name__} without a message"
            ) from exc
        outcome = Outcome(error=exc)
    except Exception as exc:  # the point: anything else is a finding
        raise UntypedError(
            f"{_name(fn)} let {type(exc).__module__}.{type(exc).__name__} escape: {exc}"
        ) from exc
    else:
        outcome = Outcome(value=value)
    grown = _peak_rss_mb() - before
    if grown > RSS_GROWTH_LIMIT_MB:
        raise MemoryGrowthError(f"{_name(fn)} grew the peak RSS by {grown:.0f} MB")
    return outcome


def refused(
    fn: Callable[..., Any],
    *args: Any,
    allowed: tuple[type[BaseException], ...] = TYPED,
    **kwargs: Any,
) -> BaseException:
    """Call ``fn`` on input that must be refused; return the typed error it raised."""
    outcome = typed(fn, *args, allowed=allowed, **kwargs)
    if outcome.ok:
        raise AssertionError(f"{_name(fn)} accepted input it must refuse: {outcome.value!r:.200}")
    assert outcome.error is not None
    return outcome.error
