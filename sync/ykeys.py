"""Root map keys of Yjs updates: which key each item writes, and what its writer had seen.

Theory of operation
-------------------
Built on :mod:`sync.yupdate`, which decodes an update's items. An item with
an origin inherits its parent and map key (``parentSub``) from the item it was
inserted after (yjs ``Item.integrate``), so the key of a map write is found
from its origin: :class:`RootKeys` keeps the map's items by id. A map item's
``origin`` is the value the key held in the writer's replica when it wrote,
which is exactly "what the writer had seen" (:func:`seen_values`).

Everything is bounded by the input size; malformed input raises
:class:`MalformedUpdate` (a peer error) and never anything else.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

from tripsage_sync.sync.yupdate import ID, DecodedUpdate, MalformedUpdate, Struct

__all__ = ["RootKeys", "Seen", "seen_values"]


@dataclass
class RootKeys:
    """The items of one root map by key, kept up to date update by update.

    A map item either carries its key (no origin) or inherits it from its
    origin, which is the previous item of the same key; an item whose origin
    is not a map item is not one either. :meth:`add` resolves an update's
    items against the ones seen so far, in causal order within the update.
    """

    root: str
    # Each key's items, flat (client, clock, length) triples, and each client's
    # spans of clocks with the key they write, ascending: ids only, in arrays, so
    # that a peer's overwrite keeps a few dozen bytes, not its decoded struct.
    by_key: dict[str, array[int]] = field(default_factory=dict)
    _by_client: dict[int, _Spans] = field(default_factory=dict)

    def key_of(self, item: ID) -> str | None:
        client, clock = item
        spans = self._by_client.get(client)
        if spans is None:
            return None
        i = bisect_right(spans.starts, clock) - 1
        if i >= 0 and clock < spans.starts[i] + spans.lengths[i]:
            return spans.keys[i]
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
        for name, structs in written.items():
            key = sys.intern(name)  # one string for every item of the key
            ids = self.by_key.setdefault(key, array("q"))
            for s in structs:
                ids.extend((s.client, s.clock, s.length))
                spans = self._by_client.get(s.client)
                if spans is None:
                    spans = self._by_client[s.client] = _Spans(array("q"), array("q"), [])
                i = bisect_right(spans.starts, s.clock)  # the end, but for pending structs
                spans.starts.insert(i, s.clock)
                spans.lengths.insert(i, s.length)
                spans.keys.insert(i, key)


@dataclass(slots=True)
class _Spans:
    starts: array[int]
    lengths: array[int]
    keys: list[str]


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
        ids = keys.by_key.get(key, ())
        for client, start, length in zip(ids[0::3], ids[1::3], ids[2::3], strict=True):
            for clock in range(start, start + length):
                if (client, clock) not in own and not deleted.is_deleted((client, clock)):
                    entry.current = (client, clock)
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
