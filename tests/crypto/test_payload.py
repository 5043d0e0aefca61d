"""The payload archive: deterministic tar bytes, standard-readable, unpacked in memory safely."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from crypto.errors import PayloadError
from crypto.payload import PayloadFile, PayloadReader, payload_size, unpack_payload


def _files(root: Path) -> list[PayloadFile]:
    return [
        PayloadFile(name=p.relative_to(root).as_posix(), path=p, size=p.stat().st_size)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(os.urandom(5000))
    (root / "config.json").write_text('{"a": 1}')
    (root / "sub" / "empty.txt").write_bytes(b"")
    (root / "sub" / ("long-" * 30 + "name.bin")).write_bytes(b"x" * 512)
    (root / "sub" / "ünïcode.txt").write_text("non-ascii name")
    return root


def _pack(files: list[PayloadFile], read_size: int = 777) -> bytes:
    out = bytearray()
    with PayloadReader(files) as reader:
        while chunk := reader.read(read_size):
            out += chunk
    return bytes(out)


def test_size_is_known_up_front_and_exact(model_dir: Path) -> None:
    files = _files(model_dir)
    data = _pack(files)
    assert len(data) == PayloadReader(files).size == payload_size([(f.name, f.size) for f in files])
    assert len(data) % 512 == 0


def test_archive_is_deterministic(model_dir: Path) -> None:
    first = _pack(_files(model_dir))
    # Timestamps, permissions and the order files are given in do not matter.
    for path in model_dir.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
        if path.is_file():
            path.chmod(0o600)
    second = _pack(list(reversed(_files(model_dir))), read_size=1)
    assert first == second
    # Known answer for a fixed directory: one file "a.txt" holding b"hello\n".
    (model_dir.parent / "fixed").mkdir()
    fixed = model_dir.parent / "fixed" / "a.txt"
    fixed.write_bytes(b"hello\n")
    tar = _pack([PayloadFile(name="a.txt", path=fixed, size=6)])
    assert len(tar) == 512 + 512 + 1024
    # Exactly what stdlib tarfile writes for that member, minus its record padding.
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.PAX_FORMAT) as archive:
        member = tarfile.TarInfo("a.txt")
        member.size, member.mode = 6, 0o644
        archive.addfile(member, io.BytesIO(b"hello\n"))
    assert tar == reference.getvalue()[: len(tar)]
    assert set(reference.getvalue()[len(tar) :]) == {0}
    assert hashlib.sha256(tar).hexdigest() == (
        "f2899396e4fb4287eb88c5e9325459610f2a0d7b602cdb7865f3cae9161c4ee5"
    )


def test_standard_tar_reads_it(model_dir: Path) -> None:
    data = _pack(_files(model_dir))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.encode())
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        assert all(m.mode == 0o644 and m.isreg() for m in members)
        for member in members:
            assert archive.extractfile(member).read() == (model_dir / member.name).read_bytes()


def test_unpack_gives_views_without_copies(model_dir: Path) -> None:
    data = bytearray(_pack(_files(model_dir)))
    files = unpack_payload(data)
    assert sorted(files) == sorted(f.name for f in _files(model_dir))
    for name, view in files.items():
        assert bytes(view) == (model_dir / name).read_bytes()
        assert view.readonly
    # A view into the buffer, not a copy: changing the buffer shows through.
    offset = bytes(data).index(b'{"a": 1}')
    data[offset] = ord("[")
    assert bytes(files["config.json"])[:1] == b"["


def _tar_with(member: tarfile.TarInfo, payload: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(member, io.BytesIO(payload) if payload else None)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape.txt", tarfile.REGTYPE),
        ("/etc/passwd", tarfile.REGTYPE),
        ("a/./b", tarfile.REGTYPE),
        ("link", tarfile.SYMTYPE),
        ("hard", tarfile.LNKTYPE),
        ("dir", tarfile.DIRTYPE),
        ("fifo", tarfile.FIFOTYPE),
    ],
)
def test_unpack_refuses_unsafe_members(name: str, kind: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/shadow" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    with pytest.raises(PayloadError):
        unpack_payload(_tar_with(member))


def test_unpack_refuses_duplicates_and_garbage() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for _ in range(2):
            member = tarfile.TarInfo("same.txt")
            member.size = 1
            archive.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(PayloadError) as info:
        unpack_payload(out.getvalue())
    assert "twice" in str(info.value)
    with pytest.raises(PayloadError):
        unpack_payload(b"\x01" * 2048)


def test_unpack_refuses_member_running_past_the_end() -> None:
    member = tarfile.TarInfo("big.bin")
    member.size = 4096
    data = _tar_with(member, os.urandom(4096))
    with pytest.raises(PayloadError):
        unpack_payload(data[:1536])


def test_file_changing_while_packed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 100)
    shrunk = [PayloadFile(name="w.bin", path=path, size=200)]
    with pytest.raises(PayloadError) as info:
        _pack(shrunk)
    assert "shrank" in str(info.value)
    grown = [PayloadFile(name="w.bin", path=path, size=50)]
    with pytest.raises(PayloadError) as info:
        _pack(grown)
    assert "grew" in str(info.value)


@pytest.mark.parametrize("name", ["", "../x", "/abs", "a//b", "a\\b", "a/../b", "./a"])
def test_bad_member_names_are_refused_when_packing(tmp_path: Path, name: str) -> None:
    with pytest.raises(PayloadError):
        PayloadFile(name=name, path=tmp_path, size=0)


def test_duplicate_names_are_refused_when_packing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    with pytest.raises(PayloadError):
        PayloadReader([PayloadFile("f", path, 0), PayloadFile("f", path, 0)])


def test_empty_payload() -> None:
    data = _pack([])
    assert data == bytes(1024)
    assert unpack_payload(data) == {}
