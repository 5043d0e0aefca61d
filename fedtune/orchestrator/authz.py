"""The one authorisation table: which roles may call which RPC, and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """The roles a client certificate can carry."""

    PROVIDER = "provider"
    DATA_OWNER = "data-owner"
    OPERATOR = "operator"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its identity fingerprint, role, display name and cert serial."""

    fingerprint: str
    role: Role
    name: str
    serial: int

    def describe(self) -> str:
        """A short human label, e.g. ``provider acme (ed25519:1a2b...)``."""
        return f"{self.role.value} {self.name} ({self.fingerprint[:24]}...)"


# Callable without a client certificate, and only on the enrolment port.
ANONYMOUS: frozenset[Role] = frozenset()
# Not callable by any remote caller (in-process use only).
INTERNAL: frozenset[Role] = frozenset()

_P, _D, _O, _A = Role.PROVIDER, Role.DATA_OWNER, Role.OPERATOR, Role.AUDITOR

# Every RPC of every control-plane proto, with the roles allowed to call it. Relation checks
# (owner of the model, invited to the session, entitled to the blob) come after this, in
# ``relations.py``. A method missing here is refused (fail closed); a test checks that every
# RPC in protos/ is listed.
METHOD_ROLES: dict[str, frozenset[Role]] = {
    "/fedtune.v1.Enrolment/Enrol": ANONYMOUS,
    # Registry
    "/fedtune.v1.Registry/BeginUpload": frozenset({_P}),
    "/fedtune.v1.Registry/UploadChunks": frozenset({_P}),
    "/fedtune.v1.Registry/CompleteUpload": frozenset({_P}),
    "/fedtune.v1.Registry/ListModels": frozenset({_P, _D, _O}),
    "/fedtune.v1.Registry/DescribeModel": frozenset({_P, _D, _O}),
    "/fedtune.v1.Registry/GetManifest": frozenset({_P, _D, _O}),
    "/fedtune.v1.Registry/Download": frozenset({_P, _D}),
    # The session's sealed adapter: owners' agents store it; the session's parties fetch the
    # ciphertext (useless without an approved export).
    "/fedtune.v1.Registry/PutSealedAdapter": frozenset({_D}),
    "/fedtune.v1.Registry/GetSealedAdapter": frozenset({_P, _D}),
    # Key broker
    "/fedtune.v1.KeyBroker/GetBrokerKey": frozenset({_P}),
    "/fedtune.v1.KeyBroker/RegisterKey": frozenset({_P}),
    "/fedtune.v1.KeyBroker/SetPolicy": frozenset({_P}),
    "/fedtune.v1.KeyBroker/GetPolicy": frozenset({_P, _D, _O}),
    "/fedtune.v1.KeyBroker/Challenge": frozenset({_D}),
    "/fedtune.v1.KeyBroker/Release": frozenset({_D}),
    # The aggregator adds CKKS ciphertexts with the public context; nobody else needs it.
    "/fedtune.v1.KeyBroker/GetPublicContext": frozenset({_O}),
    "/fedtune.v1.KeyBroker/Reattest": frozenset({_D}),
    # Sessions
    "/fedtune.v1.Sessions/CreateSession": frozenset({_P, _O}),
    "/fedtune.v1.Sessions/InviteOwners": frozenset({_P, _O}),
    "/fedtune.v1.Sessions/AcceptSession": frozenset({_P, _D}),
    "/fedtune.v1.Sessions/StartSession": frozenset({_P, _O}),
    "/fedtune.v1.Sessions/FinishSession": frozenset({_O}),
    "/fedtune.v1.Sessions/CancelSession": frozenset({_P, _O}),
    "/fedtune.v1.Sessions/GetSession": frozenset({_P, _D, _O}),
    "/fedtune.v1.Sessions/ListSessions": frozenset({_P, _D, _O}),
    "/fedtune.v1.Sessions/WatchSession": frozenset({_P, _D, _O}),
    # The data plane: an owner names its SuperNode; the aggregator (operator) reports rounds.
    "/fedtune.v1.Sessions/RegisterNodeKey": frozenset({_D}),
    "/fedtune.v1.Sessions/RecordRoundEvents": frozenset({_O}),
    "/fedtune.v1.Sessions/PutSessionReport": frozenset({_O}),
    "/fedtune.v1.Sessions/GetSessionReport": frozenset({_P, _D, _O}),
    # An owner's own verdict on its sandbox; results need both sides (DESIGN promise 4).
    "/fedtune.v1.Sessions/RecordOwnerVerdict": frozenset({_D}),
    "/fedtune.v1.Sessions/ApproveExport": frozenset({_P, _D}),
    "/fedtune.v1.Sessions/Export": frozenset({_P, _D}),
    # Audit log (served here, implemented in fedtune.audit): every party reads it, since each
    # must be able to verify the record on its own (DESIGN promise 5); appends come from the
    # orchestrator's own services in-process, never over the wire.
    "/fedtune.v1.AuditLog/Append": INTERNAL,
    "/fedtune.v1.AuditLog/GetCheckpoint": frozenset({_P, _D, _O, _A}),
    "/fedtune.v1.AuditLog/GetEntries": frozenset({_P, _D, _O, _A}),
    "/fedtune.v1.AuditLog/GetInclusionProof": frozenset({_P, _D, _O, _A}),
    "/fedtune.v1.AuditLog/GetConsistencyProof": frozenset({_P, _D, _O, _A}),
}

# Methods served on the enrolment port (server-only TLS); nothing else is served there.
ENROLMENT_METHODS: frozenset[str] = frozenset({"/fedtune.v1.Enrolment/Enrol"})

# Proto services the orchestrator does not serve, and why (the table need not list them).
SERVED_ELSEWHERE: dict[str, str] = {
    "fedtune.v1.Sandbox": "served by the sandbox runtime (enclave/), reached only by its agent",
}


def allowed_roles(method: str) -> frozenset[Role] | None:
    """The roles allowed to call ``method``, or None when the table does not know it."""
    return METHOD_ROLES.get(method)
