"""The orchestrator's side of the data plane, on a real server: SuperNode keys, round events,
session reports, and the CKKS contexts the key broker makes and releases."""

from __future__ import annotations

import datetime as dt
import io

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from crypto.ckks import add_encrypted, decrypt_average, encrypt_update, load_context
from crypto.hpke import RecipientPrivateKey
from enclave.attest import report_data_for
from enclave.sandbox.keys import open_ckks_context
from fedtune._proto import sessions_pb2
from fedtune.audit import AuditEvent
from fedtune.federated.participants import SessionCheckError, verify_session
from fedtune.federated.report_model import SessionReport
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.node_keys import sign_node_key
from fedtune.orchestrator.terms import SessionTerms

from .conftest import (
    audit_events,
    data_key_of,
    release_policy,
    simulated_tee,
    terms_for,
    uploaded,
)

K = sessions_pb2


def _node_key(curve: ec.EllipticCurve | None = None) -> bytes:
    key = ec.generate_private_key(curve or ec.SECP384R1())
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def _session(parties, tmp_path, *, aggregation: str = "secagg", sid: str = "s1"):
    provider = parties.enrol(Role.PROVIDER, "acme")
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    art = uploaded(provider, tmp_path)
    tee = simulated_tee(tmp_path)
    provider.client.register_key(
        "acme/base", "1", data_key_of(provider, art), release_policy(provider, "acme/base", tee)
    )
    terms = terms_for(sid, provider, [alice, bob])
    if aggregation == "ckks":
        terms = SessionTerms.model_validate(
            terms.model_dump() | {"aggregation": "ckks", "secagg_threshold": None}
        )
    provider.client.create_session(
        terms, provider.identity, [alice.identity.public.raw, bob.identity.public.raw]
    )
    provider.client.invite(terms, provider.identity)
    alice.client.accept(sid, alice.identity)
    bob.client.accept(sid, bob.identity)
    provider.client.start_session(sid)
    return provider, alice, bob, tee


def _refused(call, code: str) -> RemoteError:
    try:
        call()
    except RemoteError as error:
        assert error.code == code, error
        return error
    except grpc.RpcError as error:  # a raw stub call
        assert error.code().name == code, error
        return RemoteError("raw", error.code().name, error.details() or "")
    raise AssertionError(f"the call succeeded; expected {code}")


# -- SuperNode keys ---------------------------------------------------------------------------


def test_an_owner_names_its_supernode_and_the_aggregator_can_check_it(parties, tmp_path, server):
    _provider, alice, bob, _ = _session(parties, tmp_path)
    key = _node_key()
    info = alice.client.register_node_key("s1", key, alice.identity)
    mine = next(p for p in info.participants if p.fingerprint == alice.fingerprint)
    assert mine.node_key.public_key == key.strip()
    verified = verify_session(parties.operator().client.get_session("s1"))
    assert {o.fingerprint: o.node_key for o in verified.owners} == {
        alice.fingerprint: key.decode().strip(), bob.fingerprint: ""}
    joins = [e for e in audit_events(server[0]) if e.action.value == "join"]
    assert [(e.objects.party, e.details["step"]) for e in joins] == [
        (alice.fingerprint, "supernode-key")]


