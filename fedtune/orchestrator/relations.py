"""Relation checks: is the caller the model's owner, invited to the session, entitled to a blob."""

from __future__ import annotations

from typing import Protocol

from fedtune.orchestrator.authz import Principal, Role
from fedtune.orchestrator.errors import NotFound, PermissionDenied
from fedtune.orchestrator.store.records import ModelRecord, SessionRecord
from fedtune.orchestrator.store.repository import Repository

# States in which an accepted data owner may fetch the session's sealed model.
DOWNLOAD_STATES = frozenset({"open", "running"})


class _Models(Protocol):
    def get_model(self, name: str) -> ModelRecord | None: ...


def require_model_owner(
    repository: _Models, actor: Principal, method: str, name: str
) -> ModelRecord:
    """The model, if ``actor`` is the provider that owns it; PermissionDenied otherwise."""
    model = repository.get_model(name)
    if model is None:
        raise NotFound("model", name)
    if model.owner != actor.fingerprint:
        raise PermissionDenied(
            method,
            f"model {name}",
            f"only its owning provider may do this; you are {actor.describe()}",
        )
    return model


def is_participant(session: SessionRecord, actor: Principal) -> bool:
    """Whether ``actor`` is the session's provider, creator or one of its invited owners."""
    return actor.fingerprint == session.creator or any(
        inv.fingerprint == actor.fingerprint for inv in session.invitees
    )


def require_visible(session: SessionRecord, actor: Principal, method: str) -> None:
    """Operators see every session; other parties only those they take part in."""
    if actor.role is Role.OPERATOR or is_participant(session, actor):
        return
    raise PermissionDenied(
        method, f"session {session.session_id}", "you are not a participant of this session"
    )


def has_accepted(session: SessionRecord, fingerprint: str) -> bool:
    """Whether ``fingerprint`` signed the session's current terms."""
    return any(a.fingerprint == fingerprint for a in session.acceptances)


def require_accepted_owner(
    session: SessionRecord, actor: Principal, method: str, *, states: frozenset[str]
) -> None:
    """``actor`` is an invited data owner who accepted, and the session is in one of ``states``."""
    obj = f"session {session.session_id}"
    if not any(
        inv.fingerprint == actor.fingerprint and inv.role == Role.DATA_OWNER.value
        for inv in session.invitees
    ):
        raise PermissionDenied(method, obj, "you are not an invited data owner of this session")
    if not has_accepted(session, actor.fingerprint):
        raise PermissionDenied(method, obj, "you have not accepted the session's terms yet")
    if session.state not in states:
        raise PermissionDenied(
            method,
            obj,
            f"the session is {session.state}; this needs it {' or '.join(sorted(states))}",
        )


def require_download_entitlement(
    repository: Repository, actor: Principal, method: str, name: str, version: str
) -> None:
    """The owning provider, or a data owner who accepted a live session on this version."""
    model = repository.get_model(name)
    if model is None or version not in model.versions:
        raise NotFound("model version", f"{name}@{version}")
    if actor.role is Role.PROVIDER and model.owner == actor.fingerprint:
        return
    if actor.role is Role.DATA_OWNER:
        for session in repository.list_sessions():
            if (
                session.model_name == name
                and session.model_version == version
                and session.state in DOWNLOAD_STATES
                and any(i.fingerprint == actor.fingerprint for i in session.invitees)
                and has_accepted(session, actor.fingerprint)
            ):
                return
    raise PermissionDenied(
        method,
        f"model {name}@{version}",
        "only its provider, or a data owner who accepted an open or running session on this "
        "version, may download it",
    )
