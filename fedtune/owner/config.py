"""owner.toml: a data owner's typed settings for joining sessions (no secret ever lives in it).

Read with :meth:`OwnerConfig.load`; environment variables ``FEDTUNE_OWNER_*`` (nested with
``__``, e.g. ``FEDTUNE_OWNER_SUPERLINK__ADDRESS``) override the file. A misspelt key fails
loudly (``extra="forbid"``). The owner's identity and keys stay in ``$FEDTUNE_HOME``; this file
only says what the owner accepts and where things are.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from enclave.attest import EvidenceKind
from enclave.attest.policy import KNOWN_MEASUREMENTS, REQUIRED_MEASUREMENTS
from fedtune.owner.errors import OwnerConfigError

_HEX_48 = 96


class AllowedBuild(BaseModel):
    """One sandbox build the owner accepts: every named measurement, as hex."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EvidenceKind = EvidenceKind.SIMULATED
    values: dict[str, str] = Field(
        description="measurement name -> hex (simulated/sev-snp: 'measurement'; tdx: mrtd, "
        "rtmr0..2)"
    )
    label: str = ""

    @model_validator(mode="after")
    def _complete(self) -> AllowedBuild:
        missing = REQUIRED_MEASUREMENTS[self.kind] - set(self.values)
        if missing:
            raise ValueError(f"a {self.kind.value} build must pin {', '.join(sorted(missing))}")
        unknown = set(self.values) - KNOWN_MEASUREMENTS[self.kind]
        if unknown:
            raise ValueError(f"unknown {self.kind.value} measurement(s): {sorted(unknown)}")
        for name, value in self.values.items():
            if len(value) != _HEX_48 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(
                    f"{name} must be 96 lower-case hex digits (SHA-384), as 'fedtune sandbox "
                    "measure' prints it"
                )
        return self


class OwnerPolicy(BaseModel):
    """What sandbox evidence the owner accepts before any record is exposed to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tee: Literal["simulated", "configfs"] = Field(
        default="configfs",
        description="simulated (development only) or configfs (SEV-SNP / TDX via configfs-tsm)",
    )
    allow_simulated: bool = Field(
        default=False,
        description="accept the simulated TEE (process-level protection only; never in "
        "production)",
    )
    allowed_kinds: list[EvidenceKind] = Field(default_factory=list)
    allowed: list[AllowedBuild] = Field(
        default_factory=list, description="the sandbox builds the owner accepts (fail closed)"
    )
    simulated_platform_keys: list[str] = Field(
        default_factory=list,
        description="fingerprints of simulated platform keys to accept besides this machine's",
    )
    min_tcb: dict[EvidenceKind, dict[str, int]] = Field(default_factory=dict)
    max_evidence_age_s: int = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> OwnerPolicy:
        if self.tee == "simulated" and not self.allow_simulated:
            raise ValueError("tee = 'simulated' needs allow_simulated = true (development only)")
        if EvidenceKind.SIMULATED in self.kinds and not self.allow_simulated:
            raise ValueError("a simulated build is allowed but allow_simulated is false")
        return self

    @property
    def kinds(self) -> list[EvidenceKind]:
        """The evidence kinds accepted: those listed, else those of the allowed builds."""
        if self.allowed_kinds:
            return list(self.allowed_kinds)
        return sorted({b.kind for b in self.allowed}, key=lambda k: k.value)


class DataLayout(BaseModel):
    """Which files of the records directory the sandbox reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: str = Field(default="train.jsonl", description="JSONL or CSV, relative to --data")
    eval: str | None = Field(
        default=None,
        description="held-out file; without it the sandbox holds out the terms' fraction",
    )

    @field_validator("train", "eval")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = Path(value).parts
        if not value or Path(value).is_absolute() or ".." in parts or "\\" in value:
            raise ValueError(f"{value!r} must be a plain path relative to the records directory")
        if not value.endswith((".jsonl", ".csv")):
            raise ValueError(f"{value!r}: records are JSONL (.jsonl) or CSV (.csv)")
        return value


