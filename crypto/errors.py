"""The crypto package's exception hierarchy: one base, a subclass per actionable failure."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error the crypto package raises."""


class KeyFileError(CryptoError):
    """A key file is missing, malformed, or readable by others than its owner."""


class SignatureError(CryptoError):
    """A signature does not verify under the key it claims, in the context it was checked for."""


# --- Sealed streams (crypto.seal; the format is crypto/SEALED-FORMAT.md) ---------------------


class SealedStreamError(CryptoError):
    """A sealed stream cannot be opened; the subclass says which check failed."""


class HeaderMalformedError(SealedStreamError):
    """The header is not a well-formed fedtune sealed-stream header."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"sealed header field {field!r} is malformed: {reason}")


class UnsupportedFormatError(HeaderMalformedError):
    """The header names a format version or algorithm this build does not implement."""

    def __init__(self, field: str, got: int, supported: int) -> None:
        self.got = got
        self.supported = supported
        super().__init__(
            field,
            f"got {got:#06x}, this fedtune reads {supported:#06x}; "
            "upgrade fedtune or re-seal with this version",
        )


class WrongKeyError(SealedStreamError):
    """The key offered is not the key the stream was sealed under."""

    def __init__(self, sealed_key_id: str, offered_key_id: str) -> None:
        self.sealed_key_id = sealed_key_id
        self.offered_key_id = offered_key_id
        super().__init__(
            f"wrong data key: the stream was sealed under key id {sealed_key_id[:16]}..., "
            f"the key offered has id {offered_key_id[:16]}... (use the matching key; if you are "
            "sure it matches, the header's key-id field was altered)"
        )


class HeaderAuthError(SealedStreamError):
    """The header's MAC does not verify under the right key: the header was modified."""

    def __init__(self) -> None:
        super().__init__(
            "sealed header failed authentication: the header was modified after sealing "
            "(the key is right; obtain an intact copy of the sealed file)"
        )


class SegmentAuthError(SealedStreamError):
    """A segment does not authenticate at its position: modified in place or spliced in."""

    def __init__(self, index: int, *, final: bool) -> None:
        self.index = index
        self.final = final
        what = f"segment {index}" + (" (the last in the stream)" if final else "")
        cut = ", or the file was cut short inside it" if final else ""
        super().__init__(
            f"{what} failed authentication: it was modified, or spliced in from another sealed "
            f"file{cut}; obtain an intact copy of the sealed file"
        )


class SegmentOutOfOrderError(SealedStreamError):
    """A segment authenticates, but as a different segment than its position says."""

    def __init__(self, position: int, actual_index: int) -> None:
        self.position = position
        self.actual_index = actual_index
        how = "reordered" if actual_index < position else "dropped or reordered"
        super().__init__(
            f"segment at position {position} authenticates as segment {actual_index}: "
            f"segments were {how}"
        )


class TruncatedError(SealedStreamError):
    """The stream ended before its final segment."""

    def __init__(self, where: str, *, expected_bytes: int | None, got_bytes: int) -> None:
        self.where = where
        self.expected_bytes = expected_bytes
        self.got_bytes = got_bytes
        expected = f" of {expected_bytes}" if expected_bytes is not None else ""
        super().__init__(
            f"sealed stream is truncated: it ended {where} after {got_bytes}{expected} bytes; "
            "the copy is incomplete, transfer it again"
        )


class TrailingDataError(SealedStreamError):
    """Bytes follow the final segment."""

    def __init__(self, after_segment: int) -> None:
        self.after_segment = after_segment
        super().__init__(
            f"extra data follows the final segment ({after_segment}): something was appended "
            "to the sealed file"
        )


class SealSourceError(CryptoError):
    """The plaintext source did not yield the number of bytes declared for it."""

    def __init__(self, declared: int, got: int) -> None:
        self.declared = declared
        self.got = got
        more = "more" if got > declared else "fewer"
        super().__init__(
            f"the plaintext source yielded {more} bytes than the {declared} declared "
            "(did the input change while sealing?); nothing was produced, seal again"
        )


class PayloadError(CryptoError):
    """A model archive cannot be built from these files, or an unsealed one is malformed."""

    def __init__(self, member: str | None, reason: str) -> None:
        self.member = member
        self.reason = reason
        where = f", member {member!r}" if member is not None else ""
        super().__init__(f"model archive{where}: {reason}")


class UnsupportedDigestError(CryptoError, ValueError):
    """A bulk digest names an algorithm this build does not compute (crypto.digest)."""

    def __init__(self, algorithm: str, supported: list[str]) -> None:
        self.algorithm = algorithm
        self.supported = supported
        super().__init__(
            f"digest algorithm {algorithm!r} is not supported (this fedtune computes "
            f"{', '.join(supported)}); upgrade fedtune or re-seal with this version"
        )


