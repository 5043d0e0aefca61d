"""Who takes part in a session's rounds: signed terms, acceptances and SuperNode keys, checked.

The aggregator trusts neither the orchestrator's word nor a ClientApp's. It verifies itself
that the provider and every invited owner signed the exact terms, and that every SuperNode
key an owner registered is signed by that owner (:func:`verify_session`). It then maps owners
to Flower nodes by the authentication key the SuperLink admitted each node with
(:func:`match_nodes`): a node is an owner's only if its key is the one the owner signed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from crypto.errors import SignatureError
from crypto.identity import PublicIdentity
from fedtune.federated.errors import FederatedError
from fedtune.federated.transport import NodeView
from fedtune.orchestrator.node_keys import verify_node_key
from fedtune.orchestrator.terms import SIGNING_CONTEXT, SessionTerms

__all__ = [
    "OwnerKey",
    "SessionCheckError",
    "VerifiedSession",
    "match_nodes",
    "same_key",
    "verify_session",
]

_STATES = {1: "created", 2: "open", 3: "running", 4: "finished", 5: "failed", 6: "cancelled"}


class SessionCheckError(FederatedError):
    """The session is not one the aggregator may run: ``check`` names what failed."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"session check {check} failed: {reason}")


@dataclass(frozen=True)
class OwnerKey:
    """An invited owner, its identity key and the SuperNode key it signed (empty if none)."""

    fingerprint: str
    identity: PublicIdentity
    node_key: str  # OpenSSH encoding, "" when the owner registered none
    acceptance: bytes  # its signature over the terms


@dataclass(frozen=True)
class VerifiedSession:
    """A session whose terms, acceptances and node keys verified."""

    session_id: str
    terms: SessionTerms
    terms_bytes: bytes
    state: str
    provider: PublicIdentity
    provider_acceptance: bytes
    owners: tuple[OwnerKey, ...]


def _identity(fingerprint: str, raw: bytes, what: str) -> PublicIdentity:
    try:
        identity = PublicIdentity.from_bytes(bytes(raw))
    except (TypeError, ValueError):
        raise SessionCheckError(what, f"{fingerprint} comes without a valid public key") from None
    if identity.fingerprint != fingerprint:
        raise SessionCheckError(what, f"the key listed for {fingerprint} is someone else's")
    return identity


def verify_session(info: object, *, require_node_keys: bool = False) -> VerifiedSession:
    """Check a ``SessionInfo``: everyone invited signed these exact terms; node keys are signed.

    Verifies the provider's and every invited owner's acceptance signature over the terms'
    canonical bytes (context ``session-terms``) and each registered SuperNode key's signature
    (context ``supernode-key``). ``require_node_keys``: every owner must have registered one.
    """
    canonical = bytes(info.terms.canonical)  # type: ignore[attr-defined]
    try:
        terms = SessionTerms.model_validate_json(canonical)
    except ValueError:
        raise SessionCheckError("terms", "the stored terms do not parse") from None
    if terms.canonical_bytes() != canonical:
        raise SessionCheckError("terms", "the stored terms are not in canonical form")
    if terms.session_id != info.session_id:  # type: ignore[attr-defined]
        raise SessionCheckError("terms", "the terms name another session")
    participants = {p.fingerprint: p for p in info.participants}  # type: ignore[attr-defined]

    def accepted(fingerprint: str, role: str) -> tuple[PublicIdentity, bytes]:
        party = participants.get(fingerprint)
        if party is None or party.role != role:
            raise SessionCheckError("participants", f"{role} {fingerprint} is not listed")
        identity = _identity(fingerprint, party.public_key, "participants")
        if not party.accepted:
            raise SessionCheckError("acceptance", f"{role} {fingerprint} has not accepted")
        try:
            identity.verify(party.acceptance_signature, canonical, context=SIGNING_CONTEXT)
        except SignatureError:
            raise SessionCheckError(
                "acceptance", f"the acceptance of {role} {fingerprint} does not verify over "
                "the terms"
            ) from None
        return identity, bytes(party.acceptance_signature)

    provider, provider_acceptance = accepted(terms.provider_fingerprint, "provider")
    owners = []
    for fingerprint in terms.invited_owners:
        identity, acceptance = accepted(fingerprint, "data-owner")
        key = participants[fingerprint].node_key
        node_key = ""
        if key.public_key:
            try:
                node_key = verify_node_key(
                    identity, terms.session_id, bytes(key.public_key), bytes(key.signature)
                ).public_key
            except SignatureError:
                raise SessionCheckError(
                    "node-key", f"the SuperNode key of {fingerprint} is not signed by it"
                ) from None
        elif require_node_keys:
            raise SessionCheckError(
                "node-key", f"owner {fingerprint} has registered no SuperNode key yet"
            )
        owners.append(OwnerKey(fingerprint, identity, node_key, acceptance))
    state = _STATES.get(int(info.state), "unknown")  # type: ignore[attr-defined]
    return VerifiedSession(terms.session_id, terms, canonical, state, provider,
                           provider_acceptance, tuple(owners))


def same_key(openssh: str, pem: bytes) -> bool:
    """Whether an OpenSSH public key and a PEM (SubjectPublicKeyInfo) one are the same key."""
    if not openssh or not pem:
        return False
    try:
        a = serialization.load_ssh_public_key(openssh.encode("ascii"))
        b = serialization.load_pem_public_key(bytes(pem))
    except (ValueError, TypeError):
        return False
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)


def match_nodes(
    nodes: Iterable[NodeView], owners: Iterable[OwnerKey]
) -> Mapping[str, NodeView]:
    """Owner fingerprint -> the node the SuperLink admitted with that owner's signed key."""
    found: dict[str, NodeView] = {}
    views = list(nodes)
    for owner in owners:
        for node in views:
            if same_key(owner.node_key, node.public_key):
                found[owner.fingerprint] = node
                break
    return found
