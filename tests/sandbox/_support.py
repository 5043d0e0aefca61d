"""Shared helpers of the sandbox tests: a sealed tiny model, owner records, a broker's release.

Everything is real: the provider seals with ``fedtune.provider.seal``; the "broker" verifies
the sandbox's evidence with ``enclave.attest.verify`` against a provider-signed release policy
and wraps the data key with ``crypto.hpke`` (the orchestrator's broker does the same around
its store); sandboxes are real processes under bubblewrap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto.datakey import DataKey
from crypto.hpke import RecipientPublicKey, wrap_key
from crypto.identity import Identity, PublicIdentity
from enclave.attest import (
    AllowedMeasurement,
    EvidenceKind,
    ReleasePolicy,
    SignedReleasePolicy,
    Verdict,
    new_nonce,
    report_data_for,
    runtime_measurement,
    verify,
)
from enclave.sandbox import (
    PartySignature,
    SandboxHandle,
    SandboxTerms,
    SecretKind,
    SignedSessionTerms,
    derive_sandbox_terms,
    parse_session_terms,
)
from enclave.sandbox.launcher import SandboxLauncher
from enclave.sandbox.state import ConfigureResult
from fedtune.orchestrator.terms import SIGNING_CONTEXT, SessionTerms
from fedtune.provider.seal import SealedArtifact
from fedtune.sandbox_client import EvaluateResult, SandboxClient, TrainResult

MODEL_NAME = "acme/tiny-sandbox"
MODEL_VERSION = "1"
MODEL_ID = f"{MODEL_NAME}@{MODEL_VERSION}"
SESSION_ID = "sandbox-test-session"
LABELS = ["asyncio", "email", "xml"]
# An unusual seed and width: no other test in the tree builds these exact weights, so a
# plaintext window found on disk can only come from this model.
MODEL_SEED = 4242
HIDDEN = 48
RECORDS = {
    "asyncio": [
        "Run the event loop until the future is done.",
        "Schedule a coroutine as a task on the loop.",
        "Wait for the semaphore to be released by a task.",
        "Return the transport of the subprocess.",
        "Cancel the task and wait until it finishes.",
        "Create a new event loop object for this thread.",
    ],
    "email": [
        "Parse a MIME message from a bytes object.",
        "Return the value of the Content-Type header.",
        "Send the mail to every recipient over SMTP.",
        "Attach a payload to the multipart message.",
        "Fetch the message body from the IMAP server.",
        "Encode a header value following RFC 2047.",
    ],
    "xml": [
        "Build an element tree from the XML source.",
        "Return the attribute of the DOM node.",
        "Called by the SAX parser at the start of an element.",
        "Serialize the element and its children as XML.",
        "Find every matching subelement by tag name.",
        "Escape the special characters of an attribute value.",
    ],
}


@dataclass(frozen=True)
class ProviderSide:
    """The provider's identity, its sealed artifact and data key, and the plaintext weights."""

    identity: Identity
    artifact: SealedArtifact
    key: DataKey
    model_dir: Path
    weights: bytes  # the tensor data of model.safetensors (after its JSON header)

    @property
    def manifest_bytes(self) -> bytes:
        return self.artifact.manifest_path.read_bytes()

    @property
    def blob(self) -> bytes:
        return self.artifact.blob_path.read_bytes()


