"""One probe per RPC: a request that succeeds when the caller is allowed, and that would change
stored state (or hand out something) if a refused caller got through."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from crypto.datakey import DataKey
from crypto.digest import digest_bytes
from crypto.hpke import RecipientPrivateKey, unwrap_key, wrap_key
from crypto.identity import Identity
from crypto.seal import unseal_to_memory
from enclave.attest import new_nonce, report_data_for, verify
from enclave.sandbox.adapter_seal import content_mac
from fedtune._proto import (
    audit_pb2,
    common_pb2,
    enrolment_pb2,
    key_broker_pb2,
    registry_pb2,
    sessions_pb2,
)
from fedtune.audit import Action, AuditEvent, Outcome
from fedtune.audit import Role as AuditRole
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import REGISTRATION_SESSION, SecretKind, model_id
from fedtune.orchestrator.enrolment import SIGNING_CONTEXT as ENROL_CONTEXT
from fedtune.orchestrator.enrolment import EnrolmentRequest, create_token
from fedtune.orchestrator.exports import ExportApproval
from fedtune.orchestrator.services.convert import verdict as verdict_message
from fedtune.orchestrator.terms import SIGNING_CONTEXT as TERMS_CONTEXT
from tests.orchestrator.conftest import data_key_of, terms_for

from .matrix import RpcShape
from .world import (
    CHUNK,
    MEASUREMENT,
    MODEL,
    S_APPROVED,
    S_CKKS,
    S_CREATED,
    S_DONE,
    S_OPEN,
    S_READY,
    S_RUN,
    S_RUN2,
    Caller,
    World,
    report_json,
)

_MODEL_KEY = key_broker_pb2.SECRET_KIND_MODEL_DATA_KEY


@dataclass
class Probe:
    """A request for one cell, what a refusal must name, and what an allowed answer must show."""

    request: Any  # a message, or a list of messages for a client-streaming RPC
    object: str  # the object as a relation refusal names it
    check: Callable[[Any], None] | None = None  # the response (a list for server streaming)
    port: str = "api"  # or "enrol"
    first_only: bool = False  # an endless stream: read the first message, then cancel


@dataclass
class CallResult:
    """What a call came back with."""

    code: grpc.StatusCode
    details: str
    responses: list[Any]


def invoke(
    channel: grpc.Channel, shape: RpcShape, probe: Probe, *, timeout: float = 20
) -> CallResult:
    """Call ``shape.method`` with the probe's request; the status, details and any responses."""
    kw = {
        "request_serializer": shape.request.SerializeToString,
        "response_deserializer": shape.response.FromString,
    }
    got: list[Any] = []
    request = probe.request
    try:
        if shape.client_streaming and shape.server_streaming:
            call = channel.stream_stream(shape.method, **kw)(iter(request), timeout=timeout)
        elif shape.client_streaming:
            got.append(channel.stream_unary(shape.method, **kw)(iter(request), timeout=timeout))
            return CallResult(grpc.StatusCode.OK, "", got)
        elif shape.server_streaming:
            call = channel.unary_stream(shape.method, **kw)(request, timeout=timeout)
        else:
            got.append(channel.unary_unary(shape.method, **kw)(request, timeout=timeout))
            return CallResult(grpc.StatusCode.OK, "", got)
        for message in call:
            got.append(message)
            if probe.first_only:
                call.cancel()
                break
        return CallResult(grpc.StatusCode.OK, "", got)
    except grpc.RpcError as exc:
        return CallResult(exc.code(), exc.details() or "", got)


def _signed(doc: Any, signature: bytes) -> common_pb2.SignedDocument:
    return common_pb2.SignedDocument(canonical=doc, signature=signature)


def _policy_doc(world: World, caller: Caller, version: int) -> common_pb2.SignedDocument:
    signed = world.policy(caller.identity, version=version)
    return _signed(signed.policy.canonical_bytes(), signed.signature)


def _terms_doc(world: World, caller: Caller, sid: str) -> common_pb2.SignedDocument:
    record = world.server.repository.get_session(sid)
    assert record is not None
    return _signed(record.terms, caller.identity.sign(record.terms, context=TERMS_CONTEXT))


