"""Sessions on a real server: signed terms, invitations, acceptance, the state machine, watching."""

from __future__ import annotations

import threading

import pytest

from crypto.identity import Identity
from fedtune._proto import sessions_pb2
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.terms import SIGNING_CONTEXT, SessionTerms

from .conftest import audit_events, terms_for, uploaded

S = sessions_pb2


@pytest.fixture
def cast(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    uploaded(provider, tmp_path)
    return provider, alice, bob


def _keys(*owners):
    return [o.identity.public.raw for o in owners]


def test_lifecycle_with_every_transition_recorded(parties, cast):
    provider, alice, bob = cast
    op = parties.operator()
    terms = terms_for("life", provider, [alice, bob])
    info = provider.client.create_session(terms, provider.identity, _keys(alice, bob))
    assert info.state == S.SESSION_STATE_CREATED
    assert info.terms.canonical == terms.canonical_bytes()
    provider_row = next(p for p in info.participants if p.role == "provider")
    assert provider_row.accepted  # the provider's signature on its own proposal
    info = provider.client.invite(terms, provider.identity)
    assert info.state == S.SESSION_STATE_OPEN
    with pytest.raises(RemoteError) as err:
        provider.client.start_session("life")
    assert err.value.code == "FAILED_PRECONDITION" and "not accepted" in err.value.details
    alice.client.accept("life", alice.identity)
    bob.client.accept("life", bob.identity)
    info = op.client.start_session("life", "go")
    assert info.state == S.SESSION_STATE_RUNNING
    info = op.client.finish_session("life", reason="3 rounds done")
    assert info.state == S.SESSION_STATE_FINISHED
    assert [(t.from_state, t.to_state) for t in info.transitions] == [
        (0, S.SESSION_STATE_CREATED),
        (S.SESSION_STATE_CREATED, S.SESSION_STATE_OPEN),
        (S.SESSION_STATE_OPEN, S.SESSION_STATE_RUNNING),
        (S.SESSION_STATE_RUNNING, S.SESSION_STATE_FINISHED),
    ]
    assert info.transitions[-1].actor == op.fingerprint
    assert info.transitions[-1].reason == "3 rounds done"
    actions = [e.action for e in audit_events(parties.server) if e.session == "life"]
    assert actions == [
        "session-create",
        "session-invite",
        "session-accept",
        "session-accept",
        "session-start",
        "session-finish",
    ]


def test_illegal_transitions_are_refused(cast):
    provider, alice, bob = cast
    terms = terms_for("ill", provider, [alice, bob])
    provider.client.create_session(terms, provider.identity, _keys(alice, bob))
    with pytest.raises(RemoteError, match="created to running"):
        provider.client.start_session("ill")
    with pytest.raises(RemoteError, match="only while the session is open"):
        alice.client.accept("ill", alice.identity)
    provider.client.cancel_session("ill", "changed my mind")
    for call in (
        lambda: provider.client.invite(terms, provider.identity),
        lambda: provider.client.cancel_session("ill", "again"),
    ):
        with pytest.raises(RemoteError) as err:
            call()
        assert err.value.code == "FAILED_PRECONDITION" and "cancelled" in err.value.details


def test_operator_finishes_and_may_fail_with_a_reason(parties, cast):
    provider, alice, bob = cast
    op = parties.operator()
    terms = terms_for("f", provider, [alice, bob])
    provider.client.create_session(terms, provider.identity, _keys(alice, bob))
    provider.client.invite(terms, provider.identity)
    with pytest.raises(RemoteError, match="open to failed"):
        op.client.finish_session("f", failed=True, reason="x")
    for o in (alice, bob):
        o.client.accept("f", o.identity)
    provider.client.start_session("f")
    with pytest.raises(RemoteError, match="needs a reason"):
        op.client.finish_session("f", failed=True)
    info = op.client.finish_session("f", failed=True, reason="two owners dropped")
    assert info.state == S.SESSION_STATE_FAILED and info.reason == "two owners dropped"


def test_only_invited_parties_accept_and_only_over_the_current_terms(parties, cast):
    provider, alice, bob = cast
    carol = parties.enrol(Role.DATA_OWNER, "carol")
    terms = terms_for("acc", provider, [alice, bob])
    provider.client.create_session(terms, provider.identity, _keys(alice, bob))
    provider.client.invite(terms, provider.identity)
    with pytest.raises(Exception) as err:
        carol.client.sessions.AcceptSession(
            S.AcceptSessionRequest(
                session_id="acc",
                signature=carol.identity.sign(terms.canonical_bytes(), context=SIGNING_CONTEXT),
            )
        )
    assert err.value.code().name == "PERMISSION_DENIED" and "not invited" in err.value.details()
    # A signature over other bytes (or by another key) is not an acceptance.
    forged = alice.identity.sign(b"other terms", context=SIGNING_CONTEXT)
    with pytest.raises(Exception) as err:
        alice.client.sessions.AcceptSession(
            S.AcceptSessionRequest(session_id="acc", signature=forged)
        )
    assert err.value.code().name == "INVALID_ARGUMENT"
    with pytest.raises(Exception) as err:
        alice.client.sessions.AcceptSession(
            S.AcceptSessionRequest(
                session_id="acc",
                signature=Identity.generate().sign(
                    terms.canonical_bytes(), context=SIGNING_CONTEXT
                ),
            )
        )
    assert err.value.code().name == "INVALID_ARGUMENT"
    # Carol cannot see the session either.
    with pytest.raises(RemoteError) as err:
        carol.client.get_session("acc")
    assert err.value.code == "PERMISSION_DENIED"
    assert [s.session_id for s in carol.client.list_sessions()] == []


def test_invitation_may_only_add_owners_and_resets_acceptances(parties, cast):
    provider, alice, bob = cast
    carol = parties.enrol(Role.DATA_OWNER, "carol")
    terms = terms_for("inv", provider, [alice, bob])
    provider.client.create_session(terms, provider.identity, _keys(alice, bob))
    changed = SessionTerms.model_validate(terms.model_dump() | {"rounds": 99})
    with pytest.raises(RemoteError, match="rounds"):
        provider.client.invite(changed, provider.identity)
    more = SessionTerms.model_validate(
        terms.model_dump()
        | {"invited_owners": sorted([alice.fingerprint, bob.fingerprint, carol.fingerprint])}
    )
    with pytest.raises(RemoteError, match="missing"):
        provider.client.invite(more, provider.identity)  # carol's key not given
    info = provider.client.invite(more, provider.identity, _keys(carol))
    assert {p.fingerprint for p in info.participants if p.role == "data-owner"} == {
        alice.fingerprint,
        bob.fingerprint,
        carol.fingerprint,
    }
    carol.client.accept("inv", carol.identity)


def test_terms_are_validated(cast):
    provider, alice, bob = cast
    with pytest.raises(ValueError, match="secagg_threshold"):
        SessionTerms.model_validate(
            terms_for("v", provider, [alice, bob]).model_dump() | {"secagg_threshold": 5}
        )
    with pytest.raises(ValueError, match="min_participants"):
        terms_for("v", provider, [alice, bob], min_participants=3)
    # The server refuses terms whose provider is not the model's owner.
    rogue = SessionTerms.model_validate(
        terms_for("v", provider, [alice, bob]).model_dump()
        | {
            "provider_fingerprint": alice.fingerprint,
            "invited_owners": sorted([bob.fingerprint, provider.fingerprint]),
        }
    )
    with pytest.raises(RemoteError) as err:
        provider.client.create_session(rogue, provider.identity, _keys(bob, provider))
    assert err.value.code == "INVALID_ARGUMENT"


def test_watch_streams_changes_and_ends_with_the_session(parties, cast):
    provider, alice, bob = cast
    terms = terms_for("w", provider, [alice, bob])
    provider.client.create_session(terms, provider.identity, _keys(alice, bob))
    seen: list[int] = []
    done = threading.Event()

    def watch():
        for info in provider.client.watch_session("w", timeout=30):
            seen.append(info.state)
        done.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    provider.client.invite(terms, provider.identity)
    alice.client.accept("w", alice.identity)
    bob.client.accept("w", bob.identity)
    provider.client.start_session("w")
    provider.client.cancel_session("w", "done watching")
    assert done.wait(20), "the watch did not end with the session"
    assert seen[0] == S.SESSION_STATE_CREATED and seen[-1] == S.SESSION_STATE_CANCELLED
    assert S.SESSION_STATE_RUNNING in seen
