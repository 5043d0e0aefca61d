"""The SEV-SNP certificate table (GHCB spec 56421 §4.1.8.1): GUID-indexed VCEK/VLEK/ASK/ARK blobs.

A guest's extended report request (and configfs-tsm's ``auxblob``) returns the report's
certificates as a table of 24-byte entries, ``GUID (16) || offset u32 LE || length u32 LE``,
ended by an all-zero entry; offsets count from the start of the table.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from enclave.errors import MalformedEvidence

ENTRY_SIZE = 24
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # also carries the ASVK
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
NAMES: Mapping[uuid.UUID, str] = MappingProxyType(
    {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark"}
)
# Leaf first, as Evidence.certificates expects.
CHAIN_ORDER = (VCEK_GUID, VLEK_GUID, ASK_GUID, ARK_GUID)


def parse_cert_table(blob: bytes) -> dict[uuid.UUID, bytes]:
    """Split a certificate table into {GUID: certificate bytes}; MalformedEvidence if broken."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError("blob must be bytes")
    blob = bytes(blob)
    entries: list[tuple[uuid.UUID, int, int]] = []
    offset = 0
    while True:
        if offset + ENTRY_SIZE > len(blob):
            raise MalformedEvidence("cert_table", "no all-zero entry ends the table")
        raw_guid, start, length = struct.unpack_from("<16sII", blob, offset)
        offset += ENTRY_SIZE
        if raw_guid == bytes(16) and start == 0 and length == 0:
            break
        entries.append((uuid.UUID(bytes=raw_guid), start, length))
    table: dict[uuid.UUID, bytes] = {}
    for guid, start, length in entries:
        if start < offset or start + length > len(blob):
            raise MalformedEvidence(
                f"cert_table.{NAMES.get(guid, guid)}",
                f"entry points at bytes {start}..{start + length}, outside the data area "
                f"{offset}..{len(blob)}",
            )
        if guid in table:
            raise MalformedEvidence(f"cert_table.{NAMES.get(guid, guid)}", "GUID appears twice")
        table[guid] = blob[start : start + length]
    return table


def build_cert_table(certs: Mapping[uuid.UUID, bytes]) -> bytes:
    """Lay out a certificate table (the inverse of parse_cert_table), entries in mapping order."""
    header = (len(certs) + 1) * ENTRY_SIZE
    entries, data = [], b""
    for guid, cert in certs.items():
        entries.append(struct.pack("<16sII", guid.bytes, header + len(data), len(cert)))
        data += cert
    return b"".join(entries) + bytes(ENTRY_SIZE) + data


def chain_from_table(table: Mapping[uuid.UUID, bytes]) -> list[bytes]:
    """The table's VCEK/VLEK, ASK and ARK in leaf-first order (other GUIDs are left out)."""
    return [table[guid] for guid in CHAIN_ORDER if guid in table]