def _only(check: Callable[[Any], bool]) -> Callable[[list[Any]], None]:
    def run(responses: list[Any]) -> None:
        assert len(responses) == 1 and check(responses[0]), responses

    return run


# -- Enrolment -------------------------------------------------------------------------------------


def enrol(world: World, caller: Caller, allow: bool) -> Probe:
    """Redeem a fresh data-owner token (a refused caller would have enrolled a new party)."""
    name = world.new_id("probe-party")
    identity = Identity.generate()
    token = create_token(
        world.server.repository,
        Role.DATA_OWNER,
        name,
        ttl=dt.timedelta(hours=1),
        now=dt.datetime.now(dt.UTC),
    )
    request = EnrolmentRequest(
        token=token,
        identity=identity.public.raw,
        csr=pki.build_csr(pki.generate_tls_key(), name),
        ca_fingerprint=world.server.info.ca_fingerprint,
        requested_at=dt.datetime.now(dt.UTC),
    ).canonical_bytes()
    return Probe(
        enrolment_pb2.EnrolRequest(
            request=_signed(request, identity.sign(request, context=ENROL_CONTEXT))
        ),
        object="",
        check=_only(lambda r: r.fingerprint == identity.fingerprint and r.role == "data-owner"),
        port="enrol" if caller.column == "unauthenticated" else "api",
    )


# -- Registry --------------------------------------------------------------------------------------


def begin_upload(world: World, caller: Caller, allow: bool) -> Probe:
    """Allowed: find acme's pending v2 upload. Refused: start an upload under a new name."""
    if allow:
        assert world.v2 is not None
        signed = world.v2.signed
    elif caller.party is world.rival:
        signed = world.manifest_as(caller.identity, name=MODEL, version="9")  # acme's name
    else:
        signed = world.manifest_as(caller.identity, name=world.new_id("probe") + "/m", version="1")
    request = registry_pb2.BeginUploadRequest(
        manifest=_signed(signed.manifest.canonical_bytes(), signed.signature), chunk_size=CHUNK
    )
    return Probe(request, MODEL, _only(lambda r: r.upload_id == world.upload_v2))


def upload_chunks(world: World, caller: Caller, allow: bool) -> Probe:
    """Chunk 0 (allowed) or chunk 1 (refused; never stored by anyone) of acme's pending upload."""
    assert world.v2 is not None
    index = 0 if allow else 1
    data = world.v2.blob_path.read_bytes()[index * CHUNK : (index + 1) * CHUNK]
    chunk = registry_pb2.UploadChunk(
        upload_id=world.upload_v2, index=index, data=data, digest=digest_bytes(data)
    )
    return Probe([chunk], world.upload_v2, _only(lambda r: r.upload_id == world.upload_v2))


def complete_upload(world: World, caller: Caller, allow: bool) -> Probe:
    """Allowed: the completed v1 upload (idempotent). Refused: v3, ready to be registered."""
    upload = world.upload_v1 if allow else world.upload_v3
    return Probe(
        registry_pb2.CompleteUploadRequest(upload_id=upload),
        upload,
        _only(lambda r: (r.model.name, r.model.version) == (MODEL, "1")),
    )


def list_models(world: World, caller: Caller, allow: bool) -> Probe:
    """The catalogue."""
    return Probe(
        registry_pb2.ListModelsRequest(),
        "",
        _only(lambda r: {m.name for m in r.models} >= {MODEL, "rival/base"}),
    )


def describe_model(world: World, caller: Caller, allow: bool) -> Probe:
    """acme/base's versions."""
    return Probe(
        registry_pb2.DescribeModelRequest(name=MODEL),
        MODEL,
        _only(lambda r: r.name == MODEL and r.owner_fingerprint == world.acme.fingerprint),
    )


def get_manifest(world: World, caller: Caller, allow: bool) -> Probe:
    """acme/base@1's signed manifest."""
    canonical = world.v1.signed.manifest.canonical_bytes()
    return Probe(
        registry_pb2.GetManifestRequest(model=common_pb2.ModelRef(name=MODEL, version="1")),
        MODEL,
        _only(lambda r: r.canonical == canonical),
    )


