"""Tests for the history readers of sync/document/ (``values_at``, ``changes_since``).

They back ``sync_request``: the replay must equal what was broadcast live.
"""

from __future__ import annotations

import copy
import gc
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sync.test_document_properties import FAR_FUTURE_MS, MANUAL, _draw_update
from tests.sync.test_document_properties import INITIAL as PROPERTY_TRIP
from tripsage_sync.sync.conflicts import JSON, Stamp, pack_stamp
from tripsage_sync.sync.document import (
    ApplyResult,
    Change,
    LogEntry,
    TripDocument,
    UpdateRequest,
)
from tripsage_sync.sync.document.state import WINDOW_LAG, DocState
from tripsage_sync.sync.errors import InvalidState

TRIP = "trip-h"
INITIAL: dict[str, JSON] = {
    "destination": "Paris",
    "budget": 2000,
    "itinerary": ["Louvre"],
    "notes": "Pack light.",
}


def req(update_id: str, field: str, value: JSON, base: int, ts: int) -> UpdateRequest:
    return UpdateRequest(
        update_id=update_id,
        user_id=f"user-{update_id}",
        field_name=field,
        optimistic_value=value,
        expected_version=base,
        client_ts_ms=ts,
        received_ts_ms=ts,
    )


def build() -> tuple[TripDocument, list[Change]]:
    """A trip with five changes after creation; returns every broadcast change."""
    doc, created = TripDocument.create(TRIP, INITIAL, frozenset(), created_by="owner", now_ms=1_000)
    live = [created]
    for request in (
        req("a", "destination", "Rome", 1, 2_000),
        req("b", "notes", "Pack light. Bring a hat.", 2, 3_000),
        req("c", "itinerary", ["Louvre", "Colosseum"], 3, 4_000),
        req("d", "budget", 2500, 4, 5_000),
        req("e", "hotel", "Hotel Roma", 5, 6_000),  # a new scalar field
    ):
        result = doc.apply_optimistic(request)
        assert result.change is not None, result.outcome
        live.append(result.change)
    return doc, live


def test_changes_since_replays_what_was_broadcast() -> None:
    doc, live = build()
    assert doc.version == 6
    for since in range(doc.version + 1):
        assert doc.changes_since(since) == live[since:]
    replay = doc.changes_since(1)
    assert [c.version for c in replay] == [2, 3, 4, 5, 6]
    assert replay[0].changes["destination"].old_value == "Paris"
    assert replay[0].changes["destination"].new_value == "Rome"
    assert replay[0].changes["destination"].field_path == "trip.destination"
    assert replay[0].updated_by == "user-a"
    assert replay[4].changes["hotel"].old_value is None
    assert doc.changes_since(doc.version) == []


def test_values_at_each_retained_version() -> None:
    doc, _ = build()
    assert doc.values_at(0) == {}
    assert doc.values_at(1) == INITIAL
    assert doc.values_at(2)["destination"] == "Rome"
    assert doc.values_at(3)["notes"] == "Pack light. Bring a hat."
    assert "hotel" not in doc.values_at(5)
    assert doc.values_at(doc.version) == doc.fields()


def test_history_after_compaction_and_restore() -> None:
    doc, live = build()
    snapshot = doc.compact(3)
    assert doc.base_version == 3
    assert doc.changes_since(3) == live[3:]
    assert doc.values_at(3)["notes"] == "Pack light. Bring a hat."  # readable at the base
    for too_old in (0, 2):
        with pytest.raises(InvalidState):
            doc.changes_since(too_old)
        with pytest.raises(InvalidState):
            doc.values_at(too_old)
    with pytest.raises(InvalidState):
        doc.changes_since(doc.version + 1)
    # A restored document (snapshot + log) replays the same changes.
    entries = [LogEntry(c.version, c.update, c.meta) for c in live if c.version > 3]
    restored = TripDocument.restore(TRIP, frozenset(), snapshot, entries, [])
    assert restored.changes_since(3) == live[3:]
    assert restored.values_at(4) == doc.values_at(4)


