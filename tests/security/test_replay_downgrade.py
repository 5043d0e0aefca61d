"""Replay and downgrade against the real orchestrator: spent, expired and misdirected nonces, old or
rebound evidence, older or foreign release policies, plaintext connections, misused enrolment
tokens and look-alike certificates. Each is refused with a message naming what was wrong, audited
where the server saw the call, and leaves the stored state as it was (DESIGN promise 6)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.hpke import RecipientPrivateKey
from crypto.identity import Identity
from enclave.attest import report_data_for
from enclave.attest.policy import DEFAULT_MAX_EVIDENCE_AGE_S
from fedtune._proto import (
    common_pb2,
    enrolment_pb2,
    enrolment_pb2_grpc,
    key_broker_pb2,
    key_broker_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
)
from fedtune.audit import AuditEvent
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.deployment import read_private
from fedtune.orchestrator.enrolment import SIGNING_CONTEXT as ENROL_CONTEXT
from fedtune.orchestrator.enrolment import EnrolmentRequest, create_token, token_digest
from fedtune.orchestrator.errors import RemoteError
from tests.orchestrator.conftest import data_key_of

from .world import (
    MODEL,
    RELEASE_BOOKKEEPING,
    S_RUN,
    S_RUN2,
    World,
    build_world,
    changed,
    events_since,
    state_digest,
)

NONCE_TTL_S = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(Path(tmp_path_factory.mktemp("replay")), nonce_ttl_s=NONCE_TTL_S)
    try:
        yield w
    finally:
        w.stop()


@dataclass
class Before:
    """The stored state and the audit log's size before an attempt."""

    state: dict[str, str]
    size: int


def before(world: World) -> Before:
    return Before(state_digest(world), world.server.audit_log.size)


def only_event(world: World, mark: Before) -> AuditEvent:
    events = events_since(world, mark.size)
    assert len(events) == 1, [(e.action, e.reason) for e in events]
    return events[0]


def assert_refusal_audited(
    world: World, mark: Before, *, rpc: str, role: str, reason: str
) -> AuditEvent:
    """One refusal event for ``rpc`` by ``role`` whose reason contains ``reason``."""
    event = only_event(world, mark)
    assert (event.action, event.outcome, event.role) == ("refusal", "refused", role)
    assert event.details["rpc"] == rpc and reason in (event.reason or ""), event.reason
    return event


def assert_unchanged(world: World, mark: Before, *, except_: frozenset[str] = frozenset()) -> None:
    moved = changed(mark.state, state_digest(world))
    assert moved <= except_, f"stored state changed: {sorted(moved)}"


# -- nonces and evidence ---------------------------------------------------------------------------


def _attempt(world: World, *, nonce: bytes, evidence_nonce: bytes | None = None, at=None):
    """alice relays evidence bound to (``evidence_nonce`` or ``nonce``, new key) with ``nonce``."""
    public = RecipientPrivateKey.generate().public_key().to_bytes()
    evidence = world.tee.get_evidence(report_data_for(evidence_nonce or nonce, public), now=at)
    return world.alice.client.release_raw(
        S_RUN, SecretKind.MODEL_DATA_KEY, evidence.canonical_bytes(), public, nonce
    )


def _failed(response) -> set[str]:
    assert response.WhichOneof("outcome") == "refused", "the broker released a key"
    return {c.name for c in response.refused.verdict.checks if c.status == "failed"}


def _release_refusal(world: World, mark: Before, check: str) -> AuditEvent:
    event = only_event(world, mark)
    assert (event.action, event.outcome, event.role) == ("key-release", "refused", "data-owner")
    assert event.details["failed_checks"] == check and event.reason.startswith(check), event
    return event


def test_spent_nonce_is_refused_as_a_replay(world: World):
    nonce = world.alice.client.challenge(S_RUN)
    assert _attempt(world, nonce=nonce).WhichOneof("outcome") == "released"
    mark = before(world)
    again = _attempt(world, nonce=nonce)  # fresh evidence, same (spent) nonce
    assert _failed(again) == {"broker.nonce"}
    assert "used already (a replay)" in again.refused.reason
    _release_refusal(world, mark, "broker.nonce")
    assert_unchanged(world, mark)  # a replay is not even recorded as a decision


def test_expired_nonce_is_refused_and_spent(world: World):
    nonce = world.alice.client.challenge(S_RUN)
    time.sleep(NONCE_TTL_S + 0.3)
    mark = before(world)
    response = _attempt(world, nonce=nonce)
    assert _failed(response) == {"broker.nonce"}
    assert "expired; ask for a new challenge" in response.refused.reason
    _release_refusal(world, mark, "broker.nonce")
    # The expired nonce is spent with the refusal recorded; nothing else moved.
    assert_unchanged(world, mark, except_=RELEASE_BOOKKEEPING)
    record = world.server.repository.get_nonce(nonce)
    assert record is not None and record.used_at is not None


