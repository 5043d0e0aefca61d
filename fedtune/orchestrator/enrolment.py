"""Enrolment: one-time tokens, and redeeming one for a certificate bound to an Ed25519 identity."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field

from crypto.canonical import CanonicalModel
from crypto.identity import PublicIdentity
from fedtune.orchestrator import audit_hook, pki
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.documents import verify_signed
from fedtune.orchestrator.errors import EnrolmentRefused, InvalidRequest
from fedtune.orchestrator.store.records import EnrolmentToken, IssuedCertificate, Party
from fedtune.orchestrator.store.repository import Repository

SIGNING_CONTEXT = "enrolment-request"
TOKEN_PREFIX = "fte1_"  # noqa: S105 (a prefix, not a token)
# How far the request's timestamp may be from the server's clock.
MAX_REQUEST_SKEW = dt.timedelta(minutes=10)


class EnrolmentRequest(CanonicalModel):
    """What an enrolling party signs with its Ed25519 identity (proof of possession)."""

    format: str = "fedtune.enrolment-request/v1"
    token: str
    identity: bytes = Field(description="raw 32-byte Ed25519 public key")
    csr: bytes = Field(description="DER CSR for the party's P-256 TLS key")
    ca_fingerprint: str = Field(description="the CA the party pinned: binds the request to it")
    requested_at: dt.datetime


@dataclass(frozen=True)
class EnrolmentResult:
    """What a successful enrolment hands back."""

    certificate_pem: bytes
    role: Role
    name: str
    fingerprint: str


def token_digest(token: str) -> bytes:
    """The SHA-256 under which a token is stored (the token itself never is)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_token(
    repository: Repository,
    role: Role,
    name: str,
    *,
    ttl: dt.timedelta,
    now: dt.datetime,
) -> str:
    """Store a new one-time token for ``role``/``name`` (by hash) and return it."""
    if not isinstance(role, Role):
        raise TypeError("role must be a Role")
    if not name or len(name) > 128 or any(c in name for c in "\x00\n\r,=+/\\"):
        raise ValueError("name must be 1-128 characters without control or DN separators")
    if ttl <= dt.timedelta(0):
        raise ValueError("ttl must be positive")
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    repository.add_token(EnrolmentToken(token_digest(token), role.value, name, now, now + ttl))
    return token


class Enroller:
    """Redeems tokens: checks the identity's signature and issues the client certificate."""

    def __init__(
        self,
        repository: Repository,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
        audit: AuditHook,
        *,
        cert_validity: dt.timedelta = dt.timedelta(days=365),
    ) -> None:
        self._repository = repository
        self._ca_key = ca_key
        self._ca_cert = ca_cert
        self._ca_fingerprint = pki.ca_fingerprint(ca_cert)
        self._audit = audit
        self._validity = cert_validity

    def enrol(self, canonical: bytes, signature: bytes, *, now: dt.datetime) -> EnrolmentResult:
        """Redeem the token in the signed request; EnrolmentRefused or InvalidRequest if not."""
        try:
            claimed = EnrolmentRequest.model_validate_json(canonical)
            identity = PublicIdentity.from_bytes(claimed.identity)
        except ValueError:
            raise InvalidRequest(
                "request", "not an EnrolmentRequest with a 32-byte identity"
            ) from None
        doc = verify_signed(
            EnrolmentRequest,
            canonical,
            signature,
            identity,
            context=SIGNING_CONTEXT,
            field="request",
        )
        if doc.ca_fingerprint != self._ca_fingerprint:
            raise EnrolmentRefused(
                f"the request pins CA {doc.ca_fingerprint}, this deployment's CA is "
                f"{self._ca_fingerprint}: check the fingerprint the operator gave you"
            )
        if abs(now - doc.requested_at) > MAX_REQUEST_SKEW:
            raise EnrolmentRefused(
                f"the request is dated {doc.requested_at.isoformat()}, the server's time is "
                f"{now.isoformat()}: fix the clock (at most {MAX_REQUEST_SKEW} apart)"
            )
        digest = token_digest(doc.token)
        token = self._repository.get_token(digest)
        self._check_token(token, now)
        assert token is not None
        role = Role(token.role)
        cert = pki.issue_client_certificate(
            self._ca_key,
            self._ca_cert,
            doc.csr,
            fingerprint=identity.fingerprint,
            role=role,
            name=token.name,
            now=now,
            validity=self._validity,
        )
        party = Party(identity.fingerprint, identity.raw, role.value, token.name, now)
        issued = IssuedCertificate(
            cert.serial_number,
            identity.fingerprint,
            role.value,
            token.name,
            cert.not_valid_after_utc,
            now,
        )
        if not self._repository.redeem_token(digest, party, issued, now=now):
            # Lost a race with another redemption of the same token.
            self._check_token(self._repository.get_token(digest), now)
            raise EnrolmentRefused("the enrolment token was used meanwhile; ask for a new one")
        self._audit.record(
            audit_hook.event(
                "enrolment",
                None,
                "Enrol",
                identity.fingerprint,
                party=identity.fingerprint,
                details={
                    "role": role.value,
                    "name": token.name,
                    "serial": format(cert.serial_number, "x"),
                },
            )
        )
        return EnrolmentResult(pki.cert_to_pem(cert), role, token.name, identity.fingerprint)

    @staticmethod
    def _check_token(token: EnrolmentToken | None, now: dt.datetime) -> None:
        if token is None:
            raise EnrolmentRefused("unknown enrolment token: check it, or ask the operator again")
        if token.used_at is not None:
            raise EnrolmentRefused(
                f"the enrolment token was already used at {token.used_at.isoformat()}; "
                "tokens are single-use: ask the operator for a new one"
            )
        if token.expires_at <= now:
            raise EnrolmentRefused(
                f"the enrolment token expired at {token.expires_at.isoformat()}; "
                "ask the operator for a new one"
            )
