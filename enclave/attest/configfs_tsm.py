"""Evidence from Linux configfs-tsm (``/sys/kernel/config/tsm/report``) in SEV-SNP and TDX guests.

The kernel interface (Documentation/ABI/testing/configfs-tsm-report): ``mkdir`` a report entry,
write up to 64 bytes to ``inblob``, read ``outblob`` (the report or quote, generated on read),
``auxblob`` (SEV-SNP: the certificate table), ``provider`` (``sev_guest``/``tdx_guest``) and
``generation``, which the kernel increments on every write to the entry. If ``generation``
changed between our write and our reads, another writer shared the entry and the outblob may
answer their inblob, so we retry with a fresh entry; then ``rmdir`` the entry.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

from enclave.attest.evidence import REPORT_DATA_SIZE, Claims, Evidence, EvidenceKind
from enclave.attest.snp import parse_evidence_claims
from enclave.attest.snp_cert_table import chain_from_table, parse_cert_table
from enclave.errors import EvidenceUnavailable

DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")
PROVIDERS = {"sev_guest": EvidenceKind.SEV_SNP, "tdx_guest": EvidenceKind.TDX}
ENTRY_PREFIX = "fedtune-"

_log = logging.getLogger(__name__)


class ConfigfsTsmProvider:
    """Produces SEV-SNP or TDX evidence with caller-chosen report data through configfs-tsm."""

    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        *,
        max_attempts: int = 3,
        privlevel: int | None = None,
    ) -> None:
        if not isinstance(root, str | os.PathLike):
            raise TypeError("root must be a path")
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool):
            raise TypeError("max_attempts must be an int")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if privlevel is not None:
            if not isinstance(privlevel, int) or isinstance(privlevel, bool):
                raise TypeError("privlevel must be an int")
            if not 0 <= privlevel <= 3:
                raise ValueError("privlevel (SEV-SNP VMPL) must be 0-3")
        self.root = Path(root)
        self.max_attempts = max_attempts
        self.privlevel = privlevel

    def available(self) -> bool:
        """True when the kernel exposes configfs-tsm reports at ``root``."""
        return self.root.is_dir()

    def get_evidence(self, report_data: bytes) -> Evidence:
        """Ask the TEE for a report carrying ``report_data`` (64 bytes); retry on concurrent use."""
        if not isinstance(report_data, bytes):
            raise TypeError("report_data must be bytes")
        if len(report_data) != REPORT_DATA_SIZE:
            raise ValueError(
                f"report_data must be {REPORT_DATA_SIZE} bytes, got {len(report_data)}"
            )
        if not self.available():
            raise EvidenceUnavailable(
                f"{self.root} does not exist: this is not an SEV-SNP/TDX guest with configfs-tsm "
                "(kernel 6.7+, configfs mounted at /sys/kernel/config); use the simulated TEE "
                "for development"
            )
        changes = []
        for _ in range(self.max_attempts):
            evidence, before, after = self._attempt(report_data)
            if evidence is not None:
                return evidence
            changes.append(f"{before}->{after}")
        raise EvidenceUnavailable(
            f"configfs-tsm report generation changed during each of {self.max_attempts} "
            f"attempts ({', '.join(changes)}): another process keeps writing to our report "
            "entry; retry later"
        )

    def _attempt(self, report_data: bytes) -> tuple[Evidence | None, int, int]:
        try:
            entry = Path(tempfile.mkdtemp(prefix=ENTRY_PREFIX, dir=self.root))
        except OSError as exc:
            raise EvidenceUnavailable(
                f"cannot create a report entry under {self.root}: {exc.strerror} "
                "(needs root, or a TSM provider driver: sev-guest / tdx-guest)"
            ) from exc
        try:
            if self.privlevel is not None:
                _write(entry / "privlevel", str(self.privlevel).encode())
            _write(entry / "inblob", report_data)
            before = _read_int(entry / "generation")
            provider = _read(entry / "provider").decode("ascii", "replace").strip()
            outblob = _read(entry / "outblob")
            auxblob = _read(entry / "auxblob", optional=True)
            after = _read_int(entry / "generation")
        finally:
            _remove_entry(entry)
        if before != after:
            return None, before, after
        return _evidence(provider, outblob, auxblob), before, after


def _evidence(provider: str, outblob: bytes, auxblob: bytes | None) -> Evidence:
    kind = PROVIDERS.get(provider)
    if kind is None:
        raise EvidenceUnavailable(
            f"configfs-tsm provider {provider!r} is not one fedtune verifies "
            f"({', '.join(PROVIDERS)})"
        )
    if not outblob:
        raise EvidenceUnavailable("configfs-tsm returned an empty outblob")
    certificates: list[bytes] = []
    claims: Claims | None = None
    if kind is EvidenceKind.SEV_SNP:
        if auxblob:
            certificates = chain_from_table(parse_cert_table(auxblob))
        claims = parse_evidence_claims(outblob)
    # TDX: claims stay unset; Evidence.claims is a convenience and verify_tdx parses the quote
    # (and reads the PCK certificate's SVNs) itself.
    return Evidence(kind=kind, raw=outblob, certificates=certificates, claims=claims)


def _read(path: Path, *, optional: bool = False) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if optional:
            return b""
        raise EvidenceUnavailable(
            f"{path} is missing: {path.parent.parent} is not a configfs-tsm report directory"
        ) from None
    except OSError as exc:
        if optional and exc.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENOTTY):
            return b""
        raise EvidenceUnavailable(f"reading {path} failed: {exc.strerror}") from exc


def _read_int(path: Path) -> int:
    text = _read(path).decode("ascii", "replace").strip()
    try:
        return int(text)
    except ValueError:
        raise EvidenceUnavailable(f"{path} holds {text!r}, not a number") from None


def _write(path: Path, data: bytes) -> None:
    # configfs attributes exist once the entry does; never create files there.
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise EvidenceUnavailable(
            f"{path} is missing: {path.parent.parent} is not a configfs-tsm report directory"
        ) from None
    except OSError as exc:
        raise EvidenceUnavailable(f"opening {path} failed: {exc.strerror}") from exc
    try:
        written = os.write(fd, data)
    except OSError as exc:
        raise EvidenceUnavailable(f"writing {path} failed: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if written != len(data):
        raise EvidenceUnavailable(f"short write to {path}: {written} of {len(data)} bytes")


def _remove_entry(entry: Path) -> None:
    try:
        os.rmdir(entry)
    except OSError as exc:
        # The report was read (or the error that brought us here is more telling); a left-over
        # entry only costs a little kernel memory, so name it and go on.
        _log.warning("could not remove configfs-tsm entry %s: %s", entry, exc.strerror)
