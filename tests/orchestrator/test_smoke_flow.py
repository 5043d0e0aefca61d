"""End to end on a real server: enrol, upload, session, key release."""

from __future__ import annotations

from crypto.hpke import RecipientPrivateKey, unwrap_key
from enclave.attest import report_data_for
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind

from .conftest import data_key_of, release_policy, simulated_tee, terms_for, uploaded


def test_full_flow(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    art = uploaded(provider, tmp_path)
    tee = simulated_tee(tmp_path)
    policy = release_policy(provider, "acme/base", tee)
    assert provider.client.register_key("acme/base", "1", data_key_of(provider, art), policy) == 1
    terms = terms_for("s1", provider, [alice, bob])
    info = provider.client.create_session(
        terms, provider.identity, [alice.identity.public.raw, bob.identity.public.raw]
    )
    assert info.state == 1
    provider.client.invite(terms, provider.identity)
    alice.client.accept("s1", alice.identity)
    bob.client.accept("s1", bob.identity)
    info = provider.client.start_session("s1")
    assert info.state == 3
    eph = RecipientPrivateKey.generate()
    pub = eph.public_key().to_bytes()
    nonce = alice.client.challenge("s1")
    evidence = tee.get_evidence(report_data_for(nonce, pub))
    wrapped = alice.client.release(
        "s1", SecretKind.MODEL_DATA_KEY, evidence.canonical_bytes(), pub, nonce
    )
    key = unwrap_key(wrapped, eph, model_id="acme/base@1", session_id="s1")
    assert key == data_key_of(provider, art).raw
    out = tmp_path / "dl.sealed"
    assert alice.client.download("acme/base", "1", out) == art.blob_path.stat().st_size
    assert out.read_bytes() == art.blob_path.read_bytes()
