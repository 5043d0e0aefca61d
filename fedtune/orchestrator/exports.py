"""Results need both sides: the session's sealed adapter, export approvals, and the export itself.

DESIGN promise 4. At the end of a session each owner's sandbox seals the final adapter under the
session key (``enclave.sandbox.adapter_seal``); the first owner's agent to upload it stores the
ciphertext here (``put_adapter``), later owners confirm their sandbox sealed the same content
(equal content MAC) or are refused. The registry only ever holds ciphertext.

An export needs a signed ``ExportApproval`` (session, the stored sealed adapter's digest,
approver, time; context ``export-approval``) from the session's provider and from every invited
data owner. ``export`` re-verifies every stored approval against the session's keys each time
(fail closed), then has the key broker wrap the session key to a fresh HPKE key of the
requester, so the operator relays only ciphertext. Refusals carry the missing approvals
(fingerprint and role); both outcomes are on the audit log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from crypto.canonical import CanonicalModel
from crypto.errors import KeyWrapError, SignatureError
from crypto.hpke import RecipientPublicKey
from crypto.identity import Identity, PublicIdentity
from fedtune.orchestrator import audit_hook
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import Principal
from fedtune.orchestrator.broker import KeyBroker
from fedtune.orchestrator.documents import parse_canonical
from fedtune.orchestrator.errors import (
    AlreadyExists,
    BlobDigestMismatch,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from fedtune.orchestrator.relations import require_accepted_owner
from fedtune.orchestrator.store.blobs import BlobStore
from fedtune.orchestrator.store.records import (
    ExportApprovalRecord,
    Invitee,
    SealedAdapterRecord,
    SessionRecord,
)
from fedtune.orchestrator.store.repository import Repository
from fedtune.orchestrator.terms import SessionTerms

SIGNING_CONTEXT = "export-approval"
APPROVAL_FORMAT = "fedtune.export-approval/v1"
# A LoRA adapter of a 70B model at rank 64 is well under 1 GiB of float32.
MAX_ADAPTER_SIZE = 1 << 30
DOWNLOAD_BLOCK = 1 << 20
# Sealed adapters are stored while the session runs its last evaluation or once it finished.
UPLOAD_STATES = frozenset({"running", "finished"})
EXPORT_STATES = frozenset({"finished"})
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAC = re.compile(r"^hmac-sha256:[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{64}$")
_LAYOUT = re.compile(r"^[0-9a-zA-Z:_-]{1,128}$")

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ExportApproval(CanonicalModel):
    """What a party signs to approve exporting a session's adapter (context export-approval)."""

    format: Literal["fedtune.export-approval/v1"] = APPROVAL_FORMAT
    session_id: str = Field(min_length=1, max_length=64)
    adapter_sha256: str = Field(pattern=_SHA256.pattern)
    approver: str
    approved_at: dt.datetime

    @field_validator("approved_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("approved_at must carry a timezone")
        return value.astimezone(dt.UTC)

    def sign(self, identity: Identity) -> bytes:
        """The approver's signature over the canonical bytes (context ``export-approval``)."""
        if identity.fingerprint != self.approver:
            raise ValueError(
                f"the approval names {self.approver}, the signing key is {identity.fingerprint}"
            )
        return identity.sign(self.canonical_bytes(), context=SIGNING_CONTEXT)


@dataclass(frozen=True)
class AdapterHeader:
    """What an owner's agent says about the sealed adapter it uploads (from its sandbox)."""

    session_id: str
    sealed_sha256: str
    sealed_size: int
    content_mac: str
    key_id: str
    after_round: int
    adapter_fingerprint: str


@dataclass(frozen=True)
class StoredAdapter:
    """The stored sealed adapter, and whether this call stored it or confirmed it."""

    record: SealedAdapterRecord
    stored_now: bool


@dataclass(frozen=True)
class Missing:
    """A party whose valid approval is missing."""

    fingerprint: str
    role: str


@dataclass(frozen=True)
class ExportStatus:
    """The approvals over the stored adapter, and who still has to approve."""

    session_id: str
    adapter_sha256: str
    approvals: tuple[ExportApprovalRecord, ...]
    missing: tuple[Missing, ...]


@dataclass(frozen=True)
class ExportDecision:
    """Granted (the wrapped session key) or refused (the missing approvals)."""

    granted: bool
    reason: str
    missing: tuple[Missing, ...] = ()
    wrapped_session_key: bytes = b""
    model_id: str = ""
    adapter: SealedAdapterRecord | None = None


class ExportService:
    """Stores sealed adapters, records approvals, decides exports; every step is audited."""

    def __init__(
        self,
        repository: Repository,
        blobs: BlobStore,
        audit: AuditHook,
        broker: KeyBroker,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self._repository = repository
        self._blobs = blobs
        self._audit = audit
        self._broker = broker
        self._clock = clock

    # -- helpers ---------------------------------------------------------------------------------

    def _session(self, session_id: str) -> SessionRecord:
        session = self._repository.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    @staticmethod
    def _party(session: SessionRecord, actor: Principal, method: str) -> Invitee:
        """The caller as the session's provider or one of its invited owners."""
        invitee = next((i for i in session.invitees if i.fingerprint == actor.fingerprint), None)
        if invitee is None or invitee.role != actor.role.value:
            raise PermissionDenied(
                method,
                f"session {session.session_id}",
                "only the session's provider and its invited data owners may do this",
            )
        return invitee

    def _adapter(self, session_id: str) -> SealedAdapterRecord:
        record = self._repository.get_sealed_adapter(session_id)
        if record is None:
            raise NotFound("sealed adapter of session", session_id)
        return record

    @staticmethod
    def _model(session: SessionRecord) -> str:
        return f"{session.model_name}@{session.model_version}"

    @staticmethod
    def _require_state(session: SessionRecord, states: frozenset[str], why: str) -> None:
        if session.state not in states:
            raise IllegalTransition(session.session_id, session.state, session.state, why)

    # -- the sealed adapter ----------------------------------------------------------------------

    def put_adapter(
        self, actor: Principal, header: AdapterHeader, chunks: Iterable[bytes]
    ) -> StoredAdapter:
        """Store the session's sealed adapter (first upload) or confirm the stored one."""
        session = self._session(header.session_id)
        require_accepted_owner(session, actor, "PutSealedAdapter", states=UPLOAD_STATES)
        _check_header(header)
        terms = parse_canonical(SessionTerms, session.terms, field="stored terms")
        if terms.key_broker is not None:
            raise InvalidRequest(
                "session_id",
                "this session's keys are held by the provider-site key broker its terms name; "
                "sealed adapters of such sessions are not kept here yet",
            )
        key_id = self._broker.session_key_id(session.session_id)
        if key_id is None or not hmac.compare_digest(key_id, header.key_id):
            raise InvalidRequest(
                "key_id",
                f"the adapter is sealed under key {header.key_id[:16]}..., not this session's "
                f"key ({(key_id or 'none generated')[:16]}...)",
            )
        existing = self._repository.get_sealed_adapter(session.session_id)
        if existing is not None:
            return StoredAdapter(self._confirm(actor, session, existing, header), False)
        blob_key = self._receive(header, chunks)
        record = self._repository.put_sealed_adapter(
            SealedAdapterRecord(
                session_id=session.session_id,
                sealed_sha256=header.sealed_sha256,
                sealed_size=header.sealed_size,
                content_mac=header.content_mac,
                key_id=header.key_id,
                after_round=header.after_round,
                adapter_fingerprint=header.adapter_fingerprint,
                uploaded_by=actor.fingerprint,
                blob_key=blob_key,
                stored_at=self._clock(),
            )
        )
        if record.uploaded_by != actor.fingerprint:
            # Another owner's upload won the race meanwhile: this one is a confirmation.
            return StoredAdapter(self._confirm(actor, session, record, header), False)
        self._record_upload(actor, session, record.sealed_sha256, {
            "step": "store",
            "size": record.sealed_size,
            "content_mac": record.content_mac,
            "key_id": record.key_id,
            "after_round": record.after_round,
        })
        return StoredAdapter(record, True)

    def _record_upload(
        self, actor: Principal, session: SessionRecord, artifact: str,
        details: dict[str, str | int | float | bool],
    ) -> None:
        # One event shape for the first upload ("store") and every later one ("confirm").
        self._audit.record(
            audit_hook.event(
                "adapter.upload",
                actor,
                "PutSealedAdapter",
                f"sealed adapter of session {session.session_id}",
                session_id=session.session_id,
                model=self._model(session),
                party=actor.fingerprint,
                artifact=artifact,
                details=details,
            )
        )

    def _confirm(
        self,
        actor: Principal,
        session: SessionRecord,
        stored: SealedAdapterRecord,
        header: AdapterHeader,
    ) -> SealedAdapterRecord:
        if not hmac.compare_digest(stored.content_mac, header.content_mac):
            raise AlreadyExists(
                "sealed adapter",
                session.session_id,
                f"{stored.uploaded_by} stored an adapter whose content MAC is "
                f"{stored.content_mac}; your sandbox sealed {header.content_mac}: the sandboxes "
                "disagree on the final adapter (did every owner evaluate the same final round?)",
            )
        self._repository.confirm_sealed_adapter(
            session.session_id, actor.fingerprint, now=self._clock()
        )
        self._record_upload(
            actor, session, stored.sealed_sha256,
            {"step": "confirm", "content_mac": header.content_mac},
        )
        confirmed = self._repository.get_sealed_adapter(session.session_id)
        assert confirmed is not None
        return confirmed

    def _receive(self, header: AdapterHeader, chunks: Iterable[bytes]) -> str:
        upload_id = f"adapter-{uuid.uuid4().hex}"
        self._blobs.prepare_upload(upload_id, header.sealed_size)
        try:
            hasher = hashlib.sha256()
            offset = 0
            for chunk in chunks:
                if offset + len(chunk) > header.sealed_size:
                    raise InvalidRequest(
                        "chunk", f"more bytes than the header's {header.sealed_size}"
                    )
                self._blobs.write_chunk(upload_id, offset, chunk)
                hasher.update(chunk)
                offset += len(chunk)
            if offset != header.sealed_size:
                raise InvalidRequest(
                    "chunk", f"{offset} bytes arrived, the header says {header.sealed_size}"
                )
            got = "sha256:" + hasher.hexdigest()
            if not hmac.compare_digest(got, header.sealed_sha256):
                raise BlobDigestMismatch("SHA-256", header.sealed_sha256, got)
            self._blobs.sync_upload(upload_id)
            key = got.removeprefix("sha256:")
            self._blobs.finalize_upload(upload_id, key)
            return key
        finally:
            self._blobs.discard_upload(upload_id)

    def adapter(self, actor: Principal, session_id: str) -> SealedAdapterRecord:
        """The stored sealed adapter's description, to a party of the session."""
        session = self._session(session_id)
        self._party(session, actor, "GetSealedAdapter")
        return self._adapter(session_id)

    def adapter_pieces(self, actor: Principal, session_id: str) -> Iterator[bytes]:
        """The sealed adapter's bytes (ciphertext), to a party of the session."""
        record = self.adapter(actor, session_id)
        return self._blobs.read_blob(record.blob_key, 0, record.sealed_size, block=DOWNLOAD_BLOCK)

    # -- approvals and export ---------------------------------------------------------------------

    def status(self, session: SessionRecord) -> ExportStatus:
        """Valid approvals over the stored adapter, and the parties still missing."""
        adapter = self._adapter(session.session_id)
        valid: list[ExportApprovalRecord] = []
        missing: list[Missing] = []
        approvals = {a.fingerprint: a for a in self._repository.list_export_approvals(
            session.session_id)}
        for invitee in session.invitees:
            approval = approvals.get(invitee.fingerprint)
            if approval is not None and _valid(approval, invitee, adapter):
                valid.append(approval)
            else:
                missing.append(Missing(invitee.fingerprint, invitee.role))
        return ExportStatus(session.session_id, adapter.sealed_sha256, tuple(valid),
                            tuple(missing))

    def approve(
        self, actor: Principal, session_id: str, canonical: bytes, signature: bytes
    ) -> ExportStatus:
        """Record a party's signed approval to export the stored adapter."""
        session = self._session(session_id)
        invitee = self._party(session, actor, "ApproveExport")
        self._require_state(session, EXPORT_STATES, "exports are approved once the session "
                            "finished")
        adapter = self._adapter(session_id)
        try:
            PublicIdentity.from_bytes(invitee.public_key).verify(
                signature, canonical, context=SIGNING_CONTEXT
            )
        except SignatureError:
            raise InvalidRequest(
                "approval",
                f"the signature does not verify under {actor.fingerprint} in context "
                f"{SIGNING_CONTEXT!r}",
            ) from None
        approval = parse_canonical(ExportApproval, canonical, field="approval")
        for name, want, got in (
            ("approval.session_id", session_id, approval.session_id),
            ("approval.approver", actor.fingerprint, approval.approver),
            ("approval.adapter_sha256", adapter.sealed_sha256, approval.adapter_sha256),
        ):
            if got != want:
                raise InvalidRequest(name, f"names {got}, expected {want}")
        self._repository.put_export_approval(
            ExportApprovalRecord(
                session_id=session_id,
                fingerprint=actor.fingerprint,
                role=invitee.role,
                adapter_sha256=approval.adapter_sha256,
                document=canonical,
                signature=signature,
                approved_at=approval.approved_at,
            )
        )
        status = self.status(session)
        self._audit.record(
            audit_hook.event(
                "export.approve",
                actor,
                "ApproveExport",
                f"sealed adapter of session {session_id}",
                session_id=session_id,
                model=self._model(session),
                party=actor.fingerprint,
                artifact=adapter.sealed_sha256,
                details={
                    "approved": len(status.approvals),
                    "missing": len(status.missing),
                },
            )
        )
        return status

    def export(
        self, actor: Principal, session_id: str, recipient_public_key: bytes
    ) -> ExportDecision:
        """The session key wrapped to the requester when every party approved, else a refusal."""
        session = self._session(session_id)
        self._party(session, actor, "Export")
        self._require_state(session, EXPORT_STATES, "the adapter is exported once the session "
                            "finished")
        try:
            recipient = RecipientPublicKey.from_bytes(recipient_public_key)
        except KeyWrapError as exc:
            raise InvalidRequest("recipient_public_key", str(exc)) from None
        status = self.status(session)
        adapter = self._adapter(session_id)
        model = self._model(session)
        if status.missing:
            reason = "missing export approvals from " + ", ".join(
                f"{m.role} {m.fingerprint}" for m in status.missing
            )
            self._audit.record(
                audit_hook.event(
                    "export",
                    actor,
                    "Export",
                    f"sealed adapter of session {session_id}",
                    outcome=audit_hook.REFUSED,
                    reason=reason,
                    session_id=session_id,
                    model=model,
                    party=actor.fingerprint,
                    artifact=adapter.sealed_sha256,
                    details={"missing": len(status.missing),
                             "approved": len(status.approvals)},
                )
            )
            return ExportDecision(False, reason, status.missing, adapter=adapter)
        wrapped = self._broker.export_key(session_id, model, recipient)
        self._audit.record(
            audit_hook.event(
                "export",
                actor,
                "Export",
                f"sealed adapter of session {session_id}",
                session_id=session_id,
                model=model,
                party=actor.fingerprint,
                artifact=adapter.sealed_sha256,
                details={
                    "approvers": ",".join(a.fingerprint for a in status.approvals)[:1000],
                    "content_mac": adapter.content_mac,
                },
            )
        )
        return ExportDecision(True, "every party approved", (), wrapped, model, adapter)


def _valid(approval: ExportApprovalRecord, invitee: Invitee, adapter: SealedAdapterRecord) -> bool:
    """Whether a stored approval still verifies and covers the stored adapter."""
    if approval.adapter_sha256 != adapter.sealed_sha256:
        return False
    try:
        PublicIdentity.from_bytes(invitee.public_key).verify(
            approval.signature, approval.document, context=SIGNING_CONTEXT
        )
        doc = ExportApproval.model_validate_json(approval.document)
    except (SignatureError, ValueError):
        return False
    return (
        doc.approver == invitee.fingerprint
        and doc.session_id == approval.session_id
        and doc.adapter_sha256 == adapter.sealed_sha256
    )


def _check_header(header: AdapterHeader) -> None:
    for name, value, pattern in (
        ("sealed_sha256", header.sealed_sha256, _SHA256),
        ("content_mac", header.content_mac, _MAC),
        ("key_id", header.key_id, _KEY_ID),
        ("adapter_fingerprint", header.adapter_fingerprint, _LAYOUT),
    ):
        if not pattern.match(value):
            raise InvalidRequest(f"header.{name}", f"{value[:80]!r} is malformed")
    if not 0 < header.sealed_size <= MAX_ADAPTER_SIZE:
        raise InvalidRequest(
            "header.sealed_size", f"must be between 1 and {MAX_ADAPTER_SIZE} bytes"
        )
    if header.after_round < 1:
        raise InvalidRequest("header.after_round", "a final adapter follows at least one round")

