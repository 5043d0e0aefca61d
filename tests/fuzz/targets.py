"""One entry point per fuzzed parser, ``bytes -> Outcome``, shared by atheris and the regressions.

Each target decodes the fuzzer's bytes into a call (a leading selector byte picks among related
parsers where a target has several), runs it under ``_contract.typed`` and, where a verifier is
involved, checks the second half of the contract: what verifies is exactly what was signed.
A target returns the Outcome of the last call it got to (a verifier after its parser), so a
regression vector can pin the typed error it must get. ``seeds()`` gives the real inputs (in
the target's own byte format) a campaign starts from.
"""

from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crypto.datakey import DataKey
from crypto.errors import (
    CryptoError,
    KeyFileError,
    KeyWrapError,
    ManifestError,
    MerkleProofError,
    NoteError,
    PayloadError,
    SealedStreamError,
)
from crypto.hpke import Kem, RecipientPrivateKey, RecipientPublicKey, unwrap_key
from crypto.manifest import SignedManifest, safetensors_index, verify_manifest, verify_payload
from crypto.merkle import inclusion_proof, verify_consistency, verify_inclusion
from crypto.note import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint, parse_note
from crypto.payload import check_member_name, unpack_payload
from crypto.seal import read_header, unseal_to_memory
from enclave.attest import verify
from enclave.attest._intel_pck import parse_sgx_extensions
from enclave.attest._tdx_collateral import parse_collateral
from enclave.attest.amd_certs import classify, load_certificate
from enclave.attest.configfs_tsm import ConfigfsTsmProvider
from enclave.attest.evidence import Evidence, EvidenceKind
from enclave.attest.policy import SignedReleasePolicy
from enclave.attest.simulated import parse_simulated, verify_simulated
from enclave.attest.snp import load_report, parse_report, verify_snp
from enclave.attest.snp_cert_table import chain_from_table, parse_cert_table
from enclave.attest.tdx import parse_tdx_quote, verify_tdx
from enclave.attest.verdict import CheckStatus
from enclave.errors import EnclaveError, MalformedEvidence, PolicyError
from fedtune.audit.errors import AuditError, InvalidEventError
from fedtune.audit.events import AuditEvent
from fedtune.audit.log import AuditLog
from fedtune.audit.verify import verify_log

from . import _seeds as seeds_
from ._contract import Outcome, typed
from ._fake_tsm import Answer, FakeTsm


class AcceptedForgery(AssertionError):
    """A verifier accepted input that differs from what was signed."""


@dataclass(frozen=True)
class Target:
    """A fuzz target: its name, its entry point and its seed inputs."""

    name: str
    run: Callable[[bytes], Outcome]
    seeds: Callable[[], list[bytes]]


def _selected(data: bytes, count: int) -> tuple[int, bytes]:
    """Split off the selector byte: (which of ``count`` parsers, the rest)."""
    if not data:
        return 0, b""
    return data[0] % count, data[1:]


def _text(data: bytes) -> str:
    # Parsers of text get every code point, lone surrogates included (str inputs can hold them).
    return data.decode("utf-8", "surrogateescape")


def _all_passed(checks: list) -> bool:
    return all(c.status is not CheckStatus.FAILED for c in checks)


# --- sealed stream, payload, keys --------------------------------------------------------------


def sealed_stream(data: bytes) -> Outcome:
    """``unseal_to_memory`` with the right key, and ``read_header``; only the originals open."""
    model = seeds_.sealed_model()
    typed(read_header, io.BytesIO(data), allowed=(SealedStreamError,))
    outcome = typed(
        unseal_to_memory, io.BytesIO(data), seeds_.DATA_KEY, allowed=(SealedStreamError,)
    )
    if outcome.ok:
        if data not in (model.sealed, model.sealed_unknown_size):
            raise AcceptedForgery("unseal opened a modified sealed stream")
        if bytes(outcome.value) != model.payload:
            raise AcceptedForgery("unseal returned other plaintext than was sealed")
    return outcome


