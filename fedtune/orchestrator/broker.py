"""The key broker: registers data keys with signed release policies; releases them to attested
sandboxes of accepted session members, HPKE-sealed to the sandbox's ephemeral key.

CKKS sessions. The broker also makes each CKKS session's secret context (``crypto.ckks``):
when the session starts (or on first need, at a broker that does not see the start), it
generates the context, seals it (``crypto.seal``) under a fresh 32-byte key, keeps that key
wrapped under the master key like a data key, and stores the sealed context with the public
context. An attested sandbox of the session gets the 32-byte key HPKE-wrapped to its ephemeral
key plus the sealed context (what ``enclave.sandbox.keys.open_ckks_context`` takes); the
aggregator gets only the public context (``public_context``): it can add ciphertexts and
nothing else.

Session keys. Every session gets a 32-byte session key on first need (the owners' agents ask for
it while setting their sandboxes up), kept wrapped under the master key like a data key and
released the same way to attested sandboxes of the session, which seal the final adapter under
it (DESIGN promise 4). Outside a sandbox it goes only to a party of the session whose export
every party approved (``export_key``), HPKE-wrapped to a fresh key of that party.

Re-attestation. ``reattest`` runs the checks of a release (fresh nonce of kind
``reattestation``, evidence, the policy in force now) and releases nothing; the verdict is
audited, so a sandbox that stopped satisfying the provider's policy mid-session is on the record.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import ValidationError

from crypto.datakey import DataKey
from crypto.errors import KeyWrapError
from crypto.hpke import RecipientPrivateKey, RecipientPublicKey, unwrap_key, wrap_key
from crypto.identity import PublicIdentity
from crypto.manifest import Manifest
from crypto.seal import seal
from enclave.attest import (
    Check,
    Evidence,
    ReleasePolicy,
    SignedReleasePolicy,
    Verdict,
    new_nonce,
    report_data_for,
    verify,
)
from enclave.attest.policy import SIGNING_CONTEXT as POLICY_CONTEXT
from fedtune.audit.events import verdict_summary
from fedtune.orchestrator import audit_hook
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Principal
from fedtune.orchestrator.documents import parse_canonical, verify_signed
from fedtune.orchestrator.errors import (
    IllegalTransition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from fedtune.orchestrator.keywrap import KeyWrapper
from fedtune.orchestrator.relations import require_accepted_owner, require_model_owner
from fedtune.orchestrator.store.records import (
    CkksContextRecord,
    ModelRecord,
    ModelVersionRecord,
    NonceRecord,
    Party,
    PolicyRecord,
    ReleaseDecision,
    SessionRecord,
)
from fedtune.orchestrator.terms import SessionTerms

# The HPKE ``session_id`` a provider uses when wrapping a data key to the broker itself.
REGISTRATION_SESSION = "key-broker-registration"
MAX_EVIDENCE_SIZE = 1 << 20
RELEASE_STATES = frozenset({"running"})

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BrokerStore(Protocol):
    """What the broker reads and writes: its own tables, and views of models and sessions."""

    def get_party(self, fingerprint: str) -> Party | None:
        """An enrolled party (the provider, to verify its policy signatures)."""
        ...

    def get_model(self, name: str) -> ModelRecord | None:
        """A model and its owner."""
        ...

    def get_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """A registered version (its manifest names the data key id)."""
        ...

    def get_session_for_member(self, session_id: str, fingerprint: str) -> SessionRecord | None:
        """A session as far as one member's standing in it goes."""
        ...

    def get_policy(self, model_name: str) -> PolicyRecord | None:
        """The policy in force."""
        ...

    def put_policy(self, policy: PolicyRecord) -> PolicyRecord:
        """Install a higher-versioned policy."""
        ...

    def register_key(
        self, object_id: str, wrapped: bytes, policy: PolicyRecord, *, now: dt.datetime
    ) -> PolicyRecord:
        """Store a wrapped data key and its policy together."""
        ...

    def get_secret(self, kind: str, object_id: str) -> bytes | None:
        """A secret wrapped under the master key."""
        ...

    def add_nonce(self, nonce: NonceRecord) -> None:
        """Store an issued nonce."""
        ...

    def get_nonce(self, nonce: bytes) -> NonceRecord | None:
        """A nonce, if issued."""
        ...

    def decide_release(self, decision: ReleaseDecision) -> bool:
        """Consume a nonce with the decision; False on replay."""
        ...

    def purge_nonces(self, *, expired_before: dt.datetime) -> int:
        """Forget nonces that expired before the cutoff."""
        ...

    def add_secret(self, kind: str, object_id: str, wrapped: bytes, *, now: dt.datetime) -> bool:
        """Store a wrapped secret unless one is stored already (then False, storing nothing)."""
        ...

    def put_ckks_context(
        self, record: CkksContextRecord, wrapped_key: bytes, *, secret_kind: str
    ) -> bool:
        """Store a session's CKKS contexts and wrapped key, unless stored already (False)."""
        ...

    def get_ckks_context(self, session_id: str) -> CkksContextRecord | None:
        """A session's CKKS contexts, if generated."""
        ...


