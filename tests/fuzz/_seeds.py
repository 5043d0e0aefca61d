"""Real, valid inputs for every fuzzed parser: the starting points mutations are made from.

Attestation seeds are the vendor sample reports under tests/data/attestation (see PROVENANCE
there). The rest is made here, deterministically (fixed keys, fixed salts), with the project's
own producers: a small model sealed with ``seal_with_header`` and its signed manifest, a signed
checkpoint, audit leaves, simulated evidence and a signed release policy. Everything is built
once per process (``functools.cache``); the atheris harnesses write these as their corpus.
"""

from __future__ import annotations

import functools
import io
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.numpy import save as save_safetensors

from crypto import merkle
from crypto.datakey import DataKey
from crypto.hazmat.stream import StreamHeader
from crypto.hpke import Kem, RecipientPrivateKey, wrap_key
from crypto.identity import Identity
from crypto.manifest import (
    FileInfo,
    Manifest,
    SignedManifest,
    safetensors_header_length,
    safetensors_index,
    sign_manifest,
)
from crypto.note import Checkpoint, NoteSigner, sign_checkpoint
from crypto.payload import PayloadFile, PayloadReader
from crypto.seal import seal_with_header
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.policy import AllowedMeasurement, ReleasePolicy, SignedReleasePolicy
from enclave.attest.simulated import SimulatedTee
from enclave.attest.snp_cert_table import ARK_GUID, ASK_GUID, VCEK_GUID, build_cert_table
from fedtune.audit.events import AuditEvent, ObjectIds

DATA = Path(__file__).resolve().parents[1] / "data"
SNP = DATA / "attestation" / "sev-snp"
TDX = DATA / "attestation" / "tdx"
FUZZ_VECTORS = DATA / "fuzz"

# Inside the validity windows of the vendor samples (see tests/enclave/attest).
SNP_NOW = datetime(2025, 6, 1, tzinfo=UTC)
TDX_NOW = datetime(2025, 7, 1, tzinfo=UTC)
TDX_OUTDATED_NOW = datetime(2026, 3, 1, tzinfo=UTC)
SIM_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _identity(byte: int) -> Identity:
    return Identity(Ed25519PrivateKey.from_private_bytes(bytes([byte]) * 32))


PROVIDER = _identity(1)
LOG_IDENTITY = _identity(2)
PLATFORM = _identity(3)
POLICY_ISSUER = _identity(4)
DATA_KEY = DataKey(bytes(range(32)))
OTHER_KEY = DataKey(bytes(range(1, 33)))
LOG_ORIGIN = "fedtune.fuzz/audit"
REPORT_DATA = bytes(range(64))
MODEL_ID, SESSION_ID = "acme/base@1", "sess-1"


# --- sealed model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedModel:
    """A two-file model sealed in small segments, its payload, manifest and safetensors file."""

    payload: bytes
    sealed: bytes
    sealed_unknown_size: bytes
    manifest: SignedManifest
    manifest_json: bytes
    safetensors: bytes
    safetensors_header: bytes


def _header(key: DataKey, size: int | None, segment_size: int, salt: int) -> StreamHeader:
    return StreamHeader(
        segment_size=segment_size,
        plaintext_size=size,
        key_id=bytes.fromhex(key.key_id),
        salt=bytes([salt]) * 32,
        nonce_prefix=bytes([salt]) * 7,
    )


