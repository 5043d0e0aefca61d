"""The authorisation table covers every RPC in protos/, and every refused (role, RPC) is refused
by the real server with PERMISSION_DENIED and an audit event."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import grpc
import pytest

import fedtune._proto
from fedtune.orchestrator.authz import ENROLMENT_METHODS, METHOD_ROLES, SERVED_ELSEWHERE, Role

from .conftest import audit_events

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "fedtune" / "v1"
_RPC = re.compile(r"^\s*rpc\s+(\w+)\s*\(", re.MULTILINE)
_SERVICE = re.compile(r"^service\s+(\w+)\s*\{(.*?)^\}", re.MULTILINE | re.DOTALL)


def proto_methods() -> set[str]:
    """Every RPC declared in protos/fedtune/v1/*.proto, as /fedtune.v1.Service/Method."""
    methods = set()
    for proto in PROTOS.glob("*.proto"):
        for service, body in _SERVICE.findall(proto.read_text()):
            if f"fedtune.v1.{service}" in SERVED_ELSEWHERE:
                continue
            methods |= {f"/fedtune.v1.{service}/{rpc}" for rpc in _RPC.findall(body)}
    return methods


def test_every_rpc_in_the_protos_is_in_the_table():
    methods = proto_methods()
    assert "/fedtune.v1.Registry/BeginUpload" in methods  # the parser sees the protos
    missing = methods - set(METHOD_ROLES)
    assert not missing, f"add these RPCs to fedtune/orchestrator/authz.py: {sorted(missing)}"
    stale = set(METHOD_ROLES) - methods
    assert not stale, f"the table names RPCs no proto declares: {sorted(stale)}"


def test_auditors_read_the_log_and_nothing_else():
    for method, roles in METHOD_ROLES.items():
        if Role.AUDITOR in roles:
            assert method.startswith("/fedtune.v1.AuditLog/"), method


def _messages() -> dict[str, type]:
    """Request message classes by fully qualified proto name, from the generated stubs."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(fedtune._proto.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"fedtune._proto.{info.name}")
            for name in dir(module):
                cls = getattr(module, name)
                descriptor = getattr(cls, "DESCRIPTOR", None)
                if (
                    descriptor is not None
                    and hasattr(descriptor, "full_name")
                    and hasattr(cls, "SerializeToString")
                ):
                    found[descriptor.full_name] = cls
    return found


def _method_shapes() -> dict[str, tuple[type, type, bool, bool]]:
    messages = _messages()
    shapes = {}
    for info in pkgutil.iter_modules(fedtune._proto.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"fedtune._proto.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                shapes[f"/{service.full_name}/{m.name}"] = (
                    messages[m.input_type.full_name],
                    messages[m.output_type.full_name],
                    m.client_streaming,
                    m.server_streaming,
                )
    return shapes


def _invoke(
    channel: grpc.Channel, method: str, shape: tuple[type, type, bool, bool]
) -> grpc.RpcError:
    req, resp, client_stream, server_stream = shape
    kw = {"request_serializer": req.SerializeToString, "response_deserializer": resp.FromString}
    try:
        if client_stream and server_stream:
            list(channel.stream_stream(method, **kw)(iter([req()]), timeout=10))
        elif client_stream:
            channel.stream_unary(method, **kw)(iter([req()]), timeout=10)
        elif server_stream:
            list(channel.unary_stream(method, **kw)(req(), timeout=10))
        else:
            channel.unary_unary(method, **kw)(req(), timeout=10)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{method} succeeded")


def test_every_refused_role_is_refused_and_audited(parties):
    shapes = _method_shapes()
    callers = {
        role: parties.enrol(role, f"m-{role.value}") for role in Role if role is not Role.OPERATOR
    }
    callers[Role.OPERATOR] = parties.operator()
    checked = 0
    for method, allowed in METHOD_ROLES.items():
        if method in ENROLMENT_METHODS:
            continue  # enrolment has its own tests (anonymous, on its own port)
        for role, party in callers.items():
            if role in allowed:
                continue
            err = _invoke(party.client.channel, method, shapes[method])
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (method, role, err.details())
            assert f"role {role.value} may not call it" in err.details()
            checked += 1
    assert checked > 40
    refusals = [
        e
        for e in audit_events(parties.server)
        if e.action == "refusal" and "may not call" in e.reason
    ]
    assert len(refusals) == checked
    assert {e.role for e in refusals} == {r.value for r in Role}


@pytest.mark.parametrize("role", [Role.PROVIDER, Role.DATA_OWNER, Role.OPERATOR])
def test_allowed_roles_pass_the_role_check(parties, role):
    shapes = _method_shapes()
    party = parties.operator() if role is Role.OPERATOR else parties.enrol(role, f"a-{role.value}")
    for method, allowed in METHOD_ROLES.items():
        if role not in allowed:
            continue
        try:
            err = _invoke(party.client.channel, method, shapes[method])
        except AssertionError:
            continue  # the empty request happened to succeed (e.g. ListModels)
        assert "may not call it" not in (err.details() or ""), (method, role)
        assert err.code() != grpc.StatusCode.INTERNAL, (method, err.details())


def test_every_non_enrolment_method_refuses_an_unauthenticated_caller(parties, deployment):
    """Without a client certificate: the API port's handshake fails, the enrolment port serves
    none of these methods; either way nothing runs."""
    shapes = _method_shapes()
    ca = deployment.root.joinpath("ca", "ca.pem").read_bytes()
    server = parties.server
    checked = 0
    for port, want in (
        (server.api_port, grpc.StatusCode.UNAVAILABLE),
        (server.enrol_port, grpc.StatusCode.UNIMPLEMENTED),
    ):
        with grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca)) as ch:
            for method in METHOD_ROLES:
                if method in ENROLMENT_METHODS:
                    continue
                err = _invoke(ch, method, shapes[method])
                assert err.code() == want, (port, method, err.code())
                checked += 1
    assert checked == 2 * (len(METHOD_ROLES) - len(ENROLMENT_METHODS))
