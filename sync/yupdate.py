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

An item with an origin inherits its parent and map key (``parentSub``) from
the item it was inserted after (yjs ``Item.integrate``), so the key of a map
write is found from its origin: :class:`RootKeys` keeps the map's items by id. A map item's
``origin`` is the value the key held in the writer's replica when it wrote,
which is exactly "what the writer had seen" (:func:`seen_values`).

Everything is bounded by the input size; malformed input raises
:class:`MalformedUpdate` (a peer error) and never anything else.
"""

from __future__ import annotations

import struct as _struct
from bisect import bisect_right, insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from tripsage_sync.sync.errors import InvalidMessage

__all__ = [
    "ANY_REF",
    "ID",
    "ByteReader",
    "DecodedUpdate",
    "MalformedUpdate",
    "RootKeys",
    "Seen",
    "Struct",
    "decode_update",
    "seen_values",
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
Key = tuple[str | ID, str | None]  # (root name or parent type item, map key)


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


@dataclass
class RootKeys:
    """The items of one root map by key, kept up to date update by update.

    A map item either carries its key (no origin) or inherits it from its
    origin, which is the previous item of the same key; an item whose origin
    is not a map item is not one either. :meth:`add` resolves an update's
    items against the ones seen so far, in causal order within the update.
    """

    root: str
    by_key: dict[str, list[Struct]] = field(default_factory=dict)
    _by_client: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)

    def key_of(self, item: ID) -> str | None:
        client, clock = item
        spans = self._by_client.get(client)
        if not spans:
            return None
        i = bisect_right(spans, (clock, float("inf"))) - 1
        if i >= 0 and clock < spans[i][0] + spans[i][1]:
            return spans[i][2]
        return None

    def keys_written(
        self, update: DecodedUpdate, earlier: Mapping[ID, str] | None = None
    ) -> dict[str, list[Struct]]:
        """The update's items that are items of this map, by key (not added); ``earlier``
        knows the keys of items not added yet (of updates before this one), by their id."""
        items = {(s.client, s.clock): s for s in update.structs if s.is_item}
        own: dict[int, list[tuple[int, int]]] = {}
        for s in items.values():
            own.setdefault(s.client, []).append((s.clock, s.length))
        written: dict[str, list[Struct]] = {}
        resolved: dict[ID, str | None] = {}

        def in_update(item: ID) -> ID | None:
            for start, length in own.get(item[0], ()):
                if start <= item[1] < start + length:
                    return (item[0], start)
            return None

        pending = list(items)
        while pending:
            progress, waiting = False, []
            for start in pending:
                s = items[start]
                key: str | None
                if s.origin is None:
                    key = s.parent_sub if s.parent == self.root else None
                else:
                    holder = in_update(s.origin)
                    if holder is not None and holder not in resolved:
                        waiting.append(start)
                        continue
                    if holder is not None:
                        key = resolved[holder]
                    else:
                        key = self.key_of(s.origin)
                        if key is None and earlier is not None:
                            key = earlier.get(s.origin)
                resolved[start] = key
                progress = True
                if key is not None:
                    written.setdefault(key, []).append(s)
            if not progress:  # origins that form a cycle: only malformed input has one
                raise MalformedUpdate("Cyclic origins in Yjs update")
            pending = waiting
        return written

    def add(self, written: dict[str, list[Struct]]) -> None:
        for key, structs in written.items():
            self.by_key.setdefault(key, []).extend(structs)
            for s in structs:
                insort(self._by_client.setdefault(s.client, []), (s.clock, s.length, key))


def seen_values(
    written: dict[str, list[Struct]],
    keys: RootKeys,
    deleted: DecodedUpdate,
    sent: DecodedUpdate | None = None,
) -> dict[str, Seen]:
    """What an update's writes (``keys.keys_written``) had seen, key by key.

    ``keys`` holds the receiver's items before the update, ``deleted`` its
    delete set (``Doc.get_update(Doc.get_state())``). When ``written`` comes
    from the receiver's own re-encoding of the update, a write that lost to a
    concurrent one was deleted on the way and its value garbage-collected;
    ``sent``, the update as the writer sent it, still holds the value.
    """
    values = _values_by_id(sent) if sent is not None else {}
    out: dict[str, Seen] = {}
    for key, structs in written.items():
        entry = out[key] = Seen()
        own = {(s.client, s.clock + i) for s in structs for i in range(s.length)}
        for s in sorted(structs, key=lambda s: (s.client, s.clock)):
            if s.origin is None or s.origin not in own:  # the first write of a chain
                entry.seen.add(s.origin)
            last = (s.client, s.clock + s.length - 1)
            if s.values:
                entry.written = s.values[-1]
            elif last in values:
                entry.written = values[last]
        for s in keys.by_key.get(key, ()):
            for clock in range(s.clock, s.clock + s.length):
                if (s.client, clock) not in own and not deleted.is_deleted((s.client, clock)):
                    entry.current = (s.client, clock)
    return out


def _values_by_id(update: DecodedUpdate) -> dict[ID, object]:
    return {(s.client, s.clock + i): v for s in update.structs for i, v in enumerate(s.values)}


@dataclass
class Seen:
    """One key's writes in an update.

    ``seen``: the items the writes were inserted after (None: the key did not exist
    for the writer); ``current``: the item holding the key in the receiver's state
    (None: absent); ``written``: the last value written (None for a deletion marker).
    The writes are concurrent with the current value unless ``seen == {current}``.
    """

    seen: set[ID | None] = field(default_factory=set)
    current: ID | None = None
    written: object = None

    @property
    def concurrent(self) -> bool:
        return self.seen != {self.current}
