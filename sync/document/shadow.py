"""The shadow Doc that sees a Yjs peer's raw bytes before the live doc does.

A peer's update is first applied to a *shadow* Doc that mirrors the live
one (every change is applied to both, see
:meth:`sync.document.state.DocState.mirror`), under a deep observer: pycrdt
panics are ``BaseException`` and a refused update leaves marks, so only the
shadow may see raw peer bytes; it is rebuilt from the live doc after a
refusal. The observer records what the update did: the root map keys it set
or deleted, the text and list fields it edited, and the transaction's own
update (only what was new: a re-sent update yields nothing). It notes the
first structural refusal (nested shared types, rich text, edits below a
field's own text or list); :mod:`sync.document.remote` checks the rest.

An update whose structs or deletions cannot be integrated yet (a gap in a
client's clock, an origin not received) waits in the shadow as *pending*:
:meth:`Shadow.note_pending` keeps, per client, the clock the shadow waits
for, so that the remote fast path (:mod:`sync.document.newkeys`), which
bypasses the shadow, is not taken while the shadow could still integrate
something the live doc never saw.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Final

from pycrdt import (
    Array,
    ArrayEvent,
    Doc,
    Map,
    MapEvent,
    Subscription,
    Text,
    TextEvent,
    TransactionEvent,
    XmlElement,
    XmlFragment,
    XmlText,
)

from tripsage_sync.sync.document.schema import ROOT_MAP
from tripsage_sync.sync.yupdate import ByteReader, MalformedUpdate, decode_update

__all__ = ["Shadow", "new_shadow"]

_SHARED_TYPES: Final = (Array, Map, Text, XmlElement, XmlFragment, XmlText)


@dataclass
class Shadow:
    """The shadow Doc and what its observers saw during the last apply."""

    doc: Doc[Any]
    subscriptions: list[Subscription] = field(default_factory=list)
    update: bytes = b""
    edits: dict[str, str] = field(default_factory=dict)  # key -> set | delete | edit
    refusal: str | None = None
    # client -> the clock its pending structs or deletions reach (see the module docstring)
    awaiting: dict[int, int] = field(default_factory=dict)
    opaque: bool = False  # an update the reader could not decode: pending unknown, for good

    @property
    def pending(self) -> bool:
        """Whether the shadow may hold structs or deletions it has not integrated."""
        return self.opaque or bool(self.awaiting)

    def note_pending(self, update: bytes) -> None:
        """After ``update`` was applied: what of it, or of earlier ones, still waits."""
        awaiting = self.awaiting
        try:
            decoded = decode_update(update)
        except MalformedUpdate:
            self.opaque = True
            return
        for struct in decoded.structs:
            end = struct.clock + struct.length
            if awaiting.get(struct.client, 0) < end:
                awaiting[struct.client] = end
        for client, ranges in decoded.delete_set.items():
            for start, length in ranges:
                if awaiting.get(client, 0) < start + length:
                    awaiting[client] = start + length
        clocks = _clocks(self.doc.get_state())
        self.awaiting = {c: end for c, end in awaiting.items() if clocks.get(c, 0) < end}

    def reset(self) -> None:
        """Forget what the last apply did, before the next one."""
        self.update, self.edits, self.refusal = b"", {}, None

    def on_transaction(self, event: TransactionEvent) -> None:
        self.update = event.update

    def on_events(self, events: list[Any]) -> None:
        for event in events:
            path = list(event.path)
            if isinstance(event, MapEvent) and not path:
                for key, change in event.keys.items():  # type: ignore[attr-defined]
                    added = change.get("newValue")
                    if isinstance(added, _SHARED_TYPES):
                        self._refuse(f"{key}: nested shared types are not part of a trip")
                    self.edits[key] = "delete" if change["action"] == "delete" else "set"
            elif isinstance(event, TextEvent | ArrayEvent) and len(path) == 1:
                delta = event.delta  # type: ignore[union-attr]
                inserted = [d.get("insert") for d in delta if "insert" in d]
                if isinstance(event, TextEvent):
                    plain = all(isinstance(i, str) for i in inserted)
                else:
                    plain = not any(isinstance(v, _SHARED_TYPES) for i in inserted for v in i)
                if not plain:
                    self._refuse(f"{path[0]}: only plain text and JSON items")
                self.edits.setdefault(str(path[0]), "edit")
            else:
                self._refuse("edits below a field's own text or list")

    def _refuse(self, message: str) -> None:
        self.refusal = self.refusal or message


def _clocks(state: bytes) -> dict[int, int]:
    """A Yjs v1 state vector: varuint count, then (client, clock) varuint pairs."""
    reader = ByteReader(state)
    return dict(reader.id() for _ in range(reader.count()))


def new_shadow(state: bytes) -> Shadow:
    """A shadow holding ``state`` (the live doc's full update), observed."""
    doc = Doc[Any]()
    doc.apply_update(state)
    shadow = Shadow(doc)
    root = doc.get(ROOT_MAP, type=Map)
    # The callbacks hold the shadow weakly: pycrdt keeps them in the Rust document, out
    # of the garbage collector's sight, and a strong reference back would make the
    # cycle shadow -> doc -> callback -> shadow that is never collected.
    ref = weakref.ref(shadow)

    def on_transaction(event: TransactionEvent) -> None:
        target = ref()
        if target is not None:
            target.on_transaction(event)

    def on_events(events: list[Any]) -> None:
        target = ref()
        if target is not None:
            target.on_events(events)

    shadow.subscriptions = [doc.observe(on_transaction), root.observe_deep(on_events)]
    # pycrdt's wrappers refer to the Doc (a cycle through Rust too): dropping the
    # subscriptions with the shadow frees its Doc.
    weakref.finalize(shadow, _drop_all, list(shadow.subscriptions))
    return shadow


def _drop_all(subscriptions: list[Subscription]) -> None:
    for subscription in subscriptions:
        subscription.drop()
