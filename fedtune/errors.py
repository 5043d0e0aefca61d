"""The fedtune package's exception hierarchy: orchestrator, federated and tooling failures."""

from __future__ import annotations


class FedtuneError(Exception):
    """Base of every error the fedtune package raises."""
