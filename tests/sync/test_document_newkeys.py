"""The remote fast path (sync/document/newkeys.py): new keys vetted from the bytes alone.

It must change nothing a peer or a JSON client can see: what it accepts is what the
shadow path would accept, with the same version, stamps and changes, and nothing it
skips may be lost (pending structs the shadow would integrate later).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from tripsage_sync.sync.document import LogEntry, RemoteUpdateRefused, TripDocument
from tripsage_sync.sync.document.newkeys import new_keys


def new_trip() -> TripDocument:
    doc, _ = TripDocument.create(
        "t1",
        {"name": "Europe", "budget": 100, "notes": "", "itinerary": []},
        frozenset({"budget"}),
        created_by="alice",
        now_ms=1000,
    )
    return doc


def peer_of(doc: TripDocument, client_id: int) -> Doc[Any]:
    peer = Doc[Any](client_id=client_id)
    peer.apply_update(doc.state_update())
    return peer


def set_key(peer: Doc[Any], key: str, value: object) -> bytes:
    before = peer.get_state()
    peer.get("trip", type=Map)[key] = value
    return peer.get_update(before)


def test_a_new_key_is_applied_once_with_the_stamps_of_the_shadow_path() -> None:
    doc = new_trip()
    update = set_key(peer_of(doc, 7), "#3:17@1.5#", 1)
    assert new_keys(doc._state, frozenset({"budget"}), update) is not None
    result = doc.apply_remote_update(update, user_id="bob", update_id="y1", now_ms=2000)
    assert result.change is not None
    assert result.change.version == doc.version == 2
    assert {n: (c.old_value, c.new_value) for n, c in result.change.changes.items()} == {
        "#3:17@1.5#": (None, 1)
    }
    assert result.change.meta["fields"] == {"#3:17@1.5#": [2000, "bob", "y1"]}
    assert doc._state.shadow is None  # the update never went through a shadow doc
    again = doc.apply_remote_update(update, user_id="bob", update_id="y2", now_ms=2001)
    assert again.change is None  # re-sent: its clock is behind, the shadow path finds nothing


def test_what_the_fast_path_leaves_to_the_shadow() -> None:
    doc = new_trip()
    manual = frozenset({"budget"})
    peer = peer_of(doc, 7)
    state = doc._state
    assert new_keys(state, manual, set_key(peer, "name", "Asia")) is None  # an existing key
    assert new_keys(state, manual, set_key(peer, "budget2", [1])) is None  # a list
    assert new_keys(state, manual, set_key(peer, "__proto__", 1)) is None  # the name rule
    assert new_keys(state, manual, set_key(peer, "obj", {"a": 1})) is None  # not plain
    other = peer_of(doc, 8)
    other.get("trip", type=Map)["x"] = 1
    gap = set_key(other, "y", 2)  # clock 1 of client 8: clock 0 is missing
    assert new_keys(state, manual, gap) is None
    text = peer_of(doc, 9)
    before = text.get_state()
    text.get("trip", type=Map)["notes"].insert(0, "hi")
    assert new_keys(state, manual, text.get_update(before)) is None


def test_a_key_pending_in_the_shadow_is_not_lost_when_its_gap_fills() -> None:
    """The shadow keeps a struct that arrived before its predecessor; the fast path
    must not apply the predecessor alone, or the shadow and the live doc part ways."""
    doc = new_trip()
    peer = peer_of(doc, 7)
    first = set_key(peer, "a", 1)
    second = set_key(peer, "b", 2)
    assert doc.apply_remote_update(second, user_id="b", update_id="y1", now_ms=2).change is None
    result = doc.apply_remote_update(first, user_id="b", update_id="y2", now_ms=3)
    assert result.change is not None
    assert {k: doc.fields().get(k) for k in "ab"} == {"a": 1, "b": 2}
    later = set_key(peer, "c", 3)  # nothing waits any more: the fast path again
    assert new_keys(doc._state, frozenset({"budget"}), later) is not None
    doc.apply_remote_update(later, user_id="b", update_id="y3", now_ms=4)
    assert {k: doc.fields().get(k) for k in "abc"} == {"a": 1, "b": 2, "c": 3}


_ops = st.lists(
    st.tuples(
        st.sampled_from([7, 8]),  # which peer
        st.sampled_from(["set", "new", "text", "delete"]),
        st.sampled_from(["k1", "k2", "name", "budget"]),
        st.integers(0, 3) | st.text("xy", max_size=3) | st.none(),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, interleave=st.lists(st.booleans(), min_size=12, max_size=12))
def test_two_peers_interleaved_converge_and_restore(ops: list[Any], interleave: list[bool]) -> None:
    """Two peers' updates, each peer's in order, interleaved: the doc ends where they are.

    New keys take the fast path, the rest the shadow's, in any mix.
    """
    doc = new_trip()
    peers = {7: peer_of(doc, 7), 8: peer_of(doc, 8)}
    sent: dict[int, list[bytes]] = {7: [], 8: []}
    for n, (who, action, key, value) in enumerate(ops):
        peer = peers[who]
        before = peer.get_state()
        root = peer.get("trip", type=Map)
        if action == "set":
            root[key] = value
        elif action == "new":
            root[f"n{n}"] = value
        elif action == "text":
            root["notes"].insert(0, "z")
        elif key in root and key not in ("name", "budget"):
            del root[key]
        sent[who].append(peer.get_update(before))
    updates = []
    for first in interleave:
        queue = sent[7] if first else sent[8]
        if queue:
            updates.append(queue.pop(0))
    updates += sent[7] + sent[8]
    reference = Doc[Any]()
    reference.apply_update(doc.state_update())
    for i, update in enumerate(updates):
        doc.apply_remote_update(update, user_id="b", update_id=f"y{i}", now_ms=10 + i)
        reference.apply_update(update)
    expected = reference.get("trip", type=Map)
    want = {
        k: str(v) if isinstance(v, Text) else v.to_py() if hasattr(v, "to_py") else v
        for k, v in expected.items()
    }
    got = doc.fields()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (int(value) if isinstance(value, float) else value), key
    entries = [LogEntry(e.version, e.update, e.meta) for e in doc.changes_since(0)]
    restored = TripDocument.restore("t1", frozenset({"budget"}), None, entries, [])
    assert (restored.fields(), restored.version) == (doc.fields(), doc.version)


def test_keys_of_a_peers_second_update_received_first_are_vetted_and_recorded() -> None:
    doc = new_trip()
    peer = peer_of(doc, 7)
    first, second = set_key(peer, "a", 1), set_key(peer, "b", 2)
    early = doc.apply_remote_update(second, user_id="bob", update_id="y1", now_ms=2000)
    assert early.change is None
    result = doc.apply_remote_update(first, user_id="bob", update_id="y2", now_ms=2001)
    assert result.change is not None
    assert {n: c.new_value for n, c in result.change.changes.items()} == {"a": 1, "b": 2}

    doc = new_trip()
    peer = peer_of(doc, 7)
    first, second = set_key(peer, "a", 1), set_key(peer, "__proto__", 2)
    early = doc.apply_remote_update(second, user_id="bob", update_id="y1", now_ms=2000)
    assert early.change is None
    with pytest.raises(RemoteUpdateRefused):
        doc.apply_remote_update(first, user_id="bob", update_id="y2", now_ms=2001)
    assert "__proto__" not in doc.state_update().decode("latin-1")
