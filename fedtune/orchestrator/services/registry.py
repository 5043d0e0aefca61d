"""The Registry servicer."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from fedtune._proto import common_pb2, registry_pb2, registry_pb2_grpc
from fedtune.orchestrator.errors import InvalidRequest
from fedtune.orchestrator.exports import AdapterHeader, ExportService
from fedtune.orchestrator.interceptor import caller
from fedtune.orchestrator.prefetch import prefetch
from fedtune.orchestrator.registry import IncomingChunk, RegistryService
from fedtune.orchestrator.services import convert


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """Registry RPCs, delegated to RegistryService."""

    def __init__(self, service: RegistryService, exports: ExportService) -> None:
        self._service = service
        self._exports = exports

    def BeginUpload(  # noqa: N802
        self, request: registry_pb2.BeginUploadRequest, context: grpc.ServicerContext
    ) -> registry_pb2.UploadStatus:
        """Start or find an upload."""
        progress = self._service.begin_upload(
            caller(context),
            request.manifest.canonical,
            request.manifest.signature,
            chunk_size=request.chunk_size,
        )
        return convert.upload_status(progress)

    def UploadChunks(  # noqa: N802
        self, request_iterator: Iterator[registry_pb2.UploadChunk], context: grpc.ServicerContext
    ) -> registry_pb2.UploadStatus:
        """Store streamed chunks."""
        # Read the next chunk off the wire while this one is checked and written.
        chunks = prefetch(
            IncomingChunk(m.upload_id, m.index, m.data, m.digest) for m in request_iterator
        )
        return convert.upload_status(self._service.upload_chunks(caller(context), chunks))

    def CompleteUpload(  # noqa: N802
        self, request: registry_pb2.CompleteUploadRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelVersion:
        """Verify and register."""
        return convert.model_version(
            self._service.complete_upload(caller(context), request.upload_id)
        )

    def ListModels(  # noqa: N802
        self, request: registry_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListModelsResponse:
        """Every model."""
        return registry_pb2.ListModelsResponse(
            models=[
                registry_pb2.ModelSummary(
                    name=m.name, owner_fingerprint=m.owner, versions=list(m.versions)
                )
                for m in self._service.list_models()
            ]
        )

    def DescribeModel(  # noqa: N802
        self, request: registry_pb2.DescribeModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelDescription:
        """One model and its versions."""
        model, versions, policy = self._service.describe_with_policy(request.name)
        return registry_pb2.ModelDescription(
            name=model.name,
            owner_fingerprint=model.owner,
            versions=[convert.model_version(v) for v in versions],
            policy_version=policy,
        )

    def GetManifest(  # noqa: N802
        self, request: registry_pb2.GetManifestRequest, context: grpc.ServicerContext
    ) -> common_pb2.SignedDocument:
        """The signed manifest of a version."""
        record = self._service.version(request.model.name, request.model.version)
        return common_pb2.SignedDocument(
            canonical=record.manifest, signature=record.manifest_signature
        )

    def Download(  # noqa: N802
        self, request: registry_pb2.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[registry_pb2.BlobChunk]:
        """Stream the sealed blob to an entitled caller."""
        pieces = self._service.download(
            caller(context),
            request.model.name,
            request.model.version,
            offset=request.offset,
            length=request.length,
        )
        for offset, data in pieces:
            yield registry_pb2.BlobChunk(offset=offset, data=data)

    def PutSealedAdapter(  # noqa: N802
        self,
        request_iterator: Iterator[registry_pb2.SealedAdapterUpload],
        context: grpc.ServicerContext,
    ) -> registry_pb2.SealedAdapterInfo:
        """Store (or confirm) the session's sealed adapter."""
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidRequest("header", "the first message must be the header")
        h = first.header
        header = AdapterHeader(
            session_id=h.session_id,
            sealed_sha256=h.sealed_sha256,
            sealed_size=h.sealed_size,
            content_mac=h.content_mac,
            key_id=h.key_id,
            after_round=h.after_round,
            adapter_fingerprint=h.adapter_fingerprint,
        )

        def chunks() -> Iterator[bytes]:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidRequest("chunk", "only sealed bytes may follow the header")
                yield message.chunk

        stored = self._exports.put_adapter(caller(context), header, chunks())
        return convert.sealed_adapter_info(stored.record, stored_now=stored.stored_now)

    def GetSealedAdapter(  # noqa: N802
        self, request: registry_pb2.GetSealedAdapterRequest, context: grpc.ServicerContext
    ) -> Iterator[registry_pb2.BlobChunk]:
        """Stream the session's sealed adapter (ciphertext) to a party of the session."""
        offset = 0
        for data in self._exports.adapter_pieces(caller(context), request.session_id):
            yield registry_pb2.BlobChunk(offset=offset, data=data)
            offset += len(data)
