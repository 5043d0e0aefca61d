"""The audit log is served behind the same interceptor: auditors read it, nobody appends remotely,
and the orchestrator's own events are in it, under signed checkpoints."""

from __future__ import annotations

import grpc
import pytest

from fedtune._proto import audit_pb2, audit_pb2_grpc
from fedtune.orchestrator.authz import Role

from .conftest import audit_events, start_server, uploaded


def test_auditor_reads_checkpoint_and_entries(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    uploaded(provider, tmp_path)
    auditor = parties.enrol(Role.AUDITOR, "carol")
    stub = audit_pb2_grpc.AuditLogStub(auditor.client.channel)
    note = stub.GetCheckpoint(audit_pb2.GetCheckpointRequest(), timeout=10).note
    size = int(note.splitlines()[1])
    assert size == parties.server.audit_log.size and size >= 4
    entries = list(stub.GetEntries(audit_pb2.GetEntriesRequest(start=0, end=size), timeout=10))
    assert len(entries) == size
    actions = [e.action for e in audit_events(parties.server)]
    assert actions.count("enrol") == 2 and actions.count("upload") == 2


def test_append_is_not_callable_remotely(parties):
    op = parties.operator()
    stub = audit_pb2_grpc.AuditLogStub(op.client.channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Append(audit_pb2.AppendRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no remote caller" in err.value.details()


def test_watch_streams_are_bounded(deployment, tmp_path):
    from .conftest import Parties, terms_for

    server = start_server(deployment.root, watch_max_s=1)
    parties = Parties(server, deployment, tmp_path)
    try:
        provider = parties.enrol(Role.PROVIDER, "acme")
        alice = parties.enrol(Role.DATA_OWNER, "alice")
        bob = parties.enrol(Role.DATA_OWNER, "bob")
        uploaded(provider, tmp_path)
        terms = terms_for("b", provider, [alice, bob])
        provider.client.create_session(
            terms, provider.identity, [alice.identity.public.raw, bob.identity.public.raw]
        )
        # The session never ends, yet the stream does, after watch_max_s.
        seen = list(provider.client.watch_session("b", timeout=20))
        assert len(seen) == 1
    finally:
        parties.close()
        server.stop(0)