def payload(data: bytes) -> Outcome:
    """``unpack_payload`` on a (decrypted) model archive, then ``verify_payload`` of its files."""
    outcome = typed(unpack_payload, data, allowed=(PayloadError,))
    if outcome.ok:
        for name, view in outcome.value.items():
            check_member_name(name)  # the names handed out are safe to join to a directory
            assert view.readonly and view.nbytes <= len(data)
        manifest = seeds_.sealed_model().manifest.manifest
        return typed(verify_payload, manifest, outcome.value, allowed=(ManifestError,))
    return outcome


def keys(data: bytes) -> Outcome:
    """Data key files, recipient key encodings and wrapped keys; only originals unwrap."""
    k = seeds_.keys()
    which, rest = _selected(data, 5)
    if which == 0:
        outcome = typed(DataKey.from_pem, rest, allowed=(KeyFileError,))
    elif which == 1:
        outcome = typed(RecipientPublicKey.from_bytes, rest, allowed=(KeyWrapError,))
        if outcome.ok and outcome.value.to_bytes() != rest:
            raise AssertionError("a public key parsed from bytes that are not its encoding")
    elif which == 2:
        outcome = typed(RecipientPrivateKey.from_bytes, rest, allowed=(KeyWrapError,))
    else:
        kem = Kem.X25519 if which == 3 else Kem.MLKEM768_X25519
        outcome = typed(
            unwrap_key,
            rest,
            k.private[kem],
            model_id=seeds_.MODEL_ID,
            session_id=seeds_.SESSION_ID,
            allowed=(KeyWrapError,),
        )
        # HPKE wrapping is randomised and anyone may wrap to a public key, so what can be
        # checked across processes (atheris corpora outlive them) is the key that comes out:
        # every seed wraps DATA_KEY, and a modified ciphertext must not open to anything.
        # test_sealed.py checks, within one process, that only the original bytes open.
        if outcome.ok and outcome.value != seeds_.DATA_KEY.raw:
            raise AcceptedForgery("unwrap_key opened a modified wrapped key to another key")
    return outcome


def _keys_seeds() -> list[bytes]:
    k = seeds_.keys()
    return [
        b"\x00" + k.data_key_pem,
        *(b"\x01" + p for p in k.public_bytes),
        *(b"\x02" + p for p in k.private_bytes),
        b"\x03" + k.wrapped[Kem.X25519],
        b"\x04" + k.wrapped[Kem.MLKEM768_X25519],
    ]


# --- manifests -------------------------------------------------------------------------------


def manifest(data: bytes) -> Outcome:
    """``SignedManifest.from_json`` then ``verify_manifest``: only the signed manifest verifies."""
    original = seeds_.sealed_model().manifest
    outcome = typed(SignedManifest.from_json, data, allowed=(ManifestError,))
    if outcome.ok:
        for trusted in (seeds_.PROVIDER.public, None):
            checked = typed(
                verify_manifest, outcome.value, trusted=trusted, allowed=(ManifestError,)
            )
            if checked.ok and (
                checked.value.manifest != original.manifest
                or outcome.value.signature != original.signature
            ):
                raise AcceptedForgery("verify_manifest accepted a modified manifest")
    return outcome


def safetensors(data: bytes) -> Outcome:
    """``safetensors_index`` on a safetensors file's leading bytes."""
    return typed(safetensors_index, data, allowed=(ManifestError,))


# --- SEV-SNP ---------------------------------------------------------------------------------


def _virtee_chain() -> list[bytes]:
    s = seeds_.snp()
    return [s["virtee_vcek"], s["virtee_ask"], s["virtee_ark"]]


@functools.cache
def _virtee_signed() -> bytes:
    return parse_report(load_report(seeds_.snp()["virtee_report_hex"])).signed_bytes


def snp_report(data: bytes) -> Outcome:
    """``load_report`` (hex or binary), ``parse_report``, ``verify_snp`` with the real VCEK."""
    loaded = typed(load_report, data, allowed=(MalformedEvidence,))
    if not loaded.ok:
        return loaded
    parsed = typed(parse_report, loaded.value, allowed=(MalformedEvidence,))
    evidence = Evidence(kind=EvidenceKind.SEV_SNP, raw=loaded.value, certificates=_virtee_chain())
    verified = typed(verify_snp, evidence, now=seeds_.SNP_NOW, allowed=(EnclaveError,))
    if verified.ok:
        claims, checks = verified.value
        changed = loaded.value[:0x2A0] != _virtee_signed()
        if claims is not None and _all_passed(checks) and changed:
            raise AcceptedForgery("verify_snp accepted a report whose signed bytes changed")
    return parsed if not parsed.ok else verified