def test_entries_without_a_field_list_report_what_differs() -> None:
    _, live = build()
    # Entries whose meta lists no fields (as a peer's raw Yjs update might).
    entries = [LogEntry(c.version, c.update, {"userId": c.updated_by, "fields": {}}) for c in live]
    restored = TripDocument.restore(TRIP, frozenset(), None, entries, [])
    replay = restored.changes_since(1)
    assert [sorted(c.changes) for c in replay] == [sorted(c.changes) for c in live[1:]]
    assert replay[0].changes["destination"].new_value == "Rome"


@settings(max_examples=200, deadline=None)
@given(
    versions=st.lists(st.integers(1, 60), unique=True, max_size=20).map(sorted),
    asked=st.integers(0, 70),
)
def test_stamp_at_is_the_last_write_at_or_before_the_version(
    versions: list[int], asked: int
) -> None:
    """A field's stamps are found by bisection, as a scan would find them."""
    state = DocState("t")
    stamps = [Stamp(v, "u", f"x{v}") for v in versions]
    state.history["f"] = [(v, pack_stamp(s)) for v, s in zip(versions, stamps, strict=True)]
    known = [s for v, s in zip(versions, stamps, strict=True) if v <= asked]
    assert state.stamp_at("f", asked) == (known[-1] if known else None)
    assert state.stamp_at("g", asked) is None


# -- a window of the log in memory, the rest read from "storage" -------------------------


def _bare(change: Change) -> Change:
    # pycrdt encodes an object's keys in hash order (per map): bytes may differ.
    return replace(change, update=b"")


def _same(result: ApplyResult) -> ApplyResult:
    return replace(result, change=None if result.change is None else _bare(result.change))


def _entry(change: Change) -> LogEntry:
    return LogEntry(change.version, change.update, change.meta)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_window_decides_and_replays_as_the_whole_history(data: st.DataObject) -> None:
    """Keeping 2 entries in memory and reading older ones changes no decision or replay."""
    whole, created = TripDocument.create(
        TRIP, PROPERTY_TRIP, MANUAL, created_by="owner", now_ms=1_000
    )
    window, _ = TripDocument.create(TRIP, PROPERTY_TRIP, MANUAL, created_by="owner", now_ms=1_000)
    stored = [_entry(created)]  # what the shell appends to storage

    def older(after: int, up_to: int) -> list[LogEntry]:
        assert window.base_version <= after < up_to  # storage keeps what is above the base
        return [e for e in stored if after < e.version <= up_to]

    window.keep_recent(2, older)
    views = {whole.version: whole.fields()}
    for i in range(data.draw(st.integers(min_value=1, max_value=14))):
        base = data.draw(st.sampled_from(sorted(views)))
        update = _draw_update(data, f"u{i}", base, views[base])
        a = whole.apply_optimistic(copy.deepcopy(update))  # each its own copy
        b = window.apply_optimistic(copy.deepcopy(update))
        assert _same(a) == _same(b)
        expired = whole.expire_conflicts(FAR_FUTURE_MS)
        assert [_same(r) for r in window.expire_conflicts(FAR_FUTURE_MS)] == [
            _same(r) for r in expired
        ]
        stored.extend(_entry(r.change) for r in [a, *expired] if r.change is not None)
        views[whole.version] = whole.fields()
        if data.draw(st.integers(0, 4)) == 0:  # a compaction somewhere in the history
            keep = data.draw(st.integers(whole.base_version, whole.version))
            x, y = window.compact(keep), whole.compact(keep)
            assert (x.version, x.meta) == (y.version, y.meta)
            views = {v: f for v, f in views.items() if v >= keep}
    assert window.fields() == whole.fields()
    assert window.snapshot().meta == whole.snapshot().meta
    for since in range(whole.base_version, whole.version + 1):
        assert [_bare(c) for c in window.changes_since(since)] == [
            _bare(c) for c in whole.changes_since(since)
        ]
        assert window.values_at(since) == whole.values_at(since)
    assert len(window._state.entries) < 4


