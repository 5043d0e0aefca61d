"""The rows the orchestrator keeps: plain frozen records the repository reads and writes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from crypto.digest import DIGEST_ALGORITHM


@dataclass(frozen=True, slots=True)
class EnrolmentToken:
    """A one-time enrolment token, stored by its SHA-256 only."""

    token_sha256: bytes
    role: str
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None
    used_by: str | None = None


@dataclass(frozen=True, slots=True)
class Party:
    """An enrolled identity: its Ed25519 public key, role and name."""

    fingerprint: str
    public_key: bytes
    role: str
    name: str
    enrolled_at: dt.datetime


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A client certificate this deployment's CA issued."""

    serial: int
    fingerprint: str
    role: str
    name: str
    not_after: dt.datetime
    issued_at: dt.datetime
    revoked_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """One resumable upload of a sealed blob described by a signed manifest."""

    upload_id: str
    model_name: str
    model_version: str
    owner: str
    manifest: bytes
    manifest_signature: bytes
    manifest_sha256: bytes
    ciphertext_digest: bytes
    total_size: int
    chunk_size: int
    chunk_count: int
    created_at: dt.datetime
    completed_at: dt.datetime | None = None
    # Names ciphertext_digest's algorithm; rows from before schema version 4 say "sha256".
    digest_algorithm: str = DIGEST_ALGORITHM

    def chunk_length(self, index: int) -> int:
        """The exact byte length chunk ``index`` must have."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(index)
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.total_size - self.chunk_size * (self.chunk_count - 1)


@dataclass(frozen=True, slots=True)
class ModelVersionRecord:
    """A registered, complete model version and where its sealed blob lives."""

    model_name: str
    version: str
    owner: str
    manifest: bytes
    manifest_signature: bytes
    ciphertext_digest: bytes
    size: int
    blob_key: str
    registered_at: dt.datetime
    digest_algorithm: str = DIGEST_ALGORITHM


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A model name and the provider that owns it (the first to upload under the name)."""

    name: str
    owner: str
    created_at: dt.datetime
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """The signed release policy in force for a model."""

    model_name: str
    version: int
    document: bytes
    signature: bytes
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NonceRecord:
    """A single-use challenge nonce issued to one caller for one session and secret kind."""

    nonce: bytes
    issued_to: str
    session_id: str
    kind: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ReleaseDecision:
    """The broker's decision on one release, stored with the nonce it consumed."""

    nonce: bytes
    session_id: str
    caller: str
    kind: str
    released: bool
    summary: str
    decided_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Invitee:
    """A party whose signature a session needs: the provider or an invited data owner."""

    fingerprint: str
    public_key: bytes
    role: str


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A party's signature over the session terms in force when it signed."""

    fingerprint: str
    signature: bytes
    accepted_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NodeKeyRecord:
    """A data owner's SuperNode authentication key for one session, signed by the owner."""

    fingerprint: str
    public_key: bytes  # OpenSSH encoding
    signature: bytes
    registered_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SessionReportRecord:
    """The aggregator's report of a session (JSON of fedtune.federated.SessionReport)."""

    session_id: str
    report: bytes
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CkksContextRecord:
    """A CKKS session's contexts: the secret one sealed under a key the broker keeps wrapped."""

    session_id: str
    sealed_context: bytes  # crypto.seal of the serialised secret context
    public_context: bytes  # parameters and public key only
    key_id: str  # public id of the 32-byte sealing key
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SealedAdapterRecord:
    """A session's final adapter as a sandbox sealed it under the session key (ciphertext)."""

    session_id: str
    sealed_sha256: str  # "sha256:<hex>" of the sealed bytes
    sealed_size: int
    content_mac: str  # "hmac-sha256:<hex>" of the payload under the session key
    key_id: str  # public id of the session key
    after_round: int
    adapter_fingerprint: str
    uploaded_by: str
    blob_key: str
    stored_at: dt.datetime
    confirmed_by: tuple[str, ...] = ()  # owners whose sandboxes sealed the same content


@dataclass(frozen=True, slots=True)
class ExportApprovalRecord:
    """A party's signed approval to export a session's sealed adapter."""

    session_id: str
    fingerprint: str
    role: str
    adapter_sha256: str
    document: bytes  # canonical fedtune.export-approval/v1
    signature: bytes  # context "export-approval"
    approved_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One state change of a session: who, when and why."""

    from_state: str
    to_state: str
    actor: str
    reason: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session: its terms (canonical bytes as signed), state and participants."""

    session_id: str
    terms: bytes
    terms_signature: bytes
    creator: str
    state: str
    reason: str
    model_name: str
    model_version: str
    provider: str
    created_at: dt.datetime
    updated_at: dt.datetime
    invitees: tuple[Invitee, ...] = ()
    acceptances: tuple[Acceptance, ...] = ()
    transitions: tuple[TransitionRecord, ...] = ()
    node_keys: tuple[NodeKeyRecord, ...] = ()
