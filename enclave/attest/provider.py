"""What every evidence provider offers: evidence carrying 64 bytes of caller-chosen report data."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from enclave.attest.evidence import Evidence


@runtime_checkable
class EvidenceProvider(Protocol):
    """A source of evidence: configfs-tsm in a real guest, or the simulated TEE."""

    def get_evidence(self, report_data: bytes) -> Evidence:
        """Produce evidence whose report data is exactly ``report_data`` (64 bytes)."""
        ...
