"""SuperNode keys: the signed statement by which a data owner names the SuperNode of a session.

Flower's SuperLink admits a SuperNode by its authentication key (an EC key on a NIST curve,
OpenSSH encoding) and shows the ServerApp the name the operator registered it under. A data
owner signs a ``fedtune.supernode-key/v1`` statement binding its SuperNode's public key to one
session and to its own identity; the orchestrator stores it (``RegisterNodeKey``), and the
operator registers exactly that key with the SuperLink under the owner's fingerprint
(:func:`node_name`). So the names the ServerApp sees come from the owners' signatures, not
from what a ClientApp says about itself.
"""

from __future__ import annotations

from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.canonical import CanonicalModel
from crypto.identity import FINGERPRINT_PREFIX, Identity, PublicIdentity
from fedtune.orchestrator.errors import InvalidRequest

SIGNING_CONTEXT = "supernode-key"
STATEMENT_FORMAT = "fedtune.supernode-key/v1"
MAX_KEY_SIZE = 2048
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class NodeKeyStatement(CanonicalModel):
    """What a data owner signs: this SuperNode key carries my rounds in this session."""

    format: Literal["fedtune.supernode-key/v1"] = STATEMENT_FORMAT
    session_id: str
    owner: str
    public_key: str  # OpenSSH encoding, one line


def check_node_key(public_key: bytes) -> str:
    """The OpenSSH public key as one line; InvalidRequest unless it is an EC key on a NIST curve."""
    if not isinstance(public_key, bytes | bytearray):
        raise TypeError("public_key must be bytes")
    if not public_key or len(public_key) > MAX_KEY_SIZE:
        raise InvalidRequest("public_key", f"send the OpenSSH public key (1..{MAX_KEY_SIZE} bytes)")
    try:
        text = bytes(public_key).decode("ascii").strip()
        key = serialization.load_ssh_public_key(text.encode("ascii"))
    except (UnicodeDecodeError, ValueError, TypeError, UnsupportedAlgorithm):
        # UnsupportedAlgorithm: a key-type name cryptography does not know (found by fuzzing).
        raise InvalidRequest("public_key", "not an OpenSSH public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, _CURVES):
        raise InvalidRequest(
            "public_key",
            "Flower admits SuperNodes by EC keys on NIST curves (P-256, P-384, P-521); "
            "make one with fedtune.federated.deployment.write_supernode_auth_key",
        )
    # One spelling per key: drop any comment, so the signed statement names the key alone.
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")


def statement(session_id: str, owner: str, public_key: bytes) -> NodeKeyStatement:
    """The statement ``owner`` signs for ``public_key`` in ``session_id``."""
    return NodeKeyStatement(
        session_id=session_id, owner=owner, public_key=check_node_key(public_key)
    )


def sign_node_key(identity: Identity, session_id: str, public_key: bytes) -> bytes:
    """The owner's signature over the statement for its SuperNode key."""
    message = statement(session_id, identity.fingerprint, public_key).canonical_bytes()
    return identity.sign(message, context=SIGNING_CONTEXT)


def verify_node_key(
    owner: PublicIdentity, session_id: str, public_key: bytes, signature: bytes
) -> NodeKeyStatement:
    """The statement, if ``signature`` is ``owner``'s over it; SignatureError otherwise."""
    signed = statement(session_id, owner.fingerprint, public_key)
    owner.verify(signature, signed.canonical_bytes(), context=SIGNING_CONTEXT)
    return signed


def node_name(fingerprint: str) -> str:
    """The SuperNode name for an owner: its fingerprint, as the ServerApp will see it."""
    if not isinstance(fingerprint, str) or not fingerprint.startswith(FINGERPRINT_PREFIX):
        raise ValueError(f"{fingerprint!r} is not an identity fingerprint")
    return fingerprint


__all__ = [
    "SIGNING_CONTEXT",
    "NodeKeyStatement",
    "check_node_key",
    "node_name",
    "sign_node_key",
    "statement",
    "verify_node_key",
]
