"""TripDocument.apply_remote_update: a Yjs peer's update (sync/document/)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from tripsage_sync.sync.conflicts import is_field_name
from tripsage_sync.sync.document import (
    LogEntry,
    MalformedRemoteUpdate,
    RemoteUpdateRefused,
    TripDocument,
    UpdateRequest,
)


def new_trip() -> TripDocument:
    doc, _ = TripDocument.create(
        "t1",
        {"name": "Europe", "budget": 100, "itinerary": []},
        frozenset({"budget"}),
        created_by="alice",
        now_ms=1000,
    )
    return doc


def peer_of(doc: TripDocument, client_id: int | None = None) -> Doc[Any]:
    peer = Doc[Any](client_id=client_id)
    peer.apply_update(doc.state_update())
    return peer


def edit(peer: Doc[Any], change: Callable[[Map[Any]], None]) -> bytes:
    before = peer.get_state()
    change(peer.get("trip", type=Map))
    return peer.get_update(before)


def test_a_peer_update_is_a_version_with_stamps_and_restores() -> None:
    doc = new_trip()
    peer = peer_of(doc)

    def change(root: Map[Any]) -> None:
        root["name"] = "Asia"
        root["notes"].insert(0, "hi")
        root["itinerary"].append({"day": 1})

    update = edit(peer, change)
    result = doc.apply_remote_update(update, user_id="bob", update_id="y1", now_ms=2000)
    assert result.change is not None
    assert result.change.version == doc.version == 2
    assert {n: c.new_value for n, c in result.change.changes.items()} == {
        "name": "Asia",
        "notes": "hi",
        "itinerary": [{"day": 1}],
    }
    assert result.change.meta["fields"] == {
        "name": [2000, "bob", "y1"],
        "notes": None,
        "itinerary": None,
    }
    # the same bytes again bring nothing new: no version
    again = doc.apply_remote_update(update, user_id="bob", update_id="y2", now_ms=2001)
    assert again.change is None
    entries = [LogEntry(e.version, e.update, e.meta) for e in doc.changes_since(0)]
    restored = TripDocument.restore("t1", frozenset({"budget"}), None, entries, [])
    assert (restored.fields(), restored.version) == (doc.fields(), doc.version)


def test_json_writes_after_a_yjs_write_see_it_as_a_version() -> None:
    doc = new_trip()
    peer = peer_of(doc)
    doc.apply_remote_update(
        edit(peer, lambda r: r.__setitem__("name", "Asia")), user_id="b", update_id="y", now_ms=5000
    )
    request = UpdateRequest(
        update_id="u1",
        user_id="carol",
        field_name="name",
        optimistic_value="Peru",
        expected_version=1,
        client_ts_ms=2000,
        received_ts_ms=6000,
    )
    outcome = doc.apply_optimistic(request).outcome
    assert type(outcome).__name__ == "Rejected"  # concurrent with the Yjs write, which won


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.__setitem__("notes", Text("x")), "nested shared types"),
        (lambda r: r.__setitem__("itinerary", 3), "cannot be replaced"),
        (lambda r: r.__delitem__("notes"), "cannot be replaced"),
        (lambda r: r.__setitem__("big", "x" * 300_000), "limited"),
        (lambda r: r.__setitem__("plain", [1, 2]), "Y.Arrays"),
        (lambda r: r.__setitem__("", 1), "Field names"),
        (lambda r: r.__setitem__("__proto__", 1), "Field names"),
        (lambda r: r.__setitem__("../", 1), "Field names"),
        (lambda r: r.__setitem__("trip.x.y", 1), "Field names"),
        (lambda r: r.__setitem__("trip.name", 1), "Field names"),
    ],
)
def test_off_schema_updates_are_refused_and_leave_nothing(
    change: Callable[[Map[Any]], None], message: str
) -> None:
    doc = new_trip()
    before = (doc.fields(), doc.version)
    update = edit(peer_of(doc), change)
    with pytest.raises(RemoteUpdateRefused, match=message):
        doc.apply_remote_update(update, user_id="b", update_id="y", now_ms=2)
    assert (doc.fields(), doc.version) == before
    # the shadow was rebuilt: a valid update still applies
    ok = edit(peer_of(doc), lambda r: r.__setitem__("name", "Ok"))
    assert doc.apply_remote_update(ok, user_id="b", update_id="y2", now_ms=3).change is not None


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=70)
    | st.text("ab.:@#-_ /", max_size=8)
    | st.sampled_from(
        ["__proto__", "trip.x", "a.b", "trip.a.b", "_ok", "x" * 64, "#3:17@1.5#", "day-1", "../"]
    )
)
def test_yjs_keys_follow_the_field_name_rule_of_the_json_api(name: str) -> None:
    """One rule: a Yjs peer may set exactly the keys a JSON client may name.

    (The JSON API also takes a ``trip.<name>`` path to a top-level field; a Yjs
    key is always bare.)
    """
    doc = new_trip()
    json_ok = type(doc.apply_optimistic(_set(name, 7)).outcome).__name__ == "Confirmed"
    doc = new_trip()
    update = edit(peer_of(doc), lambda r: r.__setitem__(name, 7))
    try:
        doc.apply_remote_update(update, user_id="b", update_id="y", now_ms=2)
        yjs_ok = True
    except RemoteUpdateRefused:
        yjs_ok = False
    assert yjs_ok == is_field_name(name)
    bare = name.removeprefix("trip.")
    assert json_ok == (is_field_name(bare) and (bare == name or "." not in bare))
    assert (name in doc.fields()) == yjs_ok


def test_a_key_that_breaks_the_rule_may_still_be_deleted() -> None:
    """A key left by an older server (which took any printable key) can be removed."""
    old = new_trip()
    legacy = edit(peer_of(old), lambda r: r.__setitem__("../", 1))
    entries = [LogEntry(e.version, e.update, e.meta) for e in old.changes_since(0)]
    entries.append(LogEntry(2, legacy, {"fields": {}}))
    doc = TripDocument.restore("t1", frozenset({"budget"}), None, entries, [])
    assert doc.fields()["../"] == 1
    removal = edit(peer_of(doc), lambda r: r.__delitem__("../"))
    assert doc.apply_remote_update(removal, user_id="b", update_id="y", now_ms=2).change
    assert "../" not in doc.fields()


def _set(name: str, value: int) -> UpdateRequest:
    return UpdateRequest(
        update_id="u",
        user_id="carol",
        field_name=name,
        optimistic_value=value,
        expected_version=1,
        client_ts_ms=2,
        received_ts_ms=2,
    )


def test_other_roots_and_garbage_are_refused() -> None:
    doc = new_trip()
    other = peer_of(doc)
    before = other.get_state()
    other.get("elsewhere", type=Map)["x"] = 1
    with pytest.raises(RemoteUpdateRefused, match="root map"):
        doc.apply_remote_update(other.get_update(before), user_id="b", update_id="y", now_ms=2)
    with pytest.raises(MalformedRemoteUpdate):
        doc.apply_remote_update(b"\x01\x02\x03", user_id="b", update_id="y", now_ms=2)
    assert doc.version == 1


@pytest.mark.parametrize("stale_id", [5, 2**40])  # Yjs keeps the greater client id's value
def test_a_concurrent_write_of_a_manual_field_raises_then_joins_a_conflict(stale_id: int) -> None:
    doc = new_trip()
    a, b = peer_of(doc, stale_id), peer_of(doc, 2**20)
    first = doc.apply_remote_update(
        edit(b, lambda r: r.__setitem__("budget", 300)), user_id="bob", update_id="y1", now_ms=2
    )
    assert first.conflicts == ()  # bob had seen 100
    stale = edit(a, lambda r: r.__setitem__("budget", 200))  # alice had not seen 300
    result = doc.apply_remote_update(stale, user_id="alice", update_id="y2", now_ms=3)
    [(conflict, detected)] = result.conflicts
    assert detected is not None
    assert detected.resolution_strategy == "manual"
    assert {o.value for o in conflict.options} >= {200, 300}
    a.apply_update(doc.state_update())
    later = edit(a, lambda r: r.__setitem__("budget", 250))
    [(joined, none)] = doc.apply_remote_update(
        later, user_id="alice", update_id="y3", now_ms=4
    ).conflicts
    assert (joined.conflict_id, none) == (conflict.conflict_id, None)
    assert 250 in {o.value for o in joined.options}


def test_keys_with_separators_are_fields_on_both_protocols() -> None:
    """``day-1``, ``hotel:paris``, ``v1.2`` and the peers harness' ``#3:17@1.5#`` are fields.

    A dotted key is named bare on the JSON API: ``trip.v1.2`` would be a nested path.
    """
    doc = new_trip()
    keys = ("day-1", "hotel:paris", "#3:17@1234.567#")
    for i, key in enumerate(keys):
        peer = peer_of(doc)
        before = peer.get_state()
        peer.get("trip", type=Map)[key] = 1
        update = peer.get_update(before)
        assert doc.apply_remote_update(update, user_id="b", update_id=f"y{i}", now_ms=2).change
    assert doc.apply_optimistic(_set("v1.2", 7)).outcome.__class__.__name__ == "Confirmed"
    assert doc.apply_optimistic(_set("trip.v1.3", 7)).outcome.__class__.__name__ != "Confirmed"
    assert {k: doc.fields()[k] for k in (*keys, "v1.2")} == dict.fromkeys((*keys, "v1.2"), 1) | {
        "v1.2": 7
    }
    assert "v1.3" not in doc.fields()


def test_a_dropped_document_is_garbage_with_its_shadow() -> None:
    # pycrdt keeps observers in the Rust document, out of the collector's sight: an
    # observer referring back to its owner would keep every unloaded room forever.
    doc = new_trip()
    doc.apply_optimistic(
        UpdateRequest(
            update_id="u1",
            user_id="alice",
            field_name="name",
            optimistic_value="Asia",
            expected_version=1,
            client_ts_ms=2000,
            received_ts_ms=2000,
        )
    )

    def change(root: Map[Any]) -> None:
        root["budget"] = 5

    update = edit(peer_of(doc), change)
    assert doc.apply_remote_update(update, user_id="bob", update_id="y1", now_ms=3000).change
    state = doc._state
    assert state.shadow is not None
    refs: list[weakref.ref[object]] = [
        weakref.ref(doc),
        weakref.ref(state),
        weakref.ref(state.doc),
        weakref.ref(state.shadow),
        weakref.ref(state.shadow.doc),
    ]
    del doc, state
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
