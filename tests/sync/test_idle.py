"""sync/idle.py: which idle trip rooms to unload, since when, when to look again."""

from __future__ import annotations

import pytest

from tripsage_sync.sync.idle import LOOK_FRACTION, IdleRooms, RoomActivity, Sweep

IDLE_MS = 1000
LOOK_MS = IDLE_MS // LOOK_FRACTION
QUIET = RoomActivity()


def test_a_room_nobody_uses_is_unloaded_after_the_idle_time() -> None:
    idle = IdleRooms(IDLE_MS)
    assert idle.sweep({"t": QUIET}, 0) == Sweep(next_ms=IDLE_MS)
    assert idle.sweep({"t": QUIET}, IDLE_MS - 1) == Sweep(next_ms=IDLE_MS)
    assert idle.sweep({"t": QUIET}, IDLE_MS) == Sweep(unload=("t",))
    assert idle.idle_since == {}
    assert idle.sweep({}, IDLE_MS + 1) == Sweep()  # nothing loaded: nothing to look at


@pytest.mark.parametrize(
    "busy",
    [
        RoomActivity(members=1),
        RoomActivity(peers=1),
        RoomActivity(subscribers=1),
        RoomActivity(inflight=1),
        RoomActivity(holds=1),
        RoomActivity(next_deadline_ms=50),  # a deadline passed: its default is applied
    ],
    ids=["member", "yjs-peer", "subscriber", "in-flight", "write", "deadline-due"],
)
def test_a_busy_room_is_never_unloaded_and_its_idle_clock_restarts(busy: RoomActivity) -> None:
    idle = IdleRooms(IDLE_MS)
    idle.sweep({"t": QUIET}, 0)
    for now in (100, 5 * IDLE_MS, 50 * IDLE_MS):
        assert idle.sweep({"t": busy}, now) == Sweep(next_ms=now + LOOK_MS)
    now = 50 * IDLE_MS + 1
    assert idle.sweep({"t": QUIET}, now).unload == ()  # idle again only from here
    assert idle.sweep({"t": QUIET}, now + IDLE_MS).unload == ("t",)


def test_a_lookup_restarts_the_idle_time() -> None:
    idle = IdleRooms(IDLE_MS)
    idle.sweep({"t": QUIET}, 0)
    used = RoomActivity(used_ms=900)
    assert idle.sweep({"t": used}, IDLE_MS) == Sweep(next_ms=900 + IDLE_MS)
    assert idle.sweep({"t": used}, 900 + IDLE_MS).unload == ("t",)


def test_next_look_is_the_earliest_unload_while_a_busy_room_is_polled() -> None:
    idle = IdleRooms(IDLE_MS)
    assert idle.sweep({"a": QUIET}, 0).next_ms == IDLE_MS
    sweep = idle.sweep({"a": QUIET, "b": RoomActivity(members=2)}, 100)
    assert sweep == Sweep(next_ms=100 + LOOK_MS)
    sweep = idle.sweep({"a": QUIET, "b": RoomActivity(members=2)}, 800)
    assert sweep == Sweep(next_ms=IDLE_MS)  # a's unload comes before the next poll


def test_a_pending_deadline_of_an_unloaded_trip_loads_it_when_due() -> None:
    idle = IdleRooms(IDLE_MS)
    waiting = RoomActivity(next_deadline_ms=5000)
    idle.sweep({"t": waiting}, 0)
    assert idle.sweep({"t": waiting}, IDLE_MS) == Sweep(unload=("t",), next_ms=5000)
    assert idle.deadlines == {"t": 5000}
    assert idle.sweep({}, 4999) == Sweep(next_ms=5000)
    assert idle.sweep({}, 5000) == Sweep(load=("t",))
    assert idle.deadlines == {}
    # Loaded again, its deadline due: busy (the room's timer applies the default).
    assert idle.sweep({"t": RoomActivity(next_deadline_ms=5000)}, 5001).unload == ()


def test_a_trip_loaded_before_its_deadline_leaves_the_index() -> None:
    idle = IdleRooms(IDLE_MS)
    waiting = RoomActivity(next_deadline_ms=9000)
    idle.sweep({"t": waiting}, 0)
    idle.sweep({"t": waiting}, IDLE_MS)
    assert idle.deadlines == {"t": 9000}
    idle.sweep({"t": RoomActivity(members=1, next_deadline_ms=9000)}, 2000)  # a client joined
    assert idle.deadlines == {}
    assert idle.sweep({}, 9000) == Sweep()  # its own timer had it, not the index


def test_a_failed_load_is_deferred() -> None:
    idle = IdleRooms(IDLE_MS)
    idle.defer("t", 300)
    assert idle.sweep({}, 0) == Sweep(next_ms=300)
    assert idle.sweep({}, 300) == Sweep(load=("t",))


def test_the_idle_time_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_after_ms"):
        IdleRooms(0)
