"""Sealing benchmark: our seal/unseal against raw AES-256-GCM on the same bytes, and peak RSS.

Run: python bench/seal.py [--quick] [--size-mib N] [--segment-size BYTES] [--dir DIR]

Baseline: cryptography's ``AESGCM`` encrypting (then decrypting) the same file's bytes, one
segment at a time with the same segment size, timing only the AEAD calls (no I/O, no hash).
Ours, file to file as a provider runs it: ``crypto.seal.seal`` reads the plaintext file,
encrypts, writes the sealed file and computes the BLAKE3 digest of every sealed byte (the
manifest's ``ciphertext_digest``; it was SHA-256 before manifest version 2). Unseal:
``crypto.seal.unseal_to_memory``, the sandbox's path (file into a fresh in-memory buffer),
and ``crypto.seal.unseal`` to a file (the streaming path) for comparison.

Peak RSS is measured first, while sealing, so nothing else has grown the process yet.
Each timing is the best of ``--repeat`` runs; on a shared machine the numbers are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rich.console import Console
from rich.table import Table

from crypto.datakey import DataKey
from crypto.digest import BulkDigest
from crypto.hazmat.stream import DEFAULT_SEGMENT_SIZE, TAG_SIZE
from crypto.seal import seal, unseal, unseal_to_memory

console = Console(stderr=True)


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_plaintext(path: Path, size: int) -> None:
    # AES does not care what the bytes are; a repeated random block keeps setup fast.
    block = os.urandom(16 << 20)
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(left, len(block))
            handle.write(block[:n])
            left -= n


def _raw_aesgcm(path: Path, segment: int, repeat: int) -> tuple[float, float]:
    """Seconds for AESGCM encrypt and decrypt over the file's bytes, AEAD calls only."""
    aead = AESGCM(os.urandom(32))
    prefix = os.urandom(7)
    buf = memoryview(bytearray(segment))
    ct = memoryview(bytearray(segment + TAG_SIZE))
    out = memoryview(bytearray(segment))
    best_enc = best_dec = float("inf")
    for _ in range(repeat):
        enc = dec = 0.0
        with open(path, "rb", buffering=0) as src:
            index = 0
            while n := src.readinto(buf):
                nonce = prefix + index.to_bytes(4, "big") + b"\x00"
                start = time.perf_counter()
                aead.encrypt_into(nonce, buf[:n], None, ct[: n + TAG_SIZE])
                middle = time.perf_counter()
                aead.decrypt_into(nonce, ct[: n + TAG_SIZE], None, out[:n])
                enc += middle - start
                dec += time.perf_counter() - middle
                index += 1
        best_enc, best_dec = min(best_enc, enc), min(best_dec, dec)
    return best_enc, best_dec


def _digest_alone(path: Path, segment: int, hasher: object) -> float:
    """Seconds to digest the file: the floor under any seal that digests what it writes."""
    buf = memoryview(bytearray(segment))
    hashed = 0.0
    with open(path, "rb", buffering=0) as src:
        while n := src.readinto(buf):
            start = time.perf_counter()
            hasher.update(buf[:n])  # type: ignore[attr-defined]
            hashed += time.perf_counter() - start
    return hashed


