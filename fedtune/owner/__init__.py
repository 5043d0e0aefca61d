"""The data owner's side of a session: its sandbox, key releases, and its SuperNode."""

from fedtune.owner.agent import JoinSpec, OwnerAgent, Prepared
from fedtune.owner.config import OwnerConfig, OwnerPolicy
from fedtune.owner.errors import (
    ExportError,
    ExportRefused,
    JoinError,
    OwnerError,
    ParticipationStopped,
    SandboxRefused,
)
from fedtune.owner.export import ApprovalStatus, ExportedAdapter, approve_export, export_adapter
from fedtune.owner.participation import Outcome, follow

__all__ = [
    "ApprovalStatus",
    "ExportError",
    "ExportRefused",
    "ExportedAdapter",
    "JoinError",
    "JoinSpec",
    "Outcome",
    "OwnerAgent",
    "OwnerConfig",
    "OwnerError",
    "OwnerPolicy",
    "ParticipationStopped",
    "Prepared",
    "SandboxRefused",
    "approve_export",
    "export_adapter",
    "follow",
]
