"""A populated deployment on one real server, its callers, and a digest of its stored state."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from crypto.datakey import DataKey
from crypto.hpke import RecipientPrivateKey, unwrap_key
from crypto.identity import Identity
from crypto.manifest import SignedManifest, sign_manifest
from enclave.attest import (
    AllowedMeasurement,
    EvidenceKind,
    ReleasePolicy,
    SignedReleasePolicy,
    report_data_for,
)
from enclave.attest.simulated import SimulatedTee
from enclave.sandbox.adapter_seal import SealedAdapter, seal_adapter
from fedtune.audit import AuditEvent
from fedtune.federated.report_model import SessionReport
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.broker import SecretKind
from fedtune.orchestrator.client import ClientConfig
from fedtune.orchestrator.client.api import mtls_channel
from fedtune.orchestrator.deployment import init_deployment
from fedtune.orchestrator.server import OrchestratorServer
from fedtune.orchestrator.terms import SessionTerms
from fedtune.provider.seal import SealedArtifact
from tests.orchestrator.conftest import (
    Deployment,
    Parties,
    Party,
    audit_events,
    data_key_of,
    seal_model,
    start_server,
    terms_for,
)

MODEL = "acme/base"
RIVAL_MODEL = "rival/base"
CHUNK = 64 << 10  # the registry's smallest chunk: a 200 kB blob makes 4 chunks
MEASUREMENT = bytes(range(48))  # the simulated sandbox build the policies pin

# Sessions on acme/base@1 (alice and bob invited), one per state a refused call must not move.
S_RUN = "s-run"  # running, both owners accepted: release, download, read targets
S_CREATED = "s-created"  # created: InviteOwners target
S_OPEN = "s-open"  # open, no owner accepted: AcceptSession target
S_READY = "s-ready"  # open, everyone accepted: StartSession target
S_RUN2 = "s-run2"  # running: FinishSession and CancelSession target
S_CKKS = "s-ckks"  # running, CKKS aggregation: GetPublicContext target
# Finished sessions whose sealed adapter alice's sandbox stored (S_RUN has a session key, none).
S_DONE = "s-done"  # acme approved the export, alice and bob not: ApproveExport target
S_APPROVED = "s-approved"  # acme, alice and bob approved: Export target


@dataclass
class Caller:
    """Who makes a call: a matrix column, the party standing for it, and how it connects."""

    column: str  # provider | data-owner | operator | auditor | unauthenticated | ...
    name: str
    identity: Identity
    party: Party | None = None  # enrolled callers
    config: ClientConfig | None = None  # a foreign deployment's client configuration
    audit_role: str = "anonymous"  # the role its refusals are audited under

    @property
    def fingerprint(self) -> str:
        """The caller's identity fingerprint."""
        return self.identity.fingerprint


