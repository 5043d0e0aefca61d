"""crypto.note pinned to golang.org/x/mod/sumdb/note and transparency-dev/formats vectors.

Provenance of the vectors below (copied as data from the test sources):
- golang/mod @ 02c99138 : sumdb/note/note_test.go (PeterNeumann / EnochRoot keys, the signed
  note Go's Sign produces, Open's malformed-message cases, the verifier-key manglings).
- transparency-dev/formats @ 5242c178 : log/note_test.go (the real sum.golang.org checkpoint
  and its log key; the Log/Known/KnownAgain/Unknown signer and verifier key pairs).
Ed25519 is deterministic (RFC 8032), so our signer must reproduce Go's bytes exactly.
"""

from __future__ import annotations

import base64

import pytest

from crypto.errors import (
    CheckpointOriginError,
    CryptoError,
    MalformedCheckpointError,
    MalformedNoteError,
    MalformedVerifierKeyError,
    NoteError,
    NoteSignatureError,
    SignatureError,
    UnverifiedNoteError,
)
from crypto.identity import Identity
from crypto.note import (
    MAX_LINE_CHARS,
    MAX_SIGNATURES,
    Checkpoint,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33"
    "WWd1RvMc+QQ=\n"
)

FORMATS_KEYS = [  # (verifier key, signer key) pairs from transparency-dev/formats log/note_test.go
    (
        "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs",
        "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
    ),
    (
        "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH",
        "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
    ),
    (
        "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj",
        "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
    ),
    (
        "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots",
        "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
    ),
]

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_TEXT = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
SUMDB_NOTE = (
    SUMDB_TEXT
    + "\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYf"
    "vimWEPWL+o3GeoWwOoAw=\n"
)


@pytest.fixture(scope="module")
def peter() -> NoteVerifier:
    return NoteVerifier.from_vkey(PETER_VKEY)


@pytest.fixture(scope="module")
def enoch() -> NoteVerifier:
    return NoteVerifier.from_vkey(ENOCH_VKEY)


# --- keys ----------------------------------------------------------------------------------------


def test_verifier_key_round_trip_and_key_id(peter: NoteVerifier):
    assert (peter.name, peter.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert peter.vkey == PETER_VKEY
    assert key_id("PeterNeumann", 0x01, peter.public_key) == 0xC74F20A3


@pytest.mark.parametrize(("vkey", "skey"), [(PETER_VKEY, PETER_SKEY), *FORMATS_KEYS])
def test_signer_keys_derive_the_published_verifier_keys(vkey: str, skey: str):
    signer = NoteSigner.from_skey(skey)
    assert signer.verifier.vkey == vkey
    assert NoteVerifier.from_vkey(vkey) == signer.verifier


def test_every_mangled_verifier_key_is_refused():
    # As Go's TestNewVerifier: every proper substring and every single-byte increment fails.
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) == (0, len(b)):
                continue
            with pytest.raises(MalformedVerifierKeyError):
                NoteVerifier.from_vkey(b[i:j])
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        with pytest.raises(MalformedVerifierKeyError):
            NoteVerifier.from_vkey(mangled)


@pytest.mark.parametrize(
    ("vkey", "why"),
    [
        # Go: wrong length key, with adjusted key hash.
        # (Its padding bits are not zero either, so the canonical-base64 rule refuses it first.)
        ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", "base64"),
        # Go: unknown algorithm, with adjusted key hash.
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "signature type"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key name"),
    ],
)
def test_bad_verifier_keys(vkey: str, why: str):
    with pytest.raises(MalformedVerifierKeyError, match=why):
        NoteVerifier.from_vkey(vkey)


def test_wrong_length_key_with_matching_key_id():
    key = b"\x01" + bytes(range(33))
    vkey = f"log+{key_id('log', 0x01, key[1:]):08x}+{base64.b64encode(key).decode()}"
    with pytest.raises(MalformedVerifierKeyError, match="32 bytes, got 33"):
        NoteVerifier.from_vkey(vkey)


