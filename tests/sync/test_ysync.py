"""y-websocket frames and the awareness table (sync/ysync.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.sync.ysync import (
    AwarenessEntry,
    AwarenessFrame,
    AwarenessTable,
    MalformedFrame,
    QueryAwarenessFrame,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    auth_denied_frame,
    awareness_frame,
    parse_frame,
    sync_step1_frame,
    sync_step2_frame,
    sync_update_frame,
)

ALICE = {"id": "alice", "name": "Alice"}


def test_frames_round_trip() -> None:
    assert parse_frame(sync_step1_frame(b"\x00")) == SyncStep1(b"\x00")
    assert parse_frame(sync_step2_frame(b"\x00\x00")) == SyncStep2(b"\x00\x00")
    big = bytes(300)
    assert parse_frame(sync_update_frame(big)) == SyncUpdate(big)
    entries = [AwarenessEntry(7, 3, {"a": 1}), AwarenessEntry(9, 1, None)]
    assert parse_frame(awareness_frame(entries)) == AwarenessFrame(tuple(entries))
    assert parse_frame(b"\x03") == QueryAwarenessFrame()
    # y-protocols auth.js writePermissionDenied: type 2, 0, reason
    assert auth_denied_frame("no") == b"\x02\x00\x02no"


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x07", b"\x00\x05\x00", b"\x00\x02\x05abc", b"\x00\x00\x01\x00\x00", b"\x01\x01\x05"],
)
def test_malformed_frames_raise(frame: bytes) -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(frame)


def test_awareness_not_json_is_malformed() -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(b"\x01\x06\x01\x01\x01\x02{x")


def test_awareness_is_stamped_and_owned() -> None:
    table = AwarenessTable()
    claimed = AwarenessEntry(5, 1, {"user": {"name": "Mallory", "color": "red"}, "f": 1})
    [accepted] = table.receive("c1", (claimed,), ALICE)
    assert accepted.state == {"user": {"name": "Alice", "color": "red", "id": "alice"}, "f": 1}
    # another connection cannot change or remove client 5; older clocks are ignored
    assert table.receive("c2", (AwarenessEntry(5, 9, None),), ALICE) == []
    assert table.receive("c1", (AwarenessEntry(5, 0, {"x": 1}),), ALICE) == []
    # a removal with the same clock is taken (y-protocols' rule)
    assert table.receive("c1", (AwarenessEntry(5, 1, None),), ALICE) == [AwarenessEntry(5, 1, None)]
    assert table.current() == []


def test_leaving_owner_and_server_states() -> None:
    table = AwarenessTable()
    table.receive("c1", (AwarenessEntry(5, 4, {}),), ALICE)
    made = table.set_server_state(77, "server", {"user": ALICE})
    assert made == AwarenessEntry(77, 1, {"user": ALICE})  # clock 1: y-protocols ignores 0
    assert table.set_server_state(77, "server", {"user": ALICE}) is None  # unchanged
    assert [e.client_id for e in table.current()] == [5, 77]
    assert table.remove_owner("c1") == [AwarenessEntry(5, 4, None)]
    assert table.set_server_state(77, "server", None) == AwarenessEntry(77, 2, None)
    assert table.current() == []


OWNERS = ("c1", "c2", "server")
operations = st.lists(
    st.tuples(
        st.sampled_from(("receive", "server", "leave")),
        st.sampled_from(OWNERS),
        st.integers(1, 4),  # client id
        st.integers(0, 5),  # clock
        st.one_of(st.none(), st.fixed_dictionaries({"f": st.integers(0, 3)})),
    ),
    max_size=30,
)


@given(operations)
def test_the_joiners_frame_is_every_present_state_after_any_changes(
    ops: list[tuple[str, str, int, int, dict[str, int] | None]],
) -> None:
    """current_frame(), encoded once per state and kept until a change, is every state's frame."""
    table = AwarenessTable()
    for op, owner, client_id, clock, state in ops:
        if op == "receive":
            table.receive(owner, (AwarenessEntry(client_id, clock, state),), ALICE)
        elif op == "server":
            table.set_server_state(100 + client_id, "server", state)
        else:
            table.remove_owner(owner)
        current = table.current()
        assert table.current_frame() == (awareness_frame(current) if current else None)
        for who in OWNERS:
            mine = [s.state for s in table.slots.values() if s.owner == who and s.state]
            assert sorted(map(str, table.states_of(who))) == sorted(map(str, mine))
