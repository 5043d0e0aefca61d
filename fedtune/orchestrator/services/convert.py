"""Conversions between domain records and protobuf messages, shared by the servicers."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from enclave.attest import Check, Verdict
from fedtune._proto import common_pb2, registry_pb2, sessions_pb2
from fedtune.orchestrator.errors import InvalidRequest
from fedtune.orchestrator.exports import ExportStatus
from fedtune.orchestrator.registry import UploadProgress
from fedtune.orchestrator.sessions import SessionState
from fedtune.orchestrator.store.records import (
    ModelVersionRecord,
    SealedAdapterRecord,
    SessionRecord,
    SessionReportRecord,
)

STATE_TO_PROTO = {
    SessionState.CREATED: sessions_pb2.SESSION_STATE_CREATED,
    SessionState.OPEN: sessions_pb2.SESSION_STATE_OPEN,
    SessionState.RUNNING: sessions_pb2.SESSION_STATE_RUNNING,
    SessionState.FINISHED: sessions_pb2.SESSION_STATE_FINISHED,
    SessionState.FAILED: sessions_pb2.SESSION_STATE_FAILED,
    SessionState.CANCELLED: sessions_pb2.SESSION_STATE_CANCELLED,
}
PROTO_TO_STATE = {v: k for k, v in STATE_TO_PROTO.items()}


def timestamp(value: dt.datetime) -> Timestamp:
    """A protobuf Timestamp for an aware datetime."""
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC).replace(tzinfo=None))
    return ts


def upload_status(progress: UploadProgress) -> registry_pb2.UploadStatus:
    """An UploadStatus message."""
    up = progress.upload
    return registry_pb2.UploadStatus(
        upload_id=up.upload_id,
        model=common_pb2.ModelRef(name=up.model_name, version=up.model_version),
        total_size=up.total_size,
        chunk_size=up.chunk_size,
        chunk_count=up.chunk_count,
        missing=[registry_pb2.ChunkRange(start=s, end=e) for s, e in progress.missing],
        first_missing=progress.first_missing,
        stored_bytes=progress.stored_bytes,
        complete=progress.complete,
    )


def model_version(record: ModelVersionRecord) -> registry_pb2.ModelVersion:
    """A ModelVersion message."""
    return registry_pb2.ModelVersion(
        model=common_pb2.ModelRef(name=record.model_name, version=record.version),
        owner_fingerprint=record.owner,
        ciphertext_digest=record.ciphertext_digest,
        digest_algorithm=record.digest_algorithm,
        size=record.size,
        registered_at=timestamp(record.registered_at),
    )


def verdict(value: Verdict) -> common_pb2.Verdict:
    """A Verdict message with every check."""
    return common_pb2.Verdict(
        kind=value.kind,
        checks=[
            common_pb2.Check(
                name=c.name,
                status=c.status.value,
                reason=c.reason,
                expected=c.expected,
                got=c.got,
            )
            for c in value.checks
        ],
        evaluated_at=value.evaluated_at.isoformat(),
        policy_fingerprint=value.policy_fingerprint,
        warnings=value.warnings,
    )


def verdict_from_proto(message: common_pb2.Verdict, *, field: str) -> Verdict:
    """The domain Verdict of a Verdict message (InvalidRequest naming ``field`` if malformed)."""
    try:
        return Verdict(
            kind=message.kind,
            checks=[
                Check(
                    name=c.name,
                    status=c.status,
                    reason=c.reason,
                    expected=c.expected if c.HasField("expected") else None,
                    got=c.got if c.HasField("got") else None,
                )
                for c in message.checks
            ],
            evaluated_at=dt.datetime.fromisoformat(message.evaluated_at),
            policy_fingerprint=(
                message.policy_fingerprint if message.HasField("policy_fingerprint") else None
            ),
            warnings=list(message.warnings),
        )
    except ValueError as exc:
        raise InvalidRequest(field, f"not a verdict: {str(exc).splitlines()[0]}") from None


def sealed_adapter_info(
    record: SealedAdapterRecord, *, stored_now: bool = False
) -> registry_pb2.SealedAdapterInfo:
    """A SealedAdapterInfo message."""
    return registry_pb2.SealedAdapterInfo(
        session_id=record.session_id,
        sealed_sha256=record.sealed_sha256,
        sealed_size=record.sealed_size,
        content_mac=record.content_mac,
        key_id=record.key_id,
        after_round=record.after_round,
        adapter_fingerprint=record.adapter_fingerprint,
        uploaded_by=record.uploaded_by,
        confirmed_by=list(record.confirmed_by),
        stored_at=timestamp(record.stored_at),
        stored_now=stored_now,
    )


def export_status(status: ExportStatus) -> sessions_pb2.ExportStatus:
    """An ExportStatus message: valid approvals and the parties still missing."""
    return sessions_pb2.ExportStatus(
        session_id=status.session_id,
        adapter_sha256=status.adapter_sha256,
        approvals=[
            sessions_pb2.ExportApprovalInfo(
                fingerprint=a.fingerprint,
                role=a.role,
                adapter_sha256=a.adapter_sha256,
                approved_at=timestamp(a.approved_at),
                approval=common_pb2.SignedDocument(canonical=a.document, signature=a.signature),
            )
            for a in status.approvals
        ],
        missing=[
            sessions_pb2.MissingApproval(fingerprint=m.fingerprint, role=m.role)
            for m in status.missing
        ],
    )


def session_info(record: SessionRecord) -> sessions_pb2.SessionInfo:
    """A SessionInfo message: terms as signed, state, participants and transitions."""
    accepted = {a.fingerprint: a for a in record.acceptances}
    node_keys = {k.fingerprint: k for k in record.node_keys}
    participants = []
    for inv in record.invitees:
        acc = accepted.get(inv.fingerprint)
        key = node_keys.get(inv.fingerprint)
        participants.append(
            sessions_pb2.Participant(
                fingerprint=inv.fingerprint,
                role=inv.role,
                accepted=acc is not None,
                accepted_at=timestamp(acc.accepted_at) if acc else None,
                public_key=inv.public_key,
                acceptance_signature=acc.signature if acc else b"",
                node_key=sessions_pb2.NodeKey(
                    public_key=key.public_key,
                    signature=key.signature,
                    registered_at=timestamp(key.registered_at),
                )
                if key
                else None,
            )
        )
    return sessions_pb2.SessionInfo(
        session_id=record.session_id,
        terms=common_pb2.SignedDocument(canonical=record.terms, signature=record.terms_signature),
        creator=record.creator,
        state=STATE_TO_PROTO[SessionState(record.state)],
        reason=record.reason,
        participants=participants,
        transitions=[
            sessions_pb2.Transition(
                from_state=STATE_TO_PROTO.get(SessionState(t.from_state), 0) if t.from_state else 0,
                to_state=STATE_TO_PROTO[SessionState(t.to_state)],
                actor=t.actor,
                reason=t.reason,
                at=timestamp(t.at),
            )
            for t in record.transitions
        ],
        updated_at=timestamp(record.updated_at),
    )


def report_document(record: SessionReportRecord) -> sessions_pb2.SessionReportDocument:
    """A SessionReportDocument message."""
    return sessions_pb2.SessionReportDocument(
        session_id=record.session_id, report=record.report, updated_at=timestamp(record.updated_at)
    )
