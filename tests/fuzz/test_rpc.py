"""The generic gRPC fuzzer (rpc.py) against the audit log service, a finished servicer."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import given

from fedtune._proto import audit_pb2
from fedtune.audit.log import AuditLog
from fedtune.audit.service import serve

from . import _seeds as seeds
from ._mutate import fuzz_settings
from .rpc import check_call, methods, requests

pytestmark = pytest.mark.timeout(300)

METHODS = {m.path.rsplit("/", 1)[1]: m for m in methods(audit_pb2, "AuditLog")}
SEEDS: dict[str, list[Message]] = {
    "Append": [audit_pb2.AppendRequest(events=list(seeds.notes().leaves[:2]))],
    "GetCheckpoint": [audit_pb2.GetCheckpointRequest(at_or_below_size=2)],
    "GetEntries": [audit_pb2.GetEntriesRequest(start=1, end=3)],
    "GetInclusionProof": [audit_pb2.GetInclusionProofRequest(index=1, tree_size=3)],
    "GetConsistencyProof": [audit_pb2.GetConsistencyProofRequest(first_size=1, second_size=3)],
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[grpc.Channel, AuditLog]]:
    folder = tmp_path_factory.mktemp("rpc")
    log = AuditLog.open(folder / "audit.db", seeds.LOG_IDENTITY, seeds.LOG_ORIGIN)
    for i in range(4):
        log.append(seeds.audit_event(i))
    server, port = serve(log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, log
    finally:
        channel.close()
        server.stop(grace=None).wait(10)
        log.close()


def test_the_seeds_cover_every_method() -> None:
    assert set(SEEDS) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_audit_service_answers_every_request_deliberately(
    name: str, service: tuple[grpc.Channel, AuditLog]
) -> None:
    channel, log = service
    method = METHODS[name]

    def unchanged_unless_appended(code: grpc.StatusCode, request: Message) -> None:
        # Promise 6: a refused call leaves stored state as it was.
        grown = log.size - size_before[0]
        if name == "Append" and code is grpc.StatusCode.OK:
            assert grown == len(request.events)  # type: ignore[attr-defined]
        else:
            assert grown == 0, f"{name} answered {code.name} and the log grew by {grown}"

    size_before = [0]

    @fuzz_settings(60)
    @given(request=requests(method.request_class, seeds=SEEDS[name]))
    def run(request: Message) -> None:
        size_before[0] = log.size
        check_call(channel, method, request, after=unchanged_unless_appended)

    run()
