"""Storage faults on a real orchestrator: the blob store's disk fills up mid-upload, and a sealed
blob is corrupted at rest. Nothing acknowledged is lost; the user gets a typed error that says
what happened and what to do; the audit log verifies afterwards."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.datakey import DataKey
from crypto.errors import ManifestMismatchError, SegmentAuthError
from crypto.hazmat.stream import HEADER_SIZE, TAG_SIZE
from crypto.manifest import verify_blob
from crypto.seal import unseal_to_memory
from fedtune._proto import registry_pb2
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.deployment import DeploymentPaths, init_deployment, load_info
from fedtune.orchestrator.errors import RemoteError, StorageFull
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.store.blobs import LocalBlobStore
from tests.orchestrator.conftest import Deployment, Parties, Party, seal_model, start_server

from ._support import resize_tmpfs, root_problem, tmpfs, verify_audit

pytestmark = pytest.mark.timeout(300)
CHUNK = 64 << 10


class Running:
    """A server on ``root`` with an enrolled provider."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.server: OrchestratorServer = start_server(root)
        self.parties = Parties(self.server, Deployment(root, load_info(root)), tmp)
        self.acme: Party = self.parties.enrol(Role.PROVIDER, "acme")

    def stop(self) -> None:
        self.parties.close()
        self.server.stop(0.5)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "deployment"
    init_deployment(root, hosts=["127.0.0.1", "localhost"], api_port=0, enrol_port=0)
    return root


def _stored(status: registry_pb2.UploadStatus) -> set[int]:
    missing = {i for r in status.missing for i in range(r.start, r.end)}
    return set(range(status.chunk_count)) - missing


def test_a_full_blob_disk_is_a_typed_refusal_and_the_upload_resumes_once_space_is_freed(
    root: Path, tmp_path: Path
) -> None:
    problem = root_problem()
    if problem is not None:
        pytest.skip(f"a size-limited tmpfs for the blob store {problem}")
    # The blob store on its own 1 MiB volume; the 3 MB sealed model cannot fit.
    with tmpfs(DeploymentPaths(root).blobs, "1m") as volume:
        running = Running(root, tmp_path)
        try:
            acme = running.acme
            art = seal_model(acme, tmp_path, size=3_000_000)
            with pytest.raises(RemoteError) as refused:
                acme.client.upload(art.signed, art.blob_path, chunk_size=CHUNK)
            # What the user sees: a typed status naming the cause and the remedy.
            assert refused.value.code == "RESOURCE_EXHAUSTED", refused.value
            assert "storage is full" in refused.value.details
            assert "resumes from its first missing chunk" in refused.value.details
            # Nothing acknowledged is lost: the chunks stored before ENOSPC are still stored.
            status = acme.client.begin_upload(art.signed, chunk_size=CHUNK)
            kept = _stored(status)
            assert kept and status.first_missing == len(kept) < status.chunk_count
            # The server stays up and answers other calls.
            assert acme.client.list_models() is not None

            resize_tmpfs(volume, "16m")  # the operator frees space
            sent: list[int] = []
            version = acme.client.upload(
                art.signed, art.blob_path, chunk_size=CHUNK,
                progress=lambda done, total: sent.append(done),
            )
            assert sent[0] == len(kept) * CHUNK  # resumed from the first missing chunk
            assert version.size == art.signed.manifest.sealed_size
            out = tmp_path / "downloaded.sealed"
            acme.client.download(art.signed.manifest.model_name, "1", out)
            assert out.read_bytes() == art.blob_path.read_bytes()
        finally:
            running.stop()
    verify_audit(root)


def test_the_blob_store_turns_enospc_into_storage_full(tmp_path: Path) -> None:
    """The store-level contract, on a real full filesystem (no root: skipped with the reason)."""
    problem = root_problem()
    if problem is not None:
        pytest.skip(f"a size-limited tmpfs {problem}")
    with tmpfs(tmp_path / "vol", "256k") as volume:
        store = LocalBlobStore(volume)
        store.prepare_upload("u1", 1 << 20)  # sparse: no space taken yet
        with pytest.raises(StorageFull) as full:
            store.write_chunk("u1", 0, os.urandom(1 << 20))
        assert isinstance(full.value.__cause__, OSError)
        assert full.value.__cause__.errno == errno.ENOSPC
        assert full.value.path == str(volume / "uploads")


@pytest.fixture
def stored_model(root: Path, tmp_path: Path) -> Iterator[tuple[Running, object]]:
    running = Running(root, tmp_path)
    try:
        art = seal_model(running.acme, tmp_path, size=600_000, segment_size=64 << 10)
        running.acme.client.upload(art.signed, art.blob_path, chunk_size=CHUNK)
        yield running, art
    finally:
        running.stop()


def test_a_sealed_blob_corrupted_at_rest_is_refused_naming_the_segment(
    root: Path, tmp_path: Path, stored_model: tuple[Running, object]
) -> None:
    running, art = stored_model
    manifest = art.signed.manifest  # type: ignore[attr-defined]
    (blob,) = list((DeploymentPaths(root).blobs / "blobs").iterdir())
    assert blob.read_bytes() == art.blob_path.read_bytes()  # type: ignore[attr-defined]
    # One bit flipped at rest, inside segment 3's ciphertext (bit rot, a bad disk, an intruder).
    segment = 3
    offset = HEADER_SIZE + segment * (manifest.segment_size + TAG_SIZE) + 100
    with open(blob, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))

    out = tmp_path / "downloaded.sealed"
    running.acme.client.download(manifest.model_name, manifest.model_version, out)
    # Without the key: the signed manifest's digest of the sealed bytes refuses the copy.
    with open(out, "rb") as src, pytest.raises(ManifestMismatchError) as mismatch:
        verify_blob(manifest, src)
    assert mismatch.value.field == "ciphertext_digest"
    # With the key, the sandbox's own path (plaintext only in memory): the segment is named
    # and no plaintext is handed out.
    key = DataKey.load(art.key_path)  # type: ignore[attr-defined]
    with open(out, "rb") as src, pytest.raises(SegmentAuthError) as bad:
        unseal_to_memory(src, key)
    assert bad.value.index == segment and not bad.value.final
    assert f"segment {segment}" in str(bad.value)
    verify_audit(root)
