"""Conversions between domain records and protobuf messages, shared by the servicers."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from enclave.attest import Verdict
from fedtune._proto import common_pb2, registry_pb2, sessions_pb2
from fedtune.orchestrator.registry import UploadProgress
from fedtune.orchestrator.sessions import SessionState
from fedtune.orchestrator.store.records import ModelVersionRecord, SessionRecord

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
        ciphertext_sha256=record.ciphertext_sha256,
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


def session_info(record: SessionRecord) -> sessions_pb2.SessionInfo:
    """A SessionInfo message: terms as signed, state, participants and transitions."""
    accepted = {a.fingerprint: a for a in record.acceptances}
    participants = []
    for inv in record.invitees:
        acc = accepted.get(inv.fingerprint)
        participants.append(
            sessions_pb2.Participant(
                fingerprint=inv.fingerprint,
                role=inv.role,
                accepted=acc is not None,
                accepted_at=timestamp(acc.accepted_at) if acc else None,
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
