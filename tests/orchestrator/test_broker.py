"""Key broker on a real server: release under an allow_simulated policy, and every refusal."""

from __future__ import annotations

import time

import pytest

from crypto.hpke import RecipientPrivateKey, unwrap_key
from crypto.identity import Identity
from enclave.attest import report_data_for
from enclave.attest.simulated import SimulatedTee
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.errors import ReleaseRefused, RemoteError

from .conftest import (
    Parties,
    audit_events,
    data_key_of,
    release_policy,
    simulated_tee,
    start_server,
    terms_for,
    uploaded,
)


def running_session(parties, tmp_path, *, allow_simulated=True, measurement=None):
    provider = parties.enrol(Role.PROVIDER, "acme")
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    art = uploaded(provider, tmp_path)
    tee = simulated_tee(tmp_path)
    policy = release_policy(
        provider, "acme/base", tee, allow_simulated=allow_simulated, measurement=measurement
    )
    provider.client.register_key("acme/base", "1", data_key_of(provider, art), policy)
    terms = terms_for("s1", provider, [alice, bob])
    provider.client.create_session(
        terms, provider.identity, [alice.identity.public.raw, bob.identity.public.raw]
    )
    provider.client.invite(terms, provider.identity)
    alice.client.accept("s1", alice.identity)
    bob.client.accept("s1", bob.identity)
    provider.client.start_session("s1")
    return provider, alice, bob, art, tee


def attempt(party, tee, *, nonce=None, key=None, bind_key=None):
    eph = key or RecipientPrivateKey.generate()
    pub = eph.public_key().to_bytes()
    nonce = nonce or party.client.challenge("s1")
    evidence = tee.get_evidence(report_data_for(nonce, bind_key or pub))
    resp = party.client.release_raw(
        "s1", SecretKind.MODEL_DATA_KEY, evidence.canonical_bytes(), pub, nonce
    )
    return resp, eph, nonce


def failed_checks(resp):
    assert resp.WhichOneof("outcome") == "refused"
    return {c.name for c in resp.refused.verdict.checks if c.status == "failed"}


def test_release_with_valid_simulated_evidence(parties, tmp_path):
    provider, alice, _, art, tee = running_session(parties, tmp_path)
    resp, eph, _ = attempt(alice, tee)
    assert resp.WhichOneof("outcome") == "released"
    key = unwrap_key(resp.released.wrapped_secret, eph, model_id="acme/base@1", session_id="s1")
    assert key == data_key_of(provider, art).raw
    # Sealed to that ephemeral key, bound to this session: another key or session cannot open it.
    with pytest.raises(Exception):
        unwrap_key(
            resp.released.wrapped_secret,
            RecipientPrivateKey.generate(),
            model_id="acme/base@1",
            session_id="s1",
        )
    with pytest.raises(Exception):
        unwrap_key(resp.released.wrapped_secret, eph, model_id="acme/base@1", session_id="s2")
    released = [e for e in audit_events(parties.server) if e.action == "key-release"]
    assert released[-1].outcome == "ok" and released[-1].verdict["ok"] is True


def test_wrong_measurement_is_refused(parties, tmp_path):
    # The policy pins another build than the one the sandbox runs.
    _, alice, _, _, tee = running_session(parties, tmp_path, measurement=b"\x01" * 48)
    resp, _, _ = attempt(alice, tee)
    assert failed_checks(resp) == {"policy.measurement"}
    assert resp.refused.verdict.kind == "simulated"


def test_evidence_from_an_unpinned_platform_is_refused(parties, tmp_path):
    _, alice, _, _, _ = running_session(parties, tmp_path)
    resp, _, _ = attempt(alice, SimulatedTee(Identity.generate()))
    failed = failed_checks(resp)
    assert failed and all(name.startswith("simulated.") for name in failed), failed


def test_measurement_mismatch_alone_is_refused(parties, tmp_path):
    _, alice, _, _, tee = running_session(parties, tmp_path)
    wrong = SimulatedTee(tee._key, measurement=b"\x07" * 48)
    resp, _, _ = attempt(alice, wrong)
    assert failed_checks(resp) == {"policy.measurement"}
    with pytest.raises(ReleaseRefused, match=r"policy\.measurement"):
        nonce = alice.client.challenge("s1")
        eph = RecipientPrivateKey.generate().public_key().to_bytes()
        alice.client.release(
            "s1",
            SecretKind.MODEL_DATA_KEY,
            wrong.get_evidence(report_data_for(nonce, eph)).canonical_bytes(),
            eph,
            nonce,
        )
    refusal = [e for e in audit_events(parties.server) if e.action == "key-release"][-1]
    assert refusal.outcome == "refused" and refusal.verdict["first_failure"] == "policy.measurement"