def _timed(fn: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB, one run each (< 60 s)")
    parser.add_argument("--size-mib", type=int, default=None, help="plaintext size (2048)")
    parser.add_argument("--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE)
    parser.add_argument("--repeat", type=int, default=None, help="best of N runs (3; quick 1)")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (temp)")
    args = parser.parse_args()
    size = (args.size_mib or (256 if args.quick else 2048)) << 20
    repeat = args.repeat or (1 if args.quick else 3)
    segment = args.segment_size
    key = DataKey.generate()

    with tempfile.TemporaryDirectory(prefix="fedtune-bench-seal-", dir=args.dir) as tmp:
        work = Path(tmp)
        plain, sealed, back = work / "plain.bin", work / "model.sealed", work / "back.bin"
        console.print(f"writing a {size >> 20} MiB plaintext file in {work}")
        _write_plaintext(plain, size)

        # 1. Ours, seal, first: the peak RSS of this process is then the peak of sealing.
        def run_seal() -> None:
            with open(plain, "rb") as src, open(sealed, "wb") as dst:
                seal(src, dst, key, segment_size=segment)

        console.print("sealing")
        seal_s = _timed(run_seal, 1)
        peak_rss = _peak_rss_mib()
        if repeat > 1:
            seal_s = min(seal_s, _timed(run_seal, repeat - 1))

        # The same seal writing to /dev/null: what the read+encrypt+digest pipeline costs
        # without the page-cache write of the sealed file (which the AEAD baseline skips).
        def run_seal_nowrite() -> None:
            with open(plain, "rb") as src, open(os.devnull, "wb") as dst:
                seal(src, dst, key, segment_size=segment)

        seal_nowrite_s = _timed(run_seal_nowrite, repeat)

        # 2. Baseline on the same bytes, same segment size.
        console.print("raw AES-256-GCM baseline")
        raw_enc_s, raw_dec_s = _raw_aesgcm(plain, segment, repeat)
        digest_s = _digest_alone(plain, segment, BulkDigest())
        sha_s = _digest_alone(plain, segment, hashlib.sha256())

        # 3. Ours, unseal: into memory (the sandbox's path), and to a file.
        console.print("unsealing")

        def run_unseal_memory() -> None:
            with open(sealed, "rb") as src:
                buffer = unseal_to_memory(src, key)
            del buffer

        def run_unseal_file() -> None:
            with open(sealed, "rb") as src, open(back, "wb") as dst:
                unseal(src, dst, key)

        unseal_s = _timed(run_unseal_memory, repeat)
        unseal_file_s = _timed(run_unseal_file, repeat)

    gb = size / 1e9
    rows = [
        ("raw AESGCM encrypt", raw_enc_s, None),
        ("raw AESGCM decrypt", raw_dec_s, None),
        ("BLAKE3 alone (the manifest digest)", digest_s, None),
        ("SHA-256 alone (the digest before manifest v2)", sha_s, None),
        ("seal (read, encrypt, write, BLAKE3)", seal_s, raw_enc_s / seal_s),
        ("seal to /dev/null (no file write)", seal_nowrite_s, raw_enc_s / seal_nowrite_s),
        ("unseal to memory", unseal_s, raw_dec_s / unseal_s),
        ("unseal to file (streaming)", unseal_file_s, raw_dec_s / unseal_file_s),
    ]
    table = Table(title=f"sealing {size >> 20} MiB, segment {segment} B, best of {repeat}")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_column("GB/s", justify="right")
    table.add_column("ours / raw", justify="right")
    for label, seconds, ratio in rows:
        table.add_row(
            label, f"{seconds:.3f}", f"{gb / seconds:.3f}", "" if ratio is None else f"{ratio:.2f}"
        )
    Console().print(table)
    print(f"peak RSS while sealing {size >> 20} MiB: {peak_rss:.0f} MiB")
    print(
        f"cpu: {os.cpu_count()} cores; BLAKE3 alone runs at {raw_enc_s / digest_s:.2f}x raw "
        f"encryption on this CPU (SHA-256: {raw_enc_s / sha_s:.2f}x)"
    )
    print(
        "RESULT "
        f"seal_ratio={raw_enc_s / seal_s:.3f} "
        f"unseal_ratio={raw_dec_s / unseal_s:.3f} "
        f"peak_rss_mib={peak_rss:.0f} "
        f"unseal_file_ratio={raw_dec_s / unseal_file_s:.3f} "
        f"seal_nowrite_ratio={raw_enc_s / seal_nowrite_s:.3f} "
        f"seal_gbps={gb / seal_s:.3f} unseal_gbps={gb / unseal_s:.3f} "
        f"raw_encrypt_gbps={gb / raw_enc_s:.3f} raw_decrypt_gbps={gb / raw_dec_s:.3f} "
        f"blake3_gbps={gb / digest_s:.3f} sha256_gbps={gb / sha_s:.3f} size_mib={size >> 20}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