def download(world: World, caller: Caller, allow: bool) -> Probe:
    """acme/base@1's sealed blob (a refused caller must receive no byte of it)."""
    blob = world.v1.blob_path.read_bytes()

    def check(responses: list[Any]) -> None:
        assert b"".join(r.data for r in responses) == blob

    return Probe(
        registry_pb2.DownloadRequest(model=common_pb2.ModelRef(name=MODEL, version="1")),
        f"{MODEL}@1",
        check,
    )


def put_sealed_adapter(world: World, caller: Caller, allow: bool) -> Probe:
    """An adapter sealed under the session key by alice's sandbox, header first. Allowed: a new
    running session; refused: the running session, which has a key and no adapter yet."""
    sid = world.session("running") if allow else S_RUN
    sealed = world.seal_adapter(sid)
    header = registry_pb2.SealedAdapterHeader(
        session_id=sid,
        sealed_sha256=sealed.sealed_sha256,
        sealed_size=len(sealed.sealed),
        content_mac=sealed.content_mac,
        key_id=sealed.key_id,
        after_round=sealed.after_round,
        adapter_fingerprint=sealed.adapter_fingerprint,
    )
    parts = [registry_pb2.SealedAdapterUpload(header=header)] + [
        registry_pb2.SealedAdapterUpload(chunk=sealed.sealed[at : at + CHUNK])
        for at in range(0, len(sealed.sealed), CHUNK)
    ]
    return Probe(
        parts,
        sid,
        _only(
            lambda r: r.stored_now
            and (r.session_id, r.uploaded_by) == (sid, caller.fingerprint)
            and (r.sealed_sha256, r.content_mac) == (sealed.sealed_sha256, sealed.content_mac)
        ),
    )


def get_sealed_adapter(world: World, caller: Caller, allow: bool) -> Probe:
    """The finished session's sealed adapter (a refused caller must receive no byte of it)."""
    sealed = world.adapters[S_DONE].sealed

    def check(responses: list[Any]) -> None:
        assert b"".join(r.data for r in responses) == sealed
        starts = [sum(len(r.data) for r in responses[:i]) for i in range(len(responses))]
        assert [r.offset for r in responses] == starts

    return Probe(registry_pb2.GetSealedAdapterRequest(session_id=S_DONE), S_DONE, check)


# -- KeyBroker -------------------------------------------------------------------------------------


def get_broker_key(world: World, caller: Caller, allow: bool) -> Probe:
    """The broker's HPKE key."""
    want = world.server.broker.public_key.to_bytes()
    return Probe(key_broker_pb2.GetBrokerKeyRequest(), "", _only(lambda r: r.public_key == want))


def register_key(world: World, caller: Caller, allow: bool) -> Probe:
    """acme/base@1's real data key; allowed: with the policy in force (idempotent); refused: with
    a much newer policy signed by the caller (it would replace acme's)."""
    wrapped = wrap_key(
        data_key_of(world.acme, world.v1).raw,
        world.server.broker.public_key,
        model_id=model_id(MODEL, "1"),
        session_id=REGISTRATION_SESSION,
    )
    current = world.server.repository.get_policy(MODEL)
    assert current is not None
    policy = (
        _signed(current.document, current.signature)
        if allow
        else _policy_doc(world, caller, current.version + 50)
    )
    return Probe(
        key_broker_pb2.RegisterKeyRequest(
            model=common_pb2.ModelRef(name=MODEL, version="1"), wrapped_key=wrapped, policy=policy
        ),
        MODEL,
        _only(lambda r: r.policy_version == current.version),
    )


def set_policy(world: World, caller: Caller, allow: bool) -> Probe:
    """A policy one version up (allowed) or far up (refused), signed by the caller."""
    version = world.policy_version() + (1 if allow else 50)
    return Probe(
        key_broker_pb2.SetPolicyRequest(
            model_name=MODEL, policy=_policy_doc(world, caller, version)
        ),
        MODEL,
        _only(lambda r: r.version == version),
    )


def get_policy(world: World, caller: Caller, allow: bool) -> Probe:
    """acme/base's policy in force."""
    return Probe(
        key_broker_pb2.GetPolicyRequest(model_name=MODEL),
        MODEL,
        _only(lambda r: r.model_name == MODEL and r.version == world.policy_version()),
    )