@pytest.mark.parametrize("case", ["other-session", "never-issued"])
def test_nonce_not_issued_for_this_release_is_refused(world: World, case: str):
    # (A nonce issued to another owner: tests/orchestrator/test_broker.py.)
    nonce = world.alice.client.challenge(S_RUN2) if case == "other-session" else bytes(32)
    mark = before(world)
    response = _attempt(world, nonce=nonce)
    assert _failed(response) == {"broker.nonce"}
    assert "not issued by Challenge to you for this session" in response.refused.reason
    _release_refusal(world, mark, "broker.nonce")
    assert_unchanged(world, mark)  # not consumed: it was never this release's nonce


def test_evidence_for_an_earlier_nonce_is_refused_with_a_fresh_one(world: World):
    old = world.alice.client.challenge(S_RUN)
    assert _attempt(world, nonce=old).WhichOneof("outcome") == "released"
    fresh = world.alice.client.challenge(S_RUN)
    mark = before(world)
    response = _attempt(world, nonce=fresh, evidence_nonce=old)
    assert _failed(response) == {"policy.report_data"}
    _release_refusal(world, mark, "policy.report_data")
    assert_unchanged(world, mark, except_=RELEASE_BOOKKEEPING)


@pytest.mark.parametrize(
    ("offset_s", "words"),
    [
        (-(DEFAULT_MAX_EVIDENCE_AGE_S + 60), "the evidence is stale"),
        (3600, "dated in the future"),
    ],
    ids=["older-than-max-age", "dated-in-the-future"],
)
def test_evidence_outside_the_policys_age_window_is_refused(
    world: World, offset_s: int, words: str
):
    nonce = world.alice.client.challenge(S_RUN)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    mark = before(world)
    response = _attempt(world, nonce=nonce, at=at)
    assert _failed(response) == {"policy.age"}
    assert words in response.refused.reason
    _release_refusal(world, mark, "policy.age")
    assert_unchanged(world, mark, except_=RELEASE_BOOKKEEPING)


# -- release policies ------------------------------------------------------------------------------


def test_older_policy_after_a_newer_one_is_refused_and_the_newer_stays(world: World):
    acme = world.acme
    newer = world.policy_version() + 1
    acme.client.set_policy(MODEL, world.policy(acme.identity, version=newer))
    in_force = world.server.repository.get_policy(MODEL)
    attempts = {
        "SetPolicy older": lambda: acme.client.set_policy(
            MODEL, world.policy(acme.identity, version=newer - 1)
        ),
        # Same version number, different document: not an update either.
        "SetPolicy same version": lambda: acme.client.set_policy(
            MODEL,
            world.policy(acme.identity, version=newer)
            .policy.model_copy(update={"allow_debug": True})
            .sign(acme.identity),
        ),
        # A data key registered with an old policy must not roll the policy back with it.
        "RegisterKey older": lambda: acme.client.register_key(
            MODEL,
            "1",
            data_key_of(acme, world.v1),
            world.policy(acme.identity, version=1),
        ),
    }
    for label, attempt in attempts.items():
        mark = before(world)
        with pytest.raises(RemoteError) as err:
            attempt()
        assert err.value.code == "FAILED_PRECONDITION", label
        assert f"is at version {newer}; an update must carry a higher version" in err.value.details
        rpc = label.split()[0]
        assert_refusal_audited(world, mark, rpc=rpc, role="provider", reason="higher version")
        assert_unchanged(world, mark)
        assert world.server.repository.get_policy(MODEL) == in_force, label
    assert acme.client.get_policy(MODEL).version == newer
    assert acme.client.describe_model(MODEL).policy_version == newer