def snp_certs(data: bytes) -> Outcome:
    """``parse_cert_table`` (configfs auxblob), then ``verify_snp`` with the certificates in it."""
    table = typed(parse_cert_table, data, allowed=(MalformedEvidence,))
    if not table.ok:
        return table
    raw = load_report(seeds_.snp()["virtee_report_hex"])
    evidence = Evidence(
        kind=EvidenceKind.SEV_SNP, raw=raw, certificates=chain_from_table(table.value)
    )
    verified = typed(verify_snp, evidence, now=seeds_.SNP_NOW, allowed=(EnclaveError,))
    if verified.ok:
        claims, checks = verified.value
        if claims is not None and _all_passed(checks):
            _same_certificates(evidence.certificates, _virtee_chain())
    return verified


def _same_certificates(got: list[bytes], originals: list[bytes]) -> None:
    """Every certificate that took part in a passing verification (one whose subject names an
    AMD role; verify_snp ignores the rest) must be one of the originals' signed parts (TBS and
    signature): anything else was not checked by its issuer's key."""
    signed = set()
    for der in originals:
        cert = load_certificate(der, field="original")
        signed.add((cert.tbs_certificate_bytes, cert.signature))
    for der in got:
        try:
            cert = load_certificate(der, field="supplied")
        except MalformedEvidence:
            continue
        if classify(cert) is None:
            continue
        if (cert.tbs_certificate_bytes, cert.signature) not in signed:
            raise AcceptedForgery("verify_snp passed with a certificate no AMD key signed")


# --- TDX -------------------------------------------------------------------------------------


@functools.cache
def _tdx_signed_parts() -> set[tuple[bytes, ...]]:
    parts = set()
    for name in ("quote_v4", "quote_outdated", "trustee_v4", "trustee_v5"):
        parts.add(_signed_parts(seeds_.tdx()[name]))
    return parts


def _signed_parts(raw: bytes) -> tuple[bytes, ...]:
    quote = parse_tdx_quote(raw)
    qe = quote.qe_certification
    return (quote.signed_data, quote.attestation_key, qe.qe_report_raw, qe.qe_auth_data)


def tdx_quote(data: bytes) -> Outcome:
    """``parse_tdx_quote`` and ``verify_tdx`` without collateral (chain, signatures, binding)."""
    parsed = typed(parse_tdx_quote, data, allowed=(MalformedEvidence,))
    if not parsed.ok:
        return parsed
    evidence = Evidence(kind=EvidenceKind.TDX, raw=data)
    verified = typed(verify_tdx, evidence, now=seeds_.TDX_NOW, allowed=(EnclaveError,))
    accepted = verified.ok and verified.value[0] is not None
    if accepted and _signed_parts(data) not in _tdx_signed_parts():
        raise AcceptedForgery("verify_tdx accepted a quote whose signed parts changed")
    return verified


@functools.cache
def _collateral_documents() -> tuple[bytes, bytes, bytes, bytes]:
    original = parse_collateral(seeds_.tdx()["collateral_v4"].decode())
    assert original.tcb_info_document is not None and original.qe_identity_document is not None
    assert original.root_ca_crl is not None and original.pck_crl is not None
    return (
        original.tcb_info_document.body,
        original.qe_identity_document.body,
        original.root_ca_crl.tbs_certlist_bytes,
        original.pck_crl.tbs_certlist_bytes,
    )


def tdx_collateral(data: bytes) -> Outcome:
    """``parse_collateral``, then ``verify_tdx`` of the real v4 quote with it."""
    text = _text(data)
    parsed = typed(parse_collateral, text, allowed=(MalformedEvidence,))
    if not parsed.ok:
        return parsed
    evidence = Evidence(kind=EvidenceKind.TDX, raw=seeds_.tdx()["quote_v4"], collateral=text)
    verified = typed(verify_tdx, evidence, now=seeds_.TDX_NOW, allowed=(EnclaveError,))
    if verified.ok and verified.value[0] is not None:
        tcb, qe, root_crl, pck_crl = _collateral_documents()
        got = parsed.value
        if (
            (got.tcb_info_document is not None and got.tcb_info_document.body != tcb)
            or (got.qe_identity_document is not None and got.qe_identity_document.body != qe)
            or (got.root_ca_crl is not None and got.root_ca_crl.tbs_certlist_bytes != root_crl)
            or (got.pck_crl is not None and got.pck_crl.tbs_certlist_bytes != pck_crl)
        ):
            raise AcceptedForgery("verify_tdx accepted collateral Intel did not sign")
    return verified


