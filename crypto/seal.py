"""Seal and unseal byte streams under a data key in flat memory (crypto/SEALED-FORMAT.md)."""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from crypto.atomicfile import atomic_output
from crypto.datakey import DataKey
from crypto.digest import DIGEST_ALGORITHM, BulkDigest
from crypto.errors import (
    HeaderAuthError,
    HeaderMalformedError,
    SealedStreamError,
    SealSourceError,
    SegmentAuthError,
    SegmentOutOfOrderError,
    TrailingDataError,
    TruncatedError,
    WrongKeyError,
)
from crypto.hazmat.stream import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    MAGIC,
    MAX_SEGMENTS,
    NONCE_PREFIX_SIZE,
    SALT_SIZE,
    TAG_SIZE,
    StreamHeader,
    StreamKeys,
    segment_count,
)

Progress = Callable[[int], None]
"""Called after each segment with the number of plaintext bytes it carried."""

# Sealing writes and hashes the ciphertext on a second thread, overlapped with reading and
# AES-GCM on the first, and unsealing decrypts several segments at once (file writes, BLAKE3
# and AES-GCM all release the GIL on large buffers); below this segment size the hand-off
# between threads costs more than it saves.
_THREADED_MIN_SEGMENT = 64 * 1024
_MAX_WORKERS = 2
# Ciphertext buffers in flight between the sealing loop and the write-and-digest thread.
_DIGEST_RING = 4
# Plaintexts at least this large are unsealed into an anonymous memory map, not a bytearray:
# bytearray(n) zero-fills every page in user space right after the kernel zeroed it, and a
# map can ask for transparent huge pages (512x fewer page faults). Measured: 256 MiB unsealed
# in about half the time (bench/RESULTS.md).
_MAP_MIN_SIZE = 2 << 20


@dataclass(frozen=True)
class SealResult:
    """What sealing produced: sizes, the key id, and the bulk digest of every sealed byte."""

    key_id: str
    plaintext_size: int
    segment_size: int
    segment_count: int
    sealed_size: int
    ciphertext_digest: str
    digest_algorithm: str = DIGEST_ALGORITHM


@dataclass(frozen=True)
class UnsealResult:
    """What unsealing consumed and produced."""

    key_id: str
    plaintext_size: int
    segment_size: int
    segment_count: int
    sealed_size: int


def _check_streams(src: object, dst: object | None) -> None:
    if not hasattr(src, "read"):
        raise TypeError("src must be a readable binary stream")
    if dst is not None and not hasattr(dst, "write"):
        raise TypeError("dst must be a writable binary stream")


def _check_key(key: object) -> DataKey:
    if not isinstance(key, DataKey):
        raise TypeError("key must be a crypto.DataKey")
    return key


