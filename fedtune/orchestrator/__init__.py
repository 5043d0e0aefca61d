"""The control plane: model registry, key broker, sessions and enrolment over mutual-TLS gRPC."""

from fedtune.orchestrator.authz import METHOD_ROLES, Principal, Role
from fedtune.orchestrator.broker import KeyBroker, ReleaseOutcome, SecretKind
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import DeploymentInfo, DeploymentPaths, init_deployment
from fedtune.orchestrator.errors import (
    AlreadyExists,
    BlobDigestMismatch,
    ChunkDigestMismatch,
    ConfigurationError,
    EnrolmentRefused,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    OrchestratorError,
    PermissionDenied,
    PolicyDowngrade,
    ReleaseRefused,
    RemoteError,
    Unauthenticated,
    UploadIncomplete,
)
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.sessions import SessionState
from fedtune.orchestrator.settings import OrchestratorSettings
from fedtune.orchestrator.terms import (
    DifferentialPrivacy,
    EvaluationSplit,
    LoraSettings,
    SessionTerms,
)

__all__ = [
    "METHOD_ROLES",
    "AlreadyExists",
    "BlobDigestMismatch",
    "ChunkDigestMismatch",
    "ClientConfig",
    "ConfigurationError",
    "DeploymentInfo",
    "DeploymentPaths",
    "DifferentialPrivacy",
    "EnrolmentRefused",
    "EvaluationSplit",
    "IllegalTransition",
    "InvalidRequest",
    "KeyBroker",
    "LoraSettings",
    "NotFound",
    "OrchestratorClient",
    "OrchestratorError",
    "OrchestratorServer",
    "OrchestratorSettings",
    "PermissionDenied",
    "PolicyDowngrade",
    "Principal",
    "ReleaseOutcome",
    "ReleaseRefused",
    "RemoteError",
    "Role",
    "SecretKind",
    "SessionState",
    "SessionTerms",
    "Unauthenticated",
    "UploadIncomplete",
    "enrol",
    "init_deployment",
]