def pck_extensions(data: bytes) -> Outcome:
    """``parse_sgx_extensions`` (the DER inside an Intel PCK certificate)."""
    return typed(parse_sgx_extensions, data, allowed=(MalformedEvidence,))


# --- configfs-tsm ------------------------------------------------------------------------------


def _tsm_fields(data: bytes) -> Answer:
    """selector | u16 outblob length | outblob | auxblob (selector bit 2: no auxblob file)."""
    which, rest = _selected(data, 256)
    provider = (b"sev_guest\n", b"tdx_guest\n", b"", rest[:12])[which & 3]
    (size,) = struct.unpack(">H", rest[:2].ljust(2, b"\x00"))
    outblob, auxblob = rest[2 : 2 + size], rest[2 + size :]
    generation = (b"1\n", b"  7 \n", b"x", b"1" * 5000)[(which >> 3) & 3]
    return Answer(provider, outblob, None if which & 4 else auxblob, generation)


def _scratch(prefix: str) -> Path:
    """A temporary folder removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


_TSM_ROOT = _scratch("fedtune-fuzz-tsm-")


def configfs(data: bytes) -> Outcome:
    """``ConfigfsTsmProvider.get_evidence`` against a fake kernel serving these bytes."""
    fake = FakeTsm(_TSM_ROOT)
    fake.answer = _tsm_fields(data)
    provider = ConfigfsTsmProvider(_TSM_ROOT, max_attempts=1)
    with fake.installed():
        outcome = typed(provider.get_evidence, seeds_.REPORT_DATA, allowed=(EnclaveError,))
    left = fake.leftovers()
    if left:
        for entry in left:
            for child in entry.iterdir():
                child.unlink()
            os.rmdir(entry)
        raise AssertionError(f"the provider left report entries behind: {left}")
    return outcome


def _configfs_seeds() -> list[bytes]:
    s, t = seeds_.snp(), seeds_.tdx()
    report = s["gsg_report"]
    return [
        b"\x00" + struct.pack(">H", len(report)) + report + s["cert_table"],
        b"\x04" + struct.pack(">H", len(report)) + report,
        b"\x05" + struct.pack(">H", len(t["quote_v4"])) + t["quote_v4"],
    ]


# --- notes, checkpoints, audit -----------------------------------------------------------------


def _skey() -> str:
    import base64

    signer = seeds_.notes().signer
    seed = seeds_.LOG_IDENTITY.private_key.private_bytes_raw()
    blob = base64.b64encode(b"\x01" + seed).decode()
    return f"PRIVATE+KEY+{signer.name}+{signer.key_id:08x}+{blob}"


def note(data: bytes) -> Outcome:
    """Signed notes and checkpoints, verifier and signer key strings, checkpoint bodies."""
    n = seeds_.notes()
    which, rest = _selected(data, 5)
    if which == 0:
        outcome = typed(
            open_checkpoint,
            rest,
            [n.signer.verifier],
            origin=seeds_.LOG_ORIGIN,
            allowed=(NoteError,),
        )
        if outcome.ok:
            checkpoint, opened = outcome.value
            size = checkpoint.size
            if not 1 <= size <= len(n.leaves) or checkpoint.root_hash != n.tree.root(size):
                raise AcceptedForgery("open_checkpoint accepted a checkpoint the log never signed")
            texts = {parse_note(c)[0] for c in (*n.checkpoints, n.cosigned)}
            if opened.text not in texts:
                raise AcceptedForgery("open_checkpoint accepted a note text the log never signed")
        return outcome
    if which == 1:
        return typed(parse_note, rest, allowed=(NoteError,))
    if which == 2:
        return typed(NoteVerifier.from_vkey, _text(rest), allowed=(NoteError,))
    if which == 3:
        return typed(NoteSigner.from_skey, _text(rest), allowed=(NoteError,))
    return typed(Checkpoint.from_text, _text(rest), allowed=(NoteError,))


def _note_seeds() -> list[bytes]:
    n = seeds_.notes()
    return [
        *(b"\x00" + c.encode() for c in (n.checkpoints[0], n.checkpoints[-1], n.cosigned)),
        b"\x01" + n.cosigned.encode(),
        b"\x02" + n.signer.verifier.vkey.encode(),
        b"\x03" + _skey().encode(),
        b"\x04" + parse_note(n.cosigned)[0].encode(),
    ]


def audit_leaf(data: bytes) -> Outcome:
    """``AuditEvent.from_leaf``: a leaf decodes only from its one canonical encoding."""
    outcome = typed(AuditEvent.from_leaf, data, allowed=(InvalidEventError,))
    if outcome.ok and outcome.value.leaf() != data:
        raise AssertionError("an event decoded from bytes that are not its canonical leaf")
    return outcome


def _proof_input(index: int, size: int, proof: list[bytes], second: int = 0) -> bytes:
    return bytes([index, size, second]) + b"".join(proof)


def merkle_proof(data: bytes) -> Outcome:
    """``verify_inclusion`` / ``verify_consistency`` against the seed log: only true proofs pass.

    Layout: index | size | second size (consistency when non-zero) | 32-byte hashes. Sizes are
    taken modulo the seed tree's size range; a trailing partial hash is passed as it is.
    """
    n = seeds_.notes()
    tree, count = n.tree, len(n.leaves)
    head = data[:3].ljust(3, b"\x00")
    chunks = [data[i : i + 32] for i in range(3, len(data), 32)]
    size = head[1] % count + 1
    if head[2]:
        size2 = head[2] % count + 1
        outcome = typed(
            verify_consistency,
            size,
            size2,
            chunks,
            tree.root(size),
            tree.root(size2),
            allowed=(MerkleProofError,),
        )
        if outcome.ok and size < size2 and chunks != tree.consistency_proof(size, size2):
            raise AcceptedForgery("verify_consistency accepted a proof that is not the proof")
        return outcome
    index = head[0] % size
    outcome = typed(
        verify_inclusion,
        tree.leaf_hash(index),
        index,
        size,
        chunks,
        tree.root(size),
        allowed=(MerkleProofError,),
    )
    if outcome.ok and chunks != inclusion_proof(index, size, tree.subtree_hash):
        raise AcceptedForgery("verify_inclusion accepted a proof that is not the proof")
    return outcome


def _merkle_seeds() -> list[bytes]:
    tree = seeds_.notes().tree
    return [
        _proof_input(2, 6, inclusion_proof(2, 7, tree.subtree_hash)),
        _proof_input(0, 4, inclusion_proof(0, 5, tree.subtree_hash)),
        _proof_input(0, 2, tree.consistency_proof(3, 7), second=6),
    ]


@functools.cache
def _audit_log() -> tuple[AuditLog, Path]:
    """A real log holding the seed events, one checkpoint per append; lives for the process."""
    folder = _scratch("fedtune-fuzz-audit-")
    log = AuditLog.open(folder / "audit.db", seeds_.LOG_IDENTITY, seeds_.LOG_ORIGIN)
    atexit.register(log.close)  # runs before the folder's removal (atexit is last in, first out)
    for i in range(len(seeds_.notes().leaves)):
        log.append(seeds_.audit_event(i))
    return log, folder


def audit_saved_checkpoint(data: bytes) -> Outcome:
    """``verify_log`` with this as the checkpoint saved last time; a refusal leaves it untouched."""
    log, folder = _audit_log()
    saved = folder / "saved.checkpoint"
    saved.write_bytes(data)
    outcome = typed(verify_log, log, log.verifier, saved_checkpoint=saved, allowed=(AuditError,))
    after = saved.read_bytes()
    if outcome.ok:
        if after != log.checkpoint().encode():
            raise AssertionError("a successful verification did not save the latest checkpoint")
    elif after != data:
        raise AssertionError("a refused verification changed the saved checkpoint")
    return outcome


def _audit_seeds() -> list[bytes]:
    n = seeds_.notes()
    return [c.encode() for c in (n.checkpoints[0], n.checkpoints[3], n.checkpoints[-1])]


# --- simulated evidence, release policies, verify() -------------------------------------------


def simulated(data: bytes) -> Outcome:
    """``parse_simulated`` and ``verify_simulated``: only the platform-signed bytes verify."""
    outcome = typed(parse_simulated, data, allowed=(MalformedEvidence,))
    if outcome.ok:
        evidence = Evidence(kind=EvidenceKind.SIMULATED, raw=data)
        checked = typed(
            verify_simulated,
            evidence,
            now=seeds_.SIM_NOW,
            trusted_keys=[seeds_.PLATFORM.public],
            allowed=(EnclaveError,),
        )
        if checked.ok and _all_passed(checked.value[1]) and data != seeds_.simulated().raw:
            raise AcceptedForgery("verify_simulated accepted evidence the platform did not sign")
        return checked
    return outcome


_POLICY_DIR = _scratch("fedtune-fuzz-policy-")


def policy(data: bytes) -> Outcome:
    """``SignedReleasePolicy.load`` and ``.verify``: only the issuer-signed policy is returned."""
    path = _POLICY_DIR / "policy.json"
    path.write_bytes(data)
    outcome = typed(SignedReleasePolicy.load, path, allowed=(PolicyError,))
    if outcome.ok:
        checked = typed(outcome.value.verify, [seeds_.POLICY_ISSUER.public], allowed=(PolicyError,))
        if checked.ok and checked.value != seeds_.simulated().policy.policy:
            raise AcceptedForgery("a modified release policy verified")
        return checked
    return outcome


# --- secure aggregation and CKKS (crypto.secagg.messages, crypto.ckks) -------------------------


@functools.cache
def _secagg() -> tuple[object, list[object]]:
    """A binding and one message of each of the eight kinds (as in the secagg wire tests)."""
    import numpy as np

    from crypto.secagg import RoundParams
    from crypto.secagg.keys import ENVELOPE_SIZE
    from crypto.secagg.messages import (
        Binding,
        CollectRequest,
        MaskedVector,
        PublicKeys,
        SetupRequest,
        SetupResponse,
        ShareKeysRequest,
        ShareKeysResponse,
        UnmaskRequest,
        UnmaskResponse,
    )
    from crypto.shamir import Share

    binding = Binding(b"sess", 7, 0x0102030405060708)
    keys = PublicKeys(bytes(range(32)), bytes(range(32, 64)))
    params = RoundParams.create(b"sess", 7, [5, 6, 7, 0x0102030405060708], 10, graph_seed=bytes(32))
    messages = [
        SetupRequest(params),
        SetupResponse(keys),
        ShareKeysRequest({3: keys, 1: PublicKeys(b"\x01" * 32, b"\x02" * 32)}),
        ShareKeysResponse(b"\xcc" * 32, {9: b"\xee" * ENVELOPE_SIZE, 4: b"\xdd" * ENVELOPE_SIZE}),
        CollectRequest({2: b"\xab" * ENVELOPE_SIZE}),
        MaskedVector((1, 4), np.arange(11, dtype="<u4")),
        UnmaskRequest((1, 2, 3), (9,)),
        UnmaskResponse({3: Share(4, 5), 1: Share(4, 6)}, {9: Share(4, 7)}),
    ]
    return binding, messages


def secagg_messages(data: bytes) -> Outcome:
    """Secure-aggregation stage messages: parse strictly, bound, in their one encoding."""
    from crypto.errors import SecAggError

    binding, messages = _secagg()
    which, rest = _selected(data, len(messages))
    cls = type(messages[which])
    outcome = typed(cls.from_bytes, rest, binding, allowed=(SecAggError,))  # type: ignore[attr-defined]
    if outcome.ok and outcome.value.to_bytes(binding) != rest:
        raise AssertionError(f"a {cls.__name__} parsed from bytes that are not its encoding")
    return outcome


def _secagg_seeds() -> list[bytes]:
    binding, messages = _secagg()
    return [bytes([i]) + m.to_bytes(binding) for i, m in enumerate(messages)]  # type: ignore[attr-defined]


@functools.cache
def _ckks() -> tuple[bytes, bytes, bytes]:
    """A session's secret and public CKKS contexts and an encrypted update of 10 values."""
    import numpy as np

    from crypto import ckks

    secret = ckks.generate_secret_context()
    public = ckks.public_context(secret)
    return secret, public, ckks.encrypt_update(public, np.linspace(-1, 1, 10), 3.0, max_weight=4.0)