@pytest.mark.parametrize("case", ["rival-as-issuer", "acme-as-issuer-rival-signature"])
def test_policy_not_signed_by_the_models_provider_is_refused(world: World, case: str):
    # (The rival submitting with its own certificate: the matrix cell SetPolicy-provider-unrelated.)
    acme, rival = world.acme, world.rival
    version = world.policy_version() + 1
    if case == "rival-as-issuer":
        signed = world.policy(rival.identity, version=version)
        document, signature = signed.policy.canonical_bytes(), signed.signature
    else:
        policy = world.policy(acme.identity, version=version).policy
        document = policy.canonical_bytes()
        signature = rival.identity.sign(document, context="release-policy")
    mark = before(world)
    with pytest.raises(grpc.RpcError) as err:
        key_broker_pb2_grpc.KeyBrokerStub(acme.client.channel).SetPolicy(
            key_broker_pb2.SetPolicyRequest(
                model_name=MODEL,
                policy=common_pb2.SignedDocument(canonical=document, signature=signature),
            ),
            timeout=20,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    want = f"policy: the signature does not verify under {acme.fingerprint}"
    assert err.value.details().startswith(want), err.value.details()
    assert_refusal_audited(world, mark, rpc="SetPolicy", role="provider", reason=want)
    assert_unchanged(world, mark)
    assert world.policy_version() == version - 1


# -- transport and identity ------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["api", "enrolment"])
def test_plaintext_grpc_is_refused_at_the_transport(world: World, port: str):
    token = create_token(
        world.server.repository,
        Role.DATA_OWNER,
        world.new_id("plain"),
        ttl=dt.timedelta(hours=1),
        now=dt.datetime.now(dt.UTC),
    )
    number = world.server.api_port if port == "api" else world.server.enrol_port
    mark = before(world)
    with grpc.insecure_channel(f"127.0.0.1:{number}") as channel:
        with pytest.raises(grpc.RpcError) as listed:
            registry_pb2_grpc.RegistryStub(channel).ListModels(
                registry_pb2.ListModelsRequest(), timeout=10
            )
        with pytest.raises(grpc.RpcError) as enrolled:
            enrolment_pb2_grpc.EnrolmentStub(channel).Enrol(
                _enrol_request(world, token, Identity.generate()), timeout=10
            )
    assert listed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert enrolled.value.code() == grpc.StatusCode.UNAVAILABLE
    assert events_since(world, mark.size) == []  # no handler ran: nothing logged, surely no success
    assert_unchanged(world, mark)
    stored = world.server.repository.get_token(token_digest(token))
    assert stored is not None and stored.used_at is None  # the token never reached the server


def _enrol_request(
    world: World, token: str, identity: Identity, *, csr: bytes | None = None
) -> enrolment_pb2.EnrolRequest:
    canonical = EnrolmentRequest(
        token=token,
        identity=identity.public.raw,
        csr=csr or pki.build_csr(pki.generate_tls_key(), "probe"),
        ca_fingerprint=world.server.info.ca_fingerprint,
        requested_at=dt.datetime.now(dt.UTC),
    ).canonical_bytes()
    return enrolment_pb2.EnrolRequest(
        request=common_pb2.SignedDocument(
            canonical=canonical, signature=identity.sign(canonical, context=ENROL_CONTEXT)
        )
    )


def _enrol_raw(world: World, request: enrolment_pb2.EnrolRequest) -> enrolment_pb2.EnrolResponse:
    with world.plain_tls_channel(world.server.enrol_port) as channel:
        return enrolment_pb2_grpc.EnrolmentStub(channel).Enrol(request, timeout=20)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("reused", "already used"),
        ("expired", "expired at"),
        ("unknown", "unknown enrolment token"),
    ],
)
def test_misused_enrolment_token_is_refused(world: World, case: str, words: str):
    # (Reuse and expiry are also covered, without the state check, in tests/orchestrator.)
    ttl = dt.timedelta(microseconds=1) if case == "expired" else dt.timedelta(hours=1)
    token = create_token(
        world.server.repository,
        Role.DATA_OWNER,
        world.new_id("tok"),
        ttl=ttl,
        now=dt.datetime.now(dt.UTC),
    )
    if case == "reused":
        _enrol_raw(world, _enrol_request(world, token, Identity.generate()))
    if case == "unknown":
        token = "fte1_" + "A" * 43
    mark = before(world)
    with pytest.raises(grpc.RpcError) as err:
        _enrol_raw(world, _enrol_request(world, token, Identity.generate()))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert words in err.value.details() and "ask" in err.value.details()
    assert_refusal_audited(world, mark, rpc="Enrol", role="anonymous", reason=words)
    assert_unchanged(world, mark)


