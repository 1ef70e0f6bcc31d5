"""Property tests for sync/document/: concurrent updates converge in every arrival order.

A trip gets a *chain* of sequential updates (each made at the then current
version), then a set of updates made concurrently at versions drawn from that
chain: scalar writes with colliding timestamps, manual-field writes, text
edits with non-ASCII characters, list edits, stale and invalid values, and
updates made before the trip was loaded (version 0, previousValue null).
Every arrival order must give exactly one outcome per update, every confirmed
value must be the trip's or be overwritten by a later confirmed write, and,
once pending manual conflicts have expired to their defaults, every order
must give the same trip.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tripsage_sync.sync.conflicts import JSON
from tripsage_sync.sync.document import (
    Confirmed,
    LogEntry,
    Refused,
    Rejected,
    Rolledback,
    TripDocument,
    UpdateRequest,
)
from tripsage_sync.sync.document.kept import entry_of

TRIP = "trip-prop"
MANUAL = frozenset({"budget"})
INITIAL: dict[str, JSON] = {
    "destination": "Paris",
    "travelers": 2,
    "budget": 2000,
    "itinerary": [{"day": 1}, {"day": 2}, "free"],
    "notes": "Café 😀 day one",
}
USERS = ("alice", "bob", "carol")
ALPHABET = "abé 😀\n🇨🇭"
FAR_FUTURE_MS = 10**12

KINDS = (
    "scalar",
    "scalar",
    "scalar",
    "manual",
    "manual",
    "text",
    "text",
    "list",
    "stale",
    "invalid",
)

_users = st.sampled_from(USERS)
_times = st.integers(min_value=2_000, max_value=2_004)  # narrow: ties are common


def _draw_update(
    data: st.DataObject, update_id: str, base: int, fields: dict[str, JSON]
) -> UpdateRequest:
    """One update made by a client whose view is ``fields`` at version ``base``."""
    kind = data.draw(st.sampled_from(KINDS))
    previous: JSON
    if kind == "scalar":
        field = data.draw(
            st.sampled_from(["destination", "destination", "destination", "currency"])
        )
        value: JSON = data.draw(st.sampled_from(["Rome", "Oslo", 3, 4.0, None, True]))
    elif kind == "manual":
        field, value = "budget", data.draw(st.integers(min_value=0, max_value=5_000))
    elif kind == "text":
        field = "notes"
        text = str(fields["notes"])
        start = data.draw(st.sampled_from([0, len(text)]) | st.integers(0, len(text)))
        stop = data.draw(st.integers(min_value=start, max_value=min(len(text), start + 4)))
        insert = data.draw(st.text(alphabet=ALPHABET, max_size=4))
        value = text[:start] + insert + text[stop:]
    elif kind == "list":
        field = "itinerary"
        items = list(fields["itinerary"])  # type: ignore[arg-type]
        index = data.draw(st.sampled_from([0, len(items)]) | st.integers(0, len(items)))
        if items and index < len(items) and data.draw(st.booleans()):
            del items[index]
        else:
            items.insert(index, {"day": data.draw(st.integers(3, 9)), "by": update_id})
        value = items
    elif kind == "stale":
        field = data.draw(st.sampled_from(["destination", "notes", "itinerary"]))
        value, previous = fields[field], "not what the base held"
    else:
        invalid: list[tuple[str, JSON]] = [("notes", 1), ("itinerary", "x"), ("budget", 2**60)]
        field, value = data.draw(st.sampled_from([*invalid, ("b-d", 1)]))
    if kind != "stale":
        previous = fields.get(field)
    ts = data.draw(_times)
    return UpdateRequest(
        update_id=update_id,
        user_id=data.draw(_users),
        field_name=data.draw(st.sampled_from([field, "trip." + field])),
        optimistic_value=value,
        previous_value=previous,
        has_previous_value=kind == "stale" or data.draw(st.booleans()),
        expected_version=base,
        client_ts_ms=ts,
        received_ts_ms=ts - data.draw(st.sampled_from([0, 0, 3])),  # sometimes clamped
    )


def _replay(log: list[LogEntry], updates: list[UpdateRequest]) -> tuple[TripDocument, list[Any]]:
    doc = TripDocument.restore(TRIP, MANUAL, None, log, [])
    outcomes = []
    latest: dict[str, tuple[int, JSON]] = {}  # field -> the last confirmation's (version, value)
    for update in updates:
        result = doc.apply_optimistic(update)
        assert isinstance(result.outcome, Confirmed | Rejected | Refused | Rolledback)
        assert result.outcome.update_id == update.update_id
        assert (result.change is not None) <= isinstance(result.outcome, Confirmed)
        if isinstance(result.outcome, Confirmed):
            confirmed = result.outcome
            previous = latest.get(confirmed.field_name, (0, None))
            assert confirmed.server_version >= previous[0]
            latest[confirmed.field_name] = (confirmed.server_version, confirmed.confirmed_value)
        outcomes.append(result.outcome)
    # Every confirmed value is the trip's, or a later confirmed write overwrote it.
    fields = doc.fields()
    for name, (_, value) in latest.items():
        assert fields[name] == value, name
    for expired in doc.expire_conflicts(FAR_FUTURE_MS):
        assert isinstance(expired.outcome, Confirmed)
    assert doc.pending_conflicts() == []
    return doc, outcomes


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_arrival_order_converges(data: st.DataObject) -> None:
    doc, _ = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    views = {doc.version: doc.fields()}
    for step in range(data.draw(st.integers(min_value=0, max_value=3))):  # the chain
        update = _draw_update(data, f"chain-{step}", doc.version, doc.fields())
        doc.apply_optimistic(update)
        doc.expire_conflicts(FAR_FUTURE_MS)
        views[doc.version] = doc.fields()
    log = [entry_of(e) for e in doc._state.entries]

    count = data.draw(st.integers(min_value=1, max_value=6))
    updates = []
    for i in range(count):
        base = data.draw(st.sampled_from(sorted(views)))
        update = _draw_update(data, f"u{i}", base, views[base])
        if data.draw(st.integers(0, 3)) == 0:  # made before the trip was loaded
            unknown = {"expected_version": 0, "previous_value": None, "has_previous_value": True}
            update = replace(update, **unknown)  # type: ignore[arg-type]
        updates.append(update)

    reference, outcomes = _replay(log, updates)
    assert len(outcomes) == count
    for _ in range(2):
        order = data.draw(st.permutations(updates))
        other, _ = _replay(log, order)
        assert other.fields() == reference.fields()

    kept = [entry_of(e) for e in reference._state.entries]
    restored = TripDocument.restore(TRIP, MANUAL, None, kept, [])
    assert restored.fields() == reference.fields()
    assert restored.version == reference.version