@dataclass
class World:
    """One server with two providers, sessions in every state, an uninvited owner and a stranger."""

    root: Path
    tmp: Path
    server: OrchestratorServer
    parties: Parties
    acme: Party
    rival: Party
    alice: Party
    bob: Party
    dave: Party  # a data owner invited to nothing
    auditor: Party
    operator: Party
    foreign: ClientConfig  # the operator of another deployment, pointed at this server
    tee: SimulatedTee
    v1: SealedArtifact
    v2: SealedArtifact | None = None
    upload_v1: str = ""  # completed
    upload_v2: str = ""  # begun, no chunk stored
    upload_v3: str = ""  # every chunk stored, not completed
    session_keys: dict[str, DataKey] = field(default_factory=dict)  # as alice's sandbox got them
    adapters: dict[str, SealedAdapter] = field(default_factory=dict)  # the stored sealed adapters
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # -- callers ---------------------------------------------------------------------------

    def caller(self, column: str, relation: str) -> Caller:
        """The party that stands for ``column`` in ``relation`` to the world's objects."""
        enrolled = {
            ("provider", "related"): self.acme,
            ("provider", "any"): self.acme,
            ("provider", "unrelated"): self.rival,
            ("data-owner", "related"): self.alice,
            ("data-owner", "any"): self.alice,
            ("data-owner", "unrelated"): self.dave,
            ("operator", "any"): self.operator,
            ("auditor", "any"): self.auditor,
        }
        if (column, relation) in enrolled:
            party = enrolled[(column, relation)]
            return Caller(
                column,
                party.config.name,
                party.identity,
                party=party,
                audit_role=party.config.role.value,
            )
        if column == "foreign-deployment":
            return Caller(column, "foreign", self.foreign.load_identity(), config=self.foreign)
        if column == "unauthenticated":
            return Caller(column, "stranger", Identity.generate())
        raise KeyError((column, relation))

    def api_channel(self, caller: Caller) -> grpc.Channel:
        """A new channel to the API port as ``caller`` (mutual TLS where it has a certificate)."""
        if caller.party is not None:
            return mtls_channel(caller.party.config)
        if caller.config is not None:
            return mtls_channel(caller.config)
        return self.plain_tls_channel(self.server.api_port)

    def plain_tls_channel(self, port: int) -> grpc.Channel:
        """Server-authenticated TLS without a client certificate."""
        ca = self.root.joinpath("ca", "ca.pem").read_bytes()
        return grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca))

    # -- objects ---------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        """A fresh object name."""
        return f"{prefix}-{next(self._ids)}"

    def session(self, state: str, *, creator: Party | None = None) -> str:
        """A new session on acme/base@1 for alice and bob, brought to ``state``."""
        sid = self.new_id("fresh")
        _session(self, sid, state, creator=creator)
        return sid

    def session_key(self, sid: str) -> DataKey:
        """The running session's key, released to alice's attested sandbox (as it seals with)."""
        if sid not in self.session_keys:
            client = self.alice.client
            nonce = client.challenge(sid, SecretKind.SESSION_KEY)
            recipient = RecipientPrivateKey.generate()
            public = recipient.public_key().to_bytes()
            evidence = self.tee.get_evidence(report_data_for(nonce, public)).canonical_bytes()
            wrapped = client.release(sid, SecretKind.SESSION_KEY, evidence, public, nonce)
            raw = unwrap_key(wrapped, recipient, model_id=f"{MODEL}@1", session_id=sid)
            self.session_keys[sid] = DataKey(raw)
        return self.session_keys[sid]

    def seal_adapter(self, sid: str) -> SealedAdapter:
        """A small LoRA adapter directory sealed under the session's key, as a sandbox seals it."""
        import numpy as np
        from safetensors.numpy import save

        rng = np.random.default_rng(len(sid))
        weights = {
            f"base_model.model.layer.0.q.lora_{ab}.weight": rng.standard_normal(
                (4, 32) if ab == "A" else (32, 4)
            ).astype(np.float32)
            for ab in "AB"
        }
        files = {
            "adapter_config.json": b'{"peft_type": "LORA", "r": 4, "target_modules": ["q"]}',
            "adapter_model.safetensors": save(weights),
        }
        return seal_adapter(
            files, self.session_key(sid), session_id=sid, after_round=1,
            adapter_fingerprint="lora-r4-q",
        )

    def finished_with_adapter(
        self, sid: str | None = None, *, approvers: tuple[Party, ...] = ()
    ) -> str:
        """A finished session with alice's sealed adapter stored, approved by ``approvers``."""
        sid = sid or self.new_id("fresh")
        _session(self, sid, "running")
        sealed = self.seal_adapter(sid)
        assert self.alice.client.put_sealed_adapter(sealed).stored_now
        self.adapters[sid] = sealed
        self.operator.client.finish_session(sid, reason="the rounds are done")
        for party in approvers:
            party.client.approve_export(sid, party.identity, sealed.sealed_sha256)
        return sid

    def policy(self, signer: Identity, *, version: int, name: str = MODEL) -> SignedReleasePolicy:
        """A policy for ``name`` accepting the world's simulated sandbox, signed by ``signer``."""
        return ReleasePolicy(
            name=name,
            version=version,
            issuer=signer.fingerprint,
            issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
            allowed_kinds=[EvidenceKind.SIMULATED],
            allowed_measurements=[
                AllowedMeasurement(
                    kind=EvidenceKind.SIMULATED, values={"measurement": self.tee.measurement}
                )
            ],
            allow_simulated=True,
            simulated_platform_keys=[self.tee.public_key.fingerprint],
        ).sign(signer)

    def policy_version(self, name: str = MODEL) -> int:
        """The version of the policy in force."""
        record = self.server.repository.get_policy(name)
        assert record is not None
        return record.version

    def manifest_as(self, signer: Identity, *, name: str, version: str) -> SignedManifest:
        """v1's manifest renamed to ``name@version`` and signed by ``signer`` as its provider."""
        manifest = self.v1.signed.manifest.model_copy(
            update={
                "model_name": name,
                "model_version": version,
                "provider": signer.fingerprint,
                "provider_public_key": signer.public.raw,
            }
        )
        return sign_manifest(manifest, signer)

    def stop(self) -> None:
        """Close every client and stop the server."""
        self.parties.close()
        self.server.stop(0.5)