def test_node_keys_are_refused_when_wrong(parties, tmp_path) -> None:
    _provider, alice, bob, _ = _session(parties, tmp_path)
    key = _node_key()
    # Signed by another identity than the caller's.
    request = K.RegisterNodeKeyRequest(
        session_id="s1", public_key=key, signature=sign_node_key(bob.identity, "s1", key))
    _refused(lambda: alice.client.sessions.RegisterNodeKey(request, timeout=10),
             "INVALID_ARGUMENT")
    # Signed for another session.
    request = K.RegisterNodeKeyRequest(
        session_id="s1", public_key=key, signature=sign_node_key(alice.identity, "s2", key))
    _refused(lambda: alice.client.sessions.RegisterNodeKey(request, timeout=10),
             "INVALID_ARGUMENT")
    # Not an EC key on a NIST curve (Flower would not admit it).
    ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    for bad in (ed, b"ssh-rsa AAAA", b""):
        request = K.RegisterNodeKeyRequest(session_id="s1", public_key=bad, signature=b"x" * 64)
        error = _refused(lambda r=request: alice.client.sessions.RegisterNodeKey(r, timeout=10),
                         "INVALID_ARGUMENT")
        assert error.details.startswith("public_key")
    assert "NIST" in _refused(
        lambda: alice.client.sessions.RegisterNodeKey(K.RegisterNodeKeyRequest(
            session_id="s1", public_key=ed, signature=b"x" * 64), timeout=10),
        "INVALID_ARGUMENT").details
    # Two owners cannot name the same SuperNode.
    alice.client.register_node_key("s1", key, alice.identity)
    _refused(lambda: bob.client.register_node_key("s1", key, bob.identity), "ALREADY_EXISTS")


def test_verify_session_refuses_a_node_key_the_owner_did_not_sign(parties, tmp_path) -> None:
    _provider, alice, _, _ = _session(parties, tmp_path)
    alice.client.register_node_key("s1", _node_key(), alice.identity)
    info = parties.operator().client.get_session("s1")
    for participant in info.participants:
        if participant.fingerprint == alice.fingerprint:
            participant.node_key.public_key = _node_key()  # swapped by a man in the middle
    with pytest.raises(SessionCheckError) as caught:
        verify_session(info)
    assert caught.value.check == "node-key"
    info = parties.operator().client.get_session("s1")
    for participant in info.participants:
        if participant.fingerprint == alice.fingerprint:
            participant.acceptance_signature = b"\x00" * 64
    with pytest.raises(SessionCheckError) as caught:
        verify_session(info)
    assert caught.value.check == "acceptance"


# -- round events -----------------------------------------------------------------------------


def test_round_events_become_audit_entries(parties, tmp_path, server) -> None:
    _provider, alice, bob, _ = _session(parties, tmp_path)
    operator = parties.operator()
    digest = "sha256:" + "ab" * 32
    events = [
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_EVALUATION, round=0, party=alice.fingerprint,
                     stage="evaluate-before", metrics={"loss": 1.05, "accuracy": 0.4}),
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_ROUND_START, round=1, details={"sampled": "2"}),
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_DROPOUT, round=1, party=bob.fingerprint,
                     stage="share_keys", reason="Flower error 5 (NODE_UNAVAILABLE)"),
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_EXCLUSION, round=1, party=alice.fingerprint,
                     stage="collect_masked_vectors", reason="wrong-length: 9 words, want 10"),
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_AGGREGATE_COMMIT, round=1, digest=digest),
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_ROUND_FINISH, round=1,
                     metrics={"epsilon": 1.5, "train_loss": 0.9}),
    ]
    before = server[0].audit_log.size
    assert operator.client.record_round_events("s1", events) == 6
    logged = [AuditEvent.from_leaf(e.leaf) for e in
              server[0].audit_log.entries(before, server[0].audit_log.size)]
    got = [(e.action.value, e.outcome.value, e.objects.round, e.objects.party) for e in logged]
    assert got == [
        ("evaluation", "ok", 0, alice.fingerprint),
        ("round-start", "ok", 1, None),
        ("dropout", "failed", 1, bob.fingerprint),
        ("dropout", "refused", 1, alice.fingerprint),
        ("aggregate-commit", "ok", 1, None),
        ("round-finish", "ok", 1, None),
    ]
    assert all(e.actor == operator.fingerprint and e.session == "s1" for e in logged)
    assert logged[0].details["metric.loss"] == 1.05
    assert logged[3].reason == "wrong-length: 9 words, want 10"
    assert logged[4].objects.artifact == digest
    assert logged[5].details["metric.epsilon"] == 1.5


