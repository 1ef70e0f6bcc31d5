"""TripDocument.rebase: this replica's unstored changes moved under another's stored ones.

In cluster mode two nodes decide Yjs peers' changes of one trip at once; the store
takes one node's versions, and the other node moves its own changes under them
instead of reloading the trip (``api/trips/rooms.py``, ``TripRoom._rebase``). That
is right only when the two sides commute, so the property: whatever the two sides
did, a rebase either refuses (nothing changed) or leaves exactly the trip the store
then holds, rebuilt from its log (fields, CRDT state, per-field stamps, every
version's change); and it refuses exactly when a key was touched on both sides, a
manual field was touched, or anything but a root map key was (a text edit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from tests.sync.test_document_properties import INITIAL, MANUAL, TRIP
from tripsage_sync.sync.document import Change, LogEntry, RemoteUpdateRefused, TripDocument
from tripsage_sync.sync.document.clientids import state_vector

KEYS = ("destination", "travelers", "budget", "k1", "k2", "k3")
BASE = 1  # the creation


@dataclass
class Side:
    """One node's replica of the trip and the Yjs peer editing through it."""

    doc: TripDocument
    peer: Doc[Any]
    changes: list[Change] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    text: bool = False


def _side(log: list[LogEntry], client_id: int) -> Side:
    doc = TripDocument.restore(TRIP, MANUAL, None, log, [])
    peer = Doc[Any](client_id=client_id)
    peer.apply_update(doc.state_update())
    return Side(doc, peer)


def _edit(side: Side, op: tuple[str, str, int], update_id: str, now_ms: int) -> None:
    kind, key, value = op
    before = side.peer.get_state()
    root = side.peer.get("trip", type=Map)
    if kind == "set":
        root[key] = value
    elif kind == "delete":
        if key not in root:
            return
        del root[key]
    else:
        root["notes"].insert(0, str(value))
    update = side.peer.get_update(before)
    try:
        result = side.doc.apply_remote_update(
            update, user_id=update_id[0], update_id=update_id, now_ms=now_ms
        )
    except RemoteUpdateRefused:  # the server does not have it: nor does the next peer
        side.peer = Doc[Any](client_id=side.peer.client_id + 1000)
        side.peer.apply_update(side.doc.state_update())
        return
    if result.change is not None:
        side.changes.append(result.change)
        side.touched.add("notes" if kind == "text" else key)
        side.text = side.text or kind == "text"


def _clocks(doc: TripDocument) -> dict[int, int]:
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.state_update())
    return state_vector(copy.get_state())


def _history(doc: TripDocument) -> list[tuple[int, dict[str, Any], str]]:
    return [
        (c.version, {n: (f.old_value, f.new_value) for n, f in c.changes.items()}, c.updated_by)
        for c in doc.changes_since(BASE)
    ]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.tuples(
            st.sampled_from(["set", "set", "set", "delete", "text"]),
            st.sampled_from(KEYS),
            st.integers(0, 3),
        ),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_a_rebase_is_the_stored_order_replayed_or_refused_with_nothing_changed(
    ops: list[tuple[str, tuple[str, str, int]]],
) -> None:
    _, created = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    log = [LogEntry(created.version, created.update, created.meta)]
    sides = {"a": _side(log, 101), "b": _side(log, 202)}
    for i, (name, op) in enumerate(ops):
        _edit(sides[name], op, f"{name}{i}", 2_000 + i)
    a, b = sides["a"], sides["b"]
    log += [LogEntry(c.version, c.update, c.meta) for c in a.changes]  # a's node was first
    if not a.changes or not b.changes:
        return
    commute = not (a.text or b.text or a.touched & b.touched or (a.touched | b.touched) & MANUAL)
    before = (b.doc.version, b.doc.fields(), _history(b.doc))

    adopted = b.doc.rebase(BASE, log[BASE:])

    if not commute:
        assert adopted is None
        assert (b.doc.version, b.doc.fields(), _history(b.doc)) == before
        return
    assert adopted is not None
    assert [(c.version, c.changes) for c in adopted] == [(c.version, c.changes) for c in a.changes]
    moved = [
        LogEntry(len(log) + i + 1, c.update, c.meta) for i, c in enumerate(b.changes)
    ]  # as the room commits them again
    stored = TripDocument.restore(TRIP, MANUAL, None, log + moved, [])
    assert b.doc.version == stored.version == len(log) + len(b.changes)
    assert b.doc.fields() == stored.fields()
    assert _clocks(b.doc) == _clocks(stored)
    assert b.doc.snapshot().meta == stored.snapshot().meta  # each field's last write, stamped
    assert _history(b.doc) == _history(stored)
    # b's changes change what they changed before, from the same old values
    assert [h[1:] for h in _history(stored)[len(a.changes) :]] == [
        ({n: (f.old_value, f.new_value) for n, f in c.changes.items()}, c.updated_by)
        for c in b.changes
    ]


def test_changes_to_other_keys_are_moved_under_the_stored_ones() -> None:
    _, created = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    log = [LogEntry(created.version, created.update, created.meta)]
    a, b = _side(log, 101), _side(log, 202)
    _edit(a, ("set", "destination", 1), "a1", 2_000)
    _edit(b, ("set", "k1", 2), "b1", 2_001)
    _edit(b, ("set", "travelers", 3), "b2", 2_002)
    adopted = b.doc.rebase(BASE, [LogEntry(c.version, c.update, c.meta) for c in a.changes])
    assert adopted is not None
    assert [c.version for c in adopted] == [2]
    assert b.doc.version == 4
    assert (b.doc.fields()["destination"], b.doc.fields()["k1"]) == (1, 2)