class _Pipe(io.RawIOBase):
    """A stream that cannot tell its size (sealed with plaintext size "unknown")."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview | bytearray) -> int:  # type: ignore[override]
        return self._inner.readinto(b)


@functools.cache
def sealed_model() -> SealedModel:
    """The sealed model seed (deterministic: fixed key, salt and nonce prefix)."""
    rng = np.random.default_rng(0)
    weights = save_safetensors(
        {
            "encoder.weight": rng.standard_normal((4, 8)).astype(np.float32),
            "encoder.bias": np.zeros(8, dtype=np.float16),
        },
        metadata={"format": "np"},
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config.json").write_text('{"hidden_size": 8}')
        (root / "model.safetensors").write_bytes(weights)
        files = [PayloadFile(p.name, p, p.stat().st_size) for p in sorted(root.iterdir())]
        payload = PayloadReader(files).read()
    segment = 256
    out = io.BytesIO()
    result = seal_with_header(
        io.BytesIO(payload), out, DATA_KEY, _header(DATA_KEY, len(payload), segment, 7)
    )
    unknown = io.BytesIO()
    seal_with_header(_Pipe(payload), unknown, DATA_KEY, _header(DATA_KEY, None, segment, 9))
    head = weights[: safetensors_header_length(weights[:8])]
    manifest = Manifest(
        model_name="acme/base",
        model_version="1.0",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        provider=PROVIDER.fingerprint,
        provider_public_key=PROVIDER.public.raw,
        data_key_id=DATA_KEY.key_id,
        blob="model.sealed",
        plaintext_size=result.plaintext_size,
        segment_size=result.segment_size,
        segment_count=result.segment_count,
        sealed_size=result.sealed_size,
        ciphertext_digest=result.ciphertext_digest,
        files=(
            FileInfo(path="config.json", size=18),
            FileInfo(path="model.safetensors", size=len(weights), tensors=safetensors_index(head)),
        ),
    )
    signed = sign_manifest(manifest, PROVIDER)
    return SealedModel(
        payload=payload,
        sealed=out.getvalue(),
        sealed_unknown_size=unknown.getvalue(),
        manifest=signed,
        manifest_json=signed.to_json(),
        safetensors=weights,
        safetensors_header=head,
    )


# --- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Encoded recipient keys of both KEMs, keys wrapped to them, and a data key file."""

    private: dict[Kem, RecipientPrivateKey]
    public_bytes: tuple[bytes, ...]
    private_bytes: tuple[bytes, ...]
    wrapped: dict[Kem, bytes]
    data_key_pem: bytes


@functools.cache
def keys() -> Keys:
    """Deterministic recipient keys (fixed seeds) and wrapped copies of ``DATA_KEY``."""
    private = {
        Kem.X25519: RecipientPrivateKey(
            Kem.X25519, x25519.X25519PrivateKey.from_private_bytes(bytes([5]) * 32)
        ),
        Kem.MLKEM768_X25519: RecipientPrivateKey(
            Kem.MLKEM768_X25519,
            x25519.X25519PrivateKey.from_private_bytes(bytes([6]) * 32),
            mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes([7]) * 64),
        ),
    }
    wrapped = {
        kem: wrap_key(DATA_KEY.raw, key.public_key(), model_id=MODEL_ID, session_id=SESSION_ID)
        for kem, key in private.items()
    }
    return Keys(
        private=private,
        public_bytes=tuple(k.public_key().to_bytes() for k in private.values()),
        private_bytes=tuple(k.to_bytes() for k in private.values()),
        wrapped=wrapped,
        data_key_pem=DATA_KEY.to_pem(),
    )


# --- notes, checkpoints, audit leaves -----------------------------------------------------------


@dataclass(frozen=True)
class Notes:
    """A log of audit events, its signed checkpoints, and the keys to check them."""

    signer: NoteSigner
    leaves: tuple[bytes, ...]
    tree: merkle.MemoryTree
    checkpoints: tuple[str, ...]  # one per tree size 1..len(leaves)
    cosigned: str  # the latest checkpoint signed by the log and a second (unknown) key


def audit_event(i: int) -> AuditEvent:
    """A valid, deterministic event number ``i``."""
    return AuditEvent(
        time=datetime(2026, 3, 1, 12, 0, i, tzinfo=UTC),
        actor=LOG_IDENTITY.fingerprint,
        role="system",
        action="round-start" if i % 2 else "key-release",
        outcome="ok" if i % 3 else "refused",
        reason=None if i % 3 else "the evidence is stale",
        session="sess-1",
        objects=ObjectIds(round=i, model="acme/base@1.0"),
        verdict={"ok": bool(i % 3), "kind": "simulated"} if i % 2 == 0 else None,
        reference=f"ref-{i}",
        details={"participants": 3, "epsilon": 1.5},
    )


@functools.cache
def notes() -> Notes:
    """Seven audit leaves, the tree over them and a signed checkpoint at every size."""
    signer = NoteSigner.from_identity(LOG_ORIGIN, LOG_IDENTITY)
    leaves = tuple(audit_event(i).leaf() for i in range(7))
    tree = merkle.MemoryTree.from_leaf_hashes([merkle.leaf_hash(leaf) for leaf in leaves])
    checkpoints = tuple(
        sign_checkpoint(Checkpoint(LOG_ORIGIN, size, tree.root(size)), signer)
        for size in range(1, len(leaves) + 1)
    )
    witness = NoteSigner.from_identity("witness.example/w1", _identity(9))
    latest = Checkpoint(LOG_ORIGIN, len(leaves), tree.root(), ("extension line",))
    return Notes(
        signer=signer,
        leaves=leaves,
        tree=tree,
        checkpoints=checkpoints,
        cosigned=sign_checkpoint(latest, signer, witness),
    )


