"""The owner as a relying party: its own signed policy, and its verdict on the sandbox's evidence.

Mutual attestation: the provider's key broker checks the sandbox against the provider's policy
before it releases the model key; the owner checks the same sandbox against its *own* policy
before its agent exposes a single record, and again at every re-attestation. The owner's policy
is built from ``owner.toml`` and signed by the owner's identity (the owner is the issuer and
the only trusted issuer), so the verdict names exactly which policy it applied.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from crypto.identity import Identity, PublicIdentity
from enclave.attest import (
    SIMULATED_WARNING,
    AllowedMeasurement,
    ReleasePolicy,
    SignedReleasePolicy,
    Verdict,
    new_nonce,
    report_data_for,
    verify,
)
from enclave.sandbox import with_isolation
from fedtune.owner.config import OwnerPolicy
from fedtune.sandbox_client import AttestResult, SandboxClient

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnerCheck:
    """The owner's verdict on one fresh piece of its sandbox's evidence."""

    verdict: Verdict
    attested: AttestResult
    policy: SignedReleasePolicy

    @property
    def ok(self) -> bool:
        """Whether the evidence satisfied the owner's policy."""
        return self.verdict.ok

    @property
    def first_failure(self) -> tuple[str, str]:
        """(check name, reason) of the first failed check; ("", "") when none failed."""
        failures = self.verdict.failures
        if not failures:
            return ("", "") if self.verdict.ok else ("verdict", "no check passed")
        first = failures[0]
        detail = ""
        if first.expected is not None or first.got is not None:
            detail = f" (expected {first.expected}, got {first.got})"
        return first.name, first.reason + detail


def owner_policy(
    settings: OwnerPolicy,
    identity: Identity,
    *,
    session_id: str,
    platform_key: PublicIdentity | None = None,
    now: dt.datetime | None = None,
) -> SignedReleasePolicy:
    """The owner's policy for one session's sandbox, signed by the owner (its own issuer).

    ``platform_key``: this machine's simulated-TEE key, accepted with ``allow_simulated`` (the
    owner runs that simulated platform itself).
    """
    if not isinstance(settings, OwnerPolicy):
        raise TypeError("settings must be an OwnerPolicy")
    if not isinstance(identity, Identity):
        raise TypeError("identity must be the owner's crypto.identity.Identity")
    now = now or dt.datetime.now(dt.UTC)
    platform_keys = list(settings.simulated_platform_keys)
    if (settings.allow_simulated and platform_key is not None
            and platform_key.fingerprint not in platform_keys):
        platform_keys.append(platform_key.fingerprint)
    if settings.allow_simulated:
        _log.warning("%s (your owner.toml says allow_simulated = true)", SIMULATED_WARNING)
    policy = ReleasePolicy(
        name=f"owner-policy:{session_id}",
        version=1,
        issuer=identity.fingerprint,
        issued_at=now - dt.timedelta(seconds=5),
        allowed_kinds=settings.kinds,
        allowed_measurements=[
            AllowedMeasurement(
                kind=build.kind,
                values={k: bytes.fromhex(v) for k, v in build.values.items()},
                label=build.label,
            )
            for build in settings.allowed
        ],
        min_tcb=settings.min_tcb,
        max_evidence_age_s=settings.max_evidence_age_s,
        allow_simulated=settings.allow_simulated,
        simulated_platform_keys=platform_keys if settings.allow_simulated else [],
    )
    return policy.sign(identity)


def check_sandbox(
    sandbox: SandboxClient, policy: SignedReleasePolicy, *, now: dt.datetime | None = None
) -> OwnerCheck:
    """Have the sandbox attest to a fresh nonce of the owner's and verify it against ``policy``."""
    nonce = new_nonce()
    attested = sandbox.attest(nonce)
    verdict = verify(
        attested.evidence,
        policy,
        report_data_for(nonce, attested.ephemeral_public_key),
        trusted_policy_issuers=[policy.policy.issuer],
        now=now,
    )
    return OwnerCheck(with_isolation(verdict, attested.isolation), attested, policy)

