"""Conversions between the sandbox's domain objects and its protobuf messages, both directions."""

from __future__ import annotations

from enclave._proto import sandbox_pb2
from enclave.sandbox.isolation import IsolationMode, IsolationReport
from enclave.sandbox.keys import SecretKind
from enclave.sandbox.model_loading import ModelSummary
from enclave.sandbox.training import (
    AdapterSource,
    CkksAggregates,
    InitialAdapter,
    PlainAdapter,
    PlainDelta,
)

MODE_TO_PROTO = {
    IsolationMode.BUBBLEWRAP: sandbox_pb2.SANDBOX_ISOLATION_MODE_BUBBLEWRAP,
    IsolationMode.PLAIN_PROCESS: sandbox_pb2.SANDBOX_ISOLATION_MODE_PLAIN_PROCESS,
}
PROTO_TO_MODE = {v: k for k, v in MODE_TO_PROTO.items()}

SECRET_TO_PROTO = {
    SecretKind.MODEL_DATA_KEY: sandbox_pb2.SANDBOX_SECRET_KIND_MODEL_DATA_KEY,
    SecretKind.CKKS_SECRET_CONTEXT: sandbox_pb2.SANDBOX_SECRET_KIND_CKKS_SECRET_CONTEXT,
    SecretKind.SESSION_KEY: sandbox_pb2.SANDBOX_SECRET_KIND_SESSION_KEY,
}
PROTO_TO_SECRET = {v: k for k, v in SECRET_TO_PROTO.items()}


def isolation_to_proto(report: IsolationReport) -> sandbox_pb2.SandboxIsolation:
    """A SandboxIsolation message."""
    return sandbox_pb2.SandboxIsolation(
        mode=MODE_TO_PROTO[report.mode],
        namespaces=report.namespaces,
        network_isolated=report.network_isolated,
        interfaces=report.interfaces,
        filesystem_isolated=report.filesystem_isolated,
        dumpable=report.dumpable,
        core_limit=report.core_limit,
        capabilities=report.capabilities,
        tee=report.tee,
        weaker=report.weaker,
        warnings=report.warnings,
    )


def isolation_from_proto(message: sandbox_pb2.SandboxIsolation) -> IsolationReport:
    """An IsolationReport; ValueError when the mode is unset or unknown."""
    mode = PROTO_TO_MODE.get(message.mode)
    if mode is None:
        raise ValueError(f"unknown isolation mode {message.mode}")
    return IsolationReport(
        mode=mode,
        namespaces=list(message.namespaces),
        network_isolated=message.network_isolated,
        interfaces=list(message.interfaces),
        filesystem_isolated=message.filesystem_isolated,
        dumpable=message.dumpable,
        core_limit=message.core_limit,
        capabilities=message.capabilities,
        tee=message.tee,
        warnings=list(message.warnings),
    )


def summary_to_proto(summary: ModelSummary) -> sandbox_pb2.SandboxModelSummary:
    """A SandboxModelSummary message."""
    return sandbox_pb2.SandboxModelSummary(
        model_name=summary.model_name,
        model_version=summary.model_version,
        model_type=summary.model_type,
        architecture=summary.architecture,
        parameter_count=summary.parameter_count,
        tensor_count=summary.tensor_count,
        sealed_size=summary.sealed_size,
        provider_fingerprint=summary.provider_fingerprint,
        data_key_id=summary.data_key_id,
        files=list(summary.files),
    )


def summary_from_proto(message: sandbox_pb2.SandboxModelSummary) -> ModelSummary:
    """A ModelSummary."""
    return ModelSummary(
        model_name=message.model_name,
        model_version=message.model_version,
        model_type=message.model_type,
        architecture=message.architecture,
        parameter_count=message.parameter_count,
        tensor_count=message.tensor_count,
        sealed_size=message.sealed_size,
        provider_fingerprint=message.provider_fingerprint,
        data_key_id=message.data_key_id,
        files=tuple(message.files),
    )


def adapter_from_proto(message: sandbox_pb2.SandboxAdapter | None) -> AdapterSource:
    """The domain adapter source; an unset message means the initial adapter."""
    if message is None:
        return InitialAdapter()
    which = message.WhichOneof("source")
    if which == "plain_float32":
        return PlainAdapter(bytes(message.plain_float32))
    if which == "plain_delta_float32":
        return PlainDelta(bytes(message.plain_delta_float32))
    if which == "ckks":
        return CkksAggregates(tuple((a.round, bytes(a.blob)) for a in message.ckks.aggregates))
    return InitialAdapter()


def adapter_to_proto(source: AdapterSource) -> sandbox_pb2.SandboxAdapter:
    """The SandboxAdapter message for a domain adapter source."""
    if isinstance(source, PlainAdapter):
        return sandbox_pb2.SandboxAdapter(plain_float32=source.data)
    if isinstance(source, PlainDelta):
        return sandbox_pb2.SandboxAdapter(plain_delta_float32=source.data)
    if isinstance(source, CkksAggregates):
        return sandbox_pb2.SandboxAdapter(
            ckks=sandbox_pb2.SandboxCkksAggregates(
                aggregates=[
                    sandbox_pb2.SandboxCkksAggregate(round=r, blob=b) for r, b in source.aggregates
                ]
            )
        )
    if isinstance(source, InitialAdapter):
        return sandbox_pb2.SandboxAdapter(initial=sandbox_pb2.SandboxInitialAdapter())
    raise TypeError("source must be an AdapterSource")
