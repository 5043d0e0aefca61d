"""Bulk digests of sealed bytes (BLAKE3), named by an algorithm id so the choice can change."""

from __future__ import annotations

import os
from typing import Final

import blake3

from crypto.errors import UnsupportedDigestError

DIGEST_ALGORITHM: Final = "blake3"
"""The algorithm id written into manifests and registry records for new digests."""
DIGEST_SIZE: Final = 32
"""Output bytes of every supported bulk digest (BLAKE3's default 256-bit output)."""
SUPPORTED_ALGORITHMS: Final = frozenset({DIGEST_ALGORITHM})

# Why BLAKE3 and not SHA-256: sealed blobs are gigabytes, and on CPUs without SHA extensions
# OpenSSL's SHA-256 runs at a tenth of AES-GCM's speed, so the digest, not the encryption,
# bounded sealing and upload (bench/RESULTS.md). Small signed documents, fingerprints and the
# RFC 9162 audit log stay SHA-256: they are specified that way and are not bulk data.


def check_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` if this build computes it; raise UnsupportedDigestError if not."""
    if not isinstance(algorithm, str):
        raise TypeError("algorithm must be a str")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise UnsupportedDigestError(algorithm, sorted(SUPPORTED_ALGORITHMS))
    return algorithm


class BulkDigest:
    """An incremental digest of bulk bytes under a named algorithm (default BLAKE3)."""

    __slots__ = ("_hasher", "algorithm")

    def __init__(
        self,
        data: bytes | bytearray | memoryview = b"",
        *,
        algorithm: str = DIGEST_ALGORITHM,
        max_threads: int = 1,
    ) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data must be bytes-like")
        if not isinstance(max_threads, int) or isinstance(max_threads, bool):
            raise TypeError("max_threads must be an int")
        if max_threads < 1:
            raise ValueError("max_threads must be >= 1")
        self.algorithm = check_algorithm(algorithm)
        # The Rust core releases the GIL while hashing, so a digest thread overlaps other work;
        # max_threads > 1 additionally splits one large update across cores.
        self._hasher = blake3.blake3(max_threads=max_threads)
        if data:
            self._hasher.update(data)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed more bytes."""
        self._hasher.update(data)

    def update_file(self, path: str | os.PathLike[str]) -> None:
        """Feed a whole file's bytes (memory-mapped, so large files cost no buffer copies)."""
        self._hasher.update_mmap(os.fspath(path))

    def digest(self) -> bytes:
        """The digest of everything fed so far (feeding may continue)."""
        return self._hasher.digest()

    def hexdigest(self) -> str:
        """The digest as lowercase hex."""
        return self._hasher.hexdigest()

    def copy(self) -> BulkDigest:
        """An independent digest object with the same state."""
        clone = BulkDigest.__new__(BulkDigest)
        clone.algorithm = self.algorithm
        clone._hasher = self._hasher.copy()
        return clone


def digest_bytes(
    data: bytes | bytearray | memoryview, *, algorithm: str = DIGEST_ALGORITHM
) -> bytes:
    """The bulk digest of ``data``."""
    return BulkDigest(data, algorithm=algorithm).digest()


def digest_file(
    path: str | os.PathLike[str], *, algorithm: str = DIGEST_ALGORITHM, max_threads: int = 1
) -> bytes:
    """The bulk digest of a whole file's bytes."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError("path must be a str or os.PathLike")
    hasher = BulkDigest(algorithm=algorithm, max_threads=max_threads)
    hasher.update_file(path)
    return hasher.digest()
