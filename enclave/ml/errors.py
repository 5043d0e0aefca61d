"""The sandbox ML core's exceptions: bad records, bad model directories, bad adapter vectors."""

from __future__ import annotations

from enclave.errors import EnclaveError


class MLError(EnclaveError):
    """Base of every error the sandbox's ML core raises."""


class RecordError(MLError, ValueError):
    """A data owner's record file is unusable; names the file, line and field, and what to fix.

    ``line`` is 1-based (``None`` when the problem is the whole file, e.g. it is too large or
    holds no records); ``field`` is the record field at fault (``None`` when the whole record
    is, e.g. a line that is not JSON).
    """

    def __init__(self, file: str, line: int | None, field: str | None, reason: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
        where = file if line is None else f"{file}:{line}"
        what = "" if field is None else f" field {field!r}:"
        super().__init__(f"{where}:{what} {reason}")


class ModelLoadError(MLError, ValueError):
    """An in-memory model directory cannot become a model; ``item`` names the file or tensor."""

    def __init__(self, item: str, reason: str) -> None:
        self.item = item
        self.reason = reason
        super().__init__(f"model directory, {item}: {reason}")


class UnsupportedModel(MLError, ValueError):
    """The model's architecture or task has no LoRA recipe here and none was given."""

    def __init__(self, model_type: str, reason: str) -> None:
        self.model_type = model_type
        self.reason = reason
        super().__init__(f"model type {model_type!r}: {reason}")


class AdapterMismatch(MLError, ValueError):
    """An adapter vector or directory does not fit this model's adapter layout."""

    def __init__(self, what: str, expected: str, got: str) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        super().__init__(f"adapter {what} mismatch: expected {expected}, got {got}")


class TrainingDiverged(MLError):
    """Local training produced a non-finite loss or update; nothing from it may leave."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(
            f"training diverged at step {step} (loss {loss}); lower the learning rate "
            "or check the records"
        )