def write_records(data_dir: Path, name: str = "train.jsonl") -> Path:
    """The owner's labelled records, one JSON object per line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": t, "label": label}) for label, texts in RECORDS.items()
             for t in texts]
    path = data_dir / name
    path.write_text("\n".join(lines) + "\n")
    return path


# The data owner the sandboxes of these tests serve, and the two others the terms invite.
OWNER = Identity.generate()
OTHER_OWNERS = (Identity.generate(), Identity.generate())


def session_terms(provider: PublicIdentity, **overrides: object) -> SessionTerms:
    """Session terms for the tiny model: 3 owners, secure aggregation, threshold 2, 20 rounds."""
    values: dict[str, object] = {
        "session_id": SESSION_ID,
        "model_name": MODEL_NAME,
        "model_version": MODEL_VERSION,
        "provider_fingerprint": provider.fingerprint,
        "invited_owners": sorted(o.fingerprint for o in (OWNER, *OTHER_OWNERS)),
        "rounds": 20,
        "aggregation": "secagg",
        "min_participants": 3,
        "secagg_threshold": 2,
        "task": "classification",
        "labels": LABELS,
        "learning_rate": 5e-2,
        "batch_size": 4,
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    values.update(overrides)
    return SessionTerms.model_validate(values)


def signed_terms(
    provider: Identity, *, owner: Identity = OWNER, **overrides: object
) -> SignedSessionTerms:
    """The session terms signed by the provider and accepted (signed) by ``owner``."""
    document = session_terms(provider.public, **overrides).canonical_bytes()
    return SignedSessionTerms(
        document=document,
        provider=PartySignature(
            provider.public.raw, provider.sign(document, context=SIGNING_CONTEXT)
        ),
        owner=PartySignature(owner.public.raw, owner.sign(document, context=SIGNING_CONTEXT)),
    )


def derived_terms(provider: Identity, **overrides: object) -> SandboxTerms:
    """The sandbox terms a sandbox derives from ``signed_terms(provider, **overrides)``."""
    document = session_terms(provider.public, **overrides).canonical_bytes()
    return derive_sandbox_terms(parse_session_terms(document))


def make_terms(**overrides: object) -> SandboxTerms:
    """Sandbox terms for the tiny model (unit tests); secure aggregation over 3 clients."""
    values: dict[str, object] = {
        "session_id": SESSION_ID,
        "model_id": MODEL_ID,
        "task": "classification",
        "labels": LABELS,
        "learning_rate": 5e-2,
        "batch_size": 4,
        "seed": 11,
        "min_participants": 3,
        "secagg_min_threshold": 2,
    }
    values.update(overrides)
    return SandboxTerms.model_validate(values)


def simulated_policy(
    provider: Identity, platform: Identity, measurement: bytes
) -> SignedReleasePolicy:
    """A development policy: simulated evidence from ``platform``, pinned to ``measurement``."""
    return ReleasePolicy(
        name=MODEL_NAME,
        version=1,
        issuer=provider.fingerprint,
        issued_at=datetime.now(UTC),
        allowed_kinds=[EvidenceKind.SIMULATED],
        allowed_measurements=[
            AllowedMeasurement(kind=EvidenceKind.SIMULATED, values={"measurement": measurement},
                               label="sandbox runtime under test")
        ],
        allow_simulated=True,
        simulated_platform_keys=[platform.fingerprint],
    ).sign(provider)


@dataclass
class Broker:
    """The broker-side release: verify the sandbox's evidence, then HPKE-wrap the secret to it."""

    provider: Identity
    policy: SignedReleasePolicy

    def verdict(self, client: SandboxClient) -> tuple[Verdict, bytes]:
        nonce = new_nonce()
        attested = client.attest(nonce)
        verdict = verify(
            attested.evidence, self.policy,
            report_data_for(nonce, attested.ephemeral_public_key),
            trusted_policy_issuers=[self.provider.public],
        )
        return verdict, attested.ephemeral_public_key

    def release(
        self, client: SandboxClient, secret: bytes, *, model_id: str = MODEL_ID,
        session_id: str = SESSION_ID,
    ) -> bytes:
        verdict, public = self.verdict(client)
        verdict.raise_for_failure()
        return wrap_key(
            secret, RecipientPublicKey.from_bytes(public), model_id=model_id,
            session_id=session_id,
        )


@dataclass
class Running:
    """A started sandbox with a connected client and the owner's data directory."""

    handle: SandboxHandle
    client: SandboxClient
    data_dir: Path
    work_dir: Path
    broker: Broker


def start(
    base: Path, provider: ProviderSide, platform_key: Identity, **launcher_options: object
) -> Running:
    """Start a sandbox over fresh records under ``base`` (stop it with ``stop``)."""
    data_dir = base / "data"
    write_records(data_dir)
    handle = SandboxLauncher(
        data_dir, work_dir=base / "work", platform_key=platform_key,
        **launcher_options,  # type: ignore[arg-type]
    ).start()
    client = SandboxClient(handle.socket_path)
    # Pinned to the measurement computed here, outside the sandbox, from the same code: a
    # release succeeds only if the runtime measures itself the way an owner reproduces it.
    broker = Broker(provider.identity,
                    simulated_policy(provider.identity, platform_key, runtime_measurement()))
    return Running(handle, client, data_dir, base / "work", broker)


def stop(running: Running) -> None:
    running.client.close()
    running.handle.stop()


def install_and_load(running: Running, provider: ProviderSide) -> None:
    """Release and install the model's data key, then load the sealed model."""
    wrapped = running.broker.release(running.client, provider.key.raw)
    running.client.install_key(
        SecretKind.MODEL_DATA_KEY, wrapped, model_id=MODEL_ID, session_id=SESSION_ID
    )
    running.client.load_model(provider.manifest_bytes, provider.blob,
                              provider=provider.identity.public)


@dataclass
class Trained:
    """The session-wide sandbox that went the whole way: loaded, configured, trained round 1."""

    running: Running
    configured: ConfigureResult
    before: EvaluateResult
    trained: TrainResult
    started_at: float
