"""The enclave package's exception hierarchy: attestation, policy and sandbox failures."""

from __future__ import annotations


class EnclaveError(Exception):
    """Base of every error the enclave package raises."""


class AttestationError(EnclaveError):
    """Evidence could not be produced, parsed or verified."""


class MalformedEvidence(AttestationError):
    """Evidence bytes do not parse; ``field`` names the part that is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"malformed evidence at {field}: {reason}")


class EvidenceUnavailable(AttestationError):
    """A provider could not produce evidence (no TEE interface, or it kept changing under us)."""


class PolicyError(EnclaveError):
    """A release policy is malformed, unsigned, or signed by someone not trusted to issue it."""
