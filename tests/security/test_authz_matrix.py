"""The authorisation matrix (authz_matrix.toml) is complete for the protos and holds on a real
server: every cell is called, an allowed call succeeds, a refused one is refused with a message
naming what is missing, audited, and changes no stored state (DESIGN promises 5 and 6)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from crypto.hpke import RecipientPrivateKey
from enclave._proto import sandbox_pb2
from fedtune.audit import Action, Outcome
from fedtune.orchestrator.authz import ENROLMENT_METHODS, METHOD_ROLES, SERVED_ELSEWHERE

from .matrix import FOREIGN, ROLES, UNAUTHENTICATED, Cell, load_matrix, proto_rpcs, required_keys
from .probes import PROBES, CallResult, Probe, invoke
from .world import S_DONE, World, build_world, changed, events_since, state_digest

MATRIX = load_matrix()
RPCS = proto_rpcs()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(Path(tmp_path_factory.mktemp("authz")))
    try:
        yield w
    finally:
        w.stop()


# -- the table itself ------------------------------------------------------------------------------


def test_matrix_decides_every_cell_the_protos_imply():
    keys = [(c.method, c.caller, c.relation) for c in MATRIX]
    twice = [k for k, n in Counter(keys).items() if n > 1]
    assert not twice, f"cells listed twice: {twice}"
    assert "/fedtune.v1.Registry/Download" in RPCS  # the walk sees the generated stubs
    stale = {c.method for c in MATRIX} - set(RPCS)
    assert not stale, f"authz_matrix.toml lists RPCs no proto declares any more: {sorted(stale)}"
    required = required_keys(RPCS)
    missing = sorted(required - set(keys))
    assert not missing, f"authz_matrix.toml must decide these (method, caller, relation): {missing}"
    # A related/unrelated split where the RPC names no object (or "any" where it does) is wrong.
    assert not set(keys) - required, sorted(set(keys) - required)


def test_the_sandbox_service_is_excluded_explicitly(world: World):
    sandbox = {
        f"/{s.full_name}/{m.name}"
        for s in sandbox_pb2.DESCRIPTOR.services_by_name.values()
        for m in s.methods
    }
    assert sandbox and all(m.startswith("/fedtune.v1.Sandbox/") for m in sandbox)
    assert "fedtune.v1.Sandbox" in SERVED_ELSEWHERE
    assert not sandbox & set(RPCS), "the orchestrator's protos must not declare the sandbox RPCs"
    assert not sandbox & {c.method for c in MATRIX}
    assert not sandbox & set(METHOD_ROLES)
    # Nor does the server answer it: gRPC's own UNIMPLEMENTED, before any handler.
    call = world.operator.client.channel.unary_unary(
        sorted(sandbox)[0],
        request_serializer=lambda _: b"",
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(None, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_every_rpc_has_a_probe():
    assert set(PROBES) == set(RPCS), set(PROBES) ^ set(RPCS)


def test_matrix_and_the_role_table_agree():
    """A role may pass the interceptor's role check exactly where the matrix allows it some cell."""
    for method, roles in METHOD_ROLES.items():
        cells = [c for c in MATRIX if c.method == method]
        allowed = {c.caller for c in cells if c.expected == "allow" and c.caller in ROLES}
        assert allowed == {r.value for r in roles}, (method, allowed, roles)
        anonymous = any(c.caller == UNAUTHENTICATED and c.expected == "allow" for c in cells)
        assert anonymous == (method in ENROLMENT_METHODS), method
        assert all(c.expected == "deny" for c in cells if c.caller == FOREIGN), method


def test_the_report_quotes_the_tables_counts():
    report = Path(__file__).parents[2] / "docs" / "security-tests.md"
    verdicts = Counter(c.expected for c in MATRIX)
    quoted = f"**{len(MATRIX)} cells, {verdicts['allow']} allow, {verdicts['deny']} deny.**"
    assert quoted in report.read_text(), f"update docs/security-tests.md: {quoted}"


# -- every cell against the real server ------------------------------------------------------------


def _assert_refused_in_transport(world: World, result: CallResult, size: int, before: dict) -> None:
    # The TLS handshake refuses the connection: no handler ran, nothing was logged or stored.
    # (With TLS 1.3 the client learns only "Socket closed"; grpcio offers the server no hook to
    # say more or to audit a failed handshake. docs/security-tests.md records this limit.)
    assert result.code == grpc.StatusCode.UNAVAILABLE, (result.code, result.details)
    assert not result.responses
    assert events_since(world, size) == []
    assert changed(before, state_digest(world)) == set()


