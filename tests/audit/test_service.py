"""The audit gRPC service on a real loopback server: every RPC, paging and status codes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from crypto import merkle
from crypto.note import open_checkpoint
from fedtune._proto import audit_pb2, audit_pb2_grpc
from fedtune.audit import AuditLog, AuditRpcError
from fedtune.audit.client import AuditClient
from fedtune.audit.service import STATUS_CODES, serve

ORIGIN = "fedtune.test/audit"


@pytest.fixture
def served(db_path: Path, log_identity):
    audit_log = AuditLog.open(db_path, log_identity, ORIGIN, page_size=4)
    server, port = serve(audit_log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield (
            audit_log,
            audit_pb2_grpc.AuditLogStub(channel),
            AuditClient(f"127.0.0.1:{port}", channel=channel, timeout_s=10),
        )
    finally:
        channel.close()
        server.stop(grace=None).wait(timeout=10)
        audit_log.close()


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_append_then_read_everything_back(served, event_factory):
    audit_log, stub, client = served
    events = [event_factory(i) for i in range(10)]
    reply = stub.Append(audit_pb2.AppendRequest(events=[e.leaf() for e in events]), timeout=10)
    assert (reply.first_index, reply.tree_size) == (0, 10)
    assert list(reply.leaf_hashes) == [merkle.leaf_hash(e.leaf()) for e in events]
    receipts = client.append([event_factory(10)])
    assert (receipts[0].index, receipts[0].tree_size) == (10, 11)

    note = client.checkpoint()
    checkpoint, _ = open_checkpoint(note, [audit_log.verifier], origin=ORIGIN)
    assert checkpoint.size == 11
    assert client.checkpoint(at_or_below=10) == audit_log.checkpoint(at_or_below=10)
    # Pages are bounded by the server (page_size=4): the client asks again from the last index.
    page = client.entries(0, 11)
    assert [e.index for e in page] == [0, 1, 2, 3]
    assert [e.leaf for e in client.entries(8, 11)] == [e.leaf() for e in events[8:]] + [
        event_factory(10).leaf()
    ]
    proof = client.inclusion_proof(5, 11)
    merkle.verify_inclusion(merkle.leaf_hash(events[5].leaf()), 5, 11, proof, checkpoint.root_hash)
    first, _ = open_checkpoint(client.checkpoint(at_or_below=10), [audit_log.verifier])
    merkle.verify_consistency(
        10, 11, client.consistency_proof(10, 11), first.root_hash, checkpoint.root_hash
    )


def test_bad_requests_get_precise_status_codes(served, event_factory):
    audit_log, stub, client = served
    audit_log.append(event_factory(0))
    t = 10
    cases = [
        (lambda: stub.Append(audit_pb2.AppendRequest(), timeout=t), "INVALID_ARGUMENT", "at least"),
        (
            lambda: stub.Append(audit_pb2.AppendRequest(events=[b'{"v":1}']), timeout=t),
            "INVALID_ARGUMENT",
            "events[0]",
        ),
        (
            lambda: stub.Append(
                audit_pb2.AppendRequest(events=[event_factory(1).leaf() + b" "]), timeout=t
            ),
            "INVALID_ARGUMENT",
            "canonical",
        ),
        (
            lambda: list(stub.GetEntries(audit_pb2.GetEntriesRequest(start=0, end=5), timeout=t)),
            "OUT_OF_RANGE",
            "end 5",
        ),
        (
            lambda: list(stub.GetEntries(audit_pb2.GetEntriesRequest(start=1, end=0), timeout=t)),
            "INVALID_ARGUMENT",
            "start <= end",
        ),
        (
            lambda: stub.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=0, tree_size=2), timeout=t
            ),
            "OUT_OF_RANGE",
            "tree size 2",
        ),
        (
            lambda: stub.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=1, tree_size=1), timeout=t
            ),
            "INVALID_ARGUMENT",
            "index < size",
        ),
        (
            lambda: stub.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first_size=0, second_size=1), timeout=t
            ),
            "INVALID_ARGUMENT",
            "0 < size1",
        ),
    ]
    for call, code, text in cases:
        got_code, details = _code(call)
        assert got_code.name == code, details
        assert text in details
    # The client turns statuses into a typed error naming the method.
    with pytest.raises(AuditRpcError) as err:
        client.entries(0, 5)
    assert (err.value.method, err.value.code) == ("GetEntries", "OUT_OF_RANGE")


def test_internal_failures_are_not_described_to_clients(served, event_factory, tampering, db_path):
    audit_log, stub, _ = served
    audit_log.append_many([event_factory(i) for i in range(4)])
    with tampering(db_path) as conn:
        conn.execute("DELETE FROM nodes WHERE level = 1")
    code, details = _code(
        lambda: stub.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(index=0, tree_size=4), timeout=10
        )
    )
    assert code is grpc.StatusCode.INTERNAL
    assert "subtree" not in details and "sqlite" not in details.lower()
    assert "server log" in details


def test_status_table_covers_the_domain_errors():
    from fedtune.audit import errors

    mapped = {kind for kind, _, _ in STATUS_CODES}
    for name in ("InvalidEventError", "AuditRangeError", "AuditLogClosedError", "AuditStoreError"):
        assert getattr(errors, name) in mapped


def test_unreachable_server_is_a_typed_error():
    with AuditClient("127.0.0.1:1", timeout_s=2) as client, pytest.raises(AuditRpcError) as err:
        client.checkpoint()
    assert err.value.code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
