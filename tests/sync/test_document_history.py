"""Tests for the history readers of sync/document/ (``values_at``, ``changes_since``).

They back ``sync_request``: the replay must equal what was broadcast live.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripsage_sync.sync.conflicts import JSON, Stamp
from tripsage_sync.sync.document import Change, LogEntry, TripDocument, UpdateRequest
from tripsage_sync.sync.document.state import DocState
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
    state.history["f"] = list(zip(versions, stamps, strict=True))
    known = [s for v, s in zip(versions, stamps, strict=True) if v <= asked]
    assert state.stamp_at("f", asked) == (known[-1] if known else None)
    assert state.stamp_at("g", asked) is None
