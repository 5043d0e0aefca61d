"""The authorisation matrix: load authz_matrix.toml, derive the cells it must hold from protos."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor

import fedtune._proto

MATRIX_PATH = Path(__file__).with_name("authz_matrix.toml")
PACKAGE = "fedtune.v1"

# Callers: the four roles a certificate can carry, and two callers without a valid certificate.
ROLES = ("provider", "data-owner", "operator", "auditor")
UNAUTHENTICATED = "unauthenticated"
FOREIGN = "foreign-deployment"
CALLERS = (*ROLES, UNAUTHENTICATED, FOREIGN)
# Callers that stand in relations to objects (own model, invited session, entitled blob).
RELATED_CALLERS = ("provider", "data-owner")
RELATIONS = ("related", "unrelated")
ANY = "any"  # the relation of a caller without ownership relations, or of an object-less RPC
VERDICTS = ("allow", "deny")

# A request field with one of these names makes the RPC act on an object.
OBJECT_FIELDS = frozenset(
    {"session_id", "upload_id", "model", "model_name", "name", "terms", "manifest"}
)
# Services of fedtune/_proto that the orchestrator does not serve (none today; the sandbox
# service's stubs live in enclave/_proto and are never walked).
NOT_SERVED: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RpcShape:
    """One RPC of the protos: name, message classes, streaming, whether it names an object."""

    method: str  # "/fedtune.v1.Service/Method"
    request: type
    response: type
    client_streaming: bool
    server_streaming: bool
    takes_object: bool

    @property
    def short(self) -> str:
        """``Service.Method``, the matrix's row name."""
        service, name = self.method.strip("/").split("/")
        return f"{service.removeprefix(PACKAGE + '.')}.{name}"

    @property
    def name(self) -> str:
        """The bare method name, as errors and audit events name it."""
        return self.method.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix: who calls what, about which object, and the expected verdict."""

    method: str
    caller: str
    relation: str
    expected: str
    why: str

    @property
    def id(self) -> str:
        """A readable test id."""
        name = self.method.strip("/").split("/", 1)[1].removeprefix(PACKAGE + ".")
        rel = "" if self.relation == ANY else f"-{self.relation}"
        return f"{name.replace('/', '.')}-{self.caller}{rel}-{self.expected}"


def names_object(message: Descriptor, *, depth: int = 2) -> bool:
    """Whether a request, or a message it carries (an upload stream's header), names an object."""
    nested = [f.message_type for f in message.fields if f.message_type is not None]
    return any(f.name in OBJECT_FIELDS for f in message.fields) or (
        depth > 0 and any(names_object(n, depth=depth - 1) for n in nested)
    )


def proto_rpcs() -> dict[str, RpcShape]:
    """Every RPC of every service in fedtune/_proto, from the generated descriptors."""
    found: dict[str, RpcShape] = {}
    for info in pkgutil.iter_modules(fedtune._proto.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"fedtune._proto.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in NOT_SERVED:
                continue
            for m in service.methods:
                found[f"/{service.full_name}/{m.name}"] = RpcShape(
                    method=f"/{service.full_name}/{m.name}",
                    request=message_factory.GetMessageClass(m.input_type),
                    response=message_factory.GetMessageClass(m.output_type),
                    client_streaming=m.client_streaming,
                    server_streaming=m.server_streaming,
                    takes_object=names_object(m.input_type),
                )
    return found


def required_keys(rpcs: dict[str, RpcShape]) -> set[tuple[str, str, str]]:
    """Every (method, caller, relation) the protos imply the matrix must decide."""
    keys = set()
    for method, shape in rpcs.items():
        for caller in CALLERS:
            if shape.takes_object and caller in RELATED_CALLERS:
                keys |= {(method, caller, rel) for rel in RELATIONS}
            else:
                keys.add((method, caller, ANY))
    return keys


class MatrixError(ValueError):
    """The matrix file is malformed (unknown caller, verdict or relation)."""


def load_matrix(path: Path = MATRIX_PATH) -> list[Cell]:
    """Every cell of the matrix file, in file order; MatrixError for a malformed entry."""
    doc = tomllib.loads(path.read_text())
    cells: list[Cell] = []
    for service, methods in doc.items():
        if not isinstance(methods, dict):
            raise MatrixError(f"top-level key {service!r} must be a [Service.Method] table")
        for name, row in methods.items():
            method = f"/{PACKAGE}.{service}/{name}"
            why = row.get("why", "")
            if not why:
                raise MatrixError(f"{service}.{name}: say why (key 'why')")
            unknown = set(row) - {"why", *CALLERS}
            if unknown:
                raise MatrixError(f"{service}.{name}: unknown callers {sorted(unknown)}")
            for caller in CALLERS:
                if caller not in row:
                    continue
                value = row[caller]
                entries = value.items() if isinstance(value, dict) else [(ANY, value)]
                for relation, verdict in entries:
                    if relation not in (*RELATIONS, ANY):
                        raise MatrixError(f"{service}.{name}.{caller}: relation {relation!r}")
                    if verdict not in VERDICTS:
                        raise MatrixError(f"{service}.{name}.{caller}: verdict {verdict!r}")
                    cells.append(Cell(method, caller, relation, verdict, why))
    return cells
