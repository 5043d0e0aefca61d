"""Refusals that leave the runtime able to retry: key installs, LoadModel, Configure."""

from __future__ import annotations

import json
from dataclasses import replace

import grpc
import pytest

from crypto.datakey import DataKey
from crypto.hpke import RecipientPrivateKey, wrap_key
from crypto.identity import Identity
from crypto.manifest import SignedManifest, sign_manifest
from enclave.sandbox import PartySignature, SecretKind
from fedtune.sandbox_client import SandboxCallError

from ._support import MODEL_ID, OWNER, SESSION_ID, ProviderSide, Running, signed_terms


def _refused(call: object, *args: object, **kwargs: object) -> SandboxCallError:
    with pytest.raises(SandboxCallError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def _install(running: Running, secret: bytes, **ids: str) -> str:
    wrapped = running.broker.release(running.client, secret)
    return running.client.install_key(
        SecretKind.MODEL_DATA_KEY, wrapped,
        model_id=ids.get("model_id", MODEL_ID), session_id=ids.get("session_id", SESSION_ID),
    )


def _load(running: Running, provider: ProviderSide, *, manifest: bytes | None = None,
          blob: bytes | None = None) -> object:
    return running.client.load_model(
        manifest if manifest is not None else provider.manifest_bytes,
        blob if blob is not None else provider.blob,
        provider=provider.identity.public,
    )


def _retry_succeeds(running: Running, provider: ProviderSide) -> None:
    summary = _load(running, provider)
    assert summary.data_key_id == provider.key.key_id  # type: ignore[attr-defined]
    assert running.client.status().phase == "model-loaded"


def test_load_model_needs_an_installed_key(fresh: Running, provider_side: ProviderSide) -> None:
    error = _refused(_load, fresh, provider_side)
    assert (error.code, error.error_type) == (grpc.StatusCode.FAILED_PRECONDITION, "WrongPhase")
    assert fresh.client.status().phase == "started"


def test_key_wrapped_to_another_recipient_is_refused(
    fresh: Running, provider_side: ProviderSide
) -> None:
    fresh.broker.verdict(fresh.client)  # attested, so installing is allowed at all
    stranger = RecipientPrivateKey.generate().public_key()
    wrapped = wrap_key(provider_side.key.raw, stranger, model_id=MODEL_ID, session_id=SESSION_ID)
    error = _refused(fresh.client.install_key, SecretKind.MODEL_DATA_KEY, wrapped,
                     model_id=MODEL_ID, session_id=SESSION_ID)
    assert (error.code, error.error_type) == (grpc.StatusCode.INVALID_ARGUMENT, "KeyUnwrapError")
    assert fresh.client.status().secrets == ()
    # The refusal changed nothing: the real release still installs.
    assert _install(fresh, provider_side.key.raw) == provider_side.key.key_id


@pytest.mark.parametrize("field", ["model_id", "session_id"])
def test_key_bound_to_another_model_or_session_is_refused(
    fresh: Running, provider_side: ProviderSide, field: str
) -> None:
    wrapped = fresh.broker.release(fresh.client, provider_side.key.raw)  # for MODEL_ID, SESSION_ID
    ids = {"model_id": MODEL_ID, "session_id": SESSION_ID, field: "someone-else@2"
           if field == "model_id" else "another-session"}
    error = _refused(fresh.client.install_key, SecretKind.MODEL_DATA_KEY, wrapped, **ids)
    assert (error.code, error.error_type) == (grpc.StatusCode.INVALID_ARGUMENT, "KeyUnwrapError")
    assert fresh.client.status().phase == "attested"


def test_wrong_key_fails_with_wrong_key_error_and_the_right_one_then_loads(
    fresh: Running, provider_side: ProviderSide
) -> None:
    other = DataKey.generate()
    _install(fresh, other.raw)
    error = _refused(_load, fresh, provider_side)
    assert (error.code, error.error_type) == (grpc.StatusCode.FAILED_PRECONDITION,
                                              "WrongKeyError")
    assert other.key_id[:16] in error.message and provider_side.key.key_id[:16] in error.message
    assert fresh.client.status().phase == "key-installed"
    _install(fresh, provider_side.key.raw)
    _retry_succeeds(fresh, provider_side)


def test_manifest_signed_by_someone_else_is_refused_then_the_real_one_loads(
    fresh: Running, provider_side: ProviderSide
) -> None:
    _install(fresh, provider_side.key.raw)
    mallory = Identity.generate()
    real = SignedManifest.from_json(provider_side.manifest_bytes).manifest
    forged = sign_manifest(
        real.model_copy(update={"provider": mallory.fingerprint,
                                "provider_public_key": mallory.public.raw}),
        mallory,
    )
    error = _refused(_load, fresh, provider_side, manifest=forged.to_json())
    assert (error.code, error.error_type) == (grpc.StatusCode.PERMISSION_DENIED,
                                              "UntrustedManifest")
    assert mallory.fingerprint in error.message
    assert provider_side.identity.fingerprint in error.message

    # The provider's own key still embedded, but the manifest altered after signing.
    document = json.loads(provider_side.manifest_bytes)
    document["manifest"]["model_version"] = "2"
    error = _refused(_load, fresh, provider_side, manifest=json.dumps(document).encode())
    assert (error.code, error.error_type) == (grpc.StatusCode.PERMISSION_DENIED,
                                              "ManifestSignatureError")
    assert fresh.client.status().phase == "key-installed"
    _retry_succeeds(fresh, provider_side)


def test_segment_tampered_in_transit_is_refused_then_an_intact_stream_loads(
    fresh: Running, provider_side: ProviderSide
) -> None:
    _install(fresh, provider_side.key.raw)
    blob = bytearray(provider_side.blob)
    blob[len(blob) // 2] ^= 0x01
    error = _refused(_load, fresh, provider_side, blob=bytes(blob))
    assert (error.code, error.error_type) == (grpc.StatusCode.DATA_LOSS, "SegmentAuthError")

    error = _refused(_load, fresh, provider_side, blob=provider_side.blob[:-1000])
    assert (error.code, error.error_type) == (grpc.StatusCode.DATA_LOSS, "TruncatedError")

    error = _refused(_load, fresh, provider_side, blob=provider_side.blob + b"extra")
    assert (error.code, error.error_type) == (grpc.StatusCode.DATA_LOSS, "TrailingDataError")

    assert fresh.client.status().phase == "key-installed"
    assert fresh.client.status().model is None
    _retry_succeeds(fresh, provider_side)
    # Loaded once: a second load and a key swap are refused, the model stays.
    error = _refused(_load, fresh, provider_side)
    assert error.error_type == "WrongPhase"
    error = _refused(_install, fresh, provider_side.key.raw)
    assert error.error_type == "WrongPhase"


def test_configure_refuses_bad_input_and_keeps_the_model_for_a_retry(
    fresh: Running, provider_side: ProviderSide
) -> None:
    _install(fresh, provider_side.key.raw)
    _retry_succeeds(fresh, provider_side)
    client = fresh.client
    lines = (fresh.data_dir / "train.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"text": "Render the page template.", "label": "templates"})
    (fresh.data_dir / "bad.jsonl").write_text("\n".join(lines) + "\n")
    secret = fresh.data_dir.parent / "outside.jsonl"
    secret.write_text(lines[0] + "\n")

    terms = signed_terms(provider_side.identity)
    error = _refused(client.configure, terms, train_file="bad.jsonl")
    assert (error.code, error.error_type) == (grpc.StatusCode.INVALID_ARGUMENT, "RecordError")
    assert "bad.jsonl:3" in error.message and "'label'" in error.message

    error = _refused(client.configure, terms, train_file="../outside.jsonl")
    assert (error.code, error.error_type) == (grpc.StatusCode.INVALID_ARGUMENT, "DataPathError")

    # Properly signed terms of another session do not match the installed key.
    error = _refused(client.configure,
                     signed_terms(provider_side.identity, session_id="another-session"),
                     train_file="train.jsonl")
    assert (error.code, error.error_type) == (grpc.StatusCode.INVALID_ARGUMENT, "TermsError")

    error = _refused(client.configure, replace(terms, document=b"{not json"),
                     train_file="train.jsonl")
    assert error.error_type == "TermsError" and "not JSON" in error.message

    error = _refused(client.train, 1, session_id=SESSION_ID)
    assert error.error_type == "WrongPhase"
    assert client.status().phase == "model-loaded"

    configured = client.configure(terms, train_file="train.jsonl")
    assert configured.train_examples > 0
    assert configured.rounds == 20
    status = client.status()
    assert (status.phase, status.locked, status.rounds) == ("configured", True, 20)
    assert status.adapter_length == configured.adapter_length > 0
    assert status.adapter_fingerprint == configured.adapter_fingerprint

    # The set-up is locked: terms, keys and the model cannot be swapped by a later caller.
    error = _refused(client.configure, terms, train_file="train.jsonl")
    assert (error.code, error.error_type) == (grpc.StatusCode.FAILED_PRECONDITION,
                                              "ConfigurationLocked")
    error = _refused(_install, fresh, provider_side.key.raw)
    assert error.error_type == "ConfigurationLocked"
    error = _refused(_load, fresh, provider_side)
    assert error.error_type == "ConfigurationLocked"


@pytest.mark.parametrize(
    "forgery",
    ["provider-signature", "owner-signature", "owner-not-invited", "provider-not-named",
     "document-changed"],
)
def test_configure_refuses_terms_not_signed_by_the_parties(
    fresh: Running, provider_side: ProviderSide, forgery: str
) -> None:
    _install(fresh, provider_side.key.raw)
    _retry_succeeds(fresh, provider_side)
    good = signed_terms(provider_side.identity)
    stranger = Identity.generate()
    if forgery == "provider-signature":
        bad = replace(good, provider=PartySignature(
            good.provider.public_key, stranger.sign(good.document, context="session-terms")))
    elif forgery == "owner-signature":
        # Signed by the right key, but in another signing context.
        bad = replace(good, owner=PartySignature(
            good.owner.public_key, OWNER.sign(good.document, context="manifest")))
    elif forgery == "owner-not-invited":
        bad = signed_terms(provider_side.identity, owner=stranger)
    elif forgery == "provider-not-named":
        bad = replace(good, provider=PartySignature(
            stranger.public.raw, stranger.sign(good.document, context="session-terms")))
    else:  # rounds raised after both signed
        view = json.loads(good.document)
        view["rounds"] = 1000
        bad = replace(good, document=json.dumps(view, sort_keys=True,
                                                separators=(",", ":")).encode())
    error = _refused(fresh.client.configure, bad, train_file="train.jsonl")
    assert (error.code, error.error_type) == (grpc.StatusCode.PERMISSION_DENIED,
                                              "TermsSignatureError")
    status = fresh.client.status()
    assert (status.phase, status.locked) == ("model-loaded", False)