# --- Manifests (crypto.manifest) ---------------------------------------------------------------


class ManifestError(CryptoError):
    """A manifest is unreadable, unsigned by whom it should be, or disagrees with its blob."""


class ManifestFormatError(ManifestError):
    """The manifest document does not parse or does not match the schema."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"manifest is malformed: {reason}")


class ManifestSignatureError(ManifestError, SignatureError):
    """The manifest's signature does not verify under the provider key it was checked against."""

    def __init__(self, signer: str, *, pinned: bool) -> None:
        self.signer = signer
        self.pinned = pinned
        whose = "the trusted provider key" if pinned else "the key embedded in the manifest"
        super().__init__(
            f"manifest signature is invalid under {whose} ({signer}): the manifest was "
            "modified after signing or signed by someone else"
        )


class ManifestMismatchError(ManifestError):
    """A manifest field disagrees with what it was checked against."""

    def __init__(self, field: str, *, expected: object, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"manifest field {field!r} does not match: expected {expected}, got {got}")


# --- Key wrapping (crypto.hpke) ----------------------------------------------------------------


class KeyWrapError(CryptoError):
    """A key could not be wrapped to, or unwrapped by, a recipient."""


class KeyEncodingError(KeyWrapError):
    """Bytes offered as a recipient key or a wrapped key are not a valid encoding."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what} is malformed: {reason}")


class KemMismatchError(KeyWrapError):
    """A wrapped key was made for a different KEM than the private key offered to open it."""

    def __init__(self, wrapped_kem: str, key_kem: str) -> None:
        self.wrapped_kem = wrapped_kem
        self.key_kem = key_kem
        super().__init__(
            f"the key was wrapped with KEM {wrapped_kem} but the private key is for {key_kem}; "
            "use the recipient key it was wrapped to"
        )


class KeyUnwrapError(KeyWrapError):
    """HPKE decryption failed: wrong private key, or a model/session other than the one bound."""

    def __init__(self) -> None:
        super().__init__(
            "wrapped key does not open: it was wrapped to another recipient key, or for a "
            "different model id / session id than the ones given, or it was modified"
        )


# --- Merkle trees (crypto.merkle, RFC 9162) ----------------------------------------------------


class MerkleProofError(CryptoError):
    """A Merkle inclusion or consistency proof does not verify; ``check`` names what failed."""

    def __init__(self, check: str, *, got: object, want: object) -> None:
        self.check = check
        self.got = got
        self.want = want
        super().__init__(f"merkle proof check {check!r} failed: got {got}, want {want}")


class RootMismatchError(MerkleProofError):
    """The root hash a proof leads to differs from the root it was checked against."""

    def __init__(self, check: str, *, calculated: bytes, expected: bytes) -> None:
        self.calculated = bytes(calculated)
        self.expected = bytes(expected)
        super().__init__(check, got=self.calculated.hex(), want=self.expected.hex())


# --- Signed notes and checkpoints (crypto.note, C2SP signed-note / tlog-checkpoint) -----------


class NoteError(CryptoError):
    """A signed note, a note verifier key or a checkpoint cannot be accepted."""


class MalformedNoteError(NoteError):
    """The bytes are not a well-formed signed note; ``reason`` says which rule they break."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed signed note: {reason}")


class MalformedVerifierKeyError(NoteError):
    """A note verifier key (``name+keyid+base64``) or signer key does not parse."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed note key: {reason}")


class UnverifiedNoteError(NoteError):
    """No signature on the note comes from a trusted key, so its text must be ignored."""

    def __init__(self, signers: list[str]) -> None:
        self.signers = signers
        seen = ", ".join(signers) if signers else "none"
        super().__init__(f"note has no signature from a trusted key (signatures by: {seen})")


class NoteSignatureError(NoteError, SignatureError):
    """A signature by a trusted key is present but does not verify over the note text."""

    def __init__(self, key_name: str, key_id: int) -> None:
        self.key_name = key_name
        self.key_id = key_id
        super().__init__(f"invalid note signature for trusted key {key_name}+{key_id:08x}")


class MalformedCheckpointError(NoteError):
    """A note's text is not a well-formed tlog checkpoint; ``field`` names the bad line."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"malformed checkpoint {field}: {reason}")


class CheckpointOriginError(NoteError):
    """A checkpoint names a different log (origin line) than the one expected."""

    def __init__(self, *, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"checkpoint origin is {got!r}, expected {expected!r}")


# --- Secret sharing, fixed point, secure aggregation, CKKS (crypto.shamir/.quantize/.secagg) --


class ShamirError(CryptoError):
    """Shares cannot be combined into the secret they claim to share."""