def _assert_refused_and_audited(
    world: World,
    cell: Cell,
    caller_role: str,
    actor: str,
    probe: Probe,
    result: CallResult,
    size: int,
    before: dict,
) -> None:
    name = RPCS[cell.method].name
    assert not result.responses, "a refused call must not answer anything"
    if cell.method in ENROLMENT_METHODS or caller_role == "anonymous":
        # An RPC of the other port: not served here, and the message says where it is.
        assert result.code == grpc.StatusCode.UNIMPLEMENTED, (result.code, result.details)
        assert result.details.startswith(name) and "enrolment port" in result.details
    else:
        assert result.code == grpc.StatusCode.PERMISSION_DENIED, (result.code, result.details)
        # Names the call, and what is missing: the role, or the relation to the object.
        assert result.details.startswith(f"{name} on "), result.details
        assert f"role {caller_role} may not call it" in result.details or (
            probe.object and probe.object in result.details
        ), result.details
    events = events_since(world, size)
    assert len(events) == 1, [e.action for e in events]
    (event,) = events
    assert (event.action, event.outcome, event.role) == ("refusal", "refused", caller_role)
    assert event.actor == actor
    assert event.details["rpc"] == name and event.reason == result.details
    assert changed(before, state_digest(world)) == set(), "a refused call changed stored state"


@pytest.mark.parametrize("cell", MATRIX, ids=[c.id for c in MATRIX])
def test_cell(world: World, cell: Cell) -> None:
    shape = RPCS[cell.method]
    caller = world.caller(cell.caller, cell.relation)
    allow = cell.expected == "allow"
    probe = PROBES[cell.method](world, caller, allow)

    before, size = state_digest(world), world.server.audit_log.size
    if probe.port == "enrol":
        channel = world.plain_tls_channel(world.server.enrol_port)
    else:
        channel = world.api_channel(caller)
    with channel:
        result = invoke(channel, shape, probe)

    if allow:
        assert result.code == grpc.StatusCode.OK, (result.code, result.details)
        assert probe.check is not None
        probe.check(result.responses)
        refusals = [e for e in events_since(world, size) if e.action == "refusal"]
        assert not refusals, [e.reason for e in refusals]
        return
    if cell.caller == FOREIGN:
        _assert_refused_in_transport(world, result, size, before)
        return
    if cell.caller == UNAUTHENTICATED:
        _assert_refused_in_transport(world, result, size, before)
        # The port that needs no certificate serves nothing but Enrol, and says so.
        size = world.server.audit_log.size
        with world.plain_tls_channel(world.server.enrol_port) as channel:
            result = invoke(channel, shape, probe)
        _assert_refused_and_audited(
            world, cell, "anonymous", "anonymous", probe, result, size, before
        )
        return
    _assert_refused_and_audited(
        world, cell, caller.audit_role, caller.fingerprint, probe, result, size, before
    )


# -- a domain refusal is an answer, not a denial ---------------------------------------------------


@pytest.mark.parametrize("party", ["acme", "alice"])
def test_export_without_every_approval_is_an_answer_not_a_denial(world: World, party: str) -> None:
    # Like a refused release: the caller may ask (its matrix cell is "allow"), the session's
    # state says no. The answer names who must still approve; the log has an export refused,
    # no authorisation refusal; nothing is stored and no key leaves.
    caller = getattr(world, party)
    recipient = RecipientPrivateKey.generate().public_key().to_bytes()
    before, size = state_digest(world), world.server.audit_log.size
    response = caller.client.export(S_DONE, recipient)
    assert response.WhichOneof("outcome") == "refused", response
    assert {(m.fingerprint, m.role) for m in response.refused.missing} == {
        (world.alice.fingerprint, "data-owner"),
        (world.bob.fingerprint, "data-owner"),
    }
    assert response.refused.reason.startswith("missing export approvals from data-owner ")
    events = events_since(world, size)
    assert [(e.action, e.outcome) for e in events] == [(Action.EXPORT, Outcome.REFUSED)]
    (event,) = events
    assert (event.actor, event.session) == (caller.fingerprint, S_DONE)
    assert event.details["rpc"] == "Export" and event.reason == response.refused.reason
    assert changed(before, state_digest(world)) == set()
