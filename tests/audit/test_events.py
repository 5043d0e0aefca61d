"""Audit events: the canonical leaf encoding, and every rule an event must satisfy."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from enclave.attest.verdict import Check, Verdict
from fedtune.audit import Action, AuditEvent, InvalidEventError, ObjectIds, Outcome, Role
from fedtune.audit.events import verdict_summary

FP = "ed25519:" + "ab" * 32
PARTY = "ed25519:" + "cd" * 32
WHEN = dt.datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=dt.UTC)

# The documented leaf format, spelled out byte for byte: sorted keys, no spaces, nulls kept,
# time always with six fractional digits and 'Z'.
PINNED_LEAF = (
    '{"action":"key-release","actor":"' + FP + '","details":{"attempt":2},'
    '"objects":{"artifact":null,"key":"dk-7","model":"acme/base@1","party":"' + PARTY + '",'
    '"policy":"pol-3","round":null},"outcome":"refused","reason":"measurement not allowed",'
    '"reference":"req-42","role":"system","session":"sess-9","time":"2026-03-01T12:00:00.000005Z",'
    '"v":1,"verdict":{"kind":"sev-snp","ok":false}}'
).encode()


def pinned_event() -> AuditEvent:
    return AuditEvent(
        time=WHEN,
        actor=FP,
        role=Role.SYSTEM,
        action=Action.KEY_RELEASE,
        outcome=Outcome.REFUSED,
        session="sess-9",
        objects=ObjectIds(model="acme/base@1", party=PARTY, policy="pol-3", key="dk-7"),
        verdict={"kind": "sev-snp", "ok": False},
        reason="measurement not allowed",
        reference="req-42",
        details={"attempt": 2},
    )


def test_leaf_encoding_is_pinned():
    event = pinned_event()
    assert event.leaf() == PINNED_LEAF
    assert AuditEvent.from_leaf(PINNED_LEAF) == event
    assert event.refused


def test_time_is_normalised_to_utc_with_microseconds():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    event = AuditEvent(
        time=dt.datetime(2026, 3, 1, 14, 0, tzinfo=plus_two),
        actor=FP,
        role="auditor",
        action="evaluation",
    )
    assert json.loads(event.leaf())["time"] == "2026-03-01T12:00:00.000000Z"
    with pytest.raises(ValidationError, match="timezone-aware"):
        AuditEvent(time=dt.datetime(2026, 3, 1), actor=FP, role="auditor", action="evaluation")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"action": "download"}, "action"),  # closed set: unknown actions refused
        ({"role": "admin"}, "role"),
        ({"outcome": "maybe"}, "outcome"),
        ({"actor": "alice"}, "actor"),
        ({"actor": "ed25519:" + "AB" * 32}, "actor"),
        ({"outcome": "refused"}, "needs a reason"),
        ({"outcome": "failed"}, "needs a reason"),
        ({"action": "refusal", "reason": "no"}, "refusal event"),
        ({"actor": "anonymous"}, "go together"),
        ({"role": "anonymous"}, "go together"),
        ({"session": "has space"}, "session"),
        ({"session": "x" * 257}, "session"),
        ({"reason": ""}, "reason"),
        ({"details": {"Bad Key": 1}}, "details"),
        ({"details": {f"k{i}": i for i in range(33)}}, "at most 32"),
        ({"details": {"x": "y" * 1025}}, "longer than"),
        ({"details": {"loss": float("nan")}}, "details"),
        ({"details": {"nested": {"a": 1}}}, "details"),
        ({"objects": {"round": -1}}, "round"),
        ({"objects": {"unknown": "x"}}, "unknown"),
        ({"v": 2}, "v"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_events_are_refused(changes: dict, why: str):
    fields = {"time": WHEN, "actor": FP, "role": "operator", "action": "session-start"}
    fields.update(changes)
    with pytest.raises(ValidationError, match=why):
        AuditEvent(**fields)


def test_anonymous_refusal_is_representable():
    event = AuditEvent(
        time=WHEN,
        actor="anonymous",
        role="anonymous",
        action="refusal",
        outcome="refused",
        reason="no client certificate",
    )
    assert AuditEvent.from_leaf(event.leaf()).actor == "anonymous"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.replace(b'"action":"key-release"', b'"action": "key-release"'),  # spacing
        lambda b: b.replace(b'"reason":"measurement not allowed",', b"").replace(
            b'"action":"key-release",',
            b'"action":"key-release","reason":"measurement not allowed",',
        ),  # key order
        lambda b: b.replace(b".000005Z", b".000005+00:00"),  # another spelling of the time
        lambda b: b.replace(b'"attempt":2', b'"attempt":2e0'),  # exponent spelling
        lambda b: b.replace(b'"dk-7"', b'"dk\\u002d7"'),  # escaped character
        lambda b: b + b"\n",
        lambda b: b.replace(b'"key-release"', b'"key-relase"'),
        lambda b: b"\xef\xbb\xbf" + b,  # BOM
        lambda b: b"not json",
    ],
)
def test_non_canonical_or_invalid_leaves_are_refused(mutate):
    with pytest.raises(InvalidEventError):
        AuditEvent.from_leaf(mutate(PINNED_LEAF))


def test_from_leaf_type_check():
    with pytest.raises(TypeError):
        AuditEvent.from_leaf(PINNED_LEAF.decode())  # type: ignore[arg-type]


def test_verdict_summary_from_a_real_verdict():
    verdict = Verdict(
        kind="simulated",
        checks=[
            Check.passed("simulated.signature", "signed by the platform key"),
            Check.failed("policy.measurement", "not in the allow-list", expected="aa", got="bb"),
        ],
        evaluated_at=WHEN,
        policy_fingerprint="pol-1",
    )
    summary = verdict_summary(verdict)
    assert summary == {
        "kind": "simulated",
        "ok": False,
        "checks": 2,
        "failed": 1,
        "first_failure": "policy.measurement",
        "first_failure_reason": "not in the allow-list",
        "policy": "pol-1",
        "evaluated_at": "2026-03-01T12:00:00.000005Z",
    }
    event = AuditEvent(
        time=WHEN,
        actor=FP,
        role="system",
        action="attestation-verdict",
        outcome="refused",
        reason="attestation failed policy.measurement",
        verdict=summary,
    )
    assert AuditEvent.from_leaf(event.leaf()).verdict == summary
    with pytest.raises(TypeError):
        verdict_summary({"kind": "x"})
