"""The configfs-tsm provider against a fake report tree that plays the kernel's part.

The fake (FakeTsm) stands in for the kernel only: ``mkdir`` under its root creates the
attribute files configfs would, ``rmdir`` removes them, and ``outblob`` is a FIFO whose writer
reads the entry's ``inblob`` when the provider opens it and answers with a report carrying that
report data, signed by a stand-in AMD PKI, as the SEV firmware would. It can also play a
concurrent writer that bumps ``generation`` while the provider reads.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from enclave.attest import verify
from enclave.attest.amd_certs import AmdProduct
from enclave.attest.configfs_tsm import ConfigfsTsmProvider
from enclave.attest.evidence import EvidenceKind
from enclave.attest.snp_cert_table import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    build_cert_table,
    parse_cert_table,
)
from enclave.errors import EvidenceUnavailable, MalformedEvidence

from .snp_helpers import NOW, StandInAmd, build_report, sign_report

TCB = {"bootloader": 9, "tee": 0, "snp": 21, "microcode": 72}
TDX_QUOTE = Path(__file__).resolve().parents[2] / "data/attestation/tdx/dcapqvl-quote-v4.bin"


class FakeTsm:
    """The kernel side of /sys/kernel/config/tsm/report, for one provider."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, *, provider: str) -> None:
        self.root = root
        self.provider = provider
        self.created: list[Path] = []
        self.removed: list[Path] = []
        self.inblobs: list[bytes] = []
        self.bump_generation = 0  # how many of the next entries see a concurrent writer
        self.static_outblob: bytes | None = None
        self.auxblob: bytes | None = None
        self.answer = None  # callable(inblob) -> outblob, for FIFO-served entries
        self.threads: list[threading.Thread] = []
        self._real_mkdir, self._real_rmdir = os.mkdir, os.rmdir
        monkeypatch.setattr(os, "mkdir", self._mkdir)
        monkeypatch.setattr(os, "rmdir", self._rmdir)

    def _ours(self, path) -> bool:
        return Path(path).parent == self.root

    def _mkdir(self, path, mode=0o777, *args, **kwargs):
        self._real_mkdir(path, mode, *args, **kwargs)
        if not self._ours(path):
            return
        entry = Path(path)
        self.created.append(entry)
        for name, content in (
            ("inblob", b""),
            ("provider", f"{self.provider}\n".encode()),
            ("generation", b"1\n"),  # as it reads after our one write to inblob
            ("privlevel", b""),
            ("privlevel_floor", b"0\n"),
        ):
            (entry / name).write_bytes(content)
        if self.auxblob is not None:
            (entry / "auxblob").write_bytes(self.auxblob)
        bump = self.bump_generation > 0
        self.bump_generation -= 1
        if self.static_outblob is not None and not bump:
            (entry / "outblob").write_bytes(self.static_outblob)
        else:
            os.mkfifo(entry / "outblob")
            thread = threading.Thread(target=self._serve, args=(entry, bump), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, entry: Path, bump: bool) -> None:
        # Wait (bounded) for the provider to open outblob, as a read of the real attribute
        # is what makes the kernel ask the firmware for a report.
        deadline = time.monotonic() + 10
        while True:
            try:
                fd = os.open(entry / "outblob", os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                    return
                time.sleep(0.001)
        try:
            inblob = (entry / "inblob").read_bytes()
            self.inblobs.append(inblob)
            if bump:
                # Another writer used the entry after our write: generation moves on.
                (entry / "generation").write_bytes(b"2\n")
            data = self.static_outblob if self.answer is None else self.answer(inblob)
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)

    def _rmdir(self, path, *args, **kwargs):
        if self._ours(path):
            for child in Path(path).iterdir():
                child.unlink()
            self.removed.append(Path(path))
        self._real_rmdir(path, *args, **kwargs)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)
            assert not thread.is_alive()


@pytest.fixture(scope="module")
def amd() -> StandInAmd:
    return StandInAmd.create(AmdProduct.GENOA)


@pytest.fixture
def snp_kernel(tmp_path, monkeypatch, amd) -> FakeTsm:
    root = tmp_path / "tsm" / "report"
    root.mkdir(parents=True)
    fake = FakeTsm(root, monkeypatch, provider="sev_guest")
    key, vcek = amd.endorsement_key(TCB, hwid=b"\xc1" * 64)
    fake.answer = lambda inblob: sign_report(
        build_report(version=3, product=AmdProduct.GENOA, tcb=TCB, report_data=inblob), key
    )
    fake.auxblob = build_cert_table(
        {
            VCEK_GUID: vcek,
            ASK_GUID: amd.ask.public_bytes(Encoding.DER),
            ARK_GUID: amd.ark.public_bytes(Encoding.DER),
        }
    )
    return fake


def test_snp_evidence_carries_our_report_data_and_verifies(snp_kernel, amd):
    report_data = bytes(range(64))
    evidence = ConfigfsTsmProvider(snp_kernel.root).get_evidence(report_data)
    snp_kernel.join()
    assert evidence.kind is EvidenceKind.SEV_SNP
    assert snp_kernel.inblobs == [report_data]
    assert evidence.claims.report_data == report_data
    assert len(evidence.certificates) == 3  # VCEK, ASK, ARK from the auxblob, leaf first
    verdict = verify(evidence, None, report_data, now=NOW, snp_roots=amd.roots())
    assert verdict.ok, verdict.failures
    # The entry is gone again.
    assert snp_kernel.removed == snp_kernel.created and list(snp_kernel.root.iterdir()) == []


