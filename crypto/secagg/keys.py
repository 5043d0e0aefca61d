"""Key agreement, share envelopes and seed commitments of secure aggregation.

Each client makes two X25519 key pairs per round: the *transport* pair (c) encrypts the
shares it sends its neighbours through the server, the *mask* pair (s) agrees the pairwise
mask keys. Keeping them apart is what lets the server learn a dropped client's mask key
(from its shares) without learning anything that opens share envelopes.

Envelope: ChaCha20-Poly1305 under HKDF-SHA256(X25519(c_sk_src, c_pk_dst)), info binding
the session, round, both ids (src, dst) and both transport public keys, so the key is
directional and single-use; the AAD binds the same tuple again. One agreement per pair
gives both directions' keys (``envelope_keys``). Nonce: 12 random bytes (the key is
single-use, so a fixed nonce would do; random costs nothing and survives key misuse).
Plaintext: src (8) | dst (8) | seed share | key share (``crypto.shamir.SHARE_SIZE`` each).

Seed commitment: SHA-256 over a label, the session, round, owner and the 32-byte seed b.
The owner publishes it with its shares, so the server can check the seed it
reconstructs and never unmasks with a wrong one; b is 256 random bits, so the commitment
reveals nothing a search could exploit.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import MalformedShareError, SecAggMessageError, ShareEnvelopeError
from crypto.shamir import SHARE_SIZE, Share

__all__ = [
    "COMMITMENT_SIZE",
    "ENVELOPE_SIZE",
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "KeyPair",
    "agree",
    "envelope_keys",
    "open_envelope",
    "seal_envelope",
    "seed_commitment",
]

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
COMMITMENT_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_PLAINTEXT = struct.Struct(f">QQ{SHARE_SIZE}s{SHARE_SIZE}s")
ENVELOPE_SIZE = _NONCE_SIZE + _PLAINTEXT.size + _TAG_SIZE
"""Bytes of one share envelope."""

_TRANSPORT_INFO = b"fedtune secagg v1 share transport"
_ENVELOPE_AAD = b"fedtune secagg v1 share envelope"
_COMMITMENT_LABEL = b"fedtune secagg v1 self-seed commitment"


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair; the private half is kept as a key object (loading one costs a
    scalar multiplication) and exported raw only to be Shamir-shared."""

    key: X25519PrivateKey = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the OS random source."""
        key = X25519PrivateKey.generate()
        return cls(key, key.public_key().public_bytes_raw())

    @classmethod
    def from_private_bytes(cls, private: bytes) -> KeyPair:
        """The key pair of a raw 32-byte private key (e.g. one reconstructed from shares)."""
        key = X25519PrivateKey.from_private_bytes(private)
        return cls(key, key.public_key().public_bytes_raw())

    def private_bytes(self) -> bytes:
        """The raw private key, for secret sharing."""
        return self.key.private_bytes_raw()


def agree(own: KeyPair, peer_public: bytes) -> bytes:
    """The raw X25519 shared secret; refuses a peer key that yields the all-zero secret."""
    try:
        return own.key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # wrong length, or a low-order point (all-zero output)
        raise SecAggMessageError("public key", "not a usable X25519 public key") from exc


def _binding(session_id: bytes, round_number: int, src: int, dst: int) -> bytes:
    head = struct.pack(">B", len(session_id)) + session_id
    return head + struct.pack(">QQQ", round_number, src, dst)


def envelope_keys(
    own: KeyPair, peer_public: bytes, *, session_id: bytes, round_number: int, me: int, peer: int
) -> tuple[bytes, bytes]:
    """The (me -> peer, peer -> me) envelope keys from one X25519 agreement of transport keys."""
    secret = agree(own, peer_public)

    def derive(src: int, dst: int, src_public: bytes, dst_public: bytes) -> bytes:
        info = _TRANSPORT_INFO + _binding(session_id, round_number, src, dst)
        info += src_public + dst_public
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)

    return (
        derive(me, peer, own.public, peer_public),
        derive(peer, me, peer_public, own.public),
    )


def seal_envelope(
    key: bytes,
    *,
    session_id: bytes,
    round_number: int,
    src: int,
    dst: int,
    seed_share: Share,
    key_share: Share,
) -> bytes:
    """Encrypt the two shares ``src`` gives ``dst`` under their ``src -> dst`` envelope key."""
    nonce = os.urandom(_NONCE_SIZE)
    plaintext = _PLAINTEXT.pack(src, dst, seed_share.to_bytes(), key_share.to_bytes())
    aad = _ENVELOPE_AAD + _binding(session_id, round_number, src, dst)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_envelope(
    key: bytes,
    envelope: bytes,
    *,
    session_id: bytes,
    round_number: int,
    src: int,
    dst: int,
) -> tuple[Share, Share]:
    """Decrypt and check an envelope from ``src``; returns (seed share, key share)."""
    if len(envelope) != ENVELOPE_SIZE:
        raise ShareEnvelopeError(src)
    aad = _ENVELOPE_AAD + _binding(session_id, round_number, src, dst)
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(
            envelope[:_NONCE_SIZE], envelope[_NONCE_SIZE:], aad
        )
    except InvalidTag:
        raise ShareEnvelopeError(src) from None
    inner_src, inner_dst, seed_bytes, key_bytes = _PLAINTEXT.unpack(plaintext)
    if (inner_src, inner_dst) != (src, dst):
        raise ShareEnvelopeError(src)
    try:
        return Share.from_bytes(seed_bytes), Share.from_bytes(key_bytes)
    except MalformedShareError:
        raise ShareEnvelopeError(src) from None


def seed_commitment(seed: bytes, *, session_id: bytes, round_number: int, owner: int) -> bytes:
    """The public commitment to a self-mask seed that lets the server verify its reconstruction."""
    if len(seed) != SEED_SIZE:
        raise ValueError(f"a seed is {SEED_SIZE} bytes")
    return hashlib.sha256(
        _COMMITMENT_LABEL + _binding(session_id, round_number, owner, 0) + seed
    ).digest()
