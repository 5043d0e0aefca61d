"""The repository interface: every durable row the orchestrator reads or writes goes through it.

``SqliteRepository`` is the embedded default; a PostgreSQL adapter implements the same
Protocol. Every method that changes more than one row does so in one transaction, and a
method returns only after its change is durable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from fedtune.orchestrator.store.records import (
    Acceptance,
    CkksContextRecord,
    EnrolmentToken,
    ExportApprovalRecord,
    Invitee,
    IssuedCertificate,
    ModelRecord,
    ModelVersionRecord,
    NodeKeyRecord,
    NonceRecord,
    Party,
    PolicyRecord,
    ReleaseDecision,
    SealedAdapterRecord,
    SessionRecord,
    SessionReportRecord,
    TransitionRecord,
    Upload,
)


class Repository(Protocol):
    """Durable state of one orchestrator deployment."""

    # enrolment and identities
    def add_token(self, token: EnrolmentToken) -> None:
        """Store a new enrolment token (by hash)."""
        ...

    def get_token(self, token_sha256: bytes) -> EnrolmentToken | None:
        """The token with this hash, if any."""
        ...

    def redeem_token(
        self, token_sha256: bytes, party: Party, certificate: IssuedCertificate, *, now: dt.datetime
    ) -> bool:
        """Mark the token used and record the party and its certificate, atomically.

        Returns False (changing nothing) when the token is unknown, used or expired at ``now``.
        """
        ...

    def add_party(self, party: Party, certificate: IssuedCertificate) -> None:
        """Record an identity and a certificate issued outside enrolment (the operator's)."""
        ...

    def get_party(self, fingerprint: str) -> Party | None:
        """The enrolled party with this identity fingerprint, if any."""
        ...

    def get_certificate(self, serial: int) -> IssuedCertificate | None:
        """The issued certificate with this serial number, if any."""
        ...

    # registry
    def begin_upload(self, upload: Upload) -> Upload:
        """Create the upload (claiming the model name for its owner) or return the existing one
        for the same model version; raises AlreadyExists when the name or version is taken."""
        ...

    def get_upload(self, upload_id: str) -> Upload | None:
        """The upload with this id, if any."""
        ...

    def record_chunks(self, upload_id: str, chunks: Sequence[tuple[int, bytes, int]]) -> None:
        """Note that chunks (index, digest, size) are durably stored (idempotent)."""
        ...

    def stored_chunks(self, upload_id: str) -> set[int]:
        """Indices of the chunks stored for an upload."""
        ...

    def reset_upload(self, upload_id: str) -> None:
        """Forget every stored chunk of an incomplete upload (its bytes proved wrong)."""
        ...

    def complete_upload(self, upload_id: str, version: ModelVersionRecord) -> ModelVersionRecord:
        """Mark the upload complete and register the version atomically (idempotent)."""
        ...

    def get_model(self, name: str) -> ModelRecord | None:
        """A model and its registered versions, if any."""
        ...

    def list_models(self) -> list[ModelRecord]:
        """Every model with its registered versions."""
        ...

    def get_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """One registered version, if any."""
        ...

    def list_versions(self, name: str) -> list[ModelVersionRecord]:
        """The registered versions of a model, oldest first."""
        ...

    # key broker
    def get_policy(self, model_name: str) -> PolicyRecord | None:
        """The release policy in force for a model, if any."""
        ...

    def put_policy(self, policy: PolicyRecord) -> PolicyRecord:
        """Install a policy whose version is higher than the current one, or the identical one
        again; raises PolicyDowngrade otherwise. Returns the policy in force afterwards."""
        ...

    def put_secret(self, kind: str, object_id: str, wrapped: bytes, *, now: dt.datetime) -> None:
        """Store (or replace) a secret wrapped under the broker's master key."""
        ...

    def get_secret(self, kind: str, object_id: str) -> bytes | None:
        """A wrapped secret, if any."""
        ...

    def add_secret(self, kind: str, object_id: str, wrapped: bytes, *, now: dt.datetime) -> bool:
        """Store a wrapped secret unless one exists for (kind, object_id): then False."""
        ...

    def register_key(
        self, object_id: str, wrapped: bytes, policy: PolicyRecord, *, now: dt.datetime
    ) -> PolicyRecord:
        """Store a model version's wrapped data key and its policy in one transaction."""
        ...

    def add_nonce(self, nonce: NonceRecord) -> None:
        """Store a freshly issued nonce."""
        ...

    def get_nonce(self, nonce: bytes) -> NonceRecord | None:
        """A nonce, used or not, if it was ever issued."""
        ...

    def purge_nonces(self, *, expired_before: dt.datetime) -> int:
        """Delete nonces that expired before the cutoff (a late replay is then simply unknown,
        and refused as such); returns how many."""
        ...

    def decide_release(self, decision: ReleaseDecision) -> bool:
        """Consume the decision's nonce and record the decision in one transaction.

        Returns False (recording nothing) when the nonce was used already: a replay.
        """
        ...

    # sessions
    def create_session(self, session: SessionRecord) -> None:
        """Store a new session with its invitees (and any acceptance it starts with)."""
        ...

    def get_session(self, session_id: str) -> SessionRecord | None:
        """A session with its invitees, acceptances and transitions, if any."""
        ...

    def get_session_for_member(self, session_id: str, fingerprint: str) -> SessionRecord | None:
        """A session with only ``fingerprint``'s invitation and acceptance, and no transitions
        (what a per-call membership check needs, without loading every participant)."""
        ...

    def list_sessions(self) -> list[SessionRecord]:
        """Every session (with participants and transitions)."""
        ...

    def amend_terms(
        self,
        session_id: str,
        terms: bytes,
        signature: bytes,
        added: Sequence[Invitee],
        transition: TransitionRecord,
        acceptance: Acceptance | None = None,
    ) -> None:
        """Replace the terms, add invitees, drop acceptances of the old terms, record the
        amender's acceptance and move the state, in one transaction; raises IllegalTransition
        when the state moved meanwhile."""
        ...

    def add_acceptance(
        self, session_id: str, fingerprint: str, signature: bytes, terms: bytes, *, now: dt.datetime
    ) -> None:
        """Record an acceptance, provided the terms are still ``terms``."""
        ...

    def transition(self, session_id: str, transition: TransitionRecord) -> None:
        """Move a session from ``transition.from_state`` to ``to_state`` (compare-and-set)."""
        ...

    # the data plane
    def put_node_key(self, session_id: str, key: NodeKeyRecord, *, states: Sequence[str]) -> None:
        """Record (or replace) an owner's SuperNode key while the session is in ``states``;
        AlreadyExists when another owner of the session registered the same key."""
        ...

    def put_session_report(self, report: SessionReportRecord) -> None:
        """Store (or replace) the aggregator's report of a session."""
        ...

    def get_session_report(self, session_id: str) -> SessionReportRecord | None:
        """The stored report of a session, if any."""
        ...

    def put_ckks_context(
        self, record: CkksContextRecord, wrapped_key: bytes, *, secret_kind: str
    ) -> bool:
        """Store a session's CKKS contexts and wrapped sealing key in one transaction, unless
        they exist (then False, storing nothing)."""
        ...

    def get_ckks_context(self, session_id: str) -> CkksContextRecord | None:
        """A session's CKKS contexts, if generated."""
        ...

    # results: the sealed adapter and export approvals
    def put_sealed_adapter(self, record: SealedAdapterRecord) -> SealedAdapterRecord:
        """Store a session's sealed adapter unless one is stored; return the one stored."""
        ...

    def get_sealed_adapter(self, session_id: str) -> SealedAdapterRecord | None:
        """A session's sealed adapter with the owners who confirmed it, if stored."""
        ...

    def confirm_sealed_adapter(
        self, session_id: str, fingerprint: str, *, now: dt.datetime
    ) -> None:
        """Record that ``fingerprint``'s sandbox sealed the same adapter content (idempotent)."""
        ...

    def put_export_approval(self, record: ExportApprovalRecord) -> None:
        """Store (or replace) a party's export approval for a session."""
        ...

    def list_export_approvals(self, session_id: str) -> list[ExportApprovalRecord]:
        """Every export approval of a session, by approver."""
        ...

    def close(self) -> None:
        """Flush and release every resource."""
        ...