class SecretKind(StrEnum):
    """Which secret a release asks for."""

    MODEL_DATA_KEY = "model-data-key"
    SESSION_CKKS_SECRET = "session-ckks-secret"  # noqa: S105 (a kind name, not a secret)
    SESSION_KEY = "session-key"
    REATTESTATION = "reattestation"  # no secret: the nonce of a re-attestation


# Secrets bound to the session rather than to the model version.
SESSION_SECRETS = frozenset({SecretKind.SESSION_CKKS_SECRET, SecretKind.SESSION_KEY})


def model_id(name: str, version: str) -> str:
    """The id that binds a data key to one model version (HPKE info, at-rest AAD)."""
    return f"{name}@{version}"


@dataclass(frozen=True)
class ReleaseOutcome:
    """A release decision: the sealed secret (when released) and every check behind it."""

    released: bytes | None
    verdict: Verdict
    reason: str
    model_name: str
    model_version: str
    sealed_secret: bytes = b""


@dataclass(frozen=True)
class ReattestOutcome:
    """A re-attestation verdict: every check, and the first failure's reason when it failed."""

    ok: bool
    verdict: Verdict
    reason: str


class KeyBroker:
    """Holds wrapped secrets and decides releases."""

    def __init__(
        self,
        repository: BrokerStore,
        audit: AuditHook,
        broker_key: RecipientPrivateKey,
        wrapper: KeyWrapper,
        *,
        nonce_ttl: dt.timedelta = dt.timedelta(seconds=120),
        clock: Clock = _utcnow,
    ) -> None:
        if nonce_ttl <= dt.timedelta(0):
            raise ValueError("nonce_ttl must be positive")
        self._repository = repository
        self._audit = audit
        self._broker_key = broker_key
        self._wrapper = wrapper
        self._nonce_ttl = nonce_ttl
        self._clock = clock
        self._next_purge = clock()

    @property
    def public_key(self) -> RecipientPublicKey:
        """The key providers wrap their data keys to."""
        return self._broker_key.public_key()

    # -- provider side -----------------------------------------------------------------------

    def _parse_policy(
        self, actor: Principal, model_name: str, canonical: bytes, signature: bytes
    ) -> PolicyRecord:
        party = self._repository.get_party(actor.fingerprint)
        if party is None:
            raise PermissionDenied(
                "SetPolicy", f"model {model_name}", "your identity is not enrolled"
            )
        policy = verify_signed(
            ReleasePolicy,
            canonical,
            signature,
            PublicIdentity.from_bytes(party.public_key),
            context=POLICY_CONTEXT,
            field="policy",
        )
        if policy.issuer != actor.fingerprint:
            raise InvalidRequest(
                "policy.issuer", f"names {policy.issuer}, you are {actor.fingerprint}"
            )
        if policy.name != model_name:
            raise InvalidRequest(
                "policy.name", f"the policy guards {policy.name!r}, not the model {model_name!r}"
            )
        return PolicyRecord(model_name, policy.version, canonical, signature, self._clock())

    def register_key(
        self,
        actor: Principal,
        name: str,
        version: str,
        wrapped_key: bytes,
        policy_canonical: bytes,
        policy_signature: bytes,
    ) -> PolicyRecord:
        """Store a version's data key (re-wrapped under the master key) and the model's policy."""
        require_model_owner(self._repository, actor, "RegisterKey", name)
        record = self._repository.get_version(name, version)
        if record is None:
            raise NotFound("model version", f"{name}@{version}")
        policy = self._parse_policy(actor, name, policy_canonical, policy_signature)
        mid = model_id(name, version)
        try:
            raw = unwrap_key(
                wrapped_key, self._broker_key, model_id=mid, session_id=REGISTRATION_SESSION
            )
        except KeyWrapError as exc:
            raise InvalidRequest(
                "wrapped_key",
                f"it does not open with the broker key for {mid}: {exc} (fetch the broker key "
                "with GetBrokerKey and wrap with model id name@version)",
            ) from None
        manifest = Manifest.model_validate_json(record.manifest)
        key_id = DataKey(raw).key_id
        if key_id != manifest.data_key_id:
            raise InvalidRequest(
                "wrapped_key",
                f"the key's id is {key_id}, the manifest of {mid} names {manifest.data_key_id}",
            )
        at_rest = self._wrapper.wrap(raw, aad=f"{SecretKind.MODEL_DATA_KEY}:{mid}".encode())
        in_force = self._repository.register_key(mid, at_rest, policy, now=self._clock())
        self._audit.record(
            audit_hook.event(
                "key.register",
                actor,
                "RegisterKey",
                f"model {mid}",
                model=mid,
                details={"policy_version": str(in_force.version), "data_key_id": key_id},
            )
        )
        return in_force

    def set_policy(
        self, actor: Principal, name: str, canonical: bytes, signature: bytes
    ) -> PolicyRecord:
        """Replace the model's policy with a higher version (PolicyDowngrade otherwise)."""
        require_model_owner(self._repository, actor, "SetPolicy", name)
        policy = self._parse_policy(actor, name, canonical, signature)
        previous = self._repository.get_policy(name)
        in_force = self._repository.put_policy(policy)
        self._audit.record(
            audit_hook.event(
                "policy.set",
                actor,
                "SetPolicy",
                f"model {name}",
                model=name,
                details={
                    "version": str(in_force.version),
                    "previous": str(previous.version) if previous else "none",
                },
            )
        )
        return in_force

    def get_policy(self, name: str) -> PolicyRecord:
        """The policy in force for a model."""
        policy = self._repository.get_policy(name)
        if policy is None:
            raise NotFound("release policy", name)
        return policy

    # -- CKKS sessions --------------------------------------------------------------------------

    def prepare_session(
        self, actor: Principal, session: SessionRecord, terms: SessionTerms
    ) -> None:
        """Generate the session's CKKS contexts if it aggregates with CKKS (idempotent)."""
        if terms.aggregation == "ckks":
            self._ckks(actor, session.session_id, f"{terms.model_name}@{terms.model_version}")

    def _ckks(self, actor: Principal, session_id: str, model: str) -> CkksContextRecord:
        existing = self._repository.get_ckks_context(session_id)
        if existing is not None:
            return existing
        # Imported here: TenSEAL is heavy and only CKKS sessions need it.
        from crypto.ckks import generate_secret_context, public_context

        secret = generate_secret_context()
        key = DataKey.generate()
        sealed = io.BytesIO()
        seal(io.BytesIO(secret), sealed, key)
        kind = SecretKind.SESSION_CKKS_SECRET
        record = CkksContextRecord(
            session_id, sealed.getvalue(), public_context(secret), key.key_id, self._clock()
        )
        wrapped = self._wrapper.wrap(key.raw, aad=f"{kind.value}:{session_id}".encode())
        if self._repository.put_ckks_context(record, wrapped, secret_kind=kind.value):
            self._audit.record(
                audit_hook.event(
                    "key.generate",
                    actor,
                    "StartSession",
                    f"{kind.value} of session {session_id}",
                    session_id=session_id,
                    model=model,
                    details={"kind": kind.value, "key_id": key.key_id},
                )
            )
        stored = self._repository.get_ckks_context(session_id)
        assert stored is not None
        return stored

    def public_context(self, actor: Principal, session_id: str) -> CkksContextRecord:
        """The public CKKS context of a running CKKS session (the aggregator's only key)."""
        session = self._repository.get_session_for_member(session_id, actor.fingerprint)
        if session is None:
            raise NotFound("session", session_id)
        terms = parse_canonical(SessionTerms, session.terms, field="stored terms")
        if terms.aggregation != "ckks":
            raise InvalidRequest(
                "session_id", f"session {session_id} aggregates with {terms.aggregation}, not CKKS"
            )
        if session.state not in RELEASE_STATES:
            raise IllegalTransition(
                session_id, session.state, session.state,
                "the CKKS context exists for running sessions only",
            )
        return self._ckks(actor, session_id, f"{terms.model_name}@{terms.model_version}")

    # -- session keys ---------------------------------------------------------------------------

    def _session_key(self, actor: Principal, session_id: str, model: str) -> None:
        """Generate the session's 32-byte key unless it exists (idempotent, audited once)."""
        kind = SecretKind.SESSION_KEY
        if self._repository.get_secret(kind.value, session_id) is not None:
            return
        key = DataKey.generate()
        wrapped = self._wrapper.wrap(key.raw, aad=f"{kind.value}:{session_id}".encode())
        if self._repository.add_secret(kind.value, session_id, wrapped, now=self._clock()):
            self._audit.record(
                audit_hook.event(
                    "key.generate",
                    actor,
                    "Challenge",
                    f"{kind.value} of session {session_id}",
                    session_id=session_id,
                    model=model,
                    details={"kind": kind.value, "key_id": key.key_id},
                )
            )

    def session_key_id(self, session_id: str) -> str | None:
        """The public id of the session's key, if it was generated."""
        wrapped = self._repository.get_secret(SecretKind.SESSION_KEY.value, session_id)
        if wrapped is None:
            return None
        aad = f"{SecretKind.SESSION_KEY.value}:{session_id}".encode()
        return DataKey(self._wrapper.unwrap(wrapped, aad=aad)).key_id

    def export_key(
        self, session_id: str, model: str, recipient: RecipientPublicKey
    ) -> bytes:
        """The session key HPKE-wrapped to ``recipient`` (the caller checked the approvals)."""
        wrapped = self._repository.get_secret(SecretKind.SESSION_KEY.value, session_id)
        if wrapped is None:
            raise NotFound("session key", session_id)
        aad = f"{SecretKind.SESSION_KEY.value}:{session_id}".encode()
        raw = self._wrapper.unwrap(wrapped, aad=aad)
        return wrap_key(raw, recipient, model_id=model, session_id=session_id)

    # -- sandbox side (relayed by the data owner's agent) -----------------------------------

    def challenge(self, actor: Principal, session_id: str, kind: SecretKind) -> NonceRecord:
        """A fresh single-use nonce for one release by ``actor`` in ``session_id``."""
        session = self._repository.get_session_for_member(session_id, actor.fingerprint)
        if session is None:
            raise NotFound("session", session_id)
        require_accepted_owner(session, actor, "Challenge", states=RELEASE_STATES)
        if kind is SecretKind.SESSION_CKKS_SECRET:
            terms = parse_canonical(SessionTerms, session.terms, field="stored terms")
            if terms.aggregation != "ckks":
                raise InvalidRequest(
                    "kind", f"session {session_id} aggregates with {terms.aggregation}; it has "
                    "no CKKS secret"
                )
            self._ckks(actor, session_id, model_id(session.model_name, session.model_version))
        if kind is SecretKind.SESSION_KEY:
            self._session_key(
                actor, session_id, model_id(session.model_name, session.model_version)
            )
        now = self._clock()
        if now >= self._next_purge:
            # Expired nonces only ever refuse; keep an hour of them for the audit trail's sake.
            self._next_purge = now + dt.timedelta(minutes=10)
            self._repository.purge_nonces(expired_before=now - dt.timedelta(hours=1))
        record = NonceRecord(
            new_nonce(), actor.fingerprint, session_id, kind.value, now, now + self._nonce_ttl
        )
        self._repository.add_nonce(record)
        return record

    def release(
        self,
        actor: Principal,
        session_id: str,
        kind: SecretKind,
        evidence: bytes,
        ephemeral_public_key: bytes,
        nonce: bytes,
    ) -> ReleaseOutcome:
        """Verify evidence for this challenge against the provider's policy; release or refuse."""
        if kind is SecretKind.REATTESTATION:
            raise InvalidRequest(
                "kind", "a re-attestation releases nothing; send it to Reattest"
            )
        session = self._repository.get_session_for_member(session_id, actor.fingerprint)
        if session is None:
            raise NotFound("session", session_id)
        require_accepted_owner(session, actor, "Release", states=RELEASE_STATES)
        now = self._clock()
        mid = model_id(session.model_name, session.model_version)
        object_id = session_id if kind in SESSION_SECRETS else mid
        checks, verdict, consume = self._check_evidence(
            actor, session, kind, evidence, ephemeral_public_key, nonce, now
        )
        released = None
        sealed_secret = b""
        if verdict is not None and verdict.ok:
            secret = self._repository.get_secret(kind.value, object_id)
            if secret is None:
                checks.append(
                    Check.failed("broker.secret", f"no {kind.value} is registered for {object_id}")
                )
            else:
                raw = self._wrapper.unwrap(secret, aad=f"{kind.value}:{object_id}".encode())
                released = wrap_key(
                    raw, RecipientPublicKey.from_bytes(ephemeral_public_key),
                    model_id=mid, session_id=session_id,
                )
                if kind is SecretKind.SESSION_CKKS_SECRET:
                    contexts = self._repository.get_ckks_context(session_id)
                    assert contexts is not None  # stored with the wrapped key, in one transaction
                    sealed_secret = contexts.sealed_context
        decided = self._decide(
            actor, session_id, kind, nonce, now, checks, verdict, consume,
            session.model_name, session.model_version, released,
        )
        if decided.released is None:
            return decided
        return ReleaseOutcome(
            decided.released, decided.verdict, decided.reason, decided.model_name,
            decided.model_version, sealed_secret,
        )

    def reattest(
        self,
        actor: Principal,
        session_id: str,
        evidence: bytes,
        ephemeral_public_key: bytes,
        nonce: bytes,
    ) -> ReattestOutcome:
        """Verify a set-up sandbox's fresh evidence against the policy in force; audited."""
        session = self._repository.get_session_for_member(session_id, actor.fingerprint)
        if session is None:
            raise NotFound("session", session_id)
        require_accepted_owner(session, actor, "Reattest", states=RELEASE_STATES)
        now = self._clock()
        kind = SecretKind.REATTESTATION
        checks, verdict, consume = self._check_evidence(
            actor, session, kind, evidence, ephemeral_public_key, nonce, now
        )
        decided = self._decide(
            actor, session_id, kind, nonce, now, checks, verdict, consume,
            session.model_name, session.model_version, None, needs_secret=False,
        )
        return ReattestOutcome(decided.verdict.ok, decided.verdict, decided.reason)

    def _check_evidence(
        self,
        actor: Principal,
        session: SessionRecord,
        kind: SecretKind,
        evidence: bytes,
        ephemeral_public_key: bytes,
        nonce: bytes,
        now: dt.datetime,
    ) -> tuple[list[Check], Verdict | None, bool]:
        """(broker checks, the evidence verdict or None when it never got that far, consume)."""
        record = self._repository.get_nonce(nonce) if len(nonce) == 32 else None
        if record is None or (record.issued_to, record.session_id, record.kind) != (
            actor.fingerprint,
            session.session_id,
            kind.value,
        ):
            return [
                Check.failed(
                    "broker.nonce",
                    "the nonce was not issued by Challenge to you for this session "
                    "and secret kind",
                    got=nonce.hex()[:16],
                )
            ], None, False
        if record.used_at is not None:
            return [
                Check.failed(
                    "broker.nonce",
                    "the nonce was used already (a replay); ask for a new challenge",
                    got=f"used at {record.used_at.isoformat()}",
                )
            ], None, False
        if now >= record.expires_at:
            return [
                Check.failed(
                    "broker.nonce",
                    "the nonce expired; ask for a new challenge",
                    expected=f"before {record.expires_at.isoformat()}",
                    got=now.isoformat(),
                )
            ], None, True
        checks = [Check.passed("broker.nonce", "fresh, unused and issued to you for this session")]
        if len(evidence) > MAX_EVIDENCE_SIZE:
            checks.append(Check.failed("broker.evidence", f"larger than {MAX_EVIDENCE_SIZE} bytes"))
            return checks, None, True
        try:
            parsed = Evidence.model_validate_json(evidence)
        except ValidationError as exc:
            checks.append(
                Check.failed(
                    "broker.evidence",
                    f"not an Evidence document: {exc.errors()[0]['msg'] if exc.errors() else exc}",
                )
            )
            return checks, None, True
        try:
            RecipientPublicKey.from_bytes(ephemeral_public_key)
        except KeyWrapError as exc:
            checks.append(Check.failed("broker.ephemeral_key", str(exc)))
            return checks, None, True
        policy = self._repository.get_policy(session.model_name)
        provider = self._repository.get_party(session.provider)
        if policy is None or provider is None:
            checks.append(
                Check.failed(
                    "broker.policy",
                    f"no release policy is registered for "
                    f"{session.model_name}: nothing can be released",
                )
            )
            return checks, None, True
        signed = SignedReleasePolicy(
            policy=ReleasePolicy.model_validate_json(policy.document),
            public_key=provider.public_key,
            signature=policy.signature,
        )
        verdict = verify(
            parsed,
            signed,
            report_data_for(nonce, ephemeral_public_key),
            trusted_policy_issuers=[session.provider],
            now=now,
        )
        return checks, verdict, True

    def _decide(
        self,
        actor: Principal,
        session_id: str,
        kind: SecretKind,
        nonce: bytes,
        now: dt.datetime,
        broker_checks: list[Check],
        verdict: Verdict | None,
        consume: bool,
        model_name: str,
        model_version: str,
        released: bytes | None,
        *,
        needs_secret: bool = True,
    ) -> ReleaseOutcome:
        checks = broker_checks + (verdict.checks if verdict is not None else [])
        combined = Verdict(
            kind=verdict.kind if verdict is not None else "unverified",
            checks=checks,
            evaluated_at=now,
            policy_fingerprint=verdict.policy_fingerprint if verdict is not None else None,
            warnings=verdict.warnings if verdict is not None else [],
        )
        ok = combined.ok and verdict is not None and (released is not None or not needs_secret)
        failed = [c.name for c in combined.failures]
        granted = "released" if needs_secret else "attested"
        reason = (
            granted
            if ok
            else (
                f"{combined.failures[0].name}: {combined.failures[0].reason}"
                if failed
                else "no check passed"
            )
        )
        if consume:
            # The nonce is spent by this decision, in the same transaction that records it.
            fresh = self._repository.decide_release(
                ReleaseDecision(nonce, session_id, actor.fingerprint, kind.value, ok, reason, now)
            )
            if not fresh:
                ok, released = False, None
                reason = "broker.nonce: the nonce was used concurrently (a replay)"
                combined = Verdict(
                    kind=combined.kind,
                    checks=[Check.failed("broker.nonce", "the nonce was used concurrently")],
                    evaluated_at=now,
                )
                failed = ["broker.nonce"]
        self._audit.record(
            audit_hook.event(
                "key.release" if needs_secret else "attestation.verdict",
                actor,
                "Release" if needs_secret else "Reattest",
                f"{kind.value} {model_id(model_name, model_version)}",
                outcome=audit_hook.OK if ok else audit_hook.REFUSED,
                reason=reason,
                session_id=session_id,
                model=model_id(model_name, model_version),
                party=actor.fingerprint,
                verdict=verdict_summary(combined) if verdict is not None else None,
                details={
                    "evidence_kind": combined.kind,
                    "failed_checks": ",".join(failed),
                    "policy": combined.policy_fingerprint or "",
                    "warnings": "; ".join(combined.warnings),
                },
            )
        )
        return ReleaseOutcome(released if ok else None, combined, reason, model_name, model_version)
