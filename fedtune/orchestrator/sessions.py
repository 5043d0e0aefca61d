"""Session lifecycle: signed terms, invitations, acceptances and the state machine."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum

from crypto.errors import SignatureError
from crypto.identity import PublicIdentity
from fedtune.orchestrator import audit_hook
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Principal, Role
from fedtune.orchestrator.documents import parse_canonical, verify_signed
from fedtune.orchestrator.errors import (
    IllegalTransition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from fedtune.orchestrator.node_keys import verify_node_key
from fedtune.orchestrator.relations import (
    has_accepted,
    require_accepted_owner,
    require_visible,
)
from fedtune.orchestrator.store.records import (
    Acceptance,
    Invitee,
    NodeKeyRecord,
    SessionRecord,
    TransitionRecord,
)
from fedtune.orchestrator.store.repository import Repository
from fedtune.orchestrator.terms import SIGNING_CONTEXT, SessionTerms


class SessionState(StrEnum):
    """Where a session is in its life."""

    CREATED = "created"
    OPEN = "open"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({SessionState.FINISHED, SessionState.FAILED, SessionState.CANCELLED})

# The only moves a session can make.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.CREATED: frozenset({SessionState.OPEN, SessionState.CANCELLED}),
    SessionState.OPEN: frozenset({SessionState.RUNNING, SessionState.CANCELLED}),
    SessionState.RUNNING: frozenset(
        {SessionState.FINISHED, SessionState.FAILED, SessionState.CANCELLED}
    ),
}

Clock = Callable[[], dt.datetime]
StartHook = Callable[[Principal, SessionRecord, SessionTerms], None]
"""Called by ``start`` before a session moves to running (e.g. to generate CKKS keys)."""

# A data owner may name (or replace) its SuperNode while the session is open or running.
NODE_KEY_STATES = frozenset({SessionState.OPEN.value, SessionState.RUNNING.value})


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SessionService:
    """Creates sessions and moves them through their states; every change is audited."""

    def __init__(
        self,
        repository: Repository,
        audit: AuditHook,
        *,
        clock: Clock = _utcnow,
        on_start: StartHook | None = None,
    ) -> None:
        self._repository = repository
        self._audit = audit
        self._clock = clock
        self._on_start = on_start
        self._changed = threading.Condition()
        self._version = 0

    # -- queries ---------------------------------------------------------------------------

    def get(
        self, actor: Principal, session_id: str, *, method: str = "GetSession"
    ) -> SessionRecord:
        """The session, if ``actor`` may see it."""
        session = self._load(session_id)
        require_visible(session, actor, method)
        return session

    def list(self, actor: Principal) -> list[SessionRecord]:
        """The sessions ``actor`` may see."""
        sessions = self._repository.list_sessions()
        if actor.role is Role.OPERATOR:
            return sessions
        return [
            s
            for s in sessions
            if s.creator == actor.fingerprint
            or any(i.fingerprint == actor.fingerprint for i in s.invitees)
        ]

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """Block until some session changed after change counter ``seen`` (or ``timeout``)."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout=timeout)
            return self._version

    @property
    def change_counter(self) -> int:
        """Increases with every session change this process made."""
        return self._version

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def _load(self, session_id: str) -> SessionRecord:
        session = self._repository.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    # -- changes ---------------------------------------------------------------------------

    def _signer(self, actor: Principal) -> PublicIdentity:
        party = self._repository.get_party(actor.fingerprint)
        if party is None:
            raise PermissionDenied("sessions", "terms", "your identity is not enrolled here")
        return PublicIdentity.from_bytes(party.public_key)

    def _owner_keys(self, fingerprints: Sequence[str], keys: Sequence[bytes]) -> list[Invitee]:
        by_fp: dict[str, bytes] = {}
        for raw in keys:
            try:
                identity = PublicIdentity.from_bytes(raw)
            except (TypeError, ValueError):
                raise InvalidRequest("owner_public_keys", "each key must be 32 raw bytes") from None
            by_fp[identity.fingerprint] = identity.raw
        if set(by_fp) != set(fingerprints):
            missing = sorted(set(fingerprints) - set(by_fp))
            extra = sorted(set(by_fp) - set(fingerprints))
            raise InvalidRequest(
                "owner_public_keys",
                "the keys must be exactly those of the invited owners"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; not invited {', '.join(extra)}" if extra else ""),
            )
        invitees = []
        for fp in fingerprints:
            party = self._repository.get_party(fp)
            if party is not None and party.role != Role.DATA_OWNER.value:
                raise InvalidRequest(
                    "invited_owners", f"{fp} is enrolled as {party.role}, not as a data owner"
                )
            invitees.append(Invitee(fp, by_fp[fp], Role.DATA_OWNER.value))
        return invitees

    def create(
        self, actor: Principal, canonical: bytes, signature: bytes, owner_keys: Sequence[bytes]
    ) -> SessionRecord:
        """Store signed terms proposed by a provider or the operator; state ``created``."""
        terms = verify_signed(
            SessionTerms,
            canonical,
            signature,
            self._signer(actor),
            context=SIGNING_CONTEXT,
            field="terms",
        )
        version = self._repository.get_version(terms.model_name, terms.model_version)
        if version is None:
            raise NotFound("model version", f"{terms.model_name}@{terms.model_version}")
        if terms.provider_fingerprint != version.owner:
            raise InvalidRequest(
                "terms.provider_fingerprint",
                f"the model's provider is {version.owner}, the terms name "
                f"{terms.provider_fingerprint}",
            )
        if actor.role is Role.PROVIDER and actor.fingerprint != version.owner:
            raise PermissionDenied(
                "CreateSession",
                f"model {terms.model_name}",
                "a provider may only create sessions on its own models",
            )
        provider = self._repository.get_party(version.owner)
        if provider is None:
            raise NotFound("provider identity", version.owner)
        invitees = [Invitee(provider.fingerprint, provider.public_key, Role.PROVIDER.value)]
        invitees += self._owner_keys(terms.invited_owners, owner_keys)
        now = self._clock()
        acceptances: tuple[Acceptance, ...] = ()
        if actor.fingerprint == provider.fingerprint:
            # The provider's signature on the terms it proposes is its acceptance.
            acceptances = (Acceptance(actor.fingerprint, signature, now),)
        record = SessionRecord(
            session_id=terms.session_id,
            terms=canonical,
            terms_signature=signature,
            creator=actor.fingerprint,
            state=SessionState.CREATED.value,
            reason="created",
            model_name=terms.model_name,
            model_version=terms.model_version,
            provider=provider.fingerprint,
            created_at=now,
            updated_at=now,
            invitees=tuple(invitees),
            acceptances=acceptances,
            transitions=(
                TransitionRecord("", SessionState.CREATED.value, actor.fingerprint, "created", now),
            ),
        )
        self._repository.create_session(record)
        self._audit.record(
            audit_hook.event(
                "session.create",
                actor,
                "CreateSession",
                f"session {terms.session_id}",
                session_id=terms.session_id,
                model=f"{terms.model_name}@{terms.model_version}",
                details={
                    "model": f"{terms.model_name}@{terms.model_version}",
                    "owners": str(len(terms.invited_owners)),
                    "aggregation": terms.aggregation,
                },
            )
        )
        self._notify()
        return self._load(terms.session_id)

    def invite(
        self,
        actor: Principal,
        session_id: str,
        canonical: bytes,
        signature: bytes,
        owner_keys: Sequence[bytes],
    ) -> SessionRecord:
        """Amend the terms with more owners (or none) and open the session for acceptance."""
        session = self._load(session_id)
        if (
            actor.fingerprint not in (session.creator, session.provider)
            and actor.role is not Role.OPERATOR
        ):
            raise PermissionDenied(
                "InviteOwners",
                f"session {session_id}",
                "only the session's creator, its provider or the operator may send invitations",
            )
        self._require_move(session, SessionState.OPEN)
        old = parse_canonical(SessionTerms, session.terms, field="stored terms")
        new = verify_signed(
            SessionTerms,
            canonical,
            signature,
            self._signer(actor),
            context=SIGNING_CONTEXT,
            field="terms",
        )
        if new.session_id != session_id:
            raise InvalidRequest("terms.session_id", f"the amended terms name {new.session_id}")
        unchanged_fields = set(SessionTerms.model_fields) - {"invited_owners"}
        changed = sorted(f for f in unchanged_fields if getattr(old, f) != getattr(new, f))
        if changed:
            raise InvalidRequest(
                "terms", f"an invitation may only add owners; it also changes {', '.join(changed)}"
            )
        if not set(old.invited_owners) <= set(new.invited_owners):
            raise InvalidRequest("terms.invited_owners", "an invitation cannot remove owners")
        added_fps = [fp for fp in new.invited_owners if fp not in set(old.invited_owners)]
        added = self._owner_keys(added_fps, owner_keys)
        now = self._clock()
        acceptance = (
            Acceptance(actor.fingerprint, signature, now)
            if actor.fingerprint == session.provider
            else None
        )
        self._repository.amend_terms(
            session_id,
            canonical,
            signature,
            added,
            TransitionRecord(
                session.state,
                SessionState.OPEN.value,
                actor.fingerprint,
                f"invitations sent to {len(new.invited_owners)} owner(s)",
                now,
            ),
            acceptance,
        )
        self._audit.record(
            audit_hook.event(
                "session.invite",
                actor,
                "InviteOwners",
                f"session {session_id}",
                session_id=session_id,
                details={"added": ",".join(added_fps), "owners": str(len(new.invited_owners))},
            )
        )
        self._notify()
        return self._load(session_id)

    def accept(self, actor: Principal, session_id: str, signature: bytes) -> SessionRecord:
        """Record an invited party's signature over the current terms."""
        session = self._load(session_id)
        invitee = next((i for i in session.invitees if i.fingerprint == actor.fingerprint), None)
        if invitee is None:
            raise PermissionDenied(
                "AcceptSession", f"session {session_id}", "you are not invited to this session"
            )
        if session.state != SessionState.OPEN.value:
            raise IllegalTransition(
                session_id,
                session.state,
                session.state,
                "terms can be accepted only while the session is open",
            )
        try:
            PublicIdentity.from_bytes(invitee.public_key).verify(
                signature, session.terms, context=SIGNING_CONTEXT
            )
        except SignatureError:
            raise InvalidRequest(
                "signature",
                "it does not verify over the session's current terms; fetch them again and sign",
            ) from None
        now = self._clock()
        self._repository.add_acceptance(
            session_id, actor.fingerprint, signature, session.terms, now=now
        )
        self._audit.record(
            audit_hook.event(
                "session.accept",
                actor,
                "AcceptSession",
                f"session {session_id}",
                session_id=session_id,
                party=actor.fingerprint,
                model=f"{session.model_name}@{session.model_version}",
            )
        )
        self._notify()
        return self._load(session_id)

    def start(self, actor: Principal, session_id: str, reason: str) -> SessionRecord:
        """open -> running, when every invited party accepted and min participants are met."""
        session = self._load(session_id)
        self._require_steward(session, actor, "StartSession")
        self._require_move(session, SessionState.RUNNING)
        terms = parse_canonical(SessionTerms, session.terms, field="stored terms")
        pending = [
            i.fingerprint for i in session.invitees if not has_accepted(session, i.fingerprint)
        ]
        if pending:
            raise IllegalTransition(
                session_id,
                session.state,
                SessionState.RUNNING.value,
                f"{len(pending)} invited part(y/ies) have not accepted: {', '.join(pending)}",
            )
        owners = sum(1 for i in session.invitees if i.role == Role.DATA_OWNER.value)
        if owners < terms.min_participants:
            raise IllegalTransition(
                session_id,
                session.state,
                SessionState.RUNNING.value,
                f"{owners} owner(s) accepted, the terms need {terms.min_participants}",
            )
        if self._on_start is not None:
            self._on_start(actor, session, terms)
        return self._move(actor, session, SessionState.RUNNING, reason or "started", "StartSession")

    def register_node_key(
        self, actor: Principal, session_id: str, public_key: bytes, signature: bytes
    ) -> SessionRecord:
        """Record an accepted owner's signed SuperNode key (open or running sessions)."""
        session = self._load(session_id)
        require_accepted_owner(session, actor, "RegisterNodeKey", states=NODE_KEY_STATES)
        invitee = next(i for i in session.invitees if i.fingerprint == actor.fingerprint)
        try:
            signed = verify_node_key(
                PublicIdentity.from_bytes(invitee.public_key), session_id, public_key, signature
            )
        except SignatureError:
            raise InvalidRequest(
                "signature",
                "it does not verify over the SuperNode key statement for this session and your "
                "identity (context 'supernode-key')",
            ) from None
        now = self._clock()
        self._repository.put_node_key(
            session_id,
            NodeKeyRecord(actor.fingerprint, signed.public_key.encode("ascii"), signature, now),
            states=sorted(NODE_KEY_STATES),
        )
        self._audit.record(
            audit_hook.event(
                "session.node-key",
                actor,
                "RegisterNodeKey",
                f"session {session_id}",
                session_id=session_id,
                party=actor.fingerprint,
                model=f"{session.model_name}@{session.model_version}",
                details={"step": "supernode-key", "key": signed.public_key[:200]},
            )
        )
        self._notify()
        return self._load(session_id)

    def finish(
        self, actor: Principal, session_id: str, *, failed: bool, reason: str
    ) -> SessionRecord:
        """running -> finished (or failed, with the reason)."""
        session = self._load(session_id)
        target = SessionState.FAILED if failed else SessionState.FINISHED
        if failed and not reason:
            raise InvalidRequest("reason", "a failed session needs a reason")
        return self._move(actor, session, target, reason or "finished", "FinishSession")

    def cancel(self, actor: Principal, session_id: str, reason: str) -> SessionRecord:
        """created | open | running -> cancelled."""
        session = self._load(session_id)
        self._require_steward(session, actor, "CancelSession")
        if not reason:
            raise InvalidRequest("reason", "say why the session is cancelled")
        return self._move(actor, session, SessionState.CANCELLED, reason, "CancelSession")

    def _require_steward(self, session: SessionRecord, actor: Principal, method: str) -> None:
        if actor.role is Role.OPERATOR or actor.fingerprint in (session.provider, session.creator):
            return
        raise PermissionDenied(
            method,
            f"session {session.session_id}",
            "only the operator, the session's creator or its provider may do this",
        )

    @staticmethod
    def _require_move(session: SessionRecord, target: SessionState) -> None:
        current = SessionState(session.state)
        if target not in TRANSITIONS.get(current, frozenset()):
            raise IllegalTransition(session.session_id, current.value, target.value)

    def _move(
        self,
        actor: Principal,
        session: SessionRecord,
        target: SessionState,
        reason: str,
        method: str,
    ) -> SessionRecord:
        self._require_move(session, target)
        now = self._clock()
        self._repository.transition(
            session.session_id,
            TransitionRecord(session.state, target.value, actor.fingerprint, reason, now),
        )
        self._audit.record(
            audit_hook.event(
                f"session.{target.value}",
                actor,
                method,
                f"session {session.session_id}",
                # A failed session is a failure on the record, with its reason.
                outcome=audit_hook.FAILED if target is SessionState.FAILED else audit_hook.OK,
                session_id=session.session_id,
                reason=reason,
                details={"from": session.state, "to": target.value},
            )
        )
        self._notify()
        return self._load(session.session_id)