class MalformedShareError(ShamirError):
    """An encoded share has the wrong length, x = 0, or a y outside the field."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed share: {reason}")


class InsufficientSharesError(ShamirError):
    """Fewer shares than the threshold were offered."""

    def __init__(self, *, needed: int, got: int) -> None:
        self.needed = needed
        self.got = got
        super().__init__(f"need {needed} shares to recover the secret, got {got}")


class DuplicateShareError(ShamirError):
    """Two shares name the same holder (x coordinate)."""

    def __init__(self, x: int) -> None:
        self.x = x
        super().__init__(f"two shares carry the same x coordinate {x}")


class InconsistentSharesError(ShamirError):
    """The shares do not lie on one polynomial of the threshold's degree (one is wrong)."""

    def __init__(self) -> None:
        super().__init__("shares are inconsistent: at least one of them is wrong")


class QuantizationError(CryptoError):
    """A fixed-point aggregate cannot be decoded into an average."""


class ZeroTotalWeightError(QuantizationError):
    """The summed weights are zero, so the weighted average is undefined."""

    def __init__(self) -> None:
        super().__init__("the aggregate's total weight is zero: no client contributed weight")


class SecAggError(CryptoError):
    """Base of secure-aggregation failures."""


class SecAggMessageError(SecAggError):
    """A secure-aggregation message does not parse; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"secure-aggregation message field {field!r}: {reason}")


class MessageBindingError(SecAggMessageError):
    """A message is bound to another session, round, stage, sender or recipient."""

    def __init__(self, field: str, *, expected: object, got: object) -> None:
        self.expected = expected
        self.got = got
        super().__init__(field, f"bound to {got!r}, expected {expected!r}")


class VectorLengthError(SecAggMessageError):
    """A masked vector has a different number of entries than the round's vector length."""

    def __init__(self, *, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__("vector", f"has {got} entries, expected {expected}")


class ShareEnvelopeError(SecAggError):
    """An encrypted share from a peer does not authenticate (tampered, or not for us)."""

    def __init__(self, src: int) -> None:
        self.src = src
        super().__init__(f"encrypted share from client {src} failed authentication")


class ProtocolViolationError(SecAggError):
    """A well-formed message breaks a rule of the protocol; ``rule`` names it."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"secure-aggregation rule {rule!r} violated: {detail}")


class StageOrderError(ProtocolViolationError):
    """A stage was requested out of order (or twice)."""

    def __init__(self, *, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__("stage-order", f"got stage {got!r}, expected {expected!r}")


class ShareRevealRefusedError(ProtocolViolationError):
    """The client was asked for both the mask-seed share and the key share of one peer."""

    def __init__(self, peer: int) -> None:
        self.peer = peer
        super().__init__(
            "one-share-per-peer",
            f"asked for both the self-mask share and the key share of client {peer}; "
            "revealing both would unmask its vector",
        )


class RoundFailedError(SecAggError):
    """The round cannot produce a correct aggregate; it is abandoned, no sum is returned."""


class NotEnoughSurvivorsError(RoundFailedError):
    """Fewer clients than the threshold are left at some stage."""

    def __init__(self, *, stage: str, needed: int, got: int) -> None:
        self.stage = stage
        self.needed = needed
        self.got = got
        super().__init__(f"stage {stage!r}: {got} clients left, the threshold needs {needed}")


class NotEnoughSharesError(RoundFailedError):
    """A secret needed for unmasking has fewer surviving holders than the threshold."""

    def __init__(self, *, owner: int, kind: str, needed: int, got: int) -> None:
        self.owner = owner
        self.kind = kind
        self.needed = needed
        self.got = got
        super().__init__(
            f"{kind} of client {owner}: {got} shares available, {needed} needed to unmask"
        )


class SurvivorGraphSplitError(RoundFailedError):
    """Dropouts split the survivors into groups smaller than the threshold."""

    def __init__(self, *, smallest: int, needed: int) -> None:
        self.smallest = smallest
        self.needed = needed
        super().__init__(
            f"dropouts split the survivors' mask graph; a group of {smallest} clients "
            f"would be unmasked on its own (threshold {needed})"
        )


class SecretVerificationError(RoundFailedError):
    """A reconstructed secret does not match the commitment its owner published."""

    def __init__(self, *, owner: int, kind: str) -> None:
        self.owner = owner
        self.kind = kind
        super().__init__(
            f"the reconstructed {kind} of client {owner} does not match its commitment"
        )


class ClientStateError(SecAggError):
    """An exported secure-aggregation client state cannot be restored (malformed or foreign)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"secure-aggregation client state refused: {reason}")


class CkksError(CryptoError):
    """A CKKS context or packed ciphertext cannot be used."""


class CkksContextError(CkksError):
    """A CKKS context is the wrong kind for the operation (e.g. public where secret needed)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"CKKS context: {reason}")


class CkksFormatError(CkksError):
    """Bytes offered as a packed CKKS vector are not one."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"packed CKKS vector is malformed: {reason}")