# --- attestation --------------------------------------------------------------------------------


@functools.cache
def snp() -> dict[str, bytes]:
    """SEV-SNP reports and certificates (real AMD-signed samples)."""
    chain = x509.load_pem_x509_certificates((SNP / "virtee-cert-chain-milan.pem").read_bytes())
    ask, ark = (c.public_bytes(serialization.Encoding.DER) for c in chain)
    vcek = (SNP / "virtee-vcek-milan.der").read_bytes()
    return {
        "gsg_report": (SNP / "gsg-attestation.bin").read_bytes(),
        "gsg_vcek": (SNP / "gsg-vcek.der").read_bytes(),
        "virtee_report_hex": (SNP / "virtee-report-milan.hex").read_bytes(),
        "virtee_vcek": vcek,
        "virtee_ask": ask,
        "virtee_ark": ark,
        "cert_table": build_cert_table({VCEK_GUID: vcek, ASK_GUID: ask, ARK_GUID: ark}),
    }


@functools.cache
def tdx() -> dict[str, bytes]:
    """TDX quotes (v4, v5/TD report 1.5) and their PCS collateral (real Intel-signed samples)."""
    return {
        "quote_v4": (TDX / "dcapqvl-quote-v4.bin").read_bytes(),
        "quote_outdated": (TDX / "dcapqvl-quote-outdated.bin").read_bytes(),
        "trustee_v4": (TDX / "trustee-quote-v4.dat").read_bytes(),
        "trustee_v5": (TDX / "trustee-quote-v5.dat").read_bytes(),
        "collateral_v4": (TDX / "dcapqvl-quote-v4-collateral.json").read_bytes(),
        "collateral_outdated": (TDX / "dcapqvl-quote-outdated-collateral.json").read_bytes(),
        "tcb_info": (TDX / "trustee-tcbInfo.json").read_bytes(),
        "enclave_identity": (TDX / "trustee-enclaveIdentity.json").read_bytes(),
    }


@functools.cache
def pck_sgx_extensions() -> bytes:
    """The DER of the SGX extensions of the PCK certificate embedded in the v4 sample quote."""
    from enclave.attest._intel_pck import SGX_EXTENSIONS_OID
    from enclave.attest.tdx import parse_tdx_quote

    pem = parse_tdx_quote(tdx()["quote_v4"]).qe_certification.pck_chain_pem
    assert pem is not None
    leaf = x509.load_pem_x509_certificates(pem)[0]
    ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    return ext.value.value  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Simulated:
    """Simulated evidence from a fixed platform key, and a signed release policy accepting it."""

    evidence: Evidence
    raw: bytes
    policy: SignedReleasePolicy
    policy_json: bytes


@functools.cache
def simulated() -> Simulated:
    """Simulated evidence over ``REPORT_DATA`` at ``SIM_NOW`` and a policy that allows it."""
    measurement = bytes(range(48))
    tee = SimulatedTee(PLATFORM, measurement=measurement)
    evidence = tee.get_evidence(REPORT_DATA, now=SIM_NOW)
    policy = ReleasePolicy(
        name="acme/base",
        version=3,
        issuer=POLICY_ISSUER.fingerprint,
        issued_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
        allowed_kinds=[EvidenceKind.SIMULATED, EvidenceKind.SEV_SNP],
        allowed_measurements=[
            AllowedMeasurement(
                kind=EvidenceKind.SIMULATED, values={"measurement": measurement}, label="dev"
            )
        ],
        min_tcb={EvidenceKind.SEV_SNP: {"snp": 8}},
        allow_simulated=True,
        simulated_platform_keys=[PLATFORM.fingerprint],
    ).sign(POLICY_ISSUER)
    return Simulated(
        evidence=evidence,
        raw=evidence.raw,
        policy=policy,
        policy_json=policy.model_dump_json(indent=1).encode(),
    )


def json_doc(text: bytes) -> object:
    """Parse seed JSON text (for the structure-aware mutators)."""
    return json.loads(text)


def fuzz_vectors(target: str) -> list[Path]:
    """The minimized crashing inputs kept as regression vectors for ``target``."""
    folder = FUZZ_VECTORS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
