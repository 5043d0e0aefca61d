"""Every RPC of every service, fuzzed on real servers: random, mutated and raw-byte requests.

The RPCs are enumerated from the generated descriptors (``fedtune/_proto/*_pb2`` for the
orchestrator, ``enclave/_proto/sandbox_pb2`` for the sandbox runtime), so a new RPC is fuzzed
without touching this file. Each one is sent by a caller the interceptor's role table lets
through (the related party where the RPC names an object, so the request reaches the servicer
instead of stopping at the role or relation check):

* random messages drawn field by field from the descriptor, and wire-level mutations of a real
  request (the matrix's probe for that RPC), through ``tests/fuzz/rpc.py``;
* raw random and mutated bytes as the serialized request, which may not parse at all.

The server must answer within a bounded deadline with a deliberate status (never UNKNOWN: an
exception escaped the servicer; never INTERNAL, except gRPC's own "Exception deserializing
request!" for bytes that are not a message, which no servicer sees), must say why it refused,
and must still be up afterwards. On the orchestrator, the audit log must verify after the whole
campaign (every refusal it audited kept the log consistent).
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

import enclave._proto
import fedtune._proto
from crypto.identity import Identity
from enclave.sandbox import bubblewrap_problem
from fedtune.orchestrator.authz import ENROLMENT_METHODS, METHOD_ROLES, Role
from tests.reliability._support import verify_audit
from tests.security.matrix import ANY
from tests.security.probes import PROBES
from tests.security.world import World, build_world

from ._mutate import fuzz_settings, mutated
from .rpc import DELIBERATE, Method, methods, requests

# A chunk or blob whose digest does not match is refused as DATA_LOSS: deliberate too.
ALLOWED = DELIBERATE | {grpc.StatusCode.DATA_LOSS}

# In the default suite at a size that keeps it under a minute; FEDTUNE_FUZZ_SCALE=10 (or more)
# makes it a campaign.
pytestmark = pytest.mark.timeout(900)

CALL_DEADLINE_S = 10.0  # a server that has not answered by then is hung
STREAM_READ_LIMIT = 64  # server-streaming answers: read this many, then cancel
# gRPC's own answer to bytes that do not parse as the request message; no servicer runs.
DESERIALIZE_REFUSAL = "Exception deserializing request!"


def _service_methods(package: Any) -> list[Method]:
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for service in module.DESCRIPTOR.services_by_name:
                found += methods(module, service)
    return sorted(found, key=lambda m: m.path)


ORCHESTRATOR_METHODS = _service_methods(fedtune._proto)
SANDBOX_METHODS = _service_methods(enclave._proto)


def _id(method: Method) -> str:
    return method.path.strip("/").removeprefix("fedtune.v1.")


# -- one call, any shape -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a call came back with."""

    code: grpc.StatusCode
    details: str
    messages: int