def test_the_token_decides_the_role_whatever_the_request_asks(world: World):
    token = create_token(
        world.server.repository,
        Role.DATA_OWNER,
        world.new_id("owner"),
        ttl=dt.timedelta(hours=1),
        now=dt.datetime.now(dt.UTC),
    )
    identity, tls = Identity.generate(), pki.generate_tls_key()
    # A CSR that asks for the operator role, in its subject and in the SAN the server reads.
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "operator"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "mallory"),
                ]
            )
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(f"{pki.ROLE_URI_PREFIX}operator"),
                    x509.UniformResourceIdentifier(
                        f"{pki.IDENTITY_URI_PREFIX}{identity.fingerprint}"
                    ),
                ]
            ),
            critical=False,
        )
        .sign(tls, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    response = _enrol_raw(world, _enrol_request(world, token, identity, csr=csr))
    assert response.role == "data-owner"
    cert = pki.cert_from_pem(response.certificate_pem.encode())
    assert pki.principal_from_certificate(cert).role is Role.DATA_OWNER
    uris = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert [u for u in uris if u.startswith(pki.ROLE_URI_PREFIX)] == ["fedtune:role:data-owner"]

    mark = before(world)
    with (
        _channel(world, response.certificate_pem.encode(), tls) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        sessions_pb2_grpc.SessionsStub(channel).FinishSession(
            sessions_pb2.FinishSessionRequest(session_id=S_RUN2, reason="mallory"), timeout=20
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "role data-owner may not call it (allowed: operator)" in err.value.details()
    assert_refusal_audited(
        world, mark, rpc="FinishSession", role="data-owner", reason="role data-owner"
    )
    assert_unchanged(world, mark)


def _channel(world: World, cert_pem: bytes, tls: ec.EllipticCurvePrivateKey) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(world.root / "ca" / "ca.pem").read_bytes(),
        private_key=pki.key_to_pem(tls),
        certificate_chain=cert_pem,
    )
    return grpc.secure_channel(f"127.0.0.1:{world.server.api_port}", credentials)


def _certificate(
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    fingerprint: str,
    role: str,
    serial: int | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """A client certificate shaped like the deployment's, bound to ``fingerprint`` and ``role``."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(pki.IDENTITY_URI_PREFIX + fingerprint),
                    x509.UniformResourceIdentifier(pki.ROLE_URI_PREFIX + role),
                ]
            ),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )


@pytest.mark.parametrize("case", ["look-alike-ca", "self-signed", "other-deployment-ca"])
def test_certificate_with_the_right_san_but_another_issuer_is_refused(world: World, case: str):
    """acme's identity with the operator role in the SAN, signed by anything but our CA key."""
    tls = pki.generate_tls_key()
    ours = pki.cert_from_pem((world.root / "ca" / "ca.pem").read_bytes())
    if case == "look-alike-ca":
        # Same subject name as our CA ("fedtune deployment CA"), another key.
        key, ca = pki.create_ca("fedtune deployment CA", now=dt.datetime.now(dt.UTC))
        assert ca.subject == ours.subject
        signer, issuer = key, ca.subject
    elif case == "self-signed":
        signer, issuer = tls, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")])
    else:
        other = world.tmp / "other-deployment" / "ca"
        signer = pki.key_from_pem(read_private(other / "ca.key"))
        issuer = pki.cert_from_pem((other / "ca.pem").read_bytes()).subject
    cert = _certificate(
        signer, issuer, tls.public_key(), fingerprint=world.acme.fingerprint, role="operator"
    )
    mark = before(world)
    with (
        _channel(world, pki.cert_to_pem(cert), tls) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        sessions_pb2_grpc.SessionsStub(channel).FinishSession(
            sessions_pb2.FinishSessionRequest(session_id=S_RUN2, reason="forged"), timeout=20
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake refuses it
    assert events_since(world, mark.size) == []
    assert_unchanged(world, mark)


@pytest.mark.parametrize("tampered", ["role", "identity"])
def test_ca_signed_certificate_with_a_tampered_san_is_refused(world: World, tampered: str):
    """Defence in depth: even our CA's signature (a misused CA key) does not make a party. The
    SAN of acme's issued certificate is re-signed with another role or identity, same serial."""
    acme = world.acme
    issued = pki.cert_from_pem(acme.config.certificate.read_bytes())
    tls = pki.key_from_pem(acme.config.tls_key.read_bytes())
    # acme has called before, so its serial is one the interceptor has already seen.
    acme.client.list_models()
    ca_key = pki.key_from_pem(read_private(world.root / "ca" / "ca.key"))
    ca = pki.cert_from_pem((world.root / "ca" / "ca.pem").read_bytes())
    fingerprint = world.rival.fingerprint if tampered == "identity" else acme.fingerprint
    role = "operator" if tampered == "role" else "provider"
    cert = _certificate(
        ca_key,
        ca.subject,
        tls.public_key(),
        fingerprint=fingerprint,
        role=role,
        serial=issued.serial_number,
        subject=issued.subject,
    )
    mark = before(world)
    with (
        _channel(world, pki.cert_to_pem(cert), tls) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        sessions_pb2_grpc.SessionsStub(channel).FinishSession(
            sessions_pb2.FinishSessionRequest(session_id=S_RUN2, reason="tampered"), timeout=20
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    assert "not issued by this deployment" in err.value.details()
    event = assert_refusal_audited(
        world, mark, rpc="FinishSession", role=role, reason="not issued by this deployment"
    )
    assert event.actor == fingerprint  # who the certificate claimed to be
    assert_unchanged(world, mark)