def test_a_trim_makes_the_window_only_when_a_fork_needs_it() -> None:
    """Dropping entries costs no replay of the doc until a fork starts in the window."""
    doc, first = TripDocument.create(TRIP, INITIAL, frozenset(), created_by="owner", now_ms=1_000)
    stored = [LogEntry(first.version, first.update, first.meta)]
    doc.keep_recent(2, lambda after, up_to: [e for e in stored if after < e.version <= up_to])
    state = doc._state
    for i in range(2, 8):  # trims at 4 and 6 entries
        result = doc.apply_optimistic(req(f"w{i}", "budget", i, i - 1, i * 1_000))
        assert result.change is not None
        stored.append(LogEntry(result.change.version, result.change.update, result.change.meta))
    assert state.window.version == 4
    assert state.window.state == b""
    assert doc.values_at(4)["budget"] == 4  # a fork at the window makes it
    assert state.window.state
    assert doc.values_at(5)["budget"] == 5
    made, version = state.window.version, 8
    while state.window.state == b"" or state.window.version == made:  # nobody forks
        assert doc.apply_optimistic(req(f"w{version}", "budget", version, version - 1, 0)).change
        version += 1
    assert state.window.version - made == WINDOW_LAG * 2  # made once that many were dropped
    assert doc.values_at(state.window.version)["budget"] == state.window.version


def test_a_restored_trip_with_a_window_keeps_every_stamp() -> None:
    """The first trim after a restore compacts every field; later ones what they drop."""
    whole, first = TripDocument.create(TRIP, INITIAL, frozenset(), created_by="owner", now_ms=1)
    stored = [LogEntry(first.version, first.update, first.meta)]
    fields = ["destination", "budget", "hotel", "flight"]
    for i in range(2, 30):
        name = fields[i % len(fields)] if i % 3 else "budget"
        result = whole.apply_optimistic(req(f"r{i}", name, i, i - 1, i * 1_000))
        assert result.change is not None
        stored.append(LogEntry(result.change.version, result.change.update, result.change.meta))
    restored = TripDocument.restore(TRIP, frozenset(), None, stored, [])
    restored.keep_recent(3, lambda after, up_to: [e for e in stored if after < e.version <= up_to])
    for i in range(30, 45):  # trims that drop entries writing only some of the fields
        update = req(f"r{i}", fields[i % 2], i, i - 1, i * 1_000)
        a, b = whole.apply_optimistic(copy.deepcopy(update)), restored.apply_optimistic(update)
        assert _same(a) == _same(b)
        assert a.change is not None
        stored.append(LogEntry(a.change.version, a.change.update, a.change.meta))
    assert max(len(h) for h in restored._state.history.values()) <= 5
    for name in fields:
        for version in range(1, whole.version + 1):
            assert restored._state.stamp_at(name, version) == whole._state.stamp_at(name, version)


def test_kept_history_is_left_out_of_the_cycle_collector() -> None:
    """What a loaded trip keeps for each write, its log entry and its field stamps, is
    untracked by the cycle collector once collected: a full collection walks none of
    it (a log entry, its meta dicts and a stamp were five objects a write)."""
    doc, _ = TripDocument.create(TRIP, INITIAL, frozenset(), created_by="owner", now_ms=1_000)
    for i in range(2, 12):
        result = doc.apply_optimistic(req(f"g{i}", "budget", i, i - 1, i * 1_000))
        assert result.change is not None
    for _ in range(2):  # a collection untracks a tuple of untracked objects: the packed
        gc.collect()  # stamps and the entries, then the pairs holding the stamps
    state = doc._state
    writes = [write for history in state.history.values() for write in history]
    assert len(writes) >= 10
    assert not any(gc.is_tracked(write) for write in writes)
    assert len(state.entries) == 11
    assert not any(gc.is_tracked(entry) for entry in state.entries)
    assert doc.values_at(doc.version)["budget"] == 11  # and everything reads as before
    assert state.stamp_at("budget", doc.version) == Stamp(11_000, "user-g11", "g11", 11_000)
    replayed = doc.changes_since(1)
    assert [c.version for c in replayed] == list(range(2, 12))
    assert replayed[-1].meta["fields"] == {"budget": [11_000, "user-g11", "g11"]}
