#!/usr/bin/env python3
"""Generate the committed Python stubs from protos/, or check that the committed ones are fresh.

The .proto files under protos/fedtune/v1/ are the source of truth. Their stubs are committed
(so an editable install, an IDE and a reader of the diff all see them) and CI runs
``python protos/generate.py --check``, which fails when a stub differs from what the pinned
grpcio-tools (see pyproject's ``dev`` extra) generates now.

Which package receives which stubs follows the import direction of the project:
``sandbox.proto`` is served by ``enclave`` and so lands in ``enclave/_proto/``; every other
file is control plane and lands in ``fedtune/_proto/``. Generated imports of the form
``from fedtune.v1 import x_pb2`` are rewritten to package-relative imports so the stubs live
inside our packages without a top-level ``fedtune.v1`` module.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_PACKAGE = Path("fedtune") / "v1"

# proto file stem -> Python package directory that owns its stubs
OWNERS: dict[str, Path] = {"sandbox": ROOT / "enclave" / "_proto"}
DEFAULT_OWNER = ROOT / "fedtune" / "_proto"

_IMPORT_RE = re.compile(r"^from fedtune\.v1 import (\w+_pb2)", re.MULTILINE)
_INIT = '"""Generated protobuf and gRPC stubs (see protos/generate.py); do not edit."""\n'


def _owner(proto: Path) -> Path:
    return OWNERS.get(proto.stem, DEFAULT_OWNER)


def _generate(out: Path) -> dict[Path, str]:
    """Run protoc over every proto and return {destination path: content}."""
    protos = sorted((PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    if not protos:
        return {}
    import grpc_tools
    from grpc_tools import protoc  # imported late: only the generator needs grpcio-tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    result: dict[Path, str] = {}
    owners = {_owner(p) for p in protos}
    for proto in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            produced = out / PROTO_PACKAGE / f"{proto.stem}{suffix}"
            if not produced.exists():
                continue
            text = _IMPORT_RE.sub(r"from . import \1", produced.read_text())
            result[_owner(proto) / produced.name] = text
    for owner in owners:
        result[owner / "__init__.py"] = _INIT
    return result


def _stale(expected: dict[Path, str]) -> list[str]:
    problems: list[str] = []
    owners = {p.parent for p in expected} | {DEFAULT_OWNER, *OWNERS.values()}
    for owner in owners:
        if not owner.exists():
            continue
        for existing in owner.glob("*_pb2*.py*"):
            if existing not in expected:
                problems.append(f"{existing.relative_to(ROOT)}: no .proto produces it any more")
    for path, text in sorted(expected.items()):
        if not path.exists():
            problems.append(f"{path.relative_to(ROOT)}: missing")
        elif path.read_text() != text:
            diff = difflib.unified_diff(
                path.read_text().splitlines(), text.splitlines(), lineterm="", n=1
            )
            problems.append(f"{path.relative_to(ROOT)}: differs\n" + "\n".join(list(diff)[:20]))
    return problems


def main() -> int:
    """Write fresh stubs, or with --check report stale ones and exit 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        expected = _generate(Path(tmp))
    if opts.check:
        problems = _stale(expected)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("stubs are stale: run 'python protos/generate.py' and commit", file=sys.stderr)
            return 1
        print(f"{len(expected)} generated files are fresh")
        return 0
    for owner in {p.parent for p in expected}:
        for old in owner.glob("*_pb2*.py*"):
            if old not in expected:
                old.unlink()
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(expected)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