def test_generation_change_between_write_and_read_retries(snp_kernel, amd):
    snp_kernel.bump_generation = 1
    report_data = b"\x07" * 64
    evidence = ConfigfsTsmProvider(snp_kernel.root).get_evidence(report_data)
    snp_kernel.join()
    assert len(snp_kernel.created) == 2  # the first entry was shared with another writer
    assert snp_kernel.removed == snp_kernel.created
    assert evidence.claims.report_data == report_data
    assert verify(evidence, None, report_data, now=NOW, snp_roots=amd.roots()).ok


def test_generation_changing_every_time_gives_up(snp_kernel):
    snp_kernel.bump_generation = 5
    with pytest.raises(EvidenceUnavailable, match="generation changed during each of 2"):
        ConfigfsTsmProvider(snp_kernel.root, max_attempts=2).get_evidence(bytes(64))
    snp_kernel.join()
    assert len(snp_kernel.created) == 2 and snp_kernel.removed == snp_kernel.created


def test_privlevel_is_written(snp_kernel):
    seen = []
    original = snp_kernel.answer

    def answer(inblob):
        seen.append((snp_kernel.created[-1] / "privlevel").read_bytes())
        return original(inblob)

    snp_kernel.answer = answer
    ConfigfsTsmProvider(snp_kernel.root, privlevel=2).get_evidence(bytes(64))
    snp_kernel.join()
    assert seen == [b"2"]


def test_tdx_guest(tmp_path, monkeypatch):
    root = tmp_path / "report"
    root.mkdir()
    fake = FakeTsm(root, monkeypatch, provider="tdx_guest")
    fake.static_outblob = TDX_QUOTE.read_bytes()
    evidence = ConfigfsTsmProvider(root).get_evidence(bytes(64))
    assert evidence.kind is EvidenceKind.TDX
    assert evidence.raw == TDX_QUOTE.read_bytes()
    assert evidence.certificates == []  # TDX quotes embed the PCK chain
    assert fake.removed == fake.created


def test_unknown_provider_is_refused_and_cleaned_up(tmp_path, monkeypatch):
    root = tmp_path / "report"
    root.mkdir()
    fake = FakeTsm(root, monkeypatch, provider="arm_cca_guest")
    fake.static_outblob = b"\x00" * 16
    with pytest.raises(EvidenceUnavailable, match="arm_cca_guest"):
        ConfigfsTsmProvider(root).get_evidence(bytes(64))
    assert fake.removed == fake.created and len(fake.created) == 1


def test_malformed_snp_outblob(tmp_path, monkeypatch):
    root = tmp_path / "report"
    root.mkdir()
    fake = FakeTsm(root, monkeypatch, provider="sev_guest")
    fake.static_outblob = b"\x02" * 100
    with pytest.raises(MalformedEvidence):
        ConfigfsTsmProvider(root).get_evidence(bytes(64))
    assert fake.removed == fake.created


def test_no_configfs(tmp_path):
    with pytest.raises(EvidenceUnavailable, match="not an SEV-SNP/TDX guest"):
        ConfigfsTsmProvider(tmp_path / "missing").get_evidence(bytes(64))
    assert ConfigfsTsmProvider(tmp_path / "missing").available() is False


def test_a_directory_without_attributes_is_not_configfs(tmp_path):
    # A plain directory: mkdir works but no attribute files appear.
    with pytest.raises(EvidenceUnavailable, match="not a configfs-tsm report directory"):
        ConfigfsTsmProvider(tmp_path).get_evidence(bytes(64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": "3"}, TypeError),
        ({"privlevel": 4}, ValueError),
        ({"privlevel": True}, TypeError),
    ],
)
def test_constructor_validation(tmp_path, kwargs, error):
    with pytest.raises(error):
        ConfigfsTsmProvider(tmp_path, **kwargs)


@pytest.mark.parametrize(("data", "error"), [(bytes(63), ValueError), ("x" * 64, TypeError)])
def test_report_data_validation(tmp_path, data, error):
    with pytest.raises(error):
        ConfigfsTsmProvider(tmp_path).get_evidence(data)


def test_cert_table_layout(amd):
    # GHCB spec: 24-byte entries (GUID, offset, length), an all-zero terminator, then the data.
    table = build_cert_table({VCEK_GUID: b"vcek", ARK_GUID: b"ark!"})
    assert table[:16] == bytes.fromhex("63da758de6644564adc5f4b93be8accd")
    assert int.from_bytes(table[16:20], "little") == 72  # after three 24-byte entries
    assert table[48:72] == bytes(24)
    assert parse_cert_table(table + bytes(100)) == {VCEK_GUID: b"vcek", ARK_GUID: b"ark!"}


@pytest.mark.parametrize(
    "blob",
    [
        b"\x01" * 24,  # no terminator
        bytes.fromhex("63da758de6644564adc5f4b93be8accd")
        + (10).to_bytes(4, "little")
        + (4).to_bytes(4, "little")
        + bytes(24)
        + b"data",  # offset inside the header
        bytes.fromhex("63da758de6644564adc5f4b93be8accd")
        + (48).to_bytes(4, "little")
        + (400).to_bytes(4, "little")
        + bytes(24)
        + b"data",  # runs past the end
    ],
)
def test_broken_cert_tables(blob):
    with pytest.raises(MalformedEvidence):
        parse_cert_table(blob)
