"""The typed settings every fedtune process reads from FEDTUNE_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FedtuneSettings(BaseSettings):
    """Process-wide settings; nested sections are added by the areas that need them."""

    model_config = SettingsConfigDict(
        env_prefix="FEDTUNE_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(
        default_factory=lambda: Path("~/.fedtune").expanduser(),
        description="Where this party keeps its identity, keys and local state.",
    )


def load_settings() -> FedtuneSettings:
    """Read settings from the environment (FEDTUNE_HOME, ...)."""
    return FedtuneSettings()
