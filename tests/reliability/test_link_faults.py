"""The network between a party and the orchestrator goes down mid-upload and mid-release.

A TCP relay stands for the link (``_support.Link``): cutting it resets the connections in both
directions while both processes keep running. The upload resumes from the first missing chunk
once the link is back, nothing acknowledged is lost, the server stays up for everyone else, and
the audit log verifies afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crypto.hpke import RecipientPrivateKey
from enclave.attest import report_data_for
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.client import OrchestratorClient
from fedtune.orchestrator.deployment import init_deployment
from fedtune.orchestrator.errors import RemoteError
from fedtune.orchestrator.server import OrchestratorServer
from tests.orchestrator.conftest import (
    Deployment,
    Parties,
    Party,
    data_key_of,
    release_policy,
    seal_model,
    simulated_tee,
    start_server,
    terms_for,
)

from ._support import Link, audit_events, verify_audit

pytestmark = pytest.mark.timeout(300)
CHUNK = 64 << 10


@dataclass
class Linked:
    """A running server, its parties, and a cuttable link in front of its API port."""

    root: Path
    server: OrchestratorServer
    parties: Parties
    link: Link

    def through_link(self, party: Party) -> OrchestratorClient:
        """A client of ``party`` that reaches the server only over the link."""
        config = party.config.model_copy(update={"server": self.link.address})
        return OrchestratorClient(config, timeout=20)


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[Linked]:
    root = tmp_path / "deployment"
    info = init_deployment(root, hosts=["127.0.0.1", "localhost"], api_port=0, enrol_port=0)
    # Chunks become durable every 256 KiB, so a cut mid-stream has some acknowledged ones.
    server = start_server(root, upload_sync_bytes=256 << 10)
    parties = Parties(server, Deployment(root, info), tmp_path)
    link = Link(("127.0.0.1", server.api_port))
    try:
        yield Linked(root, server, parties, link)
    finally:
        link.close()
        parties.close()
        server.stop(0.5)


def test_link_down_mid_upload_resumes_from_the_first_missing_chunk(
    linked: Linked, tmp_path: Path
) -> None:
    acme = linked.parties.enrol(Role.PROVIDER, "acme")
    art = seal_model(acme, tmp_path, size=6_000_000)
    total = art.signed.manifest.sealed_size
    client = linked.through_link(acme)
    progress: list[int] = []

    def slow(done: int, _total: int) -> None:
        progress.append(done)
        time.sleep(0.005)  # a slow uplink, so the cut lands mid-stream

    failure: list[BaseException] = []

    def upload() -> None:
        try:
            client.upload(art.signed, art.blob_path, chunk_size=CHUNK, progress=slow)
        except RemoteError as exc:
            failure.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 60
    while (not progress or progress[-1] < total // 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    linked.link.cut()
    thread.join(60)
    assert not thread.is_alive(), "the client hung on a dead link"
    # What the user sees: the upload failed as UNAVAILABLE (retry), not a crash or a hang.
    assert failure and failure[0].code == "UNAVAILABLE", failure
    # The server is up for everyone on another path meanwhile.
    assert acme.client.list_models() is not None
    status = acme.client.begin_upload(art.signed, chunk_size=CHUNK)
    assert 0 < status.first_missing < status.chunk_count, "nothing acknowledged was kept"
    kept = status.stored_bytes

    linked.link.heal()
    client.close()
    client = linked.through_link(acme)
    resumed: list[int] = []
    version = client.upload(
        art.signed, art.blob_path, chunk_size=CHUNK,
        progress=lambda done, _t: resumed.append(done),
    )
    assert resumed[0] == kept > 0  # resumed, not restarted
    assert version.size == total
    out = tmp_path / "downloaded.sealed"
    client.download(art.signed.manifest.model_name, "1", out)
    assert out.read_bytes() == art.blob_path.read_bytes()
    client.close()
    verify_audit(linked.root)


def test_link_down_mid_release_is_unavailable_and_a_retry_with_a_fresh_nonce_succeeds(
    linked: Linked, tmp_path: Path
) -> None:
    parties = linked.parties
    acme = parties.enrol(Role.PROVIDER, "acme")
    alice, bob = parties.enrol(Role.DATA_OWNER, "alice"), parties.enrol(Role.DATA_OWNER, "bob")
    art = seal_model(acme, tmp_path)
    acme.client.upload(art.signed, art.blob_path)
    tee = simulated_tee(tmp_path)
    acme.client.register_key(
        "acme/base", "1", data_key_of(acme, art), release_policy(acme, "acme/base", tee)
    )
    terms = terms_for("s1", acme, [alice, bob])
    acme.client.create_session(
        terms, acme.identity, [alice.identity.public.raw, bob.identity.public.raw]
    )
    acme.client.invite(terms, acme.identity)
    alice.client.accept("s1", alice.identity)
    bob.client.accept("s1", bob.identity)
    acme.client.start_session("s1")

    client = linked.through_link(alice)
    public = RecipientPrivateKey.generate().public_key().to_bytes()
    nonce = client.challenge("s1")
    evidence = tee.get_evidence(report_data_for(nonce, public)).canonical_bytes()
    linked.link.cut()
    with pytest.raises(RemoteError) as down:
        client.release("s1", SecretKind.MODEL_DATA_KEY, evidence, public, nonce)
    assert down.value.code == "UNAVAILABLE"
    linked.link.heal()
    client.close()
    client = linked.through_link(alice)
    # The nonce issued before the cut was never spent (the request never arrived) ...
    before = sum(1 for e in audit_events(linked.root) if e.action.value == "key-release")
    wrapped = client.release("s1", SecretKind.MODEL_DATA_KEY, evidence, public, nonce)
    assert wrapped
    # ... and is spent now, once, on the record; a second try is a refused replay.
    after = [e for e in audit_events(linked.root) if e.action.value == "key-release"]
    assert len(after) == before + 1 and after[-1].outcome.value == "ok"
    replay = client.release_raw("s1", SecretKind.MODEL_DATA_KEY, evidence, public, nonce)
    assert replay.WhichOneof("outcome") == "refused"
    client.close()
    verify_audit(linked.root)
