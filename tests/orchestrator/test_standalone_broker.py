"""The key broker standalone at the provider's site, against a real orchestrator."""

from __future__ import annotations

import pytest

from crypto.hpke import RecipientPrivateKey, unwrap_key
from enclave.attest import report_data_for
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.standalone import StandaloneBroker, broker_client, init_broker
from fedtune.orchestrator.terms import SessionTerms

from .conftest import data_key_of, release_policy, simulated_tee, terms_for, uploaded


@pytest.fixture
def standalone(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    info = init_broker(tmp_path / "broker", provider_home=provider.home, host="127.0.0.1", port=0)
    broker = StandaloneBroker(tmp_path / "broker")
    port = broker.start()
    ref = info.ref.model_copy(update={"address": f"127.0.0.1:{port}"})
    try:
        yield provider, broker, ref
    finally:
        broker.stop(0)


def _session(parties, provider, owners, ref, sid):
    terms = SessionTerms.model_validate(
        terms_for(sid, provider, owners).model_dump() | {"key_broker": ref.model_dump()}
    )
    provider.client.create_session(
        terms, provider.identity, [o.identity.public.raw for o in owners]
    )
    provider.client.invite(terms, provider.identity)
    for o in owners:
        o.client.accept(sid, o.identity)
    provider.client.start_session(sid)


def test_release_from_the_providers_own_broker(parties, tmp_path, standalone):
    provider, _, ref = standalone
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    art = uploaded(provider, tmp_path)
    tee = simulated_tee(tmp_path)
    with broker_client(provider.config, ref) as own:
        assert own.broker_key().fingerprint == ref.public_key_sha256
        own.register_key(
            "acme/base", "1", data_key_of(provider, art), release_policy(provider, "acme/base", tee)
        )
    _session(parties, provider, [alice, bob], ref, "sb")
    eph = RecipientPrivateKey.generate()
    pub = eph.public_key().to_bytes()
    with broker_client(alice.config, ref) as at_provider:
        nonce = at_provider.challenge("sb")
        wrapped = at_provider.release(
            "sb",
            SecretKind.MODEL_DATA_KEY,
            tee.get_evidence(report_data_for(nonce, pub)).canonical_bytes(),
            pub,
            nonce,
        )
    assert (
        unwrap_key(wrapped, eph, model_id="acme/base@1", session_id="sb")
        == data_key_of(provider, art).raw
    )
    # The orchestrator never held this key: its own broker refuses.
    nonce = alice.client.challenge("sb")
    resp = alice.client.release_raw(
        "sb",
        SecretKind.MODEL_DATA_KEY,
        tee.get_evidence(report_data_for(nonce, pub)).canonical_bytes(),
        pub,
        nonce,
    )
    assert resp.WhichOneof("outcome") == "refused"
    assert "broker.policy" in resp.refused.reason or "broker.secret" in resp.refused.reason


def test_standalone_broker_refuses_sessions_that_do_not_name_it(parties, tmp_path, standalone):
    provider, _, ref = standalone
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    carol = parties.enrol(Role.DATA_OWNER, "carol")
    uploaded(provider, tmp_path)
    terms = terms_for("plain", provider, [alice, bob])  # the embedded broker
    provider.client.create_session(
        terms, provider.identity, [alice.identity.public.raw, bob.identity.public.raw]
    )
    provider.client.invite(terms, provider.identity)
    for o in (alice, bob):
        o.client.accept("plain", o.identity)
    provider.client.start_session("plain")
    with broker_client(alice.config, ref) as at_provider, pytest.raises(RemoteError) as err:
        at_provider.challenge("plain")
    assert err.value.code == "PERMISSION_DENIED" and "another one" in err.value.details
    _session(parties, provider, [alice, bob], ref, "named")
    with broker_client(carol.config, ref) as outsider, pytest.raises(RemoteError) as err:
        outsider.challenge("named")
    assert err.value.code == "PERMISSION_DENIED"
    # Only the owning provider registers keys there; a data owner may not even try.
    with broker_client(alice.config, ref) as at_provider, pytest.raises(RemoteError) as err:
        at_provider.broker_key()
    assert err.value.code == "PERMISSION_DENIED" and "may not call" in err.value.details