def _read_full(src: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``src`` unless the stream ends first; return the bytes read."""
    total, wanted = 0, len(view)
    readinto = getattr(src, "readinto", None)
    while total < wanted:
        if readinto is not None:
            got = readinto(view[total:])
        else:
            data = src.read(wanted - total)
            got = len(data)
            view[total : total + got] = data
        if got is None:
            raise TypeError("non-blocking streams are not supported")
        if got == 0:
            break
        total += got
    return total


def _write_all(dst: BinaryIO, view: memoryview) -> None:
    while len(view):
        written = dst.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def _remaining_size(src: BinaryIO) -> int | None:
    """Bytes left in a seekable stream, or None when the stream cannot tell."""
    try:
        if not src.seekable():
            return None
        here = src.tell()
        end = src.seek(0, io.SEEK_END)
        src.seek(here)
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None
    return max(0, end - here)


def _plaintext_segments(
    src: BinaryIO, segment_size: int, size: int | None
) -> Iterator[tuple[memoryview, bool]]:
    """Yield (plaintext view, is_last) per segment; a view is valid until the next one."""
    if size is not None:
        buf = memoryview(bytearray(min(segment_size, size) or 1))
        count = segment_count(size, segment_size)
        done = 0
        for index in range(count):
            want = min(segment_size, size - done)
            got = _read_full(src, buf[:want])
            done += got
            if got < want:
                raise SealSourceError(size, done)
            yield buf[:want], index == count - 1
        extra = src.read(1)
        if extra:
            raise SealSourceError(size, size + len(extra))
        return
    # Unknown size: read one segment ahead, since only the next read tells which one is last.
    cur = memoryview(bytearray(segment_size))
    nxt = memoryview(bytearray(segment_size))
    n_cur = _read_full(src, cur)
    while True:
        if n_cur < segment_size:
            yield cur[:n_cur], True
            return
        n_nxt = _read_full(src, nxt)
        if n_nxt == 0:
            yield cur, True
            return
        yield cur, False
        cur, nxt, n_cur = nxt, cur, n_nxt


def seal(
    src: BinaryIO,
    dst: BinaryIO,
    key: DataKey,
    *,
    size: int | None = None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Progress | None = None,
) -> SealResult:
    """Encrypt everything ``src`` yields into ``dst`` as a sealed stream under ``key``."""
    _check_streams(src, dst)
    key = _check_key(key)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise TypeError("size must be an int or None")
    if size is not None and size < 0:
        raise ValueError("size must be >= 0")
    if size is None:
        size = _remaining_size(src)
    header = StreamHeader(
        segment_size=segment_size,
        plaintext_size=size,
        key_id=bytes.fromhex(key.key_id),
        salt=secrets.token_bytes(SALT_SIZE),
        nonce_prefix=secrets.token_bytes(NONCE_PREFIX_SIZE),
    )
    return seal_with_header(src, dst, key, header, progress=progress)


def seal_with_header(
    src: BinaryIO,
    dst: BinaryIO,
    key: DataKey,
    header: StreamHeader,
    *,
    progress: Progress | None = None,
) -> SealResult:
    """Seal under an explicit header (salt, nonce prefix); for known-answer tests, not for use."""
    # Reusing a header's salt with the same key and different plaintext reuses AES-GCM nonces:
    # only ``seal`` (fresh random salt and prefix) is safe for real data.
    _check_streams(src, dst)
    key = _check_key(key)
    if not isinstance(header, StreamHeader):
        raise TypeError("header must be a StreamHeader")
    if header.key_id.hex() != key.key_id:
        raise ValueError("header.key_id is not the id of key")
    keys = StreamKeys(key.raw, header)
    encoded = keys.encoded_header()
    hasher = BulkDigest(encoded)
    _write_all(dst, memoryview(encoded))
    seg = header.segment_size
    ring = [memoryview(bytearray(seg + TAG_SIZE)) for _ in range(_DIGEST_RING)]
    pending: list[Future[None] | None] = [None] * _DIGEST_RING
    threaded = seg >= _THREADED_MIN_SEGMENT
    plaintext_total = 0
    index = -1
    failed: list[BaseException] = []

    def emit(out: memoryview) -> None:
        # After a failed write the stream is broken: later segments must not land after it.
        if failed:
            return
        try:
            _write_all(dst, out)
            hasher.update(out)
        except BaseException as exc:
            failed.append(exc)
            raise

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seal-write") as pool:
        for index, (chunk, last) in enumerate(_plaintext_segments(src, seg, header.plaintext_size)):
            if index >= MAX_SEGMENTS:
                raise ValueError("plaintext too large for this segment size (2^32 segments max)")
            slot = index % _DIGEST_RING
            waiting = pending[slot]
            if waiting is not None:
                waiting.result()
            out = ring[slot][: len(chunk) + TAG_SIZE]
            keys.seal_segment_into(index, chunk, last, out)
            if threaded:
                # One worker writes and hashes strictly in submission order.
                pending[slot] = pool.submit(emit, out)
            else:
                emit(out)
            plaintext_total += len(chunk)
            if progress is not None:
                progress(len(chunk))
        for waiting in pending:
            if waiting is not None:
                waiting.result()
    count = index + 1
    return SealResult(
        key_id=key.key_id,
        plaintext_size=plaintext_total,
        segment_size=seg,
        segment_count=count,
        sealed_size=HEADER_SIZE + plaintext_total + TAG_SIZE * count,
        ciphertext_digest=hasher.hexdigest(),
        digest_algorithm=hasher.algorithm,
    )


def read_header(src: BinaryIO) -> StreamHeader:
    """Read and parse a sealed stream's header without a key (nothing in it is secret)."""
    _check_streams(src, None)
    return _read_header(src)[0]


def _read_header(src: BinaryIO) -> tuple[StreamHeader, bytes]:
    buf = memoryview(bytearray(HEADER_SIZE))
    got = _read_full(src, buf)
    data = bytes(buf[:got])
    if not MAGIC.startswith(data[: len(MAGIC)]):
        raise HeaderMalformedError("magic", "not a fedtune sealed stream (bad magic bytes)")
    if got < HEADER_SIZE:
        raise TruncatedError("inside the header", expected_bytes=None, got_bytes=got)
    return StreamHeader.decode(data)


def _open_header(src: BinaryIO, key: DataKey) -> StreamKeys:
    header, mac = _read_header(src)
    if header.key_id.hex() != key.key_id:
        raise WrongKeyError(header.key_id.hex(), key.key_id)
    keys = StreamKeys(key.raw, header)
    if not keys.header_mac_ok(mac):
        raise HeaderAuthError()
    return keys


def _ciphertext_segments(
    src: BinaryIO, header: StreamHeader, ring: list[memoryview]
) -> Iterator[tuple[int, memoryview, bool, bool]]:
    """Yield (index, ciphertext view, is_last, cut_short) per segment as laid out in ``src``."""
    # Reads go round-robin through ``ring``, so a view stays valid while the next
    # len(ring) - 1 segments are read: the caller keeps fewer than that in flight.
    seg = header.segment_size
    full = seg + TAG_SIZE
    reads = 0

    def next_buffer() -> memoryview:
        nonlocal reads
        reads += 1
        return ring[(reads - 1) % len(ring)]

    count = header.segment_count
    if count is not None:
        size = header.plaintext_size or 0
        for index in range(count):
            last = index == count - 1
            want = (size - seg * (count - 1) if last else seg) + TAG_SIZE
            buf = next_buffer()[:want]
            got = _read_full(src, buf)
            if got < want:
                yield index, buf[:got], last, True
                return
            yield index, buf, last, False
        if src.read(1):
            raise TrailingDataError(count - 1)
        return
    # Unknown size: read one segment ahead, since only the next read tells which one is last.
    cur = next_buffer()
    n_cur = _read_full(src, cur)
    index = 0
    if n_cur == 0:
        yield 0, cur[:0], True, True
        return
    while True:
        if n_cur < full:
            yield index, cur[:n_cur], True, n_cur < TAG_SIZE
            return
        nxt = next_buffer()
        n_nxt = _read_full(src, nxt)
        if n_nxt == 0:
            yield index, cur, True, False
            return
        yield index, cur, False, False
        cur, n_cur = nxt, n_nxt
        index += 1


def _segment_failure(
    keys: StreamKeys, chunk: memoryview, index: int, last: bool, cut_short: bool, consumed: int
) -> SealedStreamError:
    """Explain why segment ``index`` did not open: misplaced, truncated, trailing, or modified."""
    expected = keys.header.sealed_size
    found = keys.locate_segment(chunk, near=index)
    if found is not None:
        actual, actual_last = found
        if actual != index:
            return SegmentOutOfOrderError(index, actual)
        if actual_last and not last:
            return TrailingDataError(index)
        if not actual_last and last:
            return TruncatedError(
                f"before segment {index + 1}", expected_bytes=expected, got_bytes=consumed
            )
    if cut_short:
        where = f"inside segment {index}" if len(chunk) else f"before segment {index}"
        return TruncatedError(where, expected_bytes=expected, got_bytes=consumed)
    return SegmentAuthError(index, final=last)


class _InOrderPool:
    """Runs segment jobs on worker threads and hands their results back strictly in order."""

    def __init__(self, threaded: bool) -> None:
        workers = max(1, min(_MAX_WORKERS, os.cpu_count() or 1)) if threaded else 0
        self._pool = ThreadPoolExecutor(workers, "unseal") if workers else None
        # Jobs in flight: enough to keep every worker busy while results are retired.
        self.depth = 2 * workers if workers else 1
        self._inflight: deque[tuple[Future[bool], Callable[[bool], None]]] = deque()

    def submit(self, job: Callable[[], bool], done: Callable[[bool], None]) -> None:
        """Queue ``job``; ``done(result)`` runs on this thread once all earlier jobs retired."""
        while len(self._inflight) >= self.depth:
            self.retire_one()
        if self._pool is not None:
            future = self._pool.submit(job)
        else:
            future = Future()
            future.set_result(job())
        self._inflight.append((future, done))

    def retire_one(self) -> None:
        """Wait for the oldest job and run its ``done``."""
        future, done = self._inflight.popleft()
        done(future.result())

    def drain(self) -> None:
        """Retire every job still in flight, in order."""
        while self._inflight:
            self.retire_one()

    def __enter__(self) -> _InOrderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inflight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _unseal_segments(
    src: BinaryIO,
    keys: StreamKeys,
    sink: Callable[[int, int, int], memoryview],
    commit: Callable[[memoryview], None],
    progress: Progress | None,
) -> UnsealResult:
    """Open every segment into ``sink(index, offset, length)``; ``commit`` each, in order."""
    header = keys.header
    seg = header.segment_size
    full = seg + TAG_SIZE
    if header.plaintext_size is not None:
        full = min(full, header.plaintext_size + TAG_SIZE)
    offset = 0
    consumed = HEADER_SIZE
    index = -1
    with _InOrderPool(seg >= _THREADED_MIN_SEGMENT) as pool:
        ring = [memoryview(bytearray(full)) for _ in range(pool.depth + 2)]
        segments = _ciphertext_segments(src, header, ring)
        while True:
            try:
                item = next(segments)
            except StopIteration:
                break
            except SealedStreamError:
                # A framing error (trailing data) ranks after failures of earlier segments.
                pool.drain()
                raise
            index, chunk, last, cut_short = item
            consumed += len(chunk)
            length = len(chunk) - TAG_SIZE
            if cut_short or length < 0:
                pool.drain()
                raise _segment_failure(keys, chunk, index, last, True, consumed)
            out = sink(index, offset, length)

            def job(
                i: int = index, c: memoryview = chunk, f: bool = last, o: memoryview = out
            ) -> bool:
                return keys.open_segment_into(i, c, f, o)

            def done(
                ok: bool,
                i: int = index,
                c: memoryview = chunk,
                f: bool = last,
                o: memoryview = out,
                at: int = consumed,
            ) -> None:
                if not ok:
                    raise _segment_failure(keys, c, i, f, False, at)
                opened = len(o)
                commit(o)
                if progress is not None:
                    progress(opened)

            pool.submit(job, done)
            offset += length
        pool.drain()
    return UnsealResult(
        key_id=keys.header.key_id.hex(),
        plaintext_size=offset,
        segment_size=header.segment_size,
        segment_count=index + 1,
        sealed_size=consumed,
    )


def unseal(
    src: BinaryIO, dst: BinaryIO, key: DataKey, *, progress: Progress | None = None
) -> UnsealResult:
    """Decrypt a sealed stream into ``dst``; on error, discard what ``dst`` received."""
    # Every byte written has been authenticated, but a later failure means the output is
    # incomplete: callers writing files should use ``unseal_file`` (temp name, rename).
    _check_streams(src, dst)
    key = _check_key(key)
    keys = _open_header(src, key)
    seg = keys.header.segment_size
    # One plaintext buffer per job in flight (at most 2 * workers) plus one being filled.
    scratch = [memoryview(bytearray(seg)) for _ in range(2 * _MAX_WORKERS + 1)]

    def sink(index: int, offset: int, length: int) -> memoryview:
        return scratch[index % len(scratch)][:length]

    def commit(view: memoryview) -> None:
        _write_all(dst, view)

    return _unseal_segments(src, keys, sink, commit, progress)


def _fresh_buffer(size: int) -> bytearray | mmap.mmap:
    """A zeroed, writable buffer of ``size`` bytes, as cheap to fault in as the OS allows."""
    if size < _MAP_MIN_SIZE or not hasattr(mmap, "MAP_ANONYMOUS"):
        return bytearray(size)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        # Only a hint: a kernel without transparent huge pages refuses it (EINVAL), and then
        # ordinary pages serve; nothing else about the buffer changes.
        with contextlib.suppress(OSError):
            buf.madvise(advice)
    return buf


def unseal_to_memory(
    src: BinaryIO, key: DataKey, *, progress: Progress | None = None
) -> memoryview:
    """Decrypt a sealed stream into fresh memory, returned as a writable byte view."""
    # The view is the only handle: dropping it frees the memory (a bytearray, or an anonymous
    # map for large plaintexts). Plaintext never touches a file.
    _check_streams(src, None)
    key = _check_key(key)
    keys = _open_header(src, key)
    size = keys.header.plaintext_size
    result: bytearray | mmap.mmap = bytearray() if size is None else _fresh_buffer(size)
    whole: memoryview | None = None
    if size is not None:
        # Known size: each segment is decrypted straight into its place, in parallel.
        whole = memoryview(result)
        into = whole

        def sink(index: int, offset: int, length: int) -> memoryview:
            return into[offset : offset + length]

        def commit(view: memoryview) -> None:
            view.release()

    else:
        seg = keys.header.segment_size
        scratch = [memoryview(bytearray(seg)) for _ in range(2 * _MAX_WORKERS + 1)]

        def sink(index: int, offset: int, length: int) -> memoryview:
            return scratch[index % len(scratch)][:length]

        def commit(view: memoryview) -> None:
            result.extend(view)  # type: ignore[union-attr]  # size unknown: a bytearray

    try:
        _unseal_segments(src, keys, sink, commit, progress)
    except BaseException:
        # Do not leave partial (or unauthenticated) plaintext lying around in memory.
        _wipe(result)
        raise
    finally:
        if whole is not None:
            whole.release()
    return memoryview(result)


def _wipe(buf: bytearray | mmap.mmap) -> None:
    zeros = bytes(min(len(buf), 1 << 20))
    view = memoryview(buf)
    for start in range(0, len(buf), len(zeros) or 1):
        chunk = view[start : start + len(zeros)]
        chunk[:] = zeros[: len(chunk)]
    view.release()


def seal_file(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    key: DataKey,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Progress | None = None,
) -> SealResult:
    """Seal a file into ``dst_path``, which appears only complete (temp name, then rename)."""
    with open(src_path, "rb") as src, atomic_output(dst_path, mode=0o644) as dst:
        return seal(src, dst, key, segment_size=segment_size, progress=progress)


def unseal_file(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    key: DataKey,
    *,
    progress: Progress | None = None,
) -> UnsealResult:
    """Unseal into ``dst_path`` (mode 0600); on any failure no output file is left behind."""
    with open(src_path, "rb") as src, atomic_output(Path(dst_path), mode=0o600) as dst:
        return unseal(src, dst, key, progress=progress)
