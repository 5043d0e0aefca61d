"""Sealed streams: round trips at the segment edges, and every tamper case with its own error."""

from __future__ import annotations

import hashlib
import io
import os
import stat

import pytest

from crypto.datakey import DataKey
from crypto.digest import digest_bytes, digest_file
from crypto.errors import (
    HeaderAuthError,
    HeaderMalformedError,
    SealedStreamError,
    SealSourceError,
    SegmentAuthError,
    SegmentOutOfOrderError,
    TrailingDataError,
    TruncatedError,
    UnsupportedFormatError,
    WrongKeyError,
)
from crypto.hazmat.stream import HEADER_SIZE, TAG_SIZE, sealed_size
from crypto.seal import (
    read_header,
    seal,
    seal_file,
    unseal,
    unseal_file,
    unseal_to_memory,
)

SEG = 64
KEY = DataKey(bytes(range(32)))
OTHER_KEY = DataKey(bytes(range(1, 33)))


class _Pipe:
    """A stream that can only be read (no seek, no readinto): size unknown to the sealer."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(n)


def seal_bytes(data: bytes, *, seg: int = SEG, known: bool = True, key: DataKey = KEY) -> bytes:
    out = io.BytesIO()
    src = io.BytesIO(data) if known else _Pipe(data)
    seal(src, out, key, segment_size=seg)
    return out.getvalue()


def open_bytes(blob: bytes, key: DataKey = KEY) -> bytes:
    return bytes(unseal_to_memory(io.BytesIO(blob), key))


def segments(blob: bytes, seg: int = SEG) -> list[bytes]:
    body = blob[HEADER_SIZE:]
    step = seg + TAG_SIZE
    return [body[i : i + step] for i in range(0, len(body), step)]


def rebuild(blob: bytes, parts: list[bytes]) -> bytes:
    return blob[:HEADER_SIZE] + b"".join(parts)


SIZES = [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG + 3, 6 * SEG]


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_segment_edges(size: int, known: bool) -> None:
    data = os.urandom(size)
    blob = seal_bytes(data, known=known)
    assert len(blob) == sealed_size(size, SEG)
    assert open_bytes(blob) == data
    out = io.BytesIO()
    result = unseal(io.BytesIO(blob), out, KEY)
    assert out.getvalue() == data
    assert result.plaintext_size == size
    assert result.segment_count == max(1, -(-size // SEG))
    assert result.sealed_size == len(blob)


def test_header_says_whether_size_was_known() -> None:
    assert read_header(io.BytesIO(seal_bytes(b"abc"))).plaintext_size == 3
    assert read_header(io.BytesIO(seal_bytes(b"abc", known=False))).plaintext_size is None


def test_default_segment_size_round_trip_and_result_fields() -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    out = io.BytesIO()
    result = seal(io.BytesIO(data), out, KEY)
    blob = out.getvalue()
    assert result.segment_size == 1 << 20
    assert result.segment_count == 4
    assert result.sealed_size == len(blob) == HEADER_SIZE + len(data) + 4 * TAG_SIZE
    assert result.ciphertext_digest == digest_bytes(blob).hex()
    assert result.digest_algorithm == "blake3"
    assert result.key_id == KEY.key_id
    seen: list[int] = []
    assert bytes(unseal_to_memory(io.BytesIO(blob), KEY, progress=seen.append)) == data
    assert sum(seen) == len(data)


def test_sealing_twice_gives_unrelated_ciphertexts() -> None:
    # Fresh salt and nonce prefix each time: equal plaintexts must not be recognisable.
    data = bytes(1000)
    first, second = seal_bytes(data), seal_bytes(data)
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]
    assert len({s[:16] for s in segments(first) + segments(second)}) == 2 * len(segments(first))


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    data = b"model weights " * 100
    blob = seal_bytes(data)
    assert b"model weights" not in blob


# --- wrong key ----------------------------------------------------------------------------


def test_wrong_key_is_named_before_any_segment_is_tried() -> None:
    blob = seal_bytes(b"secret weights")
    with pytest.raises(WrongKeyError) as info:
        open_bytes(blob, OTHER_KEY)
    assert info.value.sealed_key_id == KEY.key_id
    assert info.value.offered_key_id == OTHER_KEY.key_id
    assert "wrong data key" in str(info.value)


def test_wrong_key_message_does_not_contain_key_material() -> None:
    blob = seal_bytes(b"x")
    with pytest.raises(WrongKeyError) as info:
        open_bytes(blob, OTHER_KEY)
    assert OTHER_KEY.raw.hex() not in str(info.value)
    assert KEY.raw.hex() not in str(info.value)


# --- header tampering: every byte of the header, with the error its field must give ----------


def _header_field(offset: int) -> tuple[str, type[SealedStreamError]]:
    # Layout from crypto/SEALED-FORMAT.md.
    fields = [
        (0, 8, "magic", HeaderMalformedError),
        (8, 10, "version", UnsupportedFormatError),
        (10, 12, "kdf_id", UnsupportedFormatError),
        (12, 14, "aead_id", UnsupportedFormatError),
        (14, 16, "flags", HeaderMalformedError),
        (16, 20, "segment_size", HeaderAuthError),
        # Bits 40+ of the size give more than 2^32 segments of 64 bytes: out of range.
        (20, 23, "plaintext_size", HeaderMalformedError),
        (23, 28, "plaintext_size", HeaderAuthError),
        (28, 60, "key_id", WrongKeyError),
        (60, 92, "salt", HeaderAuthError),
        (92, 99, "nonce_prefix", HeaderAuthError),
        (99, 131, "mac", HeaderAuthError),
    ]
    for start, end, name, error in fields:
        if start <= offset < end:
            return name, error
    raise AssertionError(offset)


@pytest.mark.parametrize("offset", range(HEADER_SIZE))
def test_flipped_header_bit_raises_the_fields_error(offset: int) -> None:
    blob = bytearray(seal_bytes(os.urandom(3 * SEG + 5)))
    blob[offset] ^= 0x01
    name, error = _header_field(offset)
    with pytest.raises(error) as info:
        open_bytes(bytes(blob))
    if isinstance(info.value, HeaderMalformedError):
        assert info.value.field == name
    if name == "segment_size":
        # The low bit of 64 gives 65 (in range), so it is the MAC that catches it.
        assert isinstance(info.value, HeaderAuthError)


def test_segment_size_out_of_range_is_malformed() -> None:
    blob = bytearray(seal_bytes(b"abc"))
    blob[16:20] = (1 << 30).to_bytes(4, "big")
    with pytest.raises(HeaderMalformedError) as info:
        open_bytes(bytes(blob))
    assert info.value.field == "segment_size"


def test_not_a_sealed_file() -> None:
    with pytest.raises(HeaderMalformedError) as info:
        open_bytes(b"PK\x03\x04 this is a zip file, not a sealed stream" * 4)
    assert info.value.field == "magic"


# --- segment tampering -----------------------------------------------------------------------


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
@pytest.mark.parametrize("where", ["body", "tag"])
@pytest.mark.parametrize("index", [0, 2, 5])
def test_flipped_segment_bit_names_the_segment(index: int, where: str, known: bool) -> None:
    blob = bytearray(seal_bytes(os.urandom(5 * SEG + 7), known=known))
    start = HEADER_SIZE + index * (SEG + TAG_SIZE)
    length = min(SEG + TAG_SIZE, len(blob) - start)
    offset = start + (3 if where == "body" else length - 2)
    blob[offset] ^= 0x80
    with pytest.raises(SegmentAuthError) as info:
        open_bytes(bytes(blob))
    assert info.value.index == index
    assert info.value.final == (index == 5)
    assert "modified" in str(info.value) and "another sealed file" in str(info.value)


def test_flip_in_a_later_segment_outputs_nothing_past_the_last_good_segment() -> None:
    data = os.urandom(4 * SEG)
    blob = bytearray(seal_bytes(data))
    blob[HEADER_SIZE + 2 * (SEG + TAG_SIZE) + 1] ^= 1
    out = io.BytesIO()
    with pytest.raises(SegmentAuthError):
        unseal(io.BytesIO(bytes(blob)), out, KEY)
    # Whatever reached the output was authenticated: a prefix of the plaintext, never more.
    assert data.startswith(out.getvalue())
    assert len(out.getvalue()) <= 2 * SEG


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
def test_swapped_segments_are_reported_as_reordered(known: bool) -> None:
    blob = seal_bytes(os.urandom(5 * SEG + 7), known=known)
    parts = segments(blob)
    parts[1], parts[2] = parts[2], parts[1]
    with pytest.raises(SegmentOutOfOrderError) as info:
        open_bytes(rebuild(blob, parts))
    assert (info.value.position, info.value.actual_index) == (1, 2)


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
@pytest.mark.parametrize("dropped", [0, 1, 4])
def test_dropped_segment_is_reported_as_out_of_place(dropped: int, known: bool) -> None:
    blob = seal_bytes(os.urandom(5 * SEG + 7), known=known)
    parts = segments(blob)
    del parts[dropped]
    with pytest.raises(SegmentOutOfOrderError) as info:
        open_bytes(rebuild(blob, parts))
    assert (info.value.position, info.value.actual_index) == (dropped, dropped + 1)
    assert "dropped" in str(info.value)


def test_duplicated_segment_is_reported_as_out_of_place() -> None:
    blob = seal_bytes(os.urandom(5 * SEG + 7))
    parts = segments(blob)
    parts.insert(2, parts[1])
    parts.pop()  # keep the length, so only the order is wrong
    with pytest.raises(SegmentOutOfOrderError) as info:
        open_bytes(rebuild(blob, parts))
    assert (info.value.position, info.value.actual_index) == (2, 1)


def test_segment_spliced_from_another_file_under_the_same_key() -> None:
    data = os.urandom(4 * SEG)
    mine, theirs = seal_bytes(data), seal_bytes(data)
    parts = segments(mine)
    parts[2] = segments(theirs)[2]
    with pytest.raises(SegmentAuthError) as info:
        open_bytes(rebuild(mine, parts))
    assert info.value.index == 2


def test_header_spliced_from_another_file_under_the_same_key() -> None:
    data = os.urandom(4 * SEG)
    mine, theirs = seal_bytes(data), seal_bytes(data)
    with pytest.raises(SegmentAuthError) as info:
        open_bytes(theirs[:HEADER_SIZE] + mine[HEADER_SIZE:])
    assert info.value.index == 0


# --- truncation and trailing data ------------------------------------------------------------


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
@pytest.mark.parametrize("keep_segments", [0, 1, 3, 5])
def test_truncated_at_a_segment_boundary(keep_segments: int, known: bool) -> None:
    blob = seal_bytes(os.urandom(6 * SEG + 9), known=known)
    cut = HEADER_SIZE + keep_segments * (SEG + TAG_SIZE)
    with pytest.raises(TruncatedError) as info:
        open_bytes(blob[:cut])
    assert info.value.got_bytes == cut
    if known:
        assert info.value.expected_bytes == len(blob)


@pytest.mark.parametrize("cut", [1, 7, HEADER_SIZE - 1])
def test_truncated_inside_the_header(cut: int) -> None:
    with pytest.raises(TruncatedError) as info:
        open_bytes(seal_bytes(b"abc")[:cut])
    assert info.value.where == "inside the header"


def test_empty_input_is_truncated() -> None:
    with pytest.raises(TruncatedError):
        open_bytes(b"")


@pytest.mark.parametrize("into_segment", [1, 15, 16, SEG])
def test_truncated_inside_a_segment_when_size_is_known(into_segment: int) -> None:
    blob = seal_bytes(os.urandom(6 * SEG + 9))
    cut = HEADER_SIZE + 2 * (SEG + TAG_SIZE) + into_segment
    with pytest.raises(TruncatedError) as info:
        open_bytes(blob[:cut])
    assert info.value.where == "inside segment 2"
    assert (info.value.got_bytes, info.value.expected_bytes) == (cut, len(blob))


def test_cut_inside_a_segment_when_size_unknown_names_both_causes() -> None:
    # Without a size in the header a short last segment may be a cut or a modification:
    # the error says both (crypto/SEALED-FORMAT.md, "What each failure means").
    blob = seal_bytes(os.urandom(6 * SEG + 9), known=False)
    cut = HEADER_SIZE + 2 * (SEG + TAG_SIZE) + 20
    with pytest.raises(SegmentAuthError) as info:
        open_bytes(blob[:cut])
    assert info.value.index == 2 and info.value.final
    assert "cut short" in str(info.value)


@pytest.mark.parametrize("extra", [b"\x00", b"garbage" * 50])
def test_trailing_data_after_the_final_segment(extra: bytes) -> None:
    blob = seal_bytes(os.urandom(3 * SEG + 1))
    with pytest.raises(TrailingDataError) as info:
        open_bytes(blob + extra)
    assert info.value.after_segment == 3


def test_trailing_data_when_size_unknown_and_last_segment_full() -> None:
    blob = seal_bytes(os.urandom(3 * SEG), known=False)
    with pytest.raises(TrailingDataError) as info:
        open_bytes(blob + os.urandom(SEG + TAG_SIZE))
    assert info.value.after_segment == 2


def test_appending_a_whole_sealed_stream_is_trailing_data() -> None:
    first, second = seal_bytes(os.urandom(2 * SEG + 3)), seal_bytes(os.urandom(SEG))
    with pytest.raises(TrailingDataError):
        open_bytes(first + second)


# --- files: nothing left behind --------------------------------------------------------------


def test_unseal_file_leaves_no_output_on_failure(tmp_path) -> None:
    sealed = tmp_path / "model.sealed"
    blob = bytearray(seal_bytes(os.urandom(10 * SEG)))
    blob[-5] ^= 1
    sealed.write_bytes(bytes(blob))
    target = tmp_path / "out" / "model.tar"
    with pytest.raises(SegmentAuthError):
        unseal_file(sealed, target, KEY)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_unseal_file_wrong_key_leaves_no_output(tmp_path) -> None:
    sealed = tmp_path / "model.sealed"
    sealed.write_bytes(seal_bytes(b"weights"))
    with pytest.raises(WrongKeyError):
        unseal_file(sealed, tmp_path / "plain", OTHER_KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.sealed"]


def test_seal_file_and_unseal_file(tmp_path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(3 * (1 << 20) + 11))
    result = seal_file(plain, tmp_path / "x.sealed", KEY)
    assert result.ciphertext_digest == digest_file(tmp_path / "x.sealed").hex()
    unseal_file(tmp_path / "x.sealed", tmp_path / "back.bin", KEY)
    assert (tmp_path / "back.bin").read_bytes() == plain.read_bytes()
    # Plaintext written by unseal_file is for its owner only.
    assert stat.S_IMODE((tmp_path / "back.bin").stat().st_mode) == 0o600


def test_seal_file_with_missing_source_leaves_nothing(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        seal_file(tmp_path / "absent", tmp_path / "x.sealed", KEY)
    assert list(tmp_path.iterdir()) == []


# --- the plaintext source must match what was declared ----------------------------------------


def test_declared_size_larger_than_source() -> None:
    with pytest.raises(SealSourceError) as info:
        seal(_Pipe(b"abc"), io.BytesIO(), KEY, size=10, segment_size=SEG)
    assert (info.value.declared, info.value.got) == (10, 3)


def test_declared_size_smaller_than_source() -> None:
    with pytest.raises(SealSourceError) as info:
        seal(_Pipe(b"abcdef"), io.BytesIO(), KEY, size=3, segment_size=SEG)
    assert info.value.declared == 3 and info.value.got > 3


# --- parameters are checked before anything happens -------------------------------------------


def test_parameter_validation() -> None:
    with pytest.raises(TypeError):
        seal(io.BytesIO(b""), io.BytesIO(), KEY.raw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal(b"not a stream", io.BytesIO(), KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        seal(io.BytesIO(b""), io.BytesIO(), KEY, segment_size=8)
    with pytest.raises(ValueError):
        seal(io.BytesIO(b""), io.BytesIO(), KEY, segment_size=(1 << 26) + 1)
    with pytest.raises(TypeError):
        seal(io.BytesIO(b""), io.BytesIO(), KEY, segment_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        seal(io.BytesIO(b""), io.BytesIO(), KEY, size=-1)
    with pytest.raises(TypeError):
        unseal_to_memory(io.BytesIO(b""), "key")  # type: ignore[arg-type]


@pytest.mark.slow
def test_round_trip_300_mb_file_in_flat_memory(tmp_path) -> None:
    import resource

    size = 300 * 1000 * 1000
    plain = tmp_path / "plain.bin"
    digest = hashlib.sha256()
    chunk = os.urandom(1 << 20)
    with open(plain, "wb") as handle:
        written = 0
        while written < size:
            part = chunk[: min(len(chunk), size - written)]
            handle.write(part)
            digest.update(part)
            written += len(part)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = seal_file(plain, tmp_path / "big.sealed", KEY)
    unseal_file(tmp_path / "big.sealed", tmp_path / "back.bin", KEY)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.plaintext_size == size
    assert result.segment_count == -(-size // (1 << 20))
    back = hashlib.sha256()
    with open(tmp_path / "back.bin", "rb") as handle:
        while block := handle.read(1 << 20):
            back.update(block)
    assert back.hexdigest() == digest.hexdigest()
    # Streaming: the peak grows by a few segment buffers, not by the file (ru_maxrss is KiB).
    assert rss_after - rss_before < 64 * 1024


# --- the threaded path (segments >= 64 KiB are decrypted by worker threads) -----------------

THREADED_SEG = 64 * 1024


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
def test_threaded_round_trip_many_segments(known: bool) -> None:
    data = os.urandom(97 * THREADED_SEG + 1234)
    blob = seal_bytes(data, seg=THREADED_SEG, known=known)
    out = io.BytesIO()
    seen: list[int] = []
    result = unseal(io.BytesIO(blob), out, KEY, progress=seen.append)
    assert out.getvalue() == data
    assert result.segment_count == 98 and sum(seen) == len(data)
    assert bytes(unseal_to_memory(io.BytesIO(blob), KEY)) == data


@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-unknown"])
def test_threaded_path_reports_the_first_bad_segment(known: bool) -> None:
    data = os.urandom(40 * THREADED_SEG)
    blob = bytearray(seal_bytes(data, seg=THREADED_SEG, known=known))
    for index in (31, 17, 18):
        blob[HEADER_SIZE + index * (THREADED_SEG + TAG_SIZE) + 100] ^= 1
    out = io.BytesIO()
    with pytest.raises(SegmentAuthError) as info:
        unseal(io.BytesIO(bytes(blob)), out, KEY)
    assert info.value.index == 17
    assert out.getvalue() == data[: 17 * THREADED_SEG]


def test_threaded_path_reorder_and_trailing() -> None:
    blob = seal_bytes(os.urandom(20 * THREADED_SEG), seg=THREADED_SEG)
    parts = segments(blob, THREADED_SEG)
    parts[9], parts[12] = parts[12], parts[9]
    with pytest.raises(SegmentOutOfOrderError) as info:
        open_bytes(rebuild(blob, parts))
    assert (info.value.position, info.value.actual_index) == (9, 12)
    with pytest.raises(TrailingDataError):
        open_bytes(blob + b"x")
