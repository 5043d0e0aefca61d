"""Manifests: signing, verification against pinned and embedded keys, every field, the blob."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from crypto.datakey import DataKey
from crypto.digest import digest_bytes
from crypto.errors import (
    ManifestFormatError,
    ManifestMismatchError,
    ManifestSignatureError,
    SignatureError,
    UnsupportedFormatError,
)
from crypto.hazmat.stream import HEADER_SIZE
from crypto.identity import Identity
from crypto.manifest import (
    FileInfo,
    Manifest,
    SignedManifest,
    TensorInfo,
    safetensors_header_length,
    safetensors_index,
    sign_manifest,
    verify_blob,
    verify_manifest,
    verify_payload,
)
from crypto.payload import PayloadFile, PayloadReader, unpack_payload
from crypto.seal import seal

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PROVIDER = Identity.generate()
KEY = DataKey.generate()


def _tensor_index(path: Path) -> tuple[TensorInfo, ...]:
    with open(path, "rb") as handle:
        head = handle.read(8)
        head += handle.read(safetensors_header_length(head) - 8)
    return safetensors_index(head)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[SignedManifest, bytes, Path]:
    root = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    save_file(
        {
            "encoder.weight": rng.standard_normal((8, 16)).astype(np.float32),
            "encoder.bias": np.zeros(16, dtype=np.float16),
            "head.weight": rng.integers(0, 9, (3, 2, 2)).astype(np.int64),
        },
        root / "model.safetensors",
        metadata={"format": "np"},
    )
    (root / "config.json").write_text('{"hidden_size": 16}')
    files = [
        PayloadFile(name=p.name, path=p, size=p.stat().st_size) for p in sorted(root.iterdir())
    ]
    reader = PayloadReader(files)
    out = io.BytesIO()
    result = seal(reader, out, KEY, size=reader.size, segment_size=256)
    infos = tuple(
        FileInfo(
            path=f.name,
            size=f.size,
            tensors=_tensor_index(f.path) if f.name.endswith(".safetensors") else None,
        )
        for f in reader.files
    )
    manifest = Manifest(
        model_name="acme/base",
        model_version="1.0",
        created_at=NOW,
        provider=PROVIDER.fingerprint,
        provider_public_key=PROVIDER.public.raw,
        data_key_id=KEY.key_id,
        blob="model.sealed",
        plaintext_size=result.plaintext_size,
        segment_size=result.segment_size,
        segment_count=result.segment_count,
        sealed_size=result.sealed_size,
        ciphertext_digest=result.ciphertext_digest,
        files=infos,
    )
    return sign_manifest(manifest, PROVIDER), out.getvalue(), root


def test_verifies_against_the_pinned_provider(artifact) -> None:
    signed, _, _ = artifact
    verified = verify_manifest(signed, trusted=PROVIDER.public)
    assert verified.pinned and verified.signer == PROVIDER.public
    assert verified.manifest == signed.manifest


def test_without_a_pinned_key_the_result_says_so(artifact) -> None:
    signed, _, _ = artifact
    verified = verify_manifest(signed)
    assert not verified.pinned
    assert verified.signer.fingerprint == PROVIDER.fingerprint


def test_json_file_round_trip_keeps_the_signature_valid(artifact, tmp_path) -> None:
    signed, _, _ = artifact
    signed.save(tmp_path / "manifest.json")
    loaded = SignedManifest.load(tmp_path / "manifest.json")
    assert loaded == signed
    assert loaded.manifest.canonical_bytes() == signed.manifest.canonical_bytes()
    verify_manifest(loaded, trusted=PROVIDER.public)
    text = json.loads((tmp_path / "manifest.json").read_text())
    assert text["manifest"]["created_at"] == "2026-01-02T03:04:05Z"
    # No plaintext digest anywhere: it would identify a public model.
    assert "sha256" not in json.dumps(text["manifest"]["files"])


def test_tensor_index_matches_the_safetensors_library(artifact) -> None:
    signed, _, root = artifact
    (weights,) = [f for f in signed.manifest.files if f.tensors is not None]
    with safe_open(str(root / "model.safetensors"), framework="numpy") as opened:
        assert [t.name for t in weights.tensors] == sorted(opened.keys())
        for tensor in weights.tensors:
            assert list(tensor.shape) == opened.get_slice(tensor.name).get_shape()
    by_name = {t.name: t for t in weights.tensors}
    assert by_name["encoder.weight"].dtype == "F32" and by_name["encoder.weight"].shape == (8, 16)
    assert by_name["encoder.bias"].dtype == "F16"
    assert by_name["head.weight"].shape == (3, 2, 2)
    spans = sorted(t.data_offsets for t in weights.tensors)
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(spans))


# --- every field is covered by the signature ---------------------------------------------------

_CHANGES = {
    "model_name": "acme/other",
    "model_version": "2.0",
    "created_at": "2030-01-01T00:00:00Z",
    "data_key_id": "00" * 32,
    "sealed_format_version": 2,
    "blob": "other.sealed",
    "plaintext_size": 1,
    "segment_size": 512,
    "segment_count": 99,
    "sealed_size": 1000,
    "ciphertext_digest": "ff" * 32,
}


@pytest.mark.parametrize("field", sorted(_CHANGES))
def test_changing_any_field_breaks_the_signature(artifact, field: str) -> None:
    signed, _, _ = artifact
    doc = json.loads(signed.to_json())
    doc["manifest"][field] = _CHANGES[field]
    altered = SignedManifest.from_json(json.dumps(doc))
    with pytest.raises(ManifestSignatureError) as info:
        verify_manifest(altered, trusted=PROVIDER.public)
    assert info.value.pinned
    with pytest.raises(ManifestSignatureError):
        verify_manifest(altered)


def test_changing_a_file_entry_or_tensor_breaks_the_signature(artifact) -> None:
    signed, _, _ = artifact
    doc = json.loads(signed.to_json())
    doc["manifest"]["files"][1]["tensors"][0]["shape"] = [9, 9]
    with pytest.raises(ManifestSignatureError):
        verify_manifest(SignedManifest.from_json(json.dumps(doc)), trusted=PROVIDER.public)
    doc = json.loads(signed.to_json())
    doc["manifest"]["files"][0]["size"] += 1
    with pytest.raises(ManifestSignatureError):
        verify_manifest(SignedManifest.from_json(json.dumps(doc)), trusted=PROVIDER.public)


def test_flipped_signature_bit(artifact) -> None:
    signed, _, _ = artifact
    sig = bytearray(signed.signature)
    sig[0] ^= 1
    altered = SignedManifest(manifest=signed.manifest, signature=bytes(sig))
    with pytest.raises(ManifestSignatureError) as info:
        verify_manifest(altered, trusted=PROVIDER.public)
    assert isinstance(info.value, SignatureError)  # also caught as a signature failure


def test_signed_by_someone_else_than_the_pinned_provider(artifact) -> None:
    signed, _, _ = artifact
    mallory = Identity.generate()
    forged = sign_manifest(
        signed.manifest.model_copy(
            update={"provider": mallory.fingerprint, "provider_public_key": mallory.public.raw}
        ),
        mallory,
    )
    with pytest.raises(ManifestMismatchError) as info:
        verify_manifest(forged, trusted=PROVIDER.public)
    assert info.value.field == "provider_public_key"
    assert info.value.expected == PROVIDER.fingerprint
    # Unpinned, the forgery is self-consistent: the result must say nothing was pinned.
    assert not verify_manifest(forged).pinned


def test_signature_made_in_another_context_is_refused(artifact) -> None:
    signed, _, _ = artifact
    other = PROVIDER.sign(signed.manifest.canonical_bytes(), context="release-policy")
    with pytest.raises(ManifestSignatureError):
        verify_manifest(SignedManifest(manifest=signed.manifest, signature=other))


# --- consistency checks name the field (signed by the real provider, so they are reached) ----


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("provider", "ed25519:" + "ab" * 32),
        ("sealed_format_version", 2),
        ("plaintext_size", 12345),
        ("segment_count", 42),
        ("sealed_size", 999_999),
    ],
)
def test_inconsistent_fields_are_named(artifact, field: str, value: object) -> None:
    signed, _, _ = artifact
    bad = sign_manifest(signed.manifest.model_copy(update={field: value}), PROVIDER)
    with pytest.raises(ManifestMismatchError) as info:
        verify_manifest(bad, trusted=PROVIDER.public)
    assert info.value.field == field
    assert info.value.got == value


def test_unsorted_file_list_is_refused(artifact) -> None:
    signed, _, _ = artifact
    files = tuple(reversed(signed.manifest.files))
    bad = sign_manifest(signed.manifest.model_copy(update={"files": files}), PROVIDER)
    with pytest.raises(ManifestMismatchError) as info:
        verify_manifest(bad)
    assert info.value.field == "files"


def test_sign_refuses_a_manifest_naming_another_provider(artifact) -> None:
    signed, _, _ = artifact
    with pytest.raises(ValueError):
        sign_manifest(signed.manifest, Identity.generate())


# --- the blob, checked without the key ----------------------------------------------------------


def test_blob_matches(artifact) -> None:
    signed, blob, _ = artifact
    check = verify_blob(signed.manifest, io.BytesIO(blob))
    assert check.sealed_size == len(blob)
    assert check.ciphertext_digest == signed.manifest.ciphertext_digest
    assert check.digest_algorithm == signed.manifest.digest_algorithm == "blake3"
    # Pinned to the digest computed outside crypto.manifest (crypto.digest's own KATs).
    assert check.ciphertext_digest == digest_bytes(blob).hex()


def test_blob_with_a_flipped_bit_fails_the_digest(artifact) -> None:
    signed, blob, _ = artifact
    changed = bytearray(blob)
    changed[HEADER_SIZE + 300] ^= 1
    with pytest.raises(ManifestMismatchError) as info:
        verify_blob(signed.manifest, io.BytesIO(bytes(changed)))
    assert info.value.field == "ciphertext_digest"
    assert info.value.expected == signed.manifest.ciphertext_digest
    assert info.value.got == digest_bytes(bytes(changed)).hex()


def test_manifest_names_its_digest_algorithm(artifact) -> None:
    signed, _, _ = artifact
    doc = json.loads(signed.to_json())
    assert doc["manifest"]["manifest_version"] == 2
    assert doc["manifest"]["digest_algorithm"] == "blake3"
    assert "ciphertext_sha256" not in doc["manifest"]


@pytest.mark.parametrize("algorithm", ["sha256", "BLAKE3", "", None])
def test_unknown_digest_algorithm_is_refused(artifact, algorithm) -> None:
    signed, _, _ = artifact
    doc = json.loads(signed.to_json())
    doc["manifest"]["digest_algorithm"] = algorithm
    with pytest.raises(ManifestFormatError) as info:
        SignedManifest.from_json(json.dumps(doc))
    assert "digest_algorithm" in str(info.value)


def test_version_1_manifest_is_refused_with_a_re_seal_hint(artifact) -> None:
    signed, _, _ = artifact
    doc = json.loads(signed.to_json())
    inner = doc["manifest"]
    inner["manifest_version"] = 1
    inner["ciphertext_sha256"] = inner.pop("ciphertext_digest")
    del inner["digest_algorithm"]
    with pytest.raises(ManifestFormatError) as info:
        SignedManifest.from_json(json.dumps(doc))
    assert "manifest_version 1" in str(info.value) and "re-seal" in str(info.value)


@pytest.mark.parametrize(("cut", "how"), [(-1, "truncated"), (HEADER_SIZE + 5, "truncated")])
def test_truncated_blob_fails_the_size(artifact, cut: int, how: str) -> None:
    signed, blob, _ = artifact
    with pytest.raises(ManifestMismatchError) as info:
        verify_blob(signed.manifest, io.BytesIO(blob[:cut]))
    assert info.value.field == "sealed_size" and how in str(info.value)


def test_blob_with_extra_bytes_fails_the_size(artifact) -> None:
    signed, blob, _ = artifact
    with pytest.raises(ManifestMismatchError) as info:
        verify_blob(signed.manifest, io.BytesIO(blob + b"\x00"))
    assert info.value.field == "sealed_size" and "extra" in str(info.value)


@pytest.mark.parametrize(
    ("offset", "field"),
    [(40, "data_key_id"), (19, "segment_size"), (27, "plaintext_size")],
)
def test_blob_header_fields_are_compared(artifact, offset: int, field: str) -> None:
    signed, blob, _ = artifact
    changed = bytearray(blob)
    changed[offset] ^= 0x01
    with pytest.raises(ManifestMismatchError) as info:
        verify_blob(signed.manifest, io.BytesIO(bytes(changed)))
    assert info.value.field == field


def test_blob_with_unknown_version_is_refused(artifact) -> None:
    signed, blob, _ = artifact
    changed = bytearray(blob)
    changed[9] = 7
    with pytest.raises(UnsupportedFormatError):
        verify_blob(signed.manifest, io.BytesIO(bytes(changed)))


def test_blob_from_another_artifact(artifact) -> None:
    signed, blob, _ = artifact
    other = io.BytesIO()
    seal(io.BytesIO(bytes(len(blob) - 200)), other, KEY, segment_size=256)
    with pytest.raises(ManifestMismatchError) as info:
        verify_blob(signed.manifest, io.BytesIO(other.getvalue()))
    assert info.value.field == "plaintext_size"


# --- the unpacked payload against the manifest ------------------------------------------------


def test_payload_matches_manifest(artifact) -> None:
    from crypto.seal import unseal_to_memory

    signed, blob, _ = artifact
    files = unpack_payload(unseal_to_memory(io.BytesIO(blob), KEY))
    verify_payload(signed.manifest, files)
    assert sorted(files) == ["config.json", "model.safetensors"]


def test_payload_mismatches_are_named(artifact) -> None:
    from crypto.seal import unseal_to_memory

    signed, blob, _ = artifact
    files = dict(unpack_payload(unseal_to_memory(io.BytesIO(blob), KEY)))
    extra = {**files, "extra.txt": memoryview(b"x")}
    with pytest.raises(ManifestMismatchError) as info:
        verify_payload(signed.manifest, extra)
    assert info.value.field == "files"
    shorter = {**files, "config.json": files["config.json"][:-1]}
    with pytest.raises(ManifestMismatchError) as info:
        verify_payload(signed.manifest, shorter)
    assert info.value.field == "files[config.json].size"
    weights = bytearray(files["model.safetensors"])
    header = bytes(weights[: safetensors_header_length(bytes(weights[:8]))])
    patched = header.replace(b"[8,16]", b"[16,8]")
    assert patched != header
    weights[: len(header)] = patched
    with pytest.raises(ManifestMismatchError) as info:
        verify_payload(signed.manifest, {**files, "model.safetensors": memoryview(weights)})
    assert info.value.field == "files[model.safetensors].tensors"


# --- malformed documents -----------------------------------------------------------------------


def test_malformed_documents(artifact) -> None:
    signed, _, _ = artifact
    with pytest.raises(ManifestFormatError):
        SignedManifest.from_json(b"{not json")
    doc = json.loads(signed.to_json())
    doc["manifest"]["unexpected"] = 1
    with pytest.raises(ManifestFormatError) as info:
        SignedManifest.from_json(json.dumps(doc))
    assert "unexpected" in str(info.value)
    doc = json.loads(signed.to_json())
    doc["manifest"]["created_at"] = "2026-01-02T03:04:05"
    with pytest.raises(ManifestFormatError) as info:
        SignedManifest.from_json(json.dumps(doc))
    assert "created_at" in str(info.value)
    doc = json.loads(signed.to_json())
    doc["manifest"]["files"][0]["path"] = "../etc/passwd"
    with pytest.raises(ManifestFormatError):
        SignedManifest.from_json(json.dumps(doc))
    doc = json.loads(signed.to_json())
    doc["manifest"]["data_key_id"] = "XYZ"
    with pytest.raises(ManifestFormatError):
        SignedManifest.from_json(json.dumps(doc))


def test_missing_manifest_file(tmp_path) -> None:
    with pytest.raises(ManifestFormatError):
        SignedManifest.load(tmp_path / "manifest.json")


@pytest.mark.parametrize(
    "header",
    [
        b"\x01",
        (10**9).to_bytes(8, "little"),
        (4).to_bytes(8, "little") + b"[1]!",
        b"\x02" + bytes(7) + b"{",
    ],
)
def test_malformed_safetensors_headers(header: bytes) -> None:
    with pytest.raises(ManifestFormatError):
        safetensors_index(header)
