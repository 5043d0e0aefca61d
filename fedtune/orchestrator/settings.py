"""The orchestrator server's typed settings (environment prefix FEDTUNE_ORCHESTRATOR_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fedtune.orchestrator.registry import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE


class OrchestratorSettings(BaseSettings):
    """How ``fedtune orchestrator serve`` runs; CLI flags override these."""

    model_config = SettingsConfigDict(env_prefix="FEDTUNE_ORCHESTRATOR_", extra="forbid")

    dir: Path = Field(
        default_factory=lambda: Path("~/.fedtune/orchestrator").expanduser(),
        description="The deployment directory made by 'fedtune orchestrator init'.",
    )
    host: str = Field(default="127.0.0.1", description="Address both ports listen on.")
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Mutual-TLS API port (0: any free port; unset: the one init recorded).",
    )
    enrol_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Enrolment port, server-only TLS (0: any free; unset: the one init recorded).",
    )
    max_workers: int = Field(default=128, ge=4, description="Threads serving RPCs.")
    chunk_size: int = Field(
        default=DEFAULT_CHUNK_SIZE,
        ge=MIN_CHUNK_SIZE,
        le=MAX_CHUNK_SIZE,
        description="Upload chunk size when the client does not ask for one.",
    )
    upload_sync_bytes: int = Field(
        default=16 << 20,
        ge=1,
        description="Upload bytes made durable (fdatasync + recorded) at least this often.",
    )
    nonce_ttl_s: int = Field(default=120, ge=1, description="Lifetime of a release challenge.")
    watch_max_s: int = Field(default=3600, ge=1, description="Longest WatchSession stream.")
    cert_validity_days: int = Field(default=365, ge=1, description="Client certificate lifetime.")
    grace_s: float = Field(default=5.0, ge=0, description="Shutdown grace for in-flight calls.")
