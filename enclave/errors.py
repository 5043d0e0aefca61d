"""The enclave package's exception hierarchy: attestation, policy and sandbox failures."""

from __future__ import annotations


class EnclaveError(Exception):
    """Base of every error the enclave package raises."""
