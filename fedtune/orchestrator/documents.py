"""Signed documents on the wire: verify the exact bytes that were signed, then parse them."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError

from crypto.canonical import CanonicalModel
from crypto.errors import SignatureError
from crypto.identity import PublicIdentity
from fedtune.orchestrator.errors import InvalidRequest

M = TypeVar("M", bound=CanonicalModel)

# A signed document larger than this is refused before parsing (terms, policies, manifests of
# even very large models stay far below it).
MAX_DOCUMENT_SIZE = 4 << 20


def parse_canonical(model: type[M], canonical: bytes, *, field: str) -> M:
    """Parse ``canonical`` as ``model`` and insist it is the model's canonical encoding."""
    if not isinstance(canonical, bytes):
        raise TypeError("canonical must be bytes")
    if not canonical:
        raise InvalidRequest(field, "the document is empty")
    if len(canonical) > MAX_DOCUMENT_SIZE:
        raise InvalidRequest(field, f"the document is larger than {MAX_DOCUMENT_SIZE} bytes")
    try:
        doc = model.model_validate_json(canonical)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise InvalidRequest(field, f"not a valid {model.__name__}: {problems}") from None
    if doc.canonical_bytes() != canonical:
        # Only the canonical encoding is accepted, so the bytes signed are the bytes meant.
        raise InvalidRequest(field, f"the {model.__name__} is not in canonical JSON encoding")
    return doc


def verify_signed(
    model: type[M],
    canonical: bytes,
    signature: bytes,
    signer: PublicIdentity,
    *,
    context: str,
    field: str,
) -> M:
    """Check ``signature`` by ``signer`` over exactly ``canonical`` in ``context``, then parse."""
    try:
        signer.verify(signature, canonical, context=context)
    except SignatureError:
        raise InvalidRequest(
            field,
            f"the signature does not verify under {signer.fingerprint} in context {context!r}",
        ) from None
    return parse_canonical(model, canonical, field=field)
