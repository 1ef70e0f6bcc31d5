"""A reader of Yjs v1 updates: which items an update adds, where, and what they had seen.

Theory of operation
-------------------
pycrdt applies updates but exposes no item ids, so the one question the trip
rules need answered about a Yjs peer's write -- *which value of a map key had
the writer seen?* -- is answered here from the bytes. The encoding is the
y-protocols v1 update format (yjs ``INTERNALS.md`` and ``src/utils/encoding.js``;
lib0 ``decoding.js`` for the primitives)::

    update      = structs delete_set
    structs     = varuint(clients) { varuint(n) varuint(client) varuint(clock) struct*n }
    struct      = info:u8 ...
                  info & 0x1f == 0   GC       varuint(len)
                  info & 0x1f == 10  Skip     varuint(len)
                  otherwise          Item     [origin ID if info & 0x80]
                                              [right origin ID if info & 0x40]
                                              [parent: varuint(1) root-name | varuint(0) ID,
                                               then parentSub string if info & 0x20]
                                                 -- only when neither origin is present
                                              content (by ref = info & 0x1f)
    delete_set  = varuint(clients) { varuint(client) varuint(n) (varuint(clock) varuint(len))*n }

Which root map key an item writes, and what its writer had seen, is
:mod:`sync.ykeys`.

Everything is bounded by the input size; malformed input raises
:class:`MalformedUpdate` (a peer error) and never anything else.
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass
from typing import Final

from tripsage_sync.sync.errors import InvalidMessage

__all__ = [
    "ANY_REF",
    "ID",
    "ByteReader",
    "DecodedUpdate",
    "MalformedUpdate",
    "Struct",
    "decode_update",
]

# Content refs (yjs src/structs/Item.js contentRefs).
GC_REF: Final = 0
DELETED_REF: Final = 1
JSON_REF: Final = 2
BINARY_REF: Final = 3
STRING_REF: Final = 4
EMBED_REF: Final = 5
FORMAT_REF: Final = 6
TYPE_REF: Final = 7
ANY_REF: Final = 8
DOC_REF: Final = 9
SKIP_REF: Final = 10
_KEYED_TYPE_REFS: Final = frozenset({3, 5})  # XmlElement and XmlHook carry a name
MAX_VARUINT_BYTES: Final = 8  # lib0 refuses numbers beyond 53 bits
MAX_ANY_DEPTH: Final = 64

ID = tuple[int, int]  # (client, clock)


class MalformedUpdate(InvalidMessage):
    """The bytes are not a Yjs v1 update."""


@dataclass(frozen=True, slots=True)
class Struct:
    """One struct: ``length`` consecutive clocks of ``client`` from ``clock``."""

    client: int
    clock: int
    length: int
    ref: int
    origin: ID | None = None
    right_origin: ID | None = None
    parent: str | ID | None = None  # only when the encoding carries it
    parent_sub: str | None = None
    values: tuple[object, ...] = ()  # ContentAny / ContentJSON values

    @property
    def is_item(self) -> bool:
        return self.ref not in (GC_REF, SKIP_REF)


@dataclass(frozen=True, slots=True)
class DecodedUpdate:
    structs: tuple[Struct, ...]
    delete_set: dict[int, list[tuple[int, int]]]

    def is_deleted(self, item: ID) -> bool:
        client, clock = item
        return any(start <= clock < start + n for start, n in self.delete_set.get(client, ()))


class ByteReader:
    """lib0 decoding primitives over one buffer; running off its end is malformed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise MalformedUpdate("Truncated Yjs update")
        self.pos = pos + 1
        return self.data[pos]

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedUpdate("Truncated Yjs update")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varuint(self) -> int:
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # most numbers of an update: one byte
            self.pos = pos + 1
            return data[pos]
        value = shift = 0
        for _ in range(MAX_VARUINT_BYTES):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise MalformedUpdate("Number out of range in Yjs update")

    def varint(self) -> int:
        byte = self.byte()
        value = byte & 0x3F
        sign = -1 if byte & 0x40 else 1
        mult = 64
        for _ in range(MAX_VARUINT_BYTES):
            if byte < 0x80:
                return sign * value
            byte = self.byte()
            value += (byte & 0x7F) * mult
            mult *= 128
        raise MalformedUpdate("Number out of range in Yjs update")

    def string(self) -> str:
        return self.take(self.varuint()).decode("utf-8", errors="replace")

    def any(self, depth: int = 0) -> object:
        if depth > MAX_ANY_DEPTH:
            raise MalformedUpdate("Value nested too deeply in Yjs update")
        tag = self.byte()
        if tag in (126, 127):  # null, undefined
            return None
        if tag == 125:
            return self.varint()
        if tag == 124:
            return float(_struct.unpack(">f", self.take(4))[0])
        if tag == 123:
            return float(_struct.unpack(">d", self.take(8))[0])
        if tag == 122:
            return int(_struct.unpack(">q", self.take(8))[0])
        if tag in (120, 121):
            return tag == 120
        if tag == 119:
            return self.string()
        if tag == 118:
            return {self.string(): self.any(depth + 1) for _ in range(self.count())}
        if tag == 117:
            return [self.any(depth + 1) for _ in range(self.count())]
        if tag == 116:
            return self.take(self.varuint())
        raise MalformedUpdate(f"Unknown value tag {tag} in Yjs update")

    def count(self) -> int:
        count = self.varuint()
        if count > len(self.data) - self.pos:  # every element takes at least one byte
            raise MalformedUpdate("Count out of range in Yjs update")
        return count

    def id(self) -> ID:
        return (self.varuint(), self.varuint())


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def _content(reader: ByteReader, ref: int) -> tuple[int, tuple[object, ...]]:
    """(length, values) of one item's content."""
    if ref == DELETED_REF:
        return reader.varuint(), ()
    if ref == JSON_REF:  # JSON strings, "undefined" included: only counted
        count = reader.count()
        for _ in range(count):
            reader.string()
        return count, ()
    if ref == BINARY_REF:
        reader.take(reader.varuint())
        return 1, ()
    if ref == STRING_REF:
        return _utf16_length(reader.string()), ()
    if ref == EMBED_REF:
        reader.string()
        return 1, ()
    if ref == FORMAT_REF:
        reader.string()
        reader.string()
        return 1, ()
    if ref == TYPE_REF:
        if reader.varuint() in _KEYED_TYPE_REFS:
            reader.string()
        return 1, ()
    if ref == ANY_REF:
        values = tuple(reader.any() for _ in range(reader.count()))
        return len(values), values
    if ref == DOC_REF:
        reader.string()
        reader.any()
        return 1, ()
    raise MalformedUpdate(f"Unknown content ref {ref} in Yjs update")