def test_a_dropout_during_the_evaluation_before_round_1_is_recorded(
    parties, tmp_path, server
) -> None:
    # Regression: a drop-out in the round-0 evaluation was refused, crashing the ServerApp.
    _provider, alice, bob, _ = _session(parties, tmp_path)
    operator = parties.operator()
    events = [
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_EVALUATION, round=0, party=alice.fingerprint,
                     stage="evaluate-before", metrics={"loss": 1.0}),
        K.RoundEvent(kind=K.ROUND_EVENT_KIND_DROPOUT, round=0, party=bob.fingerprint,
                     stage="evaluate-before", reason="Flower error 5 (NODE_UNAVAILABLE)"),
    ]
    before = server[0].audit_log.size
    assert operator.client.record_round_events("s1", events) == 2
    logged = [AuditEvent.from_leaf(e.leaf) for e in
              server[0].audit_log.entries(before, server[0].audit_log.size)]
    assert [(e.action.value, e.outcome.value, e.objects.round) for e in logged] == [
        ("evaluation", "ok", 0), ("dropout", "failed", 0)]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (dict(kind=K.ROUND_EVENT_KIND_AGGREGATE_COMMIT, round=0,
              digest="sha256:" + "ab" * 32), "round"),
        (dict(kind=K.ROUND_EVENT_KIND_ROUND_FINISH, round=0), "round"),
        (dict(kind=K.ROUND_EVENT_KIND_DROPOUT, round=1, party="ed25519:" + "0" * 64,
              reason="x"), "party"),
        (dict(kind=K.ROUND_EVENT_KIND_DROPOUT, round=1, reason=""), "party"),
        (dict(kind=K.ROUND_EVENT_KIND_ROUND_START, round=4), "round"),  # terms allow 3
        (dict(kind=K.ROUND_EVENT_KIND_ROUND_START, round=0), "round"),
        (dict(kind=K.ROUND_EVENT_KIND_AGGREGATE_COMMIT, round=1, digest="md5:00"), "digest"),
        (dict(kind=K.ROUND_EVENT_KIND_AGGREGATE_COMMIT, round=1), "digest"),
        (dict(kind=K.ROUND_EVENT_KIND_ROUND_FAILED, round=1), "reason"),
        (dict(kind=K.ROUND_EVENT_KIND_ROUND_FINISH, round=1, metrics={"Bad Name": 1.0}),
         "metrics"),
        (dict(kind=K.ROUND_EVENT_KIND_ROUND_FINISH, round=1, metrics={"eps": float("nan")}),
         "metrics"),
        (dict(kind=K.ROUND_EVENT_KIND_UNSPECIFIED, round=1), "kind"),
    ],
)
def test_a_bad_event_refuses_the_whole_batch(parties, tmp_path, server, event, field) -> None:
    _session(parties, tmp_path)
    operator = parties.operator()
    good = K.RoundEvent(kind=K.ROUND_EVENT_KIND_ROUND_START, round=1)
    size = server[0].audit_log.size
    error = _refused(
        lambda: operator.client.record_round_events("s1", [good, K.RoundEvent(**event)]),
        "INVALID_ARGUMENT",
    )
    assert f"events[1].{field}" in error.details
    # All or nothing: the refusal is on the record, the good event before it is not.
    logged = [AuditEvent.from_leaf(e.leaf) for e in
              server[0].audit_log.entries(size, server[0].audit_log.size)]
    assert [(e.action.value, e.outcome.value) for e in logged] == [("refusal", "refused")]


def test_round_events_only_while_the_session_runs(parties, tmp_path) -> None:
    _provider, *_ = _session(parties, tmp_path)
    operator = parties.operator()
    operator.client.finish_session("s1", reason="done")
    error = _refused(lambda: operator.client.record_round_events(
        "s1", [K.RoundEvent(kind=K.ROUND_EVENT_KIND_ROUND_START, round=1)]),
        "FAILED_PRECONDITION")
    assert "running" in error.details


# -- reports ----------------------------------------------------------------------------------


