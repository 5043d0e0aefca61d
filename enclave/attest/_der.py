"""A small, strict DER reader (X.690) for the ASN.1 that X.509 libraries hand back undecoded."""

from __future__ import annotations

from dataclasses import dataclass

from enclave.errors import MalformedEvidence

# Universal tags (X.680 section 8.4) this reader decodes; constructed SEQUENCE carries bit 6.
BOOLEAN = 0x01
INTEGER = 0x02
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
ENUMERATED = 0x0A
SEQUENCE = 0x30

# Bounds: vendor extensions are a few hundred bytes; anything bigger or deeper is not one.
MAX_INPUT = 64 * 1024
MAX_DEPTH = 16
MAX_INTEGER_OCTETS = 16


@dataclass(frozen=True)
class Element:
    """One DER TLV: its identifier octet and its content octets."""

    tag: int
    content: bytes


def read_element(data: bytes, *, field: str) -> Element:
    """Decode exactly one TLV that spans all of ``data`` (trailing bytes are refused)."""
    if len(data) > MAX_INPUT:
        raise MalformedEvidence(field, f"DER input of {len(data)} bytes exceeds {MAX_INPUT}")
    element, end = _read_tlv(data, 0, field=field)
    if end != len(data):
        raise MalformedEvidence(field, f"{len(data) - end} trailing bytes after the DER value")
    return element


def read_sequence(data: bytes, *, field: str, depth: int = 0) -> list[Element]:
    """Decode ``data`` as one SEQUENCE and return its members in order."""
    return sequence_members(read_element(data, field=field), field=field, depth=depth)


def sequence_members(element: Element, *, field: str, depth: int = 0) -> list[Element]:
    """Return the members of a SEQUENCE element, refusing any other tag."""
    if depth > MAX_DEPTH:
        raise MalformedEvidence(field, f"DER nesting deeper than {MAX_DEPTH}")
    _expect(element, SEQUENCE, field)
    members: list[Element] = []
    offset = 0
    while offset < len(element.content):
        member, offset = _read_tlv(element.content, offset, field=field)
        members.append(member)
    return members


def decode_oid(element: Element, *, field: str) -> str:
    """Decode an OBJECT IDENTIFIER to dotted form (X.690 section 8.19)."""
    _expect(element, OBJECT_IDENTIFIER, field)
    content = element.content
    if not content or content[-1] & 0x80:
        raise MalformedEvidence(field, "OBJECT IDENTIFIER is empty or its last arc is unterminated")
    arcs: list[int] = []
    value = 0
    start = True
    for octet in content:
        if start and octet == 0x80:
            # X.690 8.19.2: each subidentifier uses the fewest octets, so no leading 0x80.
            raise MalformedEvidence(field, "OBJECT IDENTIFIER arc is not minimally encoded")
        value = (value << 7) | (octet & 0x7F)
        start = not octet & 0x80
        if start:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def decode_integer(element: Element, *, field: str, tag: int = INTEGER) -> int:
    """Decode an INTEGER (or ENUMERATED with ``tag``), refusing non-minimal encodings."""
    _expect(element, tag, field)
    content = element.content
    if not content:
        raise MalformedEvidence(field, "INTEGER has no content octets")
    if len(content) > MAX_INTEGER_OCTETS:
        raise MalformedEvidence(field, f"INTEGER longer than {MAX_INTEGER_OCTETS} octets")
    # X.690 8.3.2: the first nine bits are never all zero or all one.
    if len(content) > 1 and (
        (content[0] == 0x00 and not content[1] & 0x80) or (content[0] == 0xFF and content[1] & 0x80)
    ):
        raise MalformedEvidence(field, "INTEGER is not minimally encoded")
    return int.from_bytes(content, "big", signed=True)


def decode_boolean(element: Element, *, field: str) -> bool:
    """Decode a DER BOOLEAN (X.690 section 11.1: true is 0xFF, false is 0x00)."""
    _expect(element, BOOLEAN, field)
    if element.content == b"\xff":
        return True
    if element.content == b"\x00":
        return False
    raise MalformedEvidence(field, f"BOOLEAN content {element.content.hex()} is not DER")


def decode_octet_string(element: Element, *, field: str, size: int | None = None) -> bytes:
    """Decode a primitive OCTET STRING, optionally of an exact ``size``."""
    _expect(element, OCTET_STRING, field)
    if size is not None and len(element.content) != size:
        raise MalformedEvidence(
            field, f"OCTET STRING of {len(element.content)} bytes, expected {size}"
        )
    return element.content


def _expect(element: Element, tag: int, field: str) -> None:
    if element.tag != tag:
        raise MalformedEvidence(field, f"DER tag 0x{element.tag:02x}, expected 0x{tag:02x}")


def _read_tlv(data: bytes, offset: int, *, field: str) -> tuple[Element, int]:
    if offset + 2 > len(data):
        raise MalformedEvidence(field, "DER value truncated in its tag or length")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise MalformedEvidence(field, "DER high-tag-number form is not used here")
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise MalformedEvidence(field, "indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > 4 or offset + count > len(data):
            raise MalformedEvidence(field, "DER length field is too long or truncated")
        length_octets = data[offset : offset + count]
        offset += count
        length = int.from_bytes(length_octets, "big")
        # X.690 10.1: the definite form uses the fewest octets.
        if length < 0x80 or length_octets[0] == 0:
            raise MalformedEvidence(field, "DER length is not minimally encoded")
    end = offset + length
    if end > len(data):
        raise MalformedEvidence(field, f"DER value of {length} bytes runs past its container")
    return Element(tag=tag, content=bytes(data[offset:end])), end
