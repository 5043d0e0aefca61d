"""The session's final adapter as a PEFT directory in a tar payload, sealed under the session key.

Only the sandbox ever holds the adapter in plaintext. ``seal_adapter`` packs the files
``enclave.ml.lora.export_adapter`` made in memory (``adapter_config.json`` and
``adapter_model.safetensors``) into one deterministic tar (the layout of ``crypto.payload``:
PAX headers, mode 0644, mtime 0, names sorted), seals it with ``crypto.seal`` under the 32-byte
session key the key broker released to the attested sandboxes of the session, and computes a
content MAC: HMAC-SHA256 under the same key over the session id and the payload. Sealed bytes
differ on every call (fresh salt); the MAC does not, so the owners' agents can tell that their
sandboxes sealed the same adapter without anyone learning it, and whoever unseals it after an
approved export can check it is what the sandboxes sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

from crypto.datakey import DataKey
from crypto.payload import check_member_name
from crypto.seal import seal

MAC_CONTEXT = b"fedtune/adapter-content/v1\x00"
MAC_PREFIX = "hmac-sha256:"
DIGEST_PREFIX = "sha256:"


@dataclass(frozen=True)
class SealedAdapter:
    """The sealed final adapter and what describes it (nothing here is secret)."""

    session_id: str
    sealed: bytes
    sealed_sha256: str
    payload_size: int
    content_mac: str
    key_id: str
    after_round: int
    adapter_fingerprint: str
    files: tuple[str, ...]


def pack_files(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar of ``files`` (name -> bytes), readable by ``crypto.payload``."""
    if not isinstance(files, Mapping) or not files:
        raise ValueError("files must be a non-empty mapping of names to bytes")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files, key=lambda n: n.encode("utf-8")):
            data = files[name]
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"{name}: file contents must be bytes")
            info = tarfile.TarInfo(check_member_name(name))
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(bytes(data)))
    return out.getvalue()


def content_mac(key: DataKey, session_id: str, payload: bytes) -> str:
    """``hmac-sha256:<hex>`` of the payload under the session key, bound to the session id."""
    if not isinstance(key, DataKey):
        raise TypeError("key must be a crypto.datakey.DataKey")
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session_id must be a non-empty str")
    mac = hmac.new(key.raw, MAC_CONTEXT + session_id.encode("utf-8") + b"\x00", hashlib.sha256)
    mac.update(payload)
    return MAC_PREFIX + mac.hexdigest()


def seal_adapter(
    files: Mapping[str, bytes],
    key: DataKey,
    *,
    session_id: str,
    after_round: int,
    adapter_fingerprint: str,
) -> SealedAdapter:
    """Pack, MAC and seal the adapter directory ``files`` under the session key."""
    payload = bytearray(pack_files(files))
    try:
        mac = content_mac(key, session_id, bytes(payload))
        sealed = io.BytesIO()
        seal(io.BytesIO(bytes(payload)), sealed, key, size=len(payload))
        blob = sealed.getvalue()
        return SealedAdapter(
            session_id=session_id,
            sealed=blob,
            sealed_sha256=DIGEST_PREFIX + hashlib.sha256(blob).hexdigest(),
            payload_size=len(payload),
            content_mac=mac,
            key_id=key.key_id,
            after_round=after_round,
            adapter_fingerprint=adapter_fingerprint,
            files=tuple(sorted(files)),
        )
    finally:
        payload[:] = bytes(len(payload))  # one plaintext copy fewer in memory
