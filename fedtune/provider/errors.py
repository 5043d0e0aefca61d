"""Errors of the provider tooling: a model directory or sealed artifact that cannot be used."""

from __future__ import annotations

from fedtune.errors import FedtuneError


class ProviderError(FedtuneError):
    """Base of the provider tooling's errors."""


class ModelDirError(ProviderError):
    """The model directory cannot be sealed as it is."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot seal {path}: {reason}")


class ArtifactError(ProviderError):
    """A sealed artifact directory is incomplete, or writing one would overwrite another."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"sealed artifact {path}: {reason}")
