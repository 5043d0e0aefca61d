"""C2SP signed notes (c2sp.org/signed-note) and log checkpoints (c2sp.org/tlog-checkpoint).

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
``— <key name> <base64(4-byte key ID || signature)>``. Only Ed25519 (signature type 0x01) is
implemented; its key ID is ``SHA-256(key name || 0x0A || 0x01 || public key)[:4]``. Verifier
keys travel in the ``<name>+<key ID hex>+<base64(0x01 || public key)>`` form shared with
golang.org/x/mod/sumdb/note, so Go witnesses and monitors read our checkpoints and we read theirs.

Parsing is strict: anything outside the grammar raises ``MalformedNoteError`` (or
``MalformedCheckpointError`` for the checkpoint body) before a signature is looked at; a
signature by an unknown key is ignored, one by a trusted key must verify, and at least one must.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.errors import (
    CheckpointOriginError,
    MalformedCheckpointError,
    MalformedNoteError,
    MalformedVerifierKeyError,
    NoteSignatureError,
    UnverifiedNoteError,
)
from crypto.identity import Identity, PublicIdentity

__all__ = [
    "MAX_LINE_CHARS",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "SIGNATURE_TYPE_ED25519",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "is_valid_key_name",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
]

# signed-note §Signature types: 0x01 is Ed25519 as that document specifies it.
SIGNATURE_TYPE_ED25519 = 0x01
# signed-note §Format: verifiers SHOULD cap the number of signatures and MUST accept 16; we
# accept as many as golang.org/x/mod/sumdb/note does.
MAX_SIGNATURES = 100
# A checkpoint is a few hundred bytes; refusing megabytes early keeps parsing cheap.
MAX_NOTE_SIZE = 1 << 20
# Longest line accepted anywhere in a note: room for a post-quantum signature line (signed-note
# warns they approach 5 kB, about 6.7 kB in base64), far below anything that hurts to parse.
MAX_LINE_CHARS = 8192

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_ED25519_PUBLIC_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_ID_SIZE = 4
_MAX_UINT64 = (1 << 64) - 1
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_ROOT_HASH_SIZE = 32  # tlog-checkpoint: the RFC 6962 (SHA-256) Merkle tree root
# A uint64 has at most 20 decimal digits; longer lines are refused before int() sees them.
_MAX_UINT64_DIGITS = len(str(_MAX_UINT64))


def _is_utf8(text: str) -> bool:
    # A str can hold lone surrogates, which have no UTF-8 encoding and so no signed bytes.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_valid_key_name(name: str) -> bool:
    """signed-note: a key name is non-empty UTF-8, without Unicode spaces or ``+``."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(c.isspace() for c in name)
        and _CONTROL.search(name) is None
        and _is_utf8(name)
    )


def key_id(name: str, signature_type: int, public_key: bytes) -> int:
    """The RECOMMENDED key ID: SHA-256(name || 0x0A || type || public key)[:4] as a uint32."""
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")
    if not 0 <= signature_type <= 0xFF:
        raise ValueError(f"signature type must be one byte, got {signature_type}")
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([signature_type]) + bytes(public_key)
    ).digest()
    return int.from_bytes(digest[:_KEY_ID_SIZE], "big")