def call(
    channel: grpc.Channel,
    method: Method,
    request: Message | bytes | Sequence[Message | bytes],
    *,
    metadata: Sequence[tuple[str, str]] | None = None,
    timeout_s: float = CALL_DEADLINE_S,
) -> Answer:
    """Send ``request`` (a list for client streaming; bytes are sent as they are)."""

    def serialize(value: Message | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.SerializeToString()

    kw = {"request_serializer": serialize, "response_deserializer": lambda raw: raw}
    got = 0
    try:
        if method.client_streaming:
            parts = list(request)  # type: ignore[arg-type]
            if method.server_streaming:
                stream = channel.stream_stream(method.path, **kw)(
                    iter(parts), timeout=timeout_s, metadata=metadata
                )
            else:
                channel.stream_unary(method.path, **kw)(
                    iter(parts), timeout=timeout_s, metadata=metadata
                )
                return Answer(grpc.StatusCode.OK, "", 1)
        elif method.server_streaming:
            stream = channel.unary_stream(method.path, **kw)(
                request, timeout=timeout_s, metadata=metadata
            )
        else:
            channel.unary_unary(method.path, **kw)(request, timeout=timeout_s, metadata=metadata)
            return Answer(grpc.StatusCode.OK, "", 1)
        for _ in stream:
            got += 1
            if got >= STREAM_READ_LIMIT:
                stream.cancel()
                break
        return Answer(grpc.StatusCode.OK, "", got)
    except grpc.RpcError as exc:
        return Answer(exc.code(), exc.details() or "", got)


def assert_deliberate(method: Method, answer: Answer, request: object, *, raw: bool) -> None:
    """The answer is OK or an explained refusal, within the deadline."""
    code, details = answer.code, answer.details
    if code is grpc.StatusCode.CANCELLED and answer.messages >= STREAM_READ_LIMIT:
        return  # we hung up on a long stream
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        # A live stream (WatchSession) that already answered is not a hang.
        assert method.server_streaming and answer.messages > 0, (
            f"{method.path} did not answer within {CALL_DEADLINE_S} s: {request!r:.300}"
        )
        return
    if raw and code is grpc.StatusCode.INTERNAL and details == DESERIALIZE_REFUSAL:
        return
    assert code in ALLOWED, f"{method.path} answered {code.name} ({details!r}) to {request!r:.300}"
    if code is not grpc.StatusCode.OK:
        assert details.strip(), f"{method.path} refused with {code.name} but said nothing why"
    assert "Exception calling application" not in details and "Traceback" not in details, (
        f"{method.path} leaked an exception to the client: {details!r}"
    )


def raw_requests(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, and byte-level mutations of real encodings (most no longer parse)."""
    options = [st.binary(max_size=512)]
    if seeds:
        options.append(mutated(list(seeds)))
    return st.one_of(*options)


def _shaped(method: Method, one: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(one, max_size=4) if method.client_streaming else one


# -- the orchestrator --------------------------------------------------------------------------

# Which party stands for a role the interceptor lets through: the related one (acme owns the
# world's models and sessions; alice is invited to and accepted them), so requests naming the
# world's objects get past the relation checks too.
_PARTY_FOR_ROLE = (
    (Role.PROVIDER, ("provider", "related")),
    (Role.DATA_OWNER, ("data-owner", "related")),
    (Role.OPERATOR, ("operator", ANY)),
    (Role.AUDITOR, ("auditor", ANY)),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(Path(tmp_path_factory.mktemp("rpc-fuzz")))
    try:
        yield w
        # After every campaign: the audit log (which recorded every refusal) still verifies.
        assert verify_audit(w.root).size == w.server.audit_log.size
    finally:
        w.stop()


def _channel_and_seeds(world: World, method: Method) -> tuple[grpc.Channel, list[Message]]:
    """A channel of a caller the role table lets through, and the matrix probe's request."""
    roles = METHOD_ROLES.get(method.path, frozenset())
    if method.path in ENROLMENT_METHODS:  # the enrolment port, server-only TLS
        caller = world.caller("unauthenticated", ANY)
        channel = world.plain_tls_channel(world.server.enrol_port)
    else:
        # No remote role at all (AuditLog.Append): fuzz the refusal path as the operator.
        column, relation = next(
            (party for role, party in _PARTY_FOR_ROLE if role in roles), ("operator", ANY)
        )
        caller = world.caller(column, relation)
        channel = world.api_channel(caller)
    seeds: list[Message] = []
    builder = PROBES.get(method.path)
    if builder is not None:
        try:
            request = builder(world, caller, True).request
        except Exception as exc:  # a stale probe is the matrix test's failure, not a fuzz one
            warnings.warn(f"no seed for {method.path}: its probe failed ({exc})", stacklevel=1)
        else:
            seeds = list(request) if isinstance(request, list) else [request]
    return channel, seeds


def _alive(world: World) -> None:
    channel = world.api_channel(world.caller("operator", ANY))
    try:
        from fedtune._proto import registry_pb2, registry_pb2_grpc

        registry_pb2_grpc.RegistryStub(channel).ListModels(
            registry_pb2.ListModelsRequest(), timeout=CALL_DEADLINE_S
        )
    finally:
        channel.close()


@pytest.mark.parametrize("method", ORCHESTRATOR_METHODS, ids=_id)
def test_orchestrator_answers_fuzzed_requests_deliberately(world: World, method: Method) -> None:
    channel, seeds = _channel_and_seeds(world, method)
    try:

        @fuzz_settings(16)
        @given(request=_shaped(method, requests(method.request_class, seeds=seeds)))
        def run(request: Any) -> None:
            assert_deliberate(method, call(channel, method, request), request, raw=False)

        run()
    finally:
        channel.close()
    _alive(world)


@pytest.mark.parametrize("method", ORCHESTRATOR_METHODS, ids=_id)
def test_orchestrator_answers_raw_bytes_deliberately(world: World, method: Method) -> None:
    channel, seeds = _channel_and_seeds(world, method)
    encoded = [s.SerializeToString() for s in seeds]
    try:

        @fuzz_settings(10)
        @given(request=_shaped(method, raw_requests(encoded)))
        def run(request: Any) -> None:
            assert_deliberate(method, call(channel, method, request), request, raw=True)

        run()
    finally:
        channel.close()
    _alive(world)


def test_every_orchestrator_rpc_reaches_its_servicer() -> None:
    """Each RPC has a role the interceptor lets through, so fuzzing reaches the servicer."""
    assert ORCHESTRATOR_METHODS and SANDBOX_METHODS
    unreachable = {
        m.path
        for m in ORCHESTRATOR_METHODS
        if not METHOD_ROLES.get(m.path) and m.path not in ENROLMENT_METHODS
    }
    # Append is written only by the server itself (no remote caller may append).
    assert unreachable <= {"/fedtune.v1.AuditLog/Append"}, unreachable


def test_register_node_key_with_an_unknown_ssh_key_type_is_invalid_argument(world: World) -> None:
    """Found by this fuzzer: an OpenSSH key-type name cryptography does not know raised
    UnsupportedAlgorithm through RegisterNodeKey (INTERNAL); it is now INVALID_ARGUMENT."""
    from fedtune._proto import sessions_pb2

    method = next(m for m in ORCHESTRATOR_METHODS if m.path.endswith("/RegisterNodeKey"))
    channel, _ = _channel_and_seeds(world, method)
    try:
        request = sessions_pb2.RegisterNodeKeyRequest(
            session_id="s-run", public_key=b"\x00cdsa-sha2-nistp384 AAAAE2VjZHNh", signature=b"x"
        )
        answer = call(channel, method, request)
    finally:
        channel.close()
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, answer
    assert "OpenSSH public key" in answer.details


# -- the sandbox runtime -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    problem = bubblewrap_problem()
    if problem is not None:
        pytest.skip(f"the sandbox runtime needs a usable bubblewrap: {problem}")
    from crypto.datakey import DataKey
    from enclave.ml.modeldir import write_model_dir
    from enclave.ml.tiny import tiny_bert_files
    from fedtune.provider.seal import seal_model_dir
    from tests.sandbox._support import HIDDEN, MODEL_NAME, MODEL_VERSION, ProviderSide, start, stop

    base = Path(tmp_path_factory.mktemp("sandbox-fuzz"))
    identity = Identity.generate()
    model_dir = write_model_dir(tiny_bert_files(seed=7, hidden_size=HIDDEN), base / "model")
    artifact = seal_model_dir(
        model_dir, base / "sealed", name=MODEL_NAME, version=MODEL_VERSION,
        identity=identity, keys_dir=base / "keys",
    )
    provider = ProviderSide(
        identity=identity, artifact=artifact, key=DataKey.load(artifact.key_path),
        model_dir=model_dir, weights=b"",
    )
    running = start(base, provider, Identity.generate())
    try:
        yield running
    finally:
        stop(running)


def _sandbox_seeds(method: Method) -> list[Message]:
    # The sandbox is fuzzed in its first phase (no key, no model): what reaches deepest there
    # is a well-formed Attest; every other request's empty message is the mutation base.
    message = method.request_class()
    if method.path.endswith("/Attest"):
        message.nonce = bytes(range(32))  # type: ignore[attr-defined]
    return [message]


@pytest.mark.parametrize("method", SANDBOX_METHODS, ids=_id)
def test_sandbox_answers_fuzzed_and_raw_requests_deliberately(sandbox: Any, method: Method) -> None:
    channel = grpc.insecure_channel(f"unix:{sandbox.handle.socket_path}")
    seeds = _sandbox_seeds(method)
    try:

        @fuzz_settings(16)
        @given(
            request=st.one_of(
                _shaped(method, requests(method.request_class, seeds=seeds)),
                _shaped(method, raw_requests([s.SerializeToString() for s in seeds])),
            )
        )
        def run(request: Any) -> None:
            raw = isinstance(request, bytes) or (
                isinstance(request, list) and any(isinstance(r, bytes) for r in request)
            )
            assert_deliberate(method, call(channel, method, request), request, raw=raw)

        run()
        # Still up, and still serving: Status answers.
        status = call(channel, next(m for m in SANDBOX_METHODS if m.path.endswith("/Status")), b"")
        assert status.code is grpc.StatusCode.OK, status
    finally:
        channel.close()