def decode_update(data: bytes) -> DecodedUpdate:
    """Decode a Yjs v1 update; raises :class:`MalformedUpdate`."""
    reader = ByteReader(data)
    structs: list[Struct] = []
    for _ in range(reader.count()):
        count, client, clock = reader.count(), reader.varuint(), reader.varuint()
        for _ in range(count):
            info = reader.byte()
            ref = info & 0x1F
            if ref in (GC_REF, SKIP_REF):
                length = reader.varuint()
                structs.append(Struct(client, clock, length, ref))
                clock += length
                continue
            origin = reader.id() if info & 0x80 else None
            right_origin = reader.id() if info & 0x40 else None
            parent: str | ID | None = None
            parent_sub = None
            if origin is None and right_origin is None:
                parent = reader.string() if reader.varuint() == 1 else reader.id()
                parent_sub = reader.string() if info & 0x20 else None
            length, values = _content(reader, ref)
            if length < 1:
                raise MalformedUpdate("Empty item in Yjs update")
            structs.append(
                Struct(client, clock, length, ref, origin, right_origin, parent, parent_sub, values)
            )
            clock += length
    delete_set: dict[int, list[tuple[int, int]]] = {}
    for _ in range(reader.count()):
        client = reader.varuint()
        ranges = delete_set.setdefault(client, [])
        for _ in range(reader.count()):
            ranges.append((reader.varuint(), reader.varuint()))
    if reader.pos != len(data):
        raise MalformedUpdate("Trailing bytes after Yjs update")
    return DecodedUpdate(tuple(structs), delete_set)