def test_signer_key_manglings_are_refused():
    with pytest.raises(MalformedVerifierKeyError):
        NoteSigner.from_skey(PETER_SKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(MalformedVerifierKeyError):
        NoteSigner.from_skey(PETER_SKEY.replace("PRIVATE+KEY", "PUBLIC+KEY"))


# --- signing and opening --------------------------------------------------------------------------


def test_sign_reproduces_go_byte_for_byte():
    signer = NoteSigner.from_skey(PETER_SKEY)
    assert sign_note(TEXT, signer) == TEXT + "\n" + PETER_SIG


def test_open_verifies_known_and_ignores_unknown(peter, enoch):
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    note = open_note(msg, [peter])
    assert note.text == TEXT
    assert [(s.key_name, s.key_id) for s in note.signatures] == [("PeterNeumann", 0xC74F20A3)]
    assert [(s.key_name, s.key_id) for s in note.unverified] == [("EnochRoot", 0xAF0CFE78)]
    both = open_note(msg.encode("utf-8"), [peter, enoch])
    assert [s.key_name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()
    assert both.signatures[0].line == PETER_SIG


def test_no_trusted_signature_fails_closed(peter, enoch):
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    with pytest.raises(UnverifiedNoteError) as err:
        open_note(msg, [])
    assert err.value.signers == ["PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"]
    # signed-note: a key matching only in name, or only in key ID, is not the known key.
    misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + misnamed, [peter])
    wrong_id = PETER_SIG.replace("x08g", "xxxx")
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + wrong_id, [peter])


def test_invalid_signature_by_a_trusted_key_rejects_the_note(peter):
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteSignatureError) as err:
        open_note(TEXT + "\n" + bad, [peter])
    assert (err.value.key_name, err.value.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert isinstance(err.value, SignatureError)
    # One changed character of the text.
    with pytest.raises(NoteSignatureError):
        open_note(TEXT.replace("cryptography", "cryptographY") + "\n" + PETER_SIG, [peter])


def test_duplicate_signatures_are_collapsed(peter):
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    note = open_note(msg, [peter])
    assert len(note.signatures) == 1
    assert len(note.unverified) == 2


def test_ambiguous_verifier_list_is_refused(peter):
    with pytest.raises(ValueError, match="ambiguous"):
        open_note(TEXT + "\n" + PETER_SIG, [peter, NoteVerifier.from_vkey(PETER_VKEY)])


def test_signature_count_limit(peter):
    with pytest.raises(MalformedNoteError, match="more than"):
        open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [peter])
    assert len(open_note(TEXT + "\n" + PETER_SIG * 16, [peter]).signatures) == 1


@pytest.mark.parametrize(
    "msg",
    [
        # golang.org/x/mod sumdb/note TestOpen "Invalid encoded message syntax".
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
        "qfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        # Ours: stricter spellings.
        TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),  # non-canonical base64 padding bits
        TEXT + "\n" + PETER_SIG.replace("— ", "- "),  # hyphen instead of em dash
        TEXT + "\n" + "— PeterNeumann \n",  # empty signature
        TEXT + "\n" + "— PeterNeumann AAAA\n",  # shorter than a key ID and one byte
        TEXT + "\t\n\n" + PETER_SIG,  # tab is a control character
        TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"),
    ],
)
def test_malformed_notes(peter, msg: str):
    with pytest.raises(MalformedNoteError):
        open_note(msg, [peter])


def test_line_length_limit(peter):
    long_text = "x" * (MAX_LINE_CHARS + 1) + "\n"
    with pytest.raises(MalformedNoteError, match="limit is"):
        open_note(long_text + "\n" + PETER_SIG, [peter])
    with pytest.raises(MalformedCheckpointError, match="over"):
        Checkpoint.from_text("o" * (MAX_LINE_CHARS + 1) + "\n1\n" + "A" * 43 + "=\n")