def ckks(data: bytes) -> Outcome:
    """CKKS contexts and packed ciphertexts: loading, adding (aggregator), decrypting (sandbox)."""
    from crypto import ckks as ckks_

    secret, public, blob = _ckks()
    which, rest = _selected(data, 3)
    if which == 0:
        return typed(ckks_.load_context, rest, secret=False, allowed=(CryptoError,))
    if which == 1:
        return typed(ckks_.add_encrypted, public, [rest, blob], allowed=(CryptoError,))
    outcome = typed(ckks_.decrypt_vector, secret, rest, allowed=(CryptoError,))
    if outcome.ok:
        assert outcome.value.ndim == 1 and len(outcome.value) >= 1
    return outcome


def _ckks_seeds() -> list[bytes]:
    _, public, blob = _ckks()
    return [b"\x00" + public, b"\x01" + blob, b"\x02" + blob]


_KINDS = (EvidenceKind.SEV_SNP, EvidenceKind.TDX, EvidenceKind.SIMULATED)


def evidence(data: bytes) -> Outcome:
    """``enclave.attest.verify`` end to end on Evidence of any kind: a Verdict, never a raise."""
    which, raw = _selected(data, 3)
    kind = _KINDS[which]
    certificates = _virtee_chain() if kind is EvidenceKind.SEV_SNP else []
    sim = seeds_.simulated()
    outcome = typed(
        verify,
        Evidence(kind=kind, raw=raw, certificates=certificates),
        sim.policy,
        seeds_.REPORT_DATA,
        trusted_policy_issuers=[seeds_.POLICY_ISSUER.public],
        now=seeds_.SIM_NOW,
        # verify() turns malformed evidence into failed checks: it raises on nothing.
        allowed=(),
    )
    if outcome.ok and outcome.value.ok and raw != sim.raw:
        raise AcceptedForgery("verify() accepted evidence that was not the signed original")
    return outcome


