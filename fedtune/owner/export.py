"""A party's side of "results need both sides": approve an export, and export the adapter.

``approve_export`` downloads the sealed adapter the orchestrator holds, hashes it and signs an
approval over exactly that digest (context ``export-approval``): a party approves the bytes it
saw. ``export_adapter`` asks for the session key wrapped to a fresh HPKE key of its own; the
orchestrator grants it only when the provider and every data owner approved (else
:class:`ExportRefused` lists who is missing). The sealed adapter is then downloaded, checked
against the digest and the sandboxes' content MAC, unsealed in memory and written as a PEFT
adapter directory (``adapter_config.json``, ``adapter_model.safetensors``) that
``peft.PeftModel.from_pretrained`` loads. The directory appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crypto.datakey import DataKey
from crypto.hpke import RecipientPrivateKey, unwrap_key
from crypto.payload import unpack_payload
from crypto.seal import unseal_to_memory
from enclave.sandbox.adapter_seal import content_mac
from fedtune.orchestrator.client import OrchestratorClient
from fedtune.owner.errors import ExportError, ExportRefused

__all__ = ["ApprovalStatus", "ExportedAdapter", "approve_export", "export_adapter"]

ADAPTER_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors"})


@dataclass(frozen=True)
class ApprovalStatus:
    """The approvals recorded over the stored sealed adapter, and who is still missing."""

    session_id: str
    adapter_sha256: str
    approved: tuple[tuple[str, str], ...]  # (role, fingerprint)
    missing: tuple[tuple[str, str], ...]  # (role, fingerprint)


@dataclass(frozen=True)
class ExportedAdapter:
    """A PEFT adapter directory written by an approved export."""

    path: Path
    files: tuple[str, ...]
    sealed_sha256: str
    content_mac: str


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def approve_export(client: OrchestratorClient, session_id: str) -> ApprovalStatus:
    """Sign this party's approval of exporting the session's stored sealed adapter."""
    if not isinstance(client, OrchestratorClient):
        raise TypeError("client must be an OrchestratorClient")
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session_id must be a non-empty str")
    digest = _sha256(client.get_sealed_adapter(session_id))
    status = client.approve_export(session_id, client.config.load_identity(), digest)
    return ApprovalStatus(
        session_id=status.session_id,
        adapter_sha256=status.adapter_sha256,
        approved=tuple((a.role, a.fingerprint) for a in status.approvals),
        missing=tuple((m.role, m.fingerprint) for m in status.missing),
    )


def export_adapter(
    client: OrchestratorClient, session_id: str, out_dir: Path
) -> ExportedAdapter:
    """Export the session's adapter into ``out_dir`` (new or empty); ExportRefused if unapproved."""
    if not isinstance(client, OrchestratorClient):
        raise TypeError("client must be an OrchestratorClient")
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session_id must be a non-empty str")
    if not isinstance(out_dir, Path):
        raise TypeError("out_dir must be a pathlib.Path")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError("output", f"{out_dir} exists and is not an empty directory; "
                          "name a new one")
    recipient = RecipientPrivateKey.generate()
    response = client.export(session_id, recipient.public_key().to_bytes())
    if response.WhichOneof("outcome") != "granted":
        refusal = response.refused
        missing = [(m.role, m.fingerprint) for m in refusal.missing]
        raise ExportRefused(
            "the export needs a signed approval from the provider and from every data owner; "
            "missing: " + ", ".join(f"{role} {fp}" for role, fp in missing)
            + " (each runs 'fedtune session approve-export SESSION')",
            missing,
        )
    granted = response.granted
    key = DataKey(unwrap_key(bytes(granted.wrapped_session_key), recipient,
                             model_id=granted.model_id, session_id=session_id))
    sealed = client.get_sealed_adapter(session_id)
    if not hmac.compare_digest(_sha256(sealed), granted.adapter_sha256):
        raise ExportError("download", "the sealed adapter downloaded is not the one approved "
                          f"({_sha256(sealed)} != {granted.adapter_sha256}); retry")
    payload = unseal_to_memory(io.BytesIO(sealed), key)
    try:
        if not hmac.compare_digest(content_mac(key, session_id, bytes(payload)),
                                   granted.content_mac):
            raise ExportError("content", "the unsealed adapter is not what the sandboxes sealed "
                              "(content MAC mismatch)")
        files = {name: bytes(data) for name, data in unpack_payload(payload).items()}
    finally:
        payload[:] = bytes(len(payload))
    if set(files) != ADAPTER_FILES:
        raise ExportError("content", f"the adapter holds {sorted(files)}, expected "
                          f"{sorted(ADAPTER_FILES)}")
    _write_dir(out_dir, files)
    return ExportedAdapter(out_dir, tuple(sorted(files)), granted.adapter_sha256,
                           granted.content_mac)


def _write_dir(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary sibling, then rename it to ``out_dir`` (all or nothing)."""
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