def test_malformed_bytes(peter):
    with pytest.raises(MalformedNoteError, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [peter])
    with pytest.raises(MalformedNoteError, match="limit"):
        open_note((TEXT + "\n" + PETER_SIG).encode(), [peter], max_size=64)


def test_sign_refuses_bad_text():
    signer = NoteSigner.from_skey(PETER_SKEY)
    with pytest.raises(MalformedNoteError):
        sign_note("abc", signer)
    with pytest.raises(MalformedNoteError):
        sign_note("a\x00b\n", signer)
    with pytest.raises(ValueError):
        sign_note(TEXT)


def test_parse_note_reads_signatures_without_trust():
    text, sigs = parse_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert text == TEXT
    assert [NoteSignature(s.key_name, s.key_id, s.signature).line for s in sigs] == [
        PETER_SIG,
        ENOCH_SIG,
    ]


# --- checkpoints ---------------------------------------------------------------------------------


def test_real_sum_golang_org_checkpoint():
    log = NoteVerifier.from_vkey(SUMDB_VKEY)
    checkpoint, note = open_checkpoint(SUMDB_NOTE, [log], origin="go.sum database tree")
    assert checkpoint.origin == "go.sum database tree"
    assert checkpoint.size == 6476701
    assert checkpoint.root_hash == base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
    assert checkpoint.extensions == ()
    assert checkpoint.text == SUMDB_TEXT == note.text
    with pytest.raises(CheckpointOriginError) as err:
        open_checkpoint(SUMDB_NOTE, [log], origin="Go rocks but I might have the wrong ID")
    assert err.value.got == "go.sum database tree"
    with pytest.raises(NoteSignatureError):
        open_checkpoint(SUMDB_NOTE.replace("6476701", "6476702"), [log])


def test_checkpoint_with_extensions_round_trips_through_a_party_identity():
    identity = Identity.generate()
    signer = NoteSigner.from_identity("fedtune.example/audit", identity)
    cp = Checkpoint("fedtune.example/audit", 42, bytes(range(32)), ("ext one", "ext two"))
    msg = sign_checkpoint(cp, signer)
    assert msg.startswith(
        "fedtune.example/audit\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    )
    opened, _ = open_checkpoint(msg, [NoteVerifier.from_public(signer.name, identity.public)])
    assert opened == cp
    other = NoteVerifier.from_public("fedtune.example/audit", Identity.generate().public)
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(msg, [other])


@pytest.mark.parametrize(
    ("text", "field"),
    [
        # transparency-dev/formats log/checkpoint_test.go invalid cases.
        ("Head\n9944\n", "text"),
        ("\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n", "origin"),
        ("Log\n123\nYmFuYW5hcw==", "text"),
        ("Log\nbananas\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "tree size"),
        ("Log\n-34\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "tree size"),
        (
            "Log\n3438945738945739845734895735\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
            "tree size",
        ),
        ("Log\n123\nThisIsn'tBase64\n", "root hash"),
        # Ours: strict spellings of tlog-checkpoint.
        ("Log\n0123\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "tree size"),
        ("Log\n+5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "tree size"),
        ("Log\n１２\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "tree size"),
        ("Log\n123\nYmFuYW5hcw==\n", "root hash"),  # 7 bytes, not a SHA-256 root
        ("Log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\next\n", "line 4"),
        ("Log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n", "line 4"),
    ],
)
def test_malformed_checkpoint_text(text: str, field: str):
    with pytest.raises(MalformedCheckpointError) as err:
        Checkpoint.from_text(text)
    assert err.value.field == field
    assert isinstance(err.value, NoteError | CryptoError)


def test_checkpoint_constructor_validates():
    with pytest.raises(ValueError):
        Checkpoint("", 1, bytes(32))
    with pytest.raises(ValueError):
        Checkpoint("log", -1, bytes(32))
    with pytest.raises(ValueError):
        Checkpoint("log", 1, bytes(31))
    with pytest.raises(ValueError):
        Checkpoint("log", 1, bytes(32), ("",))
    with pytest.raises(TypeError):
        Checkpoint("log", True, bytes(32))