class SuperLinkSettings(BaseModel):
    """Where the operator's Flower SuperLink is, and the CA its certificate chains to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="HOST:PORT of the SuperLink's Fleet API")
    ca: Path | None = Field(
        default=None, description="CA file; default: the deployment CA pinned at enrolment"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value


class Limits(BaseModel):
    """Resources and patience."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int | None = Field(default=None, ge=1, description="CPU threads of the sandbox")
    sandbox_start_s: float = Field(default=180.0, gt=0)
    supernode_wait_s: float = Field(
        default=300.0, gt=0, description="how long to wait for the operator to admit the node"
    )
    reconnect_attempts: int = Field(default=5, ge=0, description="SuperNode restarts, at most")
    reconnect_backoff_s: float = Field(default=5.0, gt=0, description="first back-off, doubles")
    session_wait_s: float = Field(
        default=3600.0, gt=0, description="how long to wait for the session to start"
    )


class OwnerConfig(BaseSettings):
    """Everything ``fedtune owner join`` needs besides the session id and the records dir."""

    model_config = SettingsConfigDict(
        env_prefix="FEDTUNE_OWNER_", env_nested_delimiter="__", extra="forbid"
    )

    policy: OwnerPolicy
    data: DataLayout = Field(default_factory=DataLayout)
    superlink: SuperLinkSettings
    work_dir: Path | None = Field(
        default=None,
        description="sockets, the SuperNode's state, the staging dir; default "
        "$FEDTUNE_HOME/owner (keep it short: Unix socket paths hold 107 bytes)",
    )
    limits: Limits = Field(default_factory=Limits)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment overrides the file (whose values arrive as init arguments)."""
        return env_settings, init_settings

    @classmethod
    def load(cls, path: Path) -> OwnerConfig:
        """Read ``owner.toml``; OwnerConfigError naming the file and the field when it is wrong."""
        if not isinstance(path, Path):
            raise TypeError("path must be a pathlib.Path")
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise OwnerConfigError(
                str(path), "no such file; write one with 'fedtune owner init'"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise OwnerConfigError(str(path), f"not valid TOML: {exc}") from None
        try:
            config = cls(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(file)"
            raise OwnerConfigError(str(path), f"{where}: {first['msg']}") from None
        if config.superlink.ca is not None and not config.superlink.ca.is_absolute():
            # Relative paths are relative to the file, not to wherever the command runs.
            config = config.model_copy(update={"superlink": config.superlink.model_copy(
                update={"ca": (path.parent / config.superlink.ca).resolve()})})
        if config.work_dir is not None and not config.work_dir.is_absolute():
            config = config.model_copy(update={"work_dir": (path.parent / config.work_dir)
                                               .resolve()})
        return config


STARTER = """\
# owner.toml: what this data owner accepts when joining a fedtune session.
# Secrets never go here: your identity and keys stay in $FEDTUNE_HOME.
# Environment variables FEDTUNE_OWNER_<SECTION>__<KEY> override these values.

[policy]
# The sandbox evidence you accept BEFORE any of your records is shown to it.
# "configfs": a real TEE (AMD SEV-SNP or Intel TDX through configfs-tsm).
# "simulated": development and tests only; protection is process-level, the machine's
# root can read the sandbox's memory. It needs allow_simulated = true.
tee = "{tee}"
allow_simulated = {allow_simulated}

# The sandbox builds you accept: measure the checkout you reviewed with
#   fedtune sandbox measure --checkout /path/to/fedtune
# (the value below is the build installed here when this file was written).
[[policy.allowed]]
kind = "{kind}"
label = "{label}"
values = {{ measurement = "{measurement}" }}

[data]
# JSONL (one object per line: "text" and, for classification, "label") or CSV with a header
# (columns text,label). Paths are relative to --data.
train = "train.jsonl"
# eval = "eval.jsonl"   # without it the sandbox holds out the fraction the terms name

[superlink]
address = "{superlink}"
# ca = "superlink-ca.pem"   # default: the deployment CA pinned at enrolment

[limits]
# threads = 4
reconnect_attempts = 5
"""


def starter_config(
    *, superlink: str, measurement: bytes, simulated: bool, label: str = ""
) -> str:
    """A starter ``owner.toml`` pinning ``measurement`` (the owner should re-measure)."""
    if len(measurement) != 48:
        raise ValueError("measurement must be 48 bytes (SHA-384)")
    text = STARTER.format(
        tee="simulated" if simulated else "configfs",
        allow_simulated="true" if simulated else "false",
        kind="simulated" if simulated else "sev-snp",
        label=label.replace('"', "'"),
        measurement=measurement.hex(),
        superlink=superlink,
    )
    OwnerConfig(**tomllib.loads(text))  # what we write must load
    return text