def build_world(tmp: Path, **server_settings: object) -> World:
    """Start a server (with ``server_settings``) and populate it."""
    root = tmp / "deployment"
    info = init_deployment(root, hosts=["127.0.0.1", "localhost"], api_port=0, enrol_port=0)
    server = start_server(root, **server_settings)
    parties = Parties(server, Deployment(root, info), tmp)
    try:
        acme = parties.enrol(Role.PROVIDER, "acme")
        rival = parties.enrol(Role.PROVIDER, "rival")
        alice = parties.enrol(Role.DATA_OWNER, "alice")
        bob = parties.enrol(Role.DATA_OWNER, "bob")
        dave = parties.enrol(Role.DATA_OWNER, "dave")
        auditor = parties.enrol(Role.AUDITOR, "audra")
        operator = parties.operator()

        other = tmp / "other-deployment"
        init_deployment(other, hosts=["127.0.0.1"], api_port=0, enrol_port=0)
        foreign = ClientConfig.load(other / "operator").model_copy(
            update={
                "server": f"127.0.0.1:{server.api_port}",
                "ca_certificate": operator.config.ca_certificate,  # trusts *our* server
            }
        )
        tee = SimulatedTee(Identity.generate(), measurement=MEASUREMENT)
        v1 = seal_model(acme, tmp, name=MODEL, version="1")
        world = World(
            root=root,
            tmp=tmp,
            server=server,
            parties=parties,
            acme=acme,
            rival=rival,
            alice=alice,
            bob=bob,
            dave=dave,
            auditor=auditor,
            operator=operator,
            foreign=foreign,
            tee=tee,
            v1=v1,
        )
        status = acme.client.begin_upload(v1.signed, chunk_size=CHUNK)
        acme.client.send_chunks(status, v1.blob_path)
        acme.client.complete_upload(status.upload_id)
        world.upload_v1 = status.upload_id
        acme.client.register_key(
            MODEL, "1", data_key_of(acme, v1), world.policy(acme.identity, version=1)
        )

        rv1 = seal_model(rival, tmp, name=RIVAL_MODEL, version="1")
        rival.client.upload(rv1.signed, rv1.blob_path, chunk_size=CHUNK)
        rival.client.register_key(
            RIVAL_MODEL,
            "1",
            data_key_of(rival, rv1),
            world.policy(rival.identity, version=1, name=RIVAL_MODEL),
        )

        world.v2 = seal_model(acme, tmp, name=MODEL, version="2")
        world.upload_v2 = acme.client.begin_upload(world.v2.signed, chunk_size=CHUNK).upload_id
        v3 = seal_model(acme, tmp, name=MODEL, version="3")
        status = acme.client.begin_upload(v3.signed, chunk_size=CHUNK)
        assert acme.client.send_chunks(status, v3.blob_path).first_missing == status.chunk_count
        world.upload_v3 = status.upload_id
        for sid, state in (
            (S_RUN, "running"),
            (S_CREATED, "created"),
            (S_OPEN, "open"),
            (S_READY, "ready"),
            (S_RUN2, "running"),
        ):
            _session(world, sid, state)
        _session(world, S_CKKS, "running", aggregation="ckks")
        world.session_key(S_RUN)
        world.finished_with_adapter(S_DONE, approvers=(acme,))
        world.finished_with_adapter(S_APPROVED, approvers=(acme, alice, bob))
        operator.client.put_session_report(S_RUN, report_json(S_RUN))
        return world
    except BaseException:
        parties.close()
        server.stop(0)
        raise


def report_json(sid: str) -> bytes:
    """A minimal session report for ``sid``, as the aggregator stores it."""
    now = dt.datetime.now(dt.UTC)
    return SessionReport(
        session_id=sid, model=f"{MODEL}@1", aggregation="secagg", task="classification",
        status="finished", started_at=now, finished_at=now,
    ).model_dump_json().encode()


def _session(
    world: World,
    sid: str,
    state: str,
    *,
    creator: Party | None = None,
    aggregation: str = "secagg",
) -> None:
    """Create session ``sid`` on acme/base@1 for alice and bob and bring it to ``state``."""
    creator = creator or world.acme
    owners = [world.alice, world.bob]
    terms = terms_for(sid, world.acme, owners, name=MODEL)
    if aggregation == "ckks":
        terms = SessionTerms.model_validate(
            terms.model_dump() | {"aggregation": "ckks", "secagg_threshold": None}
        )
    creator.client.create_session(terms, creator.identity, [o.identity.public.raw for o in owners])
    if state == "created":
        return
    creator.client.invite(terms, creator.identity)
    if state == "open":
        return
    # The provider's signature on terms it proposed is its acceptance; otherwise it signs too.
    for party in owners + ([world.acme] if creator is not world.acme else []):
        party.client.accept(sid, party.identity)
    if state == "ready":
        return
    assert state == "running", state
    creator.client.start_session(sid)


# -- what a refusal must leave as it was ---------------------------------------------------------

# Bookkeeping of the key broker's decisions: a refused release spends its nonce and records the
# refusal here (so the nonce cannot be tried again); everything else is the protected state.
RELEASE_BOOKKEEPING = frozenset({"nonces", "release_decisions"})


def state_digest(world: World) -> dict[str, str]:
    """SHA-256 of every repository table and of the blob store (paths and bytes), by name."""
    digests: dict[str, str] = {}
    db = world.root / "state" / "orchestrator.sqlite"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        ]
        for table in tables:
            rows = sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"'))
            digests[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    finally:
        conn.close()
    blobs = hashlib.sha256()
    base = world.root / "blobs"
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        blobs.update(str(path.relative_to(base)).encode() + b"\0")
        blobs.update(hashlib.sha256(path.read_bytes()).digest())
    digests["blobs"] = blobs.hexdigest()
    return digests


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The tables (and 'blobs') whose digest differs."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def events_since(world: World, size: int) -> list[AuditEvent]:
    """Audit events appended after the log had ``size`` entries."""
    return audit_events(world.server)[size:]