def _evidence_seeds() -> list[bytes]:
    return [
        b"\x00" + load_report(seeds_.snp()["virtee_report_hex"]),
        b"\x01" + seeds_.tdx()["quote_v4"],
        b"\x02" + seeds_.simulated().raw,
    ]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "sealed_stream",
            sealed_stream,
            lambda: [seeds_.sealed_model().sealed, seeds_.sealed_model().sealed_unknown_size],
        ),
        Target("payload", payload, lambda: [seeds_.sealed_model().payload]),
        Target("keys", keys, _keys_seeds),
        Target("manifest", manifest, lambda: [seeds_.sealed_model().manifest_json]),
        Target(
            "safetensors",
            safetensors,
            lambda: [seeds_.sealed_model().safetensors_header, seeds_.sealed_model().safetensors],
        ),
        Target(
            "snp_report",
            snp_report,
            lambda: [seeds_.snp()["virtee_report_hex"], seeds_.snp()["gsg_report"]],
        ),
        Target("snp_certs", snp_certs, lambda: [seeds_.snp()["cert_table"]]),
        Target(
            "tdx_quote",
            tdx_quote,
            lambda: [seeds_.tdx()[k] for k in ("quote_v4", "quote_outdated", "trustee_v5")],
        ),
        Target("tdx_collateral", tdx_collateral, lambda: [seeds_.tdx()["collateral_v4"]]),
        Target("pck_extensions", pck_extensions, lambda: [seeds_.pck_sgx_extensions()]),
        Target("configfs", configfs, _configfs_seeds),
        Target("note", note, _note_seeds),
        Target("audit_leaf", audit_leaf, lambda: list(seeds_.notes().leaves[:3])),
        Target("merkle_proof", merkle_proof, _merkle_seeds),
        Target("audit_saved_checkpoint", audit_saved_checkpoint, _audit_seeds),
        Target("simulated", simulated, lambda: [seeds_.simulated().raw]),
        Target("policy", policy, lambda: [seeds_.simulated().policy_json]),
        Target("evidence", evidence, _evidence_seeds),
        Target("secagg_messages", secagg_messages, _secagg_seeds),
        Target("ckks", ckks, _ckks_seeds),
    )
}
