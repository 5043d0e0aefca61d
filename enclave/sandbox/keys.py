"""Secrets the key broker releases to the sandbox: HPKE-unwrapped inside, held only in memory.

Every kind arrives HPKE-wrapped (``crypto.hpke``) to the runtime's ephemeral key, bound to one
model id and session id. The model data key is the wrapped 32 bytes themselves. A CKKS secret
context is far larger than an HPKE-wrapped key, so it travels as a KEM/DEM pair: a fresh
32-byte key, wrapped like a data key, and the serialised context sealed under that key with
``crypto.seal`` (the same authenticated stream format as the weights). The session key is
32 bytes like a data key; the sandbox seals the session's final adapter under it
(``SealAdapter``), so only attested sandboxes of the session, and an export the provider and
every owner approved, can open it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum

from crypto.datakey import DataKey
from crypto.hpke import RecipientPrivateKey, unwrap_key
from crypto.seal import unseal_to_memory
from enclave.sandbox.errors import InvalidRequest

# A TenSEAL secret context at N = 8192 is about 0.5 MB; anything far larger is not one.
MAX_SEALED_SECRET = 16 * 1024 * 1024


class SecretKind(StrEnum):
    """The secrets a sandbox accepts."""

    MODEL_DATA_KEY = "model-data-key"
    CKKS_SECRET_CONTEXT = "ckks-secret-context"  # noqa: S105 - a kind name, not a secret
    SESSION_KEY = "session-key"


@dataclass(frozen=True)
class InstalledKey:
    """A data key the broker released for one model and session."""

    key: DataKey
    model_id: str
    session_id: str

    def __repr__(self) -> str:
        return f"InstalledKey(id={self.key.short_id}..., model={self.model_id!r})"


class InstalledCkksContext:
    """The session's CKKS secret context, kept serialised; parsed once on install."""

    __slots__ = ("_context", "key_id", "model_id", "session_id")

    def __init__(self, context: bytes, *, key_id: str, model_id: str, session_id: str) -> None:
        self._context = context
        self.key_id = key_id
        self.model_id = model_id
        self.session_id = session_id

    @property
    def context(self) -> bytes:
        """The serialised secret context (never leaves the sandbox)."""
        return self._context

    def __repr__(self) -> str:
        return f"InstalledCkksContext(session={self.session_id!r})"


def _check_ids(model_id: str, session_id: str) -> None:
    for name, value in (("model_id", model_id), ("session_id", session_id)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str")
        if not value:
            raise InvalidRequest(name, "must not be empty (it is bound into the wrapped key)")


def open_data_key(
    wrapped: bytes, recipient: RecipientPrivateKey, *, model_id: str, session_id: str
) -> InstalledKey:
    """Unwrap a released data key; KeyUnwrapError when it was not wrapped for us and these ids."""
    _check_ids(model_id, session_id)
    raw = unwrap_key(wrapped, recipient, model_id=model_id, session_id=session_id)
    return InstalledKey(key=DataKey(raw), model_id=model_id, session_id=session_id)


def open_ckks_context(
    wrapped: bytes,
    sealed_secret: bytes,
    recipient: RecipientPrivateKey,
    *,
    model_id: str,
    session_id: str,
) -> InstalledCkksContext:
    """Unwrap the context key, unseal the CKKS secret context and check it is a secret one."""
    _check_ids(model_id, session_id)
    if not sealed_secret:
        raise InvalidRequest(
            "sealed_secret", "a CKKS secret context needs the sealed context next to its key"
        )
    if len(sealed_secret) > MAX_SEALED_SECRET:
        raise InvalidRequest("sealed_secret", f"larger than {MAX_SEALED_SECRET} bytes")
    raw = unwrap_key(wrapped, recipient, model_id=model_id, session_id=session_id)
    key = DataKey(raw)
    plaintext = unseal_to_memory(io.BytesIO(bytes(sealed_secret)), key)
    from crypto.ckks import load_context  # imported here: TenSEAL is heavy and CKKS optional

    context = bytes(plaintext)
    plaintext[:] = bytes(len(plaintext))  # one copy of the secret is enough
    load_context(context, secret=True)  # CkksContextError when it is not a secret context
    return InstalledCkksContext(
        context, key_id=key.key_id, model_id=model_id, session_id=session_id
    )
