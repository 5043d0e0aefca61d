"""The demo's errors: a step that could not run, and why."""

from __future__ import annotations

from fedtune.errors import FedtuneError


class DemoError(FedtuneError):
    """A demo step failed; ``step`` names it and the message says what to do."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"demo step {step!r}: {message}")