def challenge(world: World, caller: Caller, allow: bool) -> Probe:
    """A release nonce in the running session (a refused caller would have been issued one)."""
    return Probe(
        key_broker_pb2.ChallengeRequest(session_id=S_RUN, kind=_MODEL_KEY),
        S_RUN,
        _only(lambda r: len(r.nonce) == 32),
    )


def release(world: World, caller: Caller, allow: bool) -> Probe:
    """Valid evidence for a fresh nonce issued to alice, bound to a new ephemeral key."""
    nonce = world.alice.client.challenge(S_RUN)
    public = RecipientPrivateKey.generate().public_key().to_bytes()
    evidence = world.tee.get_evidence(report_data_for(nonce, public)).canonical_bytes()
    return Probe(
        key_broker_pb2.ReleaseRequest(
            session_id=S_RUN,
            kind=_MODEL_KEY,
            evidence=evidence,
            ephemeral_public_key=public,
            nonce=nonce,
        ),
        S_RUN,
        _only(lambda r: r.WhichOneof("outcome") == "released"),
    )


def get_public_context(world: World, caller: Caller, allow: bool) -> Probe:
    """The CKKS session's public context: parameters and public key, never the secret key."""

    def public_only(response: Any) -> bool:
        from crypto.ckks import load_context

        load_context(response.context, secret=False)  # raises on a secret context
        return response.session_id == S_CKKS and bool(response.key_id)

    return Probe(
        key_broker_pb2.GetPublicContextRequest(session_id=S_CKKS), S_CKKS, _only(public_only)
    )


def reattest(world: World, caller: Caller, allow: bool) -> Probe:
    """Fresh evidence of alice's sandbox in the running session (which got its keys) for a
    re-attestation nonce issued to alice (a refused caller would have spent it, on the record)."""
    nonce = world.alice.client.challenge(S_RUN, SecretKind.REATTESTATION)
    public = RecipientPrivateKey.generate().public_key().to_bytes()
    evidence = world.tee.get_evidence(report_data_for(nonce, public)).canonical_bytes()
    return Probe(
        key_broker_pb2.ReleaseRequest(
            session_id=S_RUN,
            kind=key_broker_pb2.SECRET_KIND_REATTESTATION,
            evidence=evidence,
            ephemeral_public_key=public,
            nonce=nonce,
        ),
        S_RUN,
        _only(
            lambda r: r.ok
            and r.reason == "attested"
            and {"broker.nonce", "policy.measurement"} <= {c.name for c in r.verdict.checks}
        ),
    )


# -- Sessions --------------------------------------------------------------------------------------


def create_session(world: World, caller: Caller, allow: bool) -> Probe:
    """New terms on acme/base@1 for alice and bob, signed by the caller."""
    sid = world.new_id("probe-session")
    terms = terms_for(sid, world.acme, [world.alice, world.bob], name=MODEL).canonical_bytes()
    return Probe(
        sessions_pb2.CreateSessionRequest(
            terms=_signed(terms, caller.identity.sign(terms, context=TERMS_CONTEXT)),
            owner_public_keys=[world.alice.identity.public.raw, world.bob.identity.public.raw],
        ),
        MODEL,
        _only(lambda r: r.session_id == sid and r.state == sessions_pb2.SESSION_STATE_CREATED),
    )


def invite_owners(world: World, caller: Caller, allow: bool) -> Probe:
    """Open a created session (its terms, re-signed by the caller)."""
    sid = world.session("created") if allow else S_CREATED
    return Probe(
        sessions_pb2.InviteOwnersRequest(session_id=sid, terms=_terms_doc(world, caller, sid)),
        sid,
        _only(lambda r: r.session_id == sid and r.state == sessions_pb2.SESSION_STATE_OPEN),
    )


def accept_session(world: World, caller: Caller, allow: bool) -> Probe:
    """Sign an open session's terms (allowed: one the caller is invited to and has not signed)."""
    if allow:
        # acme has signed the sessions it created; it accepts one the operator proposed.
        creator = world.operator if caller.party is world.acme else world.acme
        sid = world.session("open", creator=creator)
    else:
        sid = S_OPEN
    record = world.server.repository.get_session(sid)
    assert record is not None
    signature = caller.identity.sign(record.terms, context=TERMS_CONTEXT)
    return Probe(
        sessions_pb2.AcceptSessionRequest(session_id=sid, signature=signature),
        sid,
        _only(
            lambda r: any(
                p.fingerprint == caller.fingerprint and p.accepted for p in r.participants
            )
        ),
    )


