"""Client side of the orchestrator: configuration, enrolment, channels and typed calls."""

from fedtune.orchestrator.client.api import OrchestratorClient, mtls_channel
from fedtune.orchestrator.client.config import ClientConfig, identity_path
from fedtune.orchestrator.client.enrol import enrol, fetch_pinned_ca

__all__ = [
    "ClientConfig",
    "OrchestratorClient",
    "enrol",
    "fetch_pinned_ca",
    "identity_path",
    "mtls_channel",
]
