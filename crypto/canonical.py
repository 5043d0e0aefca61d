"""Canonical JSON: the one byte encoding every signed or hashed document uses."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict


def canonical_json(value: Any) -> bytes:
    """Encode a JSON-compatible value as sorted-key, whitespace-free UTF-8 bytes."""
    # Sorted keys and fixed separators make the encoding a function of the value alone;
    # NaN/Infinity are refused because JSON has no spelling for them that others agree on.
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class CanonicalModel(BaseModel):
    """A frozen pydantic model with a canonical byte encoding; bytes fields travel as base64."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    def canonical_bytes(self) -> bytes:
        """Return the canonical JSON encoding of this model, the bytes that get signed."""
        return canonical_json(self.model_dump(mode="json"))
