"""The two fine-tuning tasks a session can run: sequence classification and causal LM."""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    """What the model learns; decides the record schema, the model head and the metrics."""

    CLASSIFICATION = "classification"
    CAUSAL_LM = "causal-lm"

    @classmethod
    def parse(cls, value: TaskKind | str) -> TaskKind:
        """The task named by ``value``; ValueError listing the known tasks otherwise."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise TypeError(f"task must be a TaskKind or str, got {type(value).__name__}")
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown task {value!r}; expected one of: {known}") from None