def _report(sid: str, **changes: object) -> bytes:
    now = dt.datetime.now(dt.UTC)
    values = dict(session_id=sid, model="acme/base@1", aggregation="secagg",
                  task="classification", status="finished", started_at=now, finished_at=now)
    values.update(changes)
    return SessionReport(**values).model_dump_json().encode()


def test_the_report_is_stored_and_read_back_by_participants(parties, tmp_path) -> None:
    provider, alice, bob, _ = _session(parties, tmp_path)
    operator = parties.operator()
    _refused(lambda: alice.client.get_session_report("s1"), "NOT_FOUND")
    operator.client.put_session_report("s1", _report("s1", reason="all good"))
    for party in (provider, alice, bob, operator):
        document = party.client.get_session_report("s1")
        assert SessionReport.model_validate_json(document.report).reason == "all good"
    error = _refused(lambda: operator.client.put_session_report("s1", _report("s2")),
                     "INVALID_ARGUMENT")
    assert "report.session_id" in error.details
    error = _refused(lambda: operator.client.put_session_report("s1", b'{"session_id": 1}'),
                     "INVALID_ARGUMENT")
    assert error.details.startswith("report.")


# -- CKKS -------------------------------------------------------------------------------------


def test_a_ckks_session_gets_contexts_at_start_released_only_to_sandboxes(
    parties, tmp_path, server
) -> None:
    _provider, alice, bob, tee = _session(parties, tmp_path, aggregation="ckks")
    generated = [e for e in audit_events(server[0]) if e.action.value == "key-register"
                 and e.details.get("kind") == "session-ckks-secret"]
    assert len(generated) == 1 and generated[0].session == "s1"
    operator = parties.operator()
    public = operator.client.public_context("s1")
    load_context(public.context, secret=False)
    assert public.key_id == generated[0].details["key_id"]
    assert operator.client.public_context("s1").context == public.context  # made once

    # An attested sandbox of alice gets the key wrapped to it and the sealed secret context.
    ephemeral = RecipientPrivateKey.generate()
    nonce = alice.client.challenge("s1", SecretKind.SESSION_CKKS_SECRET)
    pub = ephemeral.public_key().to_bytes()
    evidence = tee.get_evidence(report_data_for(nonce, pub)).canonical_bytes()
    wrapped, sealed = alice.client.release_secret(
        "s1", SecretKind.SESSION_CKKS_SECRET, evidence, pub, nonce)
    installed = open_ckks_context(wrapped, sealed, ephemeral, model_id="acme/base@1",
                                  session_id="s1")
    assert installed.key_id == public.key_id
    # The pair works: encrypt with the public context, add, decrypt inside.
    import numpy as np

    a, b = np.full(5, 0.5), np.full(5, -0.25)
    total = add_encrypted(public.context, [
        encrypt_update(public.context, a, 2.0, max_weight=10.0),
        encrypt_update(public.context, b, 2.0, max_weight=10.0)])
    average, weight = decrypt_average(installed.context, total, max_weight=10.0)
    assert np.abs(average - 0.125).max() < 1e-5 and weight == pytest.approx(4.0, rel=1e-4)
    # The sealed context alone is useless; the model key's release carries no sealed secret.
    assert b"secret" not in io.BytesIO(sealed).read()[:64]
    nonce = bob.client.challenge("s1")
    evidence = tee.get_evidence(report_data_for(nonce, pub)).canonical_bytes()
    _, none = bob.client.release_secret("s1", SecretKind.MODEL_DATA_KEY, evidence, pub, nonce)
    assert none == b""


def test_a_secure_aggregation_session_has_no_ckks_secret(parties, tmp_path) -> None:
    _provider, alice, *_ = _session(parties, tmp_path)
    error = _refused(lambda: alice.client.challenge("s1", SecretKind.SESSION_CKKS_SECRET),
                     "INVALID_ARGUMENT")
    assert "no CKKS secret" in error.details
    error = _refused(lambda: parties.operator().client.public_context("s1"), "INVALID_ARGUMENT")
    assert "not CKKS" in error.details
