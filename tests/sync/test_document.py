"""Tests for sync/document/: the trip document and its optimistic-update rules."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pycrdt
import pytest

from tripsage_sync.sync.conflicts import JSON, SYSTEM_OPTION_ID, PendingConflict, Stamp
from tripsage_sync.sync.document import (
    ApplyResult,
    Confirmed,
    LogEntry,
    Refused,
    Rejected,
    Rolledback,
    TripDocument,
    UpdateRequest,
)
from tripsage_sync.sync.document.kept import entry_of
from tripsage_sync.sync.errors import InvalidMessage, NotFound

TRIP = "trip-456"
MANUAL = frozenset({"budget"})
INITIAL: dict[str, JSON] = {
    "destination": "Paris, France",
    "budget": 2000,
    "travelers": 2,
    "itinerary": [{"day": 1, "city": "Paris"}, {"day": 2, "city": "Lyon"}],
    "notes": "Pack light.\nBook the museum.\nCall the hotel.",
}
_ABSENT = object()
DEEP: JSON = 1
for _ in range(20):
    DEEP = [DEEP]


def make() -> TripDocument:
    doc, _ = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    return doc


def req(
    update_id: str,
    field: str,
    value: JSON,
    *,
    base: int = 1,
    user: str = "alice",
    ts: int = 5_000,
    received: int | None = None,
    previous: object = _ABSENT,
) -> UpdateRequest:
    return UpdateRequest(
        update_id=update_id,
        user_id=user,
        field_name=field,
        optimistic_value=value,
        previous_value=None if previous is _ABSENT else previous,  # type: ignore[arg-type]
        has_previous_value=previous is not _ABSENT,
        expected_version=base,
        client_ts_ms=ts,
        received_ts_ms=ts if received is None else received,
    )


def confirmed(result: ApplyResult) -> Confirmed:
    assert isinstance(result.outcome, Confirmed), result.outcome
    return result.outcome


def rejected(result: ApplyResult) -> Rejected:
    assert isinstance(result.outcome, Rejected), result.outcome
    return result.outcome


def rolledback(result: ApplyResult) -> Rolledback:
    assert isinstance(result.outcome, Rolledback), result.outcome
    assert result.change is None
    return result.outcome


# -- creation and sequential updates ---------------------------------------


def test_create_builds_the_trip_map_at_version_1() -> None:
    doc, change = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    assert doc.version == change.version == 1
    assert doc.fields() == INITIAL
    assert change.changes["destination"].new_value == "Paris, France"
    assert change.changes["notes"].field_path == "trip.notes"
    json.dumps(change.meta)
    # The schema standard Yjs clients will see.
    peer: pycrdt.Doc[Any] = pycrdt.Doc()
    peer.apply_update(doc.state_update())
    trip = peer.get("trip", type=pycrdt.Map)
    assert isinstance(trip["notes"], pycrdt.Text)
    assert isinstance(trip["itinerary"], pycrdt.Array)
    assert trip["destination"] == "Paris, France"


def test_create_adds_empty_notes_and_rejects_invalid_fields() -> None:
    doc, _ = TripDocument.create(TRIP, {"title": "x"}, frozenset(), created_by="o", now_ms=0)
    assert doc.fields() == {"notes": "", "title": "x"}
    with pytest.raises(InvalidMessage):
        TripDocument.create(TRIP, {"notes": 3}, frozenset(), created_by="o", now_ms=0)
    with pytest.raises(InvalidMessage):
        TripDocument.create(TRIP, {"bad name": 1}, frozenset(), created_by="o", now_ms=0)
    with pytest.raises(InvalidMessage):
        TripDocument.create(TRIP, {}, frozenset({"notes"}), created_by="o", now_ms=0)


def test_sequential_updates_confirm_and_bump_the_version() -> None:
    doc = make()
    first = doc.apply_optimistic(req("u1", "trip.destination", "Rome", previous="Paris, France"))
    assert confirmed(first) == Confirmed("u1", "destination", "trip.destination", "Rome", 2)
    assert first.change is not None
    assert first.conflict_detected is None
    assert first.change.changes["destination"].old_value == "Paris, France"
    assert first.change.updated_by == "alice"
    second = doc.apply_optimistic(req("u2", "destination", "Milan", base=2, user="bob"))
    assert confirmed(second).server_version == doc.version == 3
    assert doc.fields()["destination"] == "Milan"


def test_new_scalar_field_and_integral_floats_come_back_as_ints() -> None:
    doc = make()
    confirmed(doc.apply_optimistic(req("u1", "currency", "EUR")))
    assert confirmed(doc.apply_optimistic(req("u2", "travelers", 3.0, base=2))).confirmed_value == 3
    assert confirmed(doc.apply_optimistic(req("u3", "rating", 4.5, base=3))).confirmed_value == 4.5
    fields = doc.fields()
    assert fields["currency"] == "EUR"
    assert fields["travelers"] == 3
    assert type(fields["travelers"]) is int
    assert fields["itinerary"] == INITIAL["itinerary"]
    assert type(fields["budget"]) is int


# -- last_write_wins ---------------------------------------------------------


def test_unrelated_fields_from_the_same_base_both_confirm() -> None:
    doc = make()
    confirmed(doc.apply_optimistic(req("u1", "destination", "Rome", user="alice")))
    result = doc.apply_optimistic(req("u2", "travelers", 4, user="bob"))
    assert confirmed(result).server_version == 3
    assert result.conflict_detected is None


@pytest.mark.parametrize("order", [("early", "late"), ("late", "early")])
def test_last_write_wins_in_both_orders(order: tuple[str, str]) -> None:
    doc = make()
    updates = {
        "early": req("early", "destination", "Rome", user="alice", ts=5_000),
        "late": req("late", "destination", "Milan", user="bob", ts=6_000),
    }
    results = [doc.apply_optimistic(updates[name]) for name in order]
    assert doc.fields()["destination"] == "Milan"
    second = results[1]
    assert second.conflict_detected is not None
    detected = second.conflict_detected
    assert detected.resolution_strategy == "last_write_wins"
    assert (detected.winning_value, detected.winning_user_id) == ("Milan", "bob")
    assert {v.user_id for v in detected.conflicting_values} == {"alice", "bob"}
    if order[1] == "late":
        assert confirmed(second).confirmed_value == "Milan"
    else:
        outcome = rejected(second)
        assert outcome.current_server_value == "Milan"
        assert outcome.current_server_version == 2
        assert outcome.expected_version == 1
        assert (outcome.conflicting_update.user_id, outcome.conflicting_update.timestamp_ms) == (
            "bob",
            6_000,
        )
        assert outcome.conflict_id is None


def test_client_timestamp_is_clamped_to_the_receive_time() -> None:
    doc = make()
    confirmed(doc.apply_optimistic(req("honest", "destination", "Rome", user="alice", ts=6_000)))
    cheat = req("cheat", "destination", "Oslo", user="bob", ts=99_999, received=5_500)
    rejected(doc.apply_optimistic(cheat))
    assert doc.fields()["destination"] == "Rome"


@pytest.mark.parametrize("reverse", [False, True])
def test_ties_break_by_user_id_then_update_id(reverse: bool) -> None:
    doc = make()
    updates = [
        req("u-9", "destination", "by-alice", user="alice", ts=7_000),
        req("u-1", "destination", "by-bob", user="bob", ts=7_000),
        req("u-2", "destination", "by-bob-2", user="bob", ts=7_000),
    ]
    for update in reversed(updates) if reverse else updates:
        doc.apply_optimistic(update)
    assert doc.fields()["destination"] == "by-bob-2"


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_clamped_ties_go_to_the_writer_s_own_latest_clock(order: tuple[int, ...]) -> None:
    """Issue 10 item 5: three editors who saw the first value, clocks 10/20/30 s slow."""
    doc = make()  # created at 1_000 (server clock)
    now = 2_000
    updates = [
        req(f"u{i}", "destination", f"by-{user}", user=user, ts=now - lag, received=now)
        for i, (user, lag) in enumerate([("zoe", 30_000), ("amy", 10_000), ("max", 20_000)])
    ]
    for i in order:
        doc.apply_optimistic(updates[i])
    assert doc.fields()["destination"] == "by-amy"  # stamped latest by her own clock


@pytest.mark.parametrize("reverse", [False, True])
def test_a_causally_later_write_beats_what_it_saw_despite_a_slow_clock(reverse: bool) -> None:
    doc = make()
    confirmed(doc.apply_optimistic(req("u1", "destination", "Rome", user="alice", ts=9_000)))
    updates = [
        # bob saw "Rome" (version 2) and his clock is behind: his edit still wins ...
        req("u2", "destination", "Milan", base=2, user="bob", ts=8_000),
        # ... over carol's, concurrent with both, whatever the arrival order.
        req("u3", "destination", "Oslo", base=1, user="carol", ts=8_500),
    ]
    for update in reversed(updates) if reverse else updates:
        doc.apply_optimistic(update)
    assert doc.fields()["destination"] == "Milan"


# -- text and list merges ------------------------------------------------------


def test_text_edits_in_different_places_both_survive() -> None:
    doc = make()
    base = str(INITIAL["notes"])
    top = base.replace("Pack light.", "Pack very light.")
    bottom = base.replace("Call the hotel.", "Call the hotel twice.")
    confirmed(doc.apply_optimistic(req("u1", "notes", top, previous=base, user="alice")))
    merged = doc.apply_optimistic(req("u2", "notes", bottom, previous=base, user="bob"))
    expected = "Pack very light.\nBook the museum.\nCall the hotel twice."
    assert confirmed(merged).confirmed_value == expected
    assert merged.change is not None
    assert merged.change.changes["notes"].new_value == expected
    assert doc.fields()["notes"] == expected


@pytest.mark.parametrize("reverse", [False, True])
def test_text_merge_with_non_ascii_and_emoji(reverse: bool) -> None:
    doc, _ = TripDocument.create(
        TRIP, {"notes": "Café 😀 Zürich 🇨🇭 fin"}, frozenset(), created_by="o", now_ms=0
    )
    base = "Café 😀 Zürich 🇨🇭 fin"
    updates = [
        req("u1", "notes", "Café 🎉😀 Zürich 🇨🇭 fin", previous=base),
        req("u2", "notes", "Café 😀 Zürich fin — ñandú", previous=base, user="bob"),
        req("u3", "notes", "Kafé 😀 Zürich 🇨🇭 fin", previous=base, user="carol"),
    ]
    for update in reversed(updates) if reverse else updates:
        confirmed(doc.apply_optimistic(update))
    assert doc.fields()["notes"] == "Kafé 🎉😀 Zürich fin — ñandú"


def test_concurrent_inserts_at_one_position_do_not_depend_on_arrival_order() -> None:
    finals = set()
    for reverse in (False, True):
        doc = make()
        base = str(INITIAL["notes"])
        updates = [
            req("u1", "notes", "A" + base, previous=base),
            req("u2", "notes", "B" + base, previous=base, user="bob"),
        ]
        for update in reversed(updates) if reverse else updates:
            doc.apply_optimistic(update)
        finals.add(doc.fields()["notes"])
    assert len(finals) == 1


@pytest.mark.parametrize("reverse", [False, True])
def test_list_merges_element_wise(reverse: bool) -> None:
    doc = make()
    base = list(INITIAL["itinerary"])  # type: ignore[arg-type]
    day0: JSON = {"day": 0, "city": "Nice"}
    day3: JSON = {"day": 3, "city": "Dijon"}
    updates = [
        req("u1", "itinerary", [day0, *base], previous=base),
        req("u2", "itinerary", [base[0], day3], previous=base, user="bob"),
    ]
    for update in reversed(updates) if reverse else updates:
        confirmed(doc.apply_optimistic(update))
    assert doc.fields()["itinerary"] == [day0, base[0], day3]


def test_text_edit_without_previous_value_diffs_against_the_base() -> None:
    doc = make()
    base = str(INITIAL["notes"])
    confirmed(doc.apply_optimistic(req("u1", "notes", base + " A", previous=base)))
    confirmed(doc.apply_optimistic(req("u2", "notes", "B " + base, base=1)))
    assert doc.fields()["notes"] == "B " + base + " A"


def test_unchanged_text_confirms_without_a_change() -> None:
    doc = make()
    base = str(INITIAL["notes"])
    result = doc.apply_optimistic(req("u1", "notes", base, previous=base))
    assert confirmed(result).server_version == 1
    assert result.change is None


# -- invalid updates roll back ------------------------------------------------


def test_stale_previous_value_rolls_back() -> None:
    doc = make()
    outcome = rolledback(doc.apply_optimistic(req("u1", "notes", "new", previous="not the base")))
    assert outcome.rollback_reason == "stale_previous_value"
    assert outcome.rollback_to_value == INITIAL["notes"]
    assert not outcome.can_retry  # the same update can never succeed
    assert "version" not in outcome.message  # worded for people
    scalar = doc.apply_optimistic(req("u2", "destination", "Rome", previous="Berlin"))
    assert rolledback(scalar).rollback_reason == "stale_previous_value"
    assert doc.version == 1
    assert doc.fields() == INITIAL


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("notes", 42),
        ("itinerary", "not a list"),
        ("destination", ["a", "list"]),
        ("packing", ["new", "list"]),
        ("budget", float("nan")),
        ("budget", float("inf")),
        ("budget", 2**53),
        ("budget", -(2**63)),
        ("destination", "\ud800"),
        ("destination", {1: "non-string key"}),
        ("destination", DEEP),
        ("destination", object()),
        ("bad name", 1),
        ("trip.a.b", 1),
        ("x" * 65, 1),
        ("__proto__", 1),
        ("trip.__proto__", 1),
        ("../", 1),
    ],
)
def test_invalid_values_are_refused_without_change(field: str, value: object) -> None:
    doc = make()
    result = doc.apply_optimistic(req("u1", field, value))  # type: ignore[arg-type]
    outcome = result.outcome
    assert isinstance(outcome, Refused), outcome
    assert outcome.rejection_reason == "invalid_message"
    assert outcome.message
    assert outcome.details["field"] in ("payload.fieldName", "payload.optimisticValue")
    assert result.change is None
    assert doc.version == 1
    assert doc.fields() == INITIAL


def test_an_invalid_previous_value_is_refused() -> None:
    result = make().apply_optimistic(req("u1", "destination", "Rome", previous=float("nan")))
    assert isinstance(result.outcome, Refused)
    assert result.outcome.details["field"] == "payload.previousValue"


def test_an_expected_version_newer_than_the_trip_rolls_back() -> None:
    doc = make()
    outcome = rolledback(doc.apply_optimistic(req("u1", "destination", "Rome", base=2)))
    assert outcome.rollback_reason == "invalid_expected_version"
    assert not outcome.can_retry
    assert "between" not in outcome.message


# -- version 0: no base known ("concurrent with everything since the creation") ---


def test_version_0_scalar_on_an_untouched_field_confirms_despite_a_slow_clock() -> None:
    doc = make()  # created at 1_000
    update = req("u1", "destination", "Rome", base=0, ts=500, received=9_000, previous=None)
    assert confirmed(doc.apply_optimistic(update)).confirmed_value == "Rome"
    assert doc.fields()["destination"] == "Rome"


@pytest.mark.parametrize("reverse", [False, True])
def test_version_0_scalar_is_concurrent_with_later_writes(reverse: bool) -> None:
    doc = make()
    later = req("u1", "destination", "Rome", base=1, user="bob", ts=6_000)
    earlier = req("u2", "destination", "Oslo", base=0, user="alice", ts=5_000, previous=None)
    first, second = (earlier, later) if reverse else (later, earlier)
    doc.apply_optimistic(first)
    doc.apply_optimistic(second)
    assert doc.fields()["destination"] == "Rome"  # LWW by clamped stamp
    # ... and a version-0 edit made later than the last write wins.
    winner = req("u4", "destination", "Lima", base=0, user="alice", ts=8_000, previous=None)
    assert confirmed(doc.apply_optimistic(winner)).confirmed_value == "Lima"


def test_version_0_manual_field_raises_a_conflict_once_changed() -> None:
    doc = make()
    confirmed(doc.apply_optimistic(req("u1", "budget", 2500, user="bob", ts=6_000)))
    result = doc.apply_optimistic(req("u2", "budget", 3000, base=0, ts=7_000, previous=None))
    assert rejected(result).suggested_resolution == "merge_required"
    assert result.conflict_raised is not None


def test_version_0_text_and_list_edits_merge_with_later_edits() -> None:
    doc = make()
    base = str(INITIAL["notes"])
    confirmed(doc.apply_optimistic(req("u1", "notes", "Top. " + base, previous=base)))
    # No base known and previousValue null: the edit is made at the creation.
    result = doc.apply_optimistic(req("u2", "notes", base + " End.", base=0, previous=None))
    assert confirmed(result).confirmed_value == "Top. " + base + " End."
    items: list[JSON] = [*INITIAL["itinerary"], "x"]  # type: ignore[misc]
    assert (
        confirmed(doc.apply_optimistic(req("u3", "itinerary", items, base=0))).confirmed_value
        == items
    )


def test_base_older_than_retained_history_still_merges_where_it_can() -> None:
    doc = make()
    base = str(INITIAL["notes"])
    confirmed(doc.apply_optimistic(req("u1", "notes", base + "!", previous=base)))
    confirmed(doc.apply_optimistic(req("u2", "destination", "Rome", base=2, ts=6_000)))
    confirmed(doc.apply_optimistic(req("u3", "travelers", 3, base=3, ts=6_000)))
    doc.compact()
    assert doc.base_version == 4
    # The text at the old base is gone: no merge, the server's text comes back.
    text = rolledback(doc.apply_optimistic(req("u4", "notes", "x" + base, previous=base)))
    assert text.rollback_reason == "history_unavailable"
    assert text.rollback_to_value == base + "!"
    assert not text.can_retry
    # ... unless its previousValue is the text as it is: then it applies there.
    again = doc.apply_optimistic(req("u5", "notes", "x" + base + "!", previous=base + "!"))
    assert confirmed(again).confirmed_value == "x" + base + "!"
    # A scalar needs only the current stamp: last-write-wins decides.
    lost = doc.apply_optimistic(req("u6", "destination", "Oslo", base=1, ts=5_500))
    assert rejected(lost).current_server_value == "Rome"
    won = doc.apply_optimistic(req("u7", "destination", "Lima", base=1, ts=7_000))
    assert confirmed(won).confirmed_value == "Lima"
    # A field nobody touched since the old base: as if made at the base.
    assert confirmed(doc.apply_optimistic(req("u8", "budget", 5))).confirmed_value == 5


# -- manual conflicts ------------------------------------------------------------


def test_non_concurrent_manual_edit_is_confirmed() -> None:
    doc = make()
    result = doc.apply_optimistic(req("u1", "budget", 2500, previous=2000))
    assert confirmed(result).confirmed_value == 2500
    assert result.conflict_raised is None


def raise_budget_conflict(doc: TripDocument) -> PendingConflict:
    confirmed(doc.apply_optimistic(req("u1", "budget", 2500, user="alice", ts=5_000)))
    result = doc.apply_optimistic(req("u2", "budget", 3000, user="bob", ts=6_000))
    outcome = rejected(result)
    conflict = result.conflict_raised
    assert conflict is not None
    assert result.change is None
    assert outcome.suggested_resolution == "merge_required"
    assert outcome.conflict_id == conflict.conflict_id
    assert outcome.current_server_value == 2500
    assert outcome.conflicting_update.user_id == "alice"
    assert result.conflict_detected is not None
    assert result.conflict_detected.resolution_strategy == "manual"
    return conflict


def test_manual_field_concurrency_raises_a_conflict() -> None:
    doc = make()
    conflict = raise_budget_conflict(doc)
    assert doc.fields()["budget"] == 2500
    assert doc.version == 2
    assert [(o.value, o.source) for o in conflict.options] == [
        (2500, "alice"),
        (3000, "bob"),
        (2750, "system"),
    ]
    assert conflict.default_option.value == 3000  # last_write_wins' choice
    assert conflict.deadline_ms == 6_000 + conflict.auto_resolve_after_ms == 36_000
    assert doc.next_conflict_deadline_ms() == 36_000
    assert doc.pending_conflicts() == [conflict]
    assert PendingConflict.from_json(json.loads(json.dumps(conflict.to_json()))) == conflict


def test_later_values_join_the_pending_conflict() -> None:
    doc = make()
    conflict = raise_budget_conflict(doc)
    joined = doc.apply_optimistic(req("u3", "budget", 1000, user="carol", ts=4_000))
    assert rejected(joined).conflict_id == conflict.conflict_id
    updated = joined.conflict_raised
    assert updated is not None
    assert updated.conflict_id == conflict.conflict_id
    assert [o.value for o in updated.options] == [2500, 3000, 1000, 6500 / 3]
    assert updated.default_option.value == 3000
    late = doc.apply_optimistic(req("u4", "budget", 4000, base=2, user="dave", ts=7_000))
    assert late.conflict_raised is not None
    assert late.conflict_raised.default_option.value == 4000
    assert len(doc.pending_conflicts()) == 1


def test_resolve_by_option() -> None:
    doc = make()
    conflict = raise_budget_conflict(doc)
    result = doc.resolve_conflict(
        conflict.conflict_id,
        user_id="carol",
        chosen_option_id=SYSTEM_OPTION_ID,
        custom_value=None,
        now_ms=10_000,
    )
    assert confirmed(result).confirmed_value == 2750
    assert result.change is not None
    assert result.change.version == doc.version == 3
    assert result.change.changes["budget"].old_value == 2500
    assert result.conflict_resolved == conflict.conflict_id
    assert doc.pending_conflicts() == []
    assert doc.fields()["budget"] == 2750


def test_resolve_by_custom_value_and_bad_ids() -> None:
    doc = make()
    conflict = raise_budget_conflict(doc)
    cid = conflict.conflict_id
    with pytest.raises(NotFound):
        doc.resolve_conflict("nope", user_id="c", chosen_option_id=None, custom_value=1, now_ms=0)
    with pytest.raises(InvalidMessage):
        doc.resolve_conflict(
            cid, user_id="c", chosen_option_id="option-9", custom_value=None, now_ms=0
        )
    with pytest.raises(InvalidMessage):
        doc.resolve_conflict(cid, user_id="c", chosen_option_id=None, custom_value=[1], now_ms=0)
    result = doc.resolve_conflict(
        cid, user_id="carol", chosen_option_id=None, custom_value=2222.0, now_ms=10_000
    )
    assert confirmed(result).confirmed_value == 2222
    assert doc.fields()["budget"] == 2222
    assert doc.expire_conflicts(10**12) == []


def test_expire_applies_the_default_after_the_deadline() -> None:
    doc = make()
    conflict = raise_budget_conflict(doc)
    assert doc.expire_conflicts(conflict.deadline_ms - 1) == []
    [result] = doc.expire_conflicts(conflict.deadline_ms)
    assert confirmed(result).confirmed_value == 3000
    assert result.change is not None
    assert result.change.updated_by == "system"
    assert doc.fields()["budget"] == 3000
    assert doc.next_conflict_deadline_ms() is None


# -- snapshot, restore, compaction ----------------------------------------------


def busy_doc() -> TripDocument:
    doc = make()
    base = str(INITIAL["notes"])
    confirmed(doc.apply_optimistic(req("u1", "notes", base + "\nSunscreen ☀️", previous=base)))
    confirmed(doc.apply_optimistic(req("u2", "destination", "Rome", base=2, ts=6_000)))
    raise_conflict = doc.apply_optimistic(req("u3", "budget", 2100, base=3))
    confirmed(raise_conflict)
    rejected(doc.apply_optimistic(req("u4", "budget", 2200, base=3, user="bob", ts=7_000)))
    return doc


def entries(doc: TripDocument) -> list[LogEntry]:
    return [entry_of(e) for e in doc._state.entries]


def test_snapshot_restore_round_trip() -> None:
    doc = busy_doc()
    snapshot = doc.snapshot()
    assert snapshot.version == doc.version == 4
    json.dumps(snapshot.meta)
    pending = [json.loads(json.dumps(c.to_json())) for c in doc.pending_conflicts()]
    restored = TripDocument.restore(TRIP, MANUAL, snapshot, [], pending)
    assert restored.fields() == doc.fields()
    assert restored.version == doc.version
    assert restored.pending_conflicts() == doc.pending_conflicts()
    assert restored._state.stamp_at("destination", 4) == Stamp(6_000, "alice", "u2")
    # The restored doc keeps making the same decisions.
    for target in (doc, restored):
        confirmed(target.apply_optimistic(req("u5", "destination", "Oslo", base=4, ts=7_000)))
        rejected(target.apply_optimistic(req("u6", "destination", "Nice", base=4, ts=6_500)))
        [expired] = target.expire_conflicts(10**12)
        assert confirmed(expired).confirmed_value == 2200
    assert restored.fields() == doc.fields()


def test_restore_from_the_log_alone_and_from_snapshot_plus_log() -> None:
    doc = busy_doc()
    log = entries(doc)
    from_log = TripDocument.restore(TRIP, MANUAL, None, log, [])
    assert from_log.fields() == doc.fields()
    assert from_log.version == doc.version
    middle = TripDocument.restore(TRIP, MANUAL, None, log[:2], []).snapshot()
    mixed = TripDocument.restore(TRIP, MANUAL, middle, log, [])
    assert mixed.fields() == doc.fields()
    assert mixed.version == doc.version


def test_concurrent_text_edit_after_restore_still_merges() -> None:
    doc = make()
    base = str(INITIAL["notes"])
    confirmed(doc.apply_optimistic(req("u1", "notes", "Top. " + base, previous=base)))
    expected = "Top. " + base + " End."
    from_log = TripDocument.restore(TRIP, MANUAL, None, entries(doc), [])
    merged = from_log.apply_optimistic(req("u2", "notes", base + " End.", previous=base))
    assert confirmed(merged).confirmed_value == expected
    latest = TripDocument.restore(TRIP, MANUAL, doc.snapshot(), [], [])
    too_old = latest.apply_optimistic(req("u2", "notes", base + " End.", previous=base))
    assert rolledback(too_old).rollback_reason == "history_unavailable"
    snapshot = doc.compact(1)
    assert [e.version for e in entries(doc)] == [2]
    compacted = TripDocument.restore(TRIP, MANUAL, snapshot, entries(doc), [])
    again = compacted.apply_optimistic(req("u2", "notes", base + " End.", previous=base))
    assert confirmed(again).confirmed_value == expected
    assert again.change is not None
    assert merged.change is not None
    assert again.change.update == merged.change.update  # same fork id, same ops


def test_change_meta_is_json_and_rebuilds_stamps() -> None:
    doc = make()
    change = doc.apply_optimistic(req("u1", "destination", "Rome", ts=4_000)).change
    assert change is not None
    meta = json.loads(json.dumps(change.meta))
    assert meta["updateId"] == "u1"
    assert meta["fields"]["destination"] == [4_000, "alice", "u1"]
    log = [replace(e, meta=json.loads(json.dumps(e.meta))) for e in entries(doc)]
    restored = TripDocument.restore(TRIP, MANUAL, None, log, [])
    assert restored._state.stamp_at("destination", 2) == Stamp(4_000, "alice", "u1")