def test_replayed_nonce_is_refused(parties, tmp_path):
    _, alice, _, _, tee = running_session(parties, tmp_path)
    first, _, nonce = attempt(alice, tee)
    assert first.WhichOneof("outcome") == "released"
    again, _, _ = attempt(alice, tee, nonce=nonce)
    assert failed_checks(again) == {"broker.nonce"}
    assert "replay" in again.refused.reason


def test_nonce_of_another_owner_is_refused(parties, tmp_path):
    _, alice, bob, _, tee = running_session(parties, tmp_path)
    nonce = alice.client.challenge("s1")
    resp, _, _ = attempt(bob, tee, nonce=nonce)
    assert failed_checks(resp) == {"broker.nonce"}


def test_report_data_not_binding_the_presented_key_is_refused(parties, tmp_path):
    _, alice, _, _, tee = running_session(parties, tmp_path)
    attacker = RecipientPrivateKey.generate().public_key().to_bytes()
    # Evidence binds the sandbox's key, but the request presents another key.
    resp, _, _ = attempt(alice, tee, bind_key=attacker)
    assert failed_checks(resp) == {"policy.report_data"}


def test_production_policy_refuses_simulated_evidence(parties, tmp_path):
    _, alice, _, _, tee = running_session(parties, tmp_path, allow_simulated=False)
    resp, _, _ = attempt(alice, tee)
    failed = failed_checks(resp)
    assert "policy.kind" in failed and "policy.simulated" in failed


def test_expired_nonce_is_refused(deployment, tmp_path):
    server = start_server(deployment.root, nonce_ttl_s=1)
    parties = Parties(server, deployment, tmp_path)
    try:
        _, alice, _, _, tee = running_session(parties, tmp_path)
        nonce = alice.client.challenge("s1")
        time.sleep(1.2)
        resp, _, _ = attempt(alice, tee, nonce=nonce)
        assert failed_checks(resp) == {"broker.nonce"}
        assert "expired" in resp.refused.reason
    finally:
        parties.close()
        server.stop(0)


def test_release_needs_an_accepted_owner_of_a_running_session(parties, tmp_path):
    provider, alice, _, _, tee = running_session(parties, tmp_path)
    carol = parties.enrol(Role.DATA_OWNER, "carol")
    with pytest.raises(RemoteError) as err:
        carol.client.challenge("s1")
    assert err.value.code == "PERMISSION_DENIED" and "not an invited" in err.value.details
    nonce = alice.client.challenge("s1")
    provider.client.cancel_session("s1", "stop")
    with pytest.raises(RemoteError) as err:
        attempt(alice, tee, nonce=nonce)
    assert err.value.code == "PERMISSION_DENIED" and "cancelled" in err.value.details


def test_policy_downgrade_and_foreign_policy_are_refused(parties, tmp_path):
    provider, _, _, _, tee = running_session(parties, tmp_path)
    rival = parties.enrol(Role.PROVIDER, "rival")
    v2 = release_policy(provider, "acme/base", tee, version=2)
    assert provider.client.set_policy("acme/base", v2).version == 2
    with pytest.raises(RemoteError) as err:
        provider.client.set_policy("acme/base", release_policy(provider, "acme/base", tee))
    assert err.value.code == "FAILED_PRECONDITION" and "higher version" in err.value.details
    assert provider.client.get_policy("acme/base").version == 2
    with pytest.raises(RemoteError) as err:
        rival.client.set_policy("acme/base", release_policy(rival, "acme/base", tee, version=3))
    assert err.value.code == "PERMISSION_DENIED"
    # A policy for another model name is refused.
    with pytest.raises(RemoteError, match="guards"):
        provider.client.set_policy("acme/base", release_policy(provider, "other", tee, version=3))


def test_register_key_checks_the_manifest_key_id(parties, tmp_path):
    from crypto.datakey import DataKey

    provider = parties.enrol(Role.PROVIDER, "acme")
    uploaded(provider, tmp_path)
    tee = simulated_tee(tmp_path)
    with pytest.raises(RemoteError) as err:
        provider.client.register_key(
            "acme/base", "1", DataKey.generate(), release_policy(provider, "acme/base", tee)
        )
    assert err.value.code == "INVALID_ARGUMENT" and "manifest" in err.value.details