def start_session(world: World, caller: Caller, allow: bool) -> Probe:
    """Start an open session everyone accepted."""
    sid = world.session("ready") if allow else S_READY
    return Probe(
        sessions_pb2.TransitionRequest(session_id=sid, reason="probe"),
        sid,
        _only(lambda r: r.state == sessions_pb2.SESSION_STATE_RUNNING),
    )


def finish_session(world: World, caller: Caller, allow: bool) -> Probe:
    """Finish a running session."""
    sid = world.session("running") if allow else S_RUN2
    return Probe(
        sessions_pb2.FinishSessionRequest(session_id=sid, reason="probe"),
        sid,
        _only(lambda r: r.state == sessions_pb2.SESSION_STATE_FINISHED),
    )


def cancel_session(world: World, caller: Caller, allow: bool) -> Probe:
    """Cancel a session (allowed: a new one; refused: a running one)."""
    sid = world.session("created") if allow else S_RUN2
    return Probe(
        sessions_pb2.TransitionRequest(session_id=sid, reason="probe"),
        sid,
        _only(lambda r: r.state == sessions_pb2.SESSION_STATE_CANCELLED),
    )


def get_session(world: World, caller: Caller, allow: bool) -> Probe:
    """The running session."""
    return Probe(
        sessions_pb2.GetSessionRequest(session_id=S_RUN),
        S_RUN,
        _only(lambda r: r.session_id == S_RUN and r.state == sessions_pb2.SESSION_STATE_RUNNING),
    )


def list_sessions(world: World, caller: Caller, allow: bool) -> Probe:
    """The caller's sessions: all for the operator, else only those it takes part in."""

    def visible(response: Any) -> bool:
        ids = {s.session_id for s in response.sessions}
        everything = {s.session_id for s in world.server.repository.list_sessions()}
        if caller.column == "operator":
            return ids == everything
        mine = {
            s.session_id
            for s in world.server.repository.list_sessions()
            if s.creator == caller.fingerprint
            or any(i.fingerprint == caller.fingerprint for i in s.invitees)
        }
        return ids == mine and S_RUN in ids

    return Probe(sessions_pb2.ListSessionsRequest(), "", _only(visible))


def watch_session(world: World, caller: Caller, allow: bool) -> Probe:
    """The running session's first snapshot."""
    return Probe(
        sessions_pb2.GetSessionRequest(session_id=S_RUN),
        S_RUN,
        _only(lambda r: r.session_id == S_RUN),
        first_only=True,
    )


def register_node_key(world: World, caller: Caller, allow: bool) -> Probe:
    """A fresh SuperNode key for the running session, signed by the caller."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from fedtune.orchestrator.node_keys import sign_node_key

    key = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return Probe(
        sessions_pb2.RegisterNodeKeyRequest(
            session_id=S_RUN, public_key=key, signature=sign_node_key(caller.identity, S_RUN, key)
        ),
        S_RUN,
        _only(
            lambda r: any(
                p.fingerprint == caller.fingerprint and p.node_key.public_key == key
                for p in r.participants
            )
        ),
    )


def record_round_events(world: World, caller: Caller, allow: bool) -> Probe:
    """A round-start event of the running session (a refused caller would have audited one)."""
    return Probe(
        sessions_pb2.RecordRoundEventsRequest(
            session_id=S_RUN,
            events=[sessions_pb2.RoundEvent(kind=sessions_pb2.ROUND_EVENT_KIND_ROUND_START,
                                            round=1)],
        ),
        S_RUN,
        _only(lambda r: r.recorded == 1),
    )


def put_session_report(world: World, caller: Caller, allow: bool) -> Probe:
    """Store a report of the second running session."""
    return Probe(
        sessions_pb2.PutSessionReportRequest(session_id=S_RUN2, report=report_json(S_RUN2)),
        S_RUN2,
        _only(lambda r: r.session_id == S_RUN2),
    )


def get_session_report(world: World, caller: Caller, allow: bool) -> Probe:
    """The running session's stored report."""
    return Probe(
        sessions_pb2.GetSessionRequest(session_id=S_RUN),
        S_RUN,
        _only(lambda r: r.session_id == S_RUN and b'"session_id":"s-run"' in r.report),
    )


