"""Sealed streams, their headers, the payload inside, keys and wrapped keys under mutation."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import (
    HeaderAuthError,
    HeaderMalformedError,
    KeyWrapError,
    ManifestError,
    SealedStreamError,
    WrongKeyError,
)
from crypto.hazmat.stream import HEADER_BODY_SIZE, HEADER_SIZE, StreamHeader
from crypto.hpke import Kem, unwrap_key
from crypto.manifest import verify_blob
from crypto.seal import unseal, unseal_to_memory

from . import _seeds as seeds
from ._contract import refused, typed
from ._mutate import fuzz_settings, mutated

pytestmark = pytest.mark.timeout(300)

MODEL = seeds.sealed_model()
ORIGINALS = (MODEL.sealed, MODEL.sealed_unknown_size)
# SEALED-FORMAT.md: version, kdf, aead, flags (u16 each from 8), segment size (u32 at 16),
# plaintext size (u64 at 20), key id at 28, salt at 60, nonce prefix at 92, MAC at 99.
HEADER_FIELDS = (8, 10, 12, 14, 16, 20, 24, 28, 60, 92, 99)
sealed_blobs = mutated(ORIGINALS, hot=HEADER_FIELDS).filter(lambda b: b not in ORIGINALS)


@fuzz_settings(300)
@given(data=mutated([MODEL.sealed[:HEADER_SIZE]], hot=HEADER_FIELDS, in_place=True))
def test_header_decodes_only_from_its_one_encoding(data: bytes) -> None:
    outcome = typed(StreamHeader.decode, data, allowed=(HeaderMalformedError,))
    if outcome.ok:
        header, mac = outcome.value
        # Exactly one byte string per header: nothing parsed is silently normalised away.
        assert header.encode_body() == data[:HEADER_BODY_SIZE]
        assert mac == data[HEADER_BODY_SIZE:]


@fuzz_settings(200)
@given(blob=sealed_blobs)
def test_every_modified_stream_is_refused_and_nothing_unauthenticated_comes_out(
    blob: bytes,
) -> None:
    refused(unseal_to_memory, io.BytesIO(blob), seeds.DATA_KEY, allowed=(SealedStreamError,))
    out = io.BytesIO()
    refused(unseal, io.BytesIO(blob), out, seeds.DATA_KEY, allowed=(SealedStreamError,))
    # unseal writes only authenticated segments: what reached dst before the refusal is a
    # prefix of the true plaintext, never bytes an attacker chose.
    assert MODEL.payload.startswith(out.getvalue())


@fuzz_settings(100)
@given(blob=mutated(ORIGINALS, hot=HEADER_FIELDS))
def test_the_wrong_key_is_named_as_such(blob: bytes) -> None:
    error = refused(
        unseal_to_memory, io.BytesIO(blob), seeds.OTHER_KEY, allowed=(SealedStreamError,)
    )
    if blob[:HEADER_SIZE] == MODEL.sealed[:HEADER_SIZE]:
        assert isinstance(error, WrongKeyError)


def test_a_header_pointed_at_another_key_fails_its_mac() -> None:
    # The key id is not trusted by itself: re-labelling a stream for another key breaks the MAC.
    forged = bytearray(MODEL.sealed)
    forged[28:60] = bytes.fromhex(seeds.OTHER_KEY.key_id)
    error = refused(unseal_to_memory, io.BytesIO(bytes(forged)), seeds.OTHER_KEY)
    assert isinstance(error, HeaderAuthError)


@fuzz_settings(150)
@given(blob=sealed_blobs)
def test_verify_blob_refuses_every_modified_blob(blob: bytes) -> None:
    refused(
        verify_blob,
        MODEL.manifest.manifest,
        io.BytesIO(blob),
        allowed=(ManifestError, SealedStreamError),
    )


@fuzz_settings(100)
@given(prefix=st.binary(max_size=HEADER_SIZE + 40))
def test_short_and_random_streams_are_refused(prefix: bytes) -> None:
    refused(unseal_to_memory, io.BytesIO(prefix), seeds.DATA_KEY, allowed=(SealedStreamError,))


KEYS = seeds.keys()


@fuzz_settings(200)
@given(data=st.data())
def test_only_the_wrapped_bytes_as_made_unwrap(data: st.DataObject) -> None:
    kem = data.draw(st.sampled_from([Kem.X25519, Kem.MLKEM768_X25519]))
    original = KEYS.wrapped[kem]
    wrapped = data.draw(mutated([original], hot=(4, 5, 7, 9)).filter(lambda b: b != original))
    refused(
        unwrap_key,
        wrapped,
        KEYS.private[kem],
        model_id=seeds.MODEL_ID,
        session_id=seeds.SESSION_ID,
        allowed=(KeyWrapError,),
    )


@fuzz_settings(50)
@given(
    kem=st.sampled_from([Kem.X25519, Kem.MLKEM768_X25519]), other=st.sampled_from(["x", "sess-2"])
)
def test_a_wrapped_key_opens_only_for_its_model_and_session(kem: Kem, other: str) -> None:
    refused(
        unwrap_key,
        KEYS.wrapped[kem],
        KEYS.private[kem],
        model_id=seeds.MODEL_ID,
        session_id=other,
        allowed=(KeyWrapError,),
    )
