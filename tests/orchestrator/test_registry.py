"""Registry on a real server: resumable upload, chunk integrity, ownership, entitled download."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from crypto.digest import digest_bytes
from fedtune._proto import registry_pb2
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.errors import RemoteError

from .conftest import audit_events, seal_model, terms_for, uploaded

CHUNK = 64 << 10


def _chunk(status, blob, index, *, data=None, digest=None):
    offset = index * status.chunk_size
    raw = blob.read_bytes()[offset : offset + status.chunk_size] if data is None else data
    return registry_pb2.UploadChunk(
        upload_id=status.upload_id,
        index=index,
        data=raw,
        digest=digest or digest_bytes(raw),
    )


def test_upload_resumes_after_a_killed_client(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    art = seal_model(provider, tmp_path, size=3_000_000)
    # A separate client process uploads slowly and is killed with SIGKILL midway.
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from crypto.manifest import SignedManifest
        from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
        config = ClientConfig.load(Path({str(provider.home)!r}))
        signed = SignedManifest.load(Path({str(art.manifest_path)!r}))
        client = OrchestratorClient(config)
        def progress(done, total):
            print(done, flush=True)
            time.sleep(0.05)
        client.upload(signed, Path({str(art.blob_path)!r}), chunk_size={CHUNK},
                      progress=progress)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 20 * CHUNK and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen = int(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert seen >= 20 * CHUNK, "the client never got going"
    # The server records what it received once it notices the stream broke, which can be a
    # moment after the client died: ask again for a bounded time.
    deadline = time.monotonic() + 15
    status = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    while status.first_missing == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    assert not status.complete
    assert status.first_missing > 0, "chunks acknowledged before the kill were lost"
    assert status.first_missing < status.chunk_count
    sent = []
    version = provider.client.upload(
        art.signed, art.blob_path, chunk_size=CHUNK, progress=lambda d, t: sent.append(d)
    )
    # Only the missing chunks travelled again.
    assert sent[0] == status.stored_bytes
    assert version.size == art.blob_path.stat().st_size
    assert version.ciphertext_digest == bytes.fromhex(art.signed.manifest.ciphertext_digest)
    assert version.digest_algorithm == "blake3"
    out = tmp_path / "back.sealed"
    provider.client.download("acme/base", "1", out)
    assert out.read_bytes() == art.blob_path.read_bytes()


def test_resent_chunk_is_a_no_op_and_wrong_digest_is_refused(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    art = seal_model(provider, tmp_path, size=500_000)
    status = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    stub = provider.client.registry
    after = stub.UploadChunks(iter([_chunk(status, art.blob_path, 0)]))
    again = stub.UploadChunks(
        iter([_chunk(status, art.blob_path, 0), _chunk(status, art.blob_path, 0)])
    )
    assert after.stored_bytes == again.stored_bytes == CHUNK
    assert after.first_missing == again.first_missing == 1
    bad = _chunk(status, art.blob_path, 1, digest=b"\x00" * 32)
    with pytest.raises(Exception) as err:
        stub.UploadChunks(iter([_chunk(status, art.blob_path, 2), bad]))
    assert err.value.code().name == "DATA_LOSS"
    assert "chunk 1" in err.value.details()
    # The old protocol's digest (SHA-256 of the data) is a wrong digest now: chunks carry BLAKE3.
    raw = art.blob_path.read_bytes()[CHUNK : 2 * CHUNK]
    old = _chunk(status, art.blob_path, 1, digest=hashlib.sha256(raw).digest())
    with pytest.raises(Exception) as err:
        stub.UploadChunks(iter([old]))
    assert err.value.code().name == "DATA_LOSS"
    assert digest_bytes(raw).hex() in err.value.details()
    # The good chunk sent before the bad one in the same stream was kept; chunk 1 was not.
    now = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    stored = set(range(now.chunk_count)) - {i for r in now.missing for i in range(r.start, r.end)}
    assert stored == {0, 2}
    # A chunk of the wrong length is refused too.
    with pytest.raises(Exception) as err:
        stub.UploadChunks(iter([_chunk(status, art.blob_path, 3, data=b"short")]))
    assert err.value.code().name == "INVALID_ARGUMENT"
    # Completing early says what is missing.
    with pytest.raises(RemoteError) as err:
        provider.client.complete_upload(status.upload_id)
    assert err.value.code == "FAILED_PRECONDITION" and "first is 1" in err.value.details
    events = audit_events(parties.server)
    assert any(e.action == "refusal" and "chunk 1" in e.reason for e in events)


def test_blob_that_does_not_match_the_manifest_is_not_registered(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    art = seal_model(provider, tmp_path, size=300_000)
    other = seal_model(provider, tmp_path / "o", size=300_000, version="2")
    assert other.blob_path.stat().st_size == art.blob_path.stat().st_size
    status = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    # Every chunk is self-consistent, but they are another sealing's bytes.
    provider.client.send_chunks(status, other.blob_path)
    with pytest.raises(RemoteError) as err:
        provider.client.complete_upload(status.upload_id)
    assert err.value.code == "DATA_LOSS" and "was reset" in err.value.details
    assert provider.client.describe_model("acme/base").versions == []
    # The upload starts over; the right bytes then complete it.
    again = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    assert again.upload_id == status.upload_id and again.first_missing == 0
    version = provider.client.upload(art.signed, art.blob_path, chunk_size=CHUNK)
    assert version.ciphertext_digest == bytes.fromhex(art.signed.manifest.ciphertext_digest)
    assert version.digest_algorithm == "blake3"


def test_bytes_that_are_not_a_sealed_stream_are_refused(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    art = seal_model(provider, tmp_path, size=100_000)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"\x00" * art.signed.manifest.sealed_size)
    status = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    provider.client.send_chunks(status, plain)
    with pytest.raises(RemoteError) as err:
        provider.client.complete_upload(status.upload_id)
    assert err.value.code == "DATA_LOSS" and "sealed-stream header" in err.value.details


def test_manifest_must_be_signed_by_the_uploader(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    impostor = parties.enrol(Role.PROVIDER, "impostor")
    art = seal_model(provider, tmp_path)
    with pytest.raises(RemoteError) as err:
        impostor.client.begin_upload(art.signed)
    assert err.value.code == "INVALID_ARGUMENT" and "names provider" in err.value.details


def test_only_the_owning_provider_uploads_a_models_versions(parties, tmp_path):
    acme = parties.enrol(Role.PROVIDER, "acme")
    rival = parties.enrol(Role.PROVIDER, "rival")
    uploaded(acme, tmp_path)
    art = seal_model(rival, tmp_path / "r", version="2")
    with pytest.raises(RemoteError) as err:
        rival.client.begin_upload(art.signed)
    assert err.value.code == "PERMISSION_DENIED" and "another provider" in err.value.details
    status = acme.client.begin_upload(seal_model(acme, tmp_path / "a", version="3").signed)
    with pytest.raises(Exception) as err:
        rival.client.registry.UploadChunks(
            iter(
                [
                    registry_pb2.UploadChunk(
                        upload_id=status.upload_id,
                        index=0,
                        data=b"x",
                        digest=digest_bytes(b"x"),
                    )
                ]
            )
        )
    assert err.value.code().name == "PERMISSION_DENIED"


def test_download_by_entitled_and_unentitled_parties(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    rival = parties.enrol(Role.PROVIDER, "rival")
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    bob = parties.enrol(Role.DATA_OWNER, "bob")
    carol = parties.enrol(Role.DATA_OWNER, "carol")
    op = parties.operator()
    art = uploaded(provider, tmp_path)
    out = tmp_path / "out"

    def refused(party, code="PERMISSION_DENIED"):
        with pytest.raises(RemoteError) as err:
            party.client.download("acme/base", "1", out)
        assert err.value.code == code, err.value
        return err.value.details

    assert provider.client.download("acme/base", "1", out) == art.blob_path.stat().st_size
    assert "accepted" in refused(alice)  # no session yet
    assert "may not call" in refused(op)
    assert "accepted" in refused(rival)
    terms = terms_for("dl", provider, [alice, bob])
    provider.client.create_session(
        terms, provider.identity, [alice.identity.public.raw, bob.identity.public.raw]
    )
    provider.client.invite(terms, provider.identity)
    refused(alice)  # invited, not accepted
    alice.client.accept("dl", alice.identity)
    # A range, as the sandbox streams it.
    assert alice.client.download("acme/base", "1", out, offset=100, length=1000) == 1000
    assert out.read_bytes() == art.blob_path.read_bytes()[100:1100]
    refused(carol)  # not invited
    refused(bob)  # invited, never accepted
    provider.client.cancel_session("dl", "test over")
    refused(alice)  # the session ended
    assert any(
        e.action == "join" and e.details.get("step") == "download-sealed-model"
        for e in audit_events(parties.server)
    )


def test_catalogue_shows_versions_and_manifest(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    alice = parties.enrol(Role.DATA_OWNER, "alice")
    art = uploaded(provider, tmp_path)
    listed = alice.client.list_models()
    assert [(m.name, list(m.versions)) for m in listed.models] == [("acme/base", ["1"])]
    signed = alice.client.get_manifest("acme/base", "1")
    assert signed == art.signed
    with pytest.raises(RemoteError) as err:
        alice.client.describe_model("nope")
    assert err.value.code == "NOT_FOUND"


def test_unexpected_errors_reach_the_client_as_a_reference_only(parties, tmp_path):
    provider = parties.enrol(Role.PROVIDER, "acme")
    art = seal_model(provider, tmp_path, size=100_000)
    status = provider.client.begin_upload(art.signed, chunk_size=CHUNK)
    part = parties.deployment.root / "blobs" / "uploads" / f"{status.upload_id}.part"
    part.unlink()
    part.mkdir()  # the server's write now fails with an OSError nobody planned for
    with pytest.raises(Exception) as err:
        provider.client.registry.UploadChunks(iter([_chunk(status, art.blob_path, 0)]))
    assert err.value.code().name == "INTERNAL"
    details = err.value.details()
    assert re.fullmatch(r"internal error \(reference [0-9a-f]{12}\)", details), details
    assert "part" not in details and "Errno" not in details
