"""Secure aggregation shaped like SecAgg+, with cryptographic masks: client and server sides."""

from crypto.secagg.client import ClientStage, SecAggClient
from crypto.secagg.graph import NeighbourGraph
from crypto.secagg.params import RoundParams, default_degree, default_threshold
from crypto.secagg.server import (
    AggregateResult,
    Exclusion,
    ExclusionReason,
    SecAggServer,
    ServerStage,
)

__all__ = [
    "AggregateResult",
    "ClientStage",
    "Exclusion",
    "ExclusionReason",
    "NeighbourGraph",
    "RoundParams",
    "SecAggClient",
    "SecAggServer",
    "ServerStage",
    "default_degree",
    "default_threshold",
]