def record_owner_verdict(world: World, caller: Caller, allow: bool) -> Probe:
    """The caller's own verdict on the sandbox of the running session: the simulated sandbox's
    evidence checked against a policy the caller signed (a refused caller would log one)."""
    nonce, public = new_nonce(), RecipientPrivateKey.generate().public_key().to_bytes()
    evidence = world.tee.get_evidence(report_data_for(nonce, public))
    policy = world.policy(caller.identity, version=1)
    verdict = verify(
        evidence,
        policy,
        report_data_for(nonce, public),
        trusted_policy_issuers=[caller.fingerprint],
        now=dt.datetime.now(dt.UTC),
    )
    assert verdict.ok, verdict.failures
    return Probe(
        sessions_pb2.OwnerVerdictRequest(
            session_id=S_RUN,
            stage="reattest",
            ok=True,
            reason="accepted",
            verdict=verdict_message(verdict),
            policy_digest=policy.digest,
            measurement=MEASUREMENT,
        ),
        S_RUN,
        _only(lambda r: r.recorded == 1),
    )


def approve_export(world: World, caller: Caller, allow: bool) -> Probe:
    """The caller's signed approval of the stored adapter. Allowed: a new finished session;
    refused: the finished session only acme approved."""
    sid = world.finished_with_adapter() if allow else S_DONE
    digest = world.adapters[sid].sealed_sha256
    approval = ExportApproval(
        session_id=sid,
        adapter_sha256=digest,
        approver=caller.fingerprint,
        approved_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    return Probe(
        sessions_pb2.ApproveExportRequest(
            session_id=sid,
            approval=_signed(approval.canonical_bytes(), approval.sign(caller.identity)),
        ),
        sid,
        _only(
            lambda r: r.adapter_sha256 == digest
            and caller.fingerprint in {a.fingerprint for a in r.approvals}
            and caller.fingerprint not in {m.fingerprint for m in r.missing}
        ),
    )


def export(world: World, caller: Caller, allow: bool) -> Probe:
    """The session key of the session everyone approved, wrapped to a fresh key of the caller;
    allowed: it opens the stored sealed adapter, whose content MAC is the sandbox's."""
    recipient = RecipientPrivateKey.generate()
    sealed = world.adapters[S_APPROVED]

    def opens_the_adapter(response: Any) -> bool:
        assert response.WhichOneof("outcome") == "granted", response
        granted = response.granted
        raw = unwrap_key(
            granted.wrapped_session_key, recipient, model_id=granted.model_id,
            session_id=S_APPROVED,
        )
        key = DataKey(raw)
        payload = bytes(unseal_to_memory(io.BytesIO(sealed.sealed), key))
        return (
            granted.model_id == f"{MODEL}@1"
            and key.key_id == sealed.key_id
            and granted.adapter_sha256 == sealed.sealed_sha256
            and granted.content_mac == sealed.content_mac == content_mac(key, S_APPROVED, payload)
        )

    return Probe(
        sessions_pb2.ExportRequest(
            session_id=S_APPROVED, recipient_public_key=recipient.public_key().to_bytes()
        ),
        S_APPROVED,
        _only(opens_the_adapter),
    )


# -- AuditLog --------------------------------------------------------------------------------------


def append(world: World, caller: Caller, allow: bool) -> Probe:
    """A well-formed event claiming the caller uploaded something (nobody may append remotely)."""
    event = AuditEvent(
        actor=caller.fingerprint,
        role=AuditRole.PROVIDER,
        action=Action.UPLOAD,
        outcome=Outcome.OK,
        details={"rpc": "forged"},
    )
    return Probe(audit_pb2.AppendRequest(events=[event.leaf()]), "")


def get_checkpoint(world: World, caller: Caller, allow: bool) -> Probe:
    """The latest signed checkpoint."""
    origin = world.server.audit_log.origin
    return Probe(
        audit_pb2.GetCheckpointRequest(), "", _only(lambda r: r.note.startswith(origin + "\n"))
    )


def get_entries(world: World, caller: Caller, allow: bool) -> Probe:
    """The first two leaves."""

    def check(responses: list[Any]) -> None:
        assert [e.index for e in responses] == [0, 1]

    return Probe(audit_pb2.GetEntriesRequest(start=0, end=2), "", check)


def get_inclusion_proof(world: World, caller: Caller, allow: bool) -> Probe:
    """Leaf 0 in the current tree."""
    size = world.server.audit_log.size
    return Probe(
        audit_pb2.GetInclusionProofRequest(index=0, tree_size=size),
        "",
        _only(lambda r: r.tree_size == size and len(r.hashes) > 0),
    )


def get_consistency_proof(world: World, caller: Caller, allow: bool) -> Probe:
    """From size 1 to the current size."""
    size = world.server.audit_log.size
    return Probe(
        audit_pb2.GetConsistencyProofRequest(first_size=1, second_size=size),
        "",
        _only(lambda r: r.second_size == size and len(r.hashes) > 0),
    )


Builder = Callable[[World, Caller, bool], Probe]

PROBES: dict[str, Builder] = {
    "/fedtune.v1.Enrolment/Enrol": enrol,
    "/fedtune.v1.Registry/BeginUpload": begin_upload,
    "/fedtune.v1.Registry/UploadChunks": upload_chunks,
    "/fedtune.v1.Registry/CompleteUpload": complete_upload,
    "/fedtune.v1.Registry/ListModels": list_models,
    "/fedtune.v1.Registry/DescribeModel": describe_model,
    "/fedtune.v1.Registry/GetManifest": get_manifest,
    "/fedtune.v1.Registry/Download": download,
    "/fedtune.v1.Registry/PutSealedAdapter": put_sealed_adapter,
    "/fedtune.v1.Registry/GetSealedAdapter": get_sealed_adapter,
    "/fedtune.v1.KeyBroker/GetBrokerKey": get_broker_key,
    "/fedtune.v1.KeyBroker/RegisterKey": register_key,
    "/fedtune.v1.KeyBroker/SetPolicy": set_policy,
    "/fedtune.v1.KeyBroker/GetPolicy": get_policy,
    "/fedtune.v1.KeyBroker/Challenge": challenge,
    "/fedtune.v1.KeyBroker/Release": release,
    "/fedtune.v1.KeyBroker/GetPublicContext": get_public_context,
    "/fedtune.v1.KeyBroker/Reattest": reattest,
    "/fedtune.v1.Sessions/CreateSession": create_session,
    "/fedtune.v1.Sessions/InviteOwners": invite_owners,
    "/fedtune.v1.Sessions/AcceptSession": accept_session,
    "/fedtune.v1.Sessions/StartSession": start_session,
    "/fedtune.v1.Sessions/FinishSession": finish_session,
    "/fedtune.v1.Sessions/CancelSession": cancel_session,
    "/fedtune.v1.Sessions/GetSession": get_session,
    "/fedtune.v1.Sessions/ListSessions": list_sessions,
    "/fedtune.v1.Sessions/WatchSession": watch_session,
    "/fedtune.v1.Sessions/RegisterNodeKey": register_node_key,
    "/fedtune.v1.Sessions/RecordRoundEvents": record_round_events,
    "/fedtune.v1.Sessions/PutSessionReport": put_session_report,
    "/fedtune.v1.Sessions/GetSessionReport": get_session_report,
    "/fedtune.v1.Sessions/RecordOwnerVerdict": record_owner_verdict,
    "/fedtune.v1.Sessions/ApproveExport": approve_export,
    "/fedtune.v1.Sessions/Export": export,
    "/fedtune.v1.AuditLog/Append": append,
    "/fedtune.v1.AuditLog/GetCheckpoint": get_checkpoint,
    "/fedtune.v1.AuditLog/GetEntries": get_entries,
    "/fedtune.v1.AuditLog/GetInclusionProof": get_inclusion_proof,
    "/fedtune.v1.AuditLog/GetConsistencyProof": get_consistency_proof,
}