def _strict_b64decode(text: str) -> bytes:
    """Standard padded base64 (RFC 4648 §4) in its one canonical spelling, else ValueError."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not standard base64") from exc
    # b64decode ignores non-zero padding bits; two spellings of one value are refused.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 note key: its name, key ID and public key."""

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValueError(f"invalid key name {self.name!r}: non-empty, no spaces, no '+'")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise ValueError("public_key must be the 32-byte raw Ed25519 public key")
        want = key_id(self.name, SIGNATURE_TYPE_ED25519, self.public_key)
        if self.key_id != want:
            raise ValueError(f"key_id {self.key_id:08x} does not match the key, want {want:08x}")

    @classmethod
    def from_public(
        cls, name: str, public: PublicIdentity | Ed25519PublicKey | bytes
    ) -> NoteVerifier:
        """The verifier for ``public`` under key name ``name``."""
        if isinstance(public, PublicIdentity):
            raw = public.raw
        elif isinstance(public, Ed25519PublicKey):
            raw = public.public_bytes_raw()
        elif isinstance(public, bytes):
            raw = public
        else:
            raise TypeError(f"public must be a PublicIdentity, key or bytes, got {type(public)}")
        return cls(name, key_id(name, SIGNATURE_TYPE_ED25519, raw), raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<key ID, 8 lowercase hex>+<base64(0x01 || 32-byte key)>``."""
        if not isinstance(vkey, str):
            raise TypeError(f"vkey must be str, got {type(vkey).__name__}")
        name, _, rest = vkey.partition("+")
        hex_id, _, key64 = rest.partition("+")
        if not is_valid_key_name(name):
            raise MalformedVerifierKeyError("the key name is empty or has spaces or '+'")
        if _KEY_ID_HEX.fullmatch(hex_id) is None:
            raise MalformedVerifierKeyError("the key ID is not 8 lowercase hex digits")
        try:
            key = _strict_b64decode(key64)
        except ValueError as exc:
            raise MalformedVerifierKeyError(f"the key is {exc}") from None
        if not key:
            raise MalformedVerifierKeyError("the key is empty")
        if int(hex_id, 16) != key_id(name, key[0], key[1:]):
            raise MalformedVerifierKeyError("the key ID does not match the name and key")
        if key[0] != SIGNATURE_TYPE_ED25519:
            raise MalformedVerifierKeyError(f"unsupported signature type {key[0]:#04x}")
        if len(key) != 1 + _ED25519_PUBLIC_SIZE:
            raise MalformedVerifierKeyError(
                f"an Ed25519 key is {_ED25519_PUBLIC_SIZE} bytes, got {len(key) - 1}"
            )
        return cls(name, int(hex_id, 16), key[1:])

    @property
    def vkey(self) -> str:
        """This key in verifier-key form."""
        encoded = _b64(bytes([SIGNATURE_TYPE_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature over ``text``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 note signing key with its key name."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError(f"key must be an Ed25519PrivateKey, got {type(key).__name__}")
        self._key = key
        self._verifier = NoteVerifier.from_public(name, key.public_key())

    @classmethod
    def from_identity(cls, name: str, identity: Identity) -> NoteSigner:
        """Sign notes as ``name`` with a party identity (the note format signs its own bytes)."""
        if not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        return cls(name, identity.private_key)

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || 32-byte seed)>`` (Go's form)."""
        prefix, _, rest = skey.partition("+")
        second, _, rest = rest.partition("+")
        name, _, rest = rest.partition("+")
        hex_id, _, key64 = rest.partition("+")
        if (prefix, second) != ("PRIVATE", "KEY"):
            raise MalformedVerifierKeyError("a signer key starts with PRIVATE+KEY+")
        if not is_valid_key_name(name) or _KEY_ID_HEX.fullmatch(hex_id) is None:
            raise MalformedVerifierKeyError("bad key name or key ID in signer key")
        try:
            seed = _strict_b64decode(key64)
        except ValueError as exc:
            raise MalformedVerifierKeyError(f"the signer key is {exc}") from None
        if len(seed) != 1 + 32 or seed[0] != SIGNATURE_TYPE_ED25519:
            raise MalformedVerifierKeyError("not an Ed25519 signer key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed[1:]))
        if signer.key_id != int(hex_id, 16):
            raise MalformedVerifierKeyError("the key ID does not match the signer key")
        return signer

    @property
    def name(self) -> str:
        """The key name written in signature lines."""
        return self._verifier.name

    @property
    def key_id(self) -> int:
        """The 32-bit key ID."""
        return self._verifier.key_id

    @property
    def verifier(self) -> NoteVerifier:
        """The matching verifier (publish ``verifier.vkey``)."""
        return self._verifier

    def sign(self, text: bytes) -> bytes:
        """The raw Ed25519 signature over ``text``."""
        return self._key.sign(text)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the ID."""

    key_name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        """The signature line, newline included."""
        blob = self.key_id.to_bytes(_KEY_ID_SIZE, "big") + self.signature
        return f"{_SIGNATURE_PREFIX}{self.key_name} {_b64(blob)}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and which signatures were verified or ignored as unknown."""

    text: str
    signatures: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("the text must end with a newline")
    if _CONTROL.search(text):
        raise MalformedNoteError("the text contains an ASCII control character")


def sign_note(text: str, *signers: NoteSigner) -> str:
    """Sign ``text`` (ending in a newline) with each signer; return the encoded note."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if not signers:
        raise ValueError("at least one signer is required")
    _check_text(text)
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedNoteError("the text is not valid UTF-8 (lone surrogate)") from None
    lines = [NoteSignature(s.name, s.key_id, s.sign(payload)).line for s in signers]
    return text + "\n" + "".join(lines)


def parse_note(
    msg: str | bytes, *, max_size: int = MAX_NOTE_SIZE
) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and signature lines, checking syntax only (no trust)."""
    if isinstance(msg, bytes | bytearray):
        if len(msg) > max_size:
            raise MalformedNoteError(f"the note is {len(msg)} bytes, the limit is {max_size}")
        try:
            msg = bytes(msg).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNoteError("the note is not valid UTF-8") from None
    elif not isinstance(msg, str):
        raise TypeError(f"msg must be str or bytes, got {type(msg).__name__}")
    try:
        encoded_size = len(msg.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedNoteError("the note is not valid UTF-8 (lone surrogate)") from None
    if encoded_size > max_size:
        raise MalformedNoteError(f"the note is {encoded_size} bytes, the limit is {max_size}")
    if _CONTROL.search(msg):
        raise MalformedNoteError("the note contains an ASCII control character")
    longest = max(map(len, msg.split("\n")))
    if longest > MAX_LINE_CHARS:
        raise MalformedNoteError(f"a line has {longest} characters, the limit is {MAX_LINE_CHARS}")
    split = msg.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line separates the text from the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNoteError("the signature block is empty or lacks its final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"more than {MAX_SIGNATURES} signatures")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise MalformedNoteError(f"signature line {number} does not start with an em dash")
        name, _, b64 = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise MalformedNoteError(f"signature line {number} has an invalid key name")
        try:
            blob = _strict_b64decode(b64) if b64 else b""
        except ValueError as exc:
            raise MalformedNoteError(f"signature line {number} is {exc}") from None
        if len(blob) < _KEY_ID_SIZE + 1:
            raise MalformedNoteError(f"signature line {number} is too short")
        signatures.append(
            NoteSignature(name, int.from_bytes(blob[:_KEY_ID_SIZE], "big"), blob[_KEY_ID_SIZE:])
        )
    return text, signatures


def open_note(
    msg: str | bytes, verifiers: Iterable[NoteVerifier], *, max_size: int = MAX_NOTE_SIZE
) -> Note:
    """Parse and verify a note: a trusted key must have signed it, and every trusted one verify."""
    trusted: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            raise TypeError(f"verifiers must be NoteVerifier, got {type(v).__name__}")
        if (v.name, v.key_id) in trusted:
            raise ValueError(f"ambiguous verifiers: two keys named {v.name}+{v.key_id:08x}")
        trusted[(v.name, v.key_id)] = v
    text, signatures = parse_note(msg, max_size=max_size)
    payload = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, int]] = set()
    for sig in signatures:
        verifier = trusted.get((sig.key_name, sig.key_id))
        if verifier is None:
            # signed-note: signatures from unknown keys MUST be ignored.
            if sig not in unverified:
                unverified.append(sig)
            continue
        if (sig.key_name, sig.key_id) in seen:
            continue  # a repeated line by one key adds nothing (as in Go's note.Open)
        seen.add((sig.key_name, sig.key_id))
        if not verifier.verify(payload, sig.signature):
            raise NoteSignatureError(sig.key_name, sig.key_id)
        verified.append(sig)
    if not verified:
        raise UnverifiedNoteError([f"{s.key_name}+{s.key_id:08x}" for s in unverified])
    return Note(text, tuple(verified), tuple(unverified))


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise ValueError("origin must be a non-empty string")
        if "\n" in self.origin or _CONTROL.search(self.origin):
            raise ValueError("origin must be one line without control characters")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise TypeError(f"size must be an int, got {type(self.size).__name__}")
        if not 0 <= self.size <= _MAX_UINT64:
            raise ValueError(f"size must be a uint64, got {self.size}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _ROOT_HASH_SIZE:
            raise ValueError(f"root_hash must be {_ROOT_HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise TypeError("extensions must be a tuple of strings")
        for line in self.extensions:
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
                raise ValueError("extension lines must be non-empty single lines")

    @property
    def text(self) -> str:
        """The note text: origin, size, base64 root hash, extensions, each ending in newline."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (tlog-checkpoint §Note text), strictly."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if not text.endswith("\n"):
            raise MalformedCheckpointError("text", "must end with a newline")
        if _CONTROL.search(text):
            raise MalformedCheckpointError("text", "contains an ASCII control character")
        lines = text[:-1].split("\n")
        if max(map(len, lines)) > MAX_LINE_CHARS:
            raise MalformedCheckpointError("text", f"has a line over {MAX_LINE_CHARS} characters")
        if len(lines) < 3:
            raise MalformedCheckpointError("text", f"has {len(lines)} lines, want at least 3")
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise MalformedCheckpointError("origin", "is empty")
        if _DECIMAL.fullmatch(size_line) is None:
            raise MalformedCheckpointError(
                "tree size", f"{size_line[:40]!r} is not a decimal without leading zeros"
            )
        if len(size_line) > _MAX_UINT64_DIGITS:
            raise MalformedCheckpointError("tree size", "does not fit in 64 bits")
        size = int(size_line)
        if size > _MAX_UINT64:
            raise MalformedCheckpointError("tree size", "does not fit in 64 bits")
        try:
            root = _strict_b64decode(root_line)
        except ValueError as exc:
            raise MalformedCheckpointError("root hash", str(exc)) from None
        if len(root) != _ROOT_HASH_SIZE:
            raise MalformedCheckpointError(
                "root hash", f"is {len(root)} bytes, want {_ROOT_HASH_SIZE}"
            )
        for number, line in enumerate(extensions, start=4):
            if not line:
                raise MalformedCheckpointError(
                    f"line {number}", "extension lines must be non-empty"
                )
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, *signers: NoteSigner) -> str:
    """Sign a checkpoint; the encoded signed note."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"checkpoint must be a Checkpoint, got {type(checkpoint).__name__}")
    return sign_note(checkpoint.text, *signers)


def open_checkpoint(
    msg: str | bytes, verifiers: Iterable[NoteVerifier], *, origin: str | None = None
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint and parse its body; refuse another log's when ``origin`` given."""
    note = open_note(msg, verifiers)
    checkpoint = Checkpoint.from_text(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointOriginError(expected=origin, got=checkpoint.origin)
    return checkpoint, note
