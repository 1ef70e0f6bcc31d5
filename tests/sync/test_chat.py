"""sync/chat/: the chunk reorder buffer, typing deadlines, event routing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripsage_sync.sync.chat import (
    DEFAULT_REORDER_WINDOW_MS,
    MAX_PENDING_CHUNKS,
    MAX_REPLY_CHARS,
    StreamTable,
    TypingTable,
    agent_event_channels,
    stored_message_payload,
)
from tripsage_sync.sync.errors import InvalidMessage

WINDOW_MS = 2000


def table(window_ms: int = WINDOW_MS) -> StreamTable:
    return StreamTable(idle_timeout_ms=1000, reorder_window_ms=window_ms)


def indexes(result_chunks: tuple[object, ...]) -> list[int]:
    return [c.index for c in result_chunks]  # type: ignore[attr-defined]


def test_in_order_chunks_are_released_at_once() -> None:
    streams = table()
    for i in range(3):
        result = streams.receive_chunk("s", "m", i, f"<{i}>", False, now_ms=i)
        assert indexes(result.released) == [i]
    assert streams.in_progress("s")[0].content == "<0><1><2>"


def test_out_of_order_chunks_are_buffered_then_released_in_order() -> None:
    streams = table()
    assert indexes(streams.receive_chunk("s", "m", 0, "a", False, 0).released) == [0]
    held = streams.receive_chunk("s", "m", 3, "d", False, 10)
    assert held.buffered
    assert held.deadline_ms == 10 + WINDOW_MS  # intent: wake the table by then
    assert streams.receive_chunk("s", "m", 2, "c", False, 20).deadline_ms == 10 + WINDOW_MS
    assert streams.next_deadline_ms() == 10 + WINDOW_MS
    result = streams.receive_chunk("s", "m", 1, "b", False, 30)
    assert indexes(result.released) == [1, 2, 3]
    assert result.deadline_ms is None
    assert streams.next_deadline_ms() is None  # the filled gap left no timer behind
    assert streams.release_due(10**9) == []
    assert streams.in_progress("s")[0].content == "abcd"


def test_a_stream_starts_at_its_first_chunk_numbered_zero_or_one() -> None:
    streams = table()
    # The spec's example: chunkIndex 1 first. Streamed at once, nothing waits for 0.
    assert indexes(streams.receive_chunk("s", "one", 1, "b", False, 0).released) == [1]
    assert streams.receive_chunk("s", "one", 0, "a", False, 1).duplicate  # too late
    assert indexes(streams.receive_chunk("s", "one", 2, "c", False, 2).released) == [2]
    [stream] = streams.in_progress("s")
    assert (stream.content, stream.last_released_index) == ("bc", 2)
    # Chunks ahead of the start are held until a 0 or 1 arrives...
    assert streams.receive_chunk("s", "zero", 2, "c", False, 0).buffered
    assert indexes(streams.receive_chunk("s", "zero", 0, "a", False, 5).released) == [0]
    assert indexes(streams.receive_chunk("s", "zero", 1, "b", False, 6).released) == [1, 2]
    # ...or until the window ends: then the lowest held chunk is the start.
    assert streams.receive_chunk("s", "late", 3, "d", False, 0).buffered
    assert streams.receive_chunk("s", "late", 2, "c", False, 100).buffered
    assert streams.release_due(WINDOW_MS - 1) == []
    [(stream, released)] = streams.release_due(WINDOW_MS)
    assert stream.message_id == "late"
    assert indexes(tuple(released)) == [2, 3]


def test_a_gap_is_skipped_once_the_window_ends() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    assert streams.receive_chunk("s", "m", 2, "c", False, 100).deadline_ms == 100 + WINDOW_MS
    assert streams.receive_chunk("s", "m", 5, "f", False, 1500).buffered
    assert streams.release_due(100 + WINDOW_MS - 1) == []
    [(stream, released)] = streams.release_due(100 + WINDOW_MS)
    assert indexes(tuple(released)) == [2]  # 1 skipped; 5 has waited less than the window
    assert stream.skipped == 1
    assert streams.next_deadline_ms() == 1500 + WINDOW_MS
    assert streams.receive_chunk("s", "m", 1, "b", False, 2200).duplicate  # skipped: late
    assert indexes(streams.receive_chunk("s", "m", 4, "e", False, 2300).released) == []
    [(_, released)] = streams.release_due(1500 + WINDOW_MS)
    assert indexes(tuple(released)) == [4, 5]  # 3 skipped, 4 released to keep the order
    assert streams.next_deadline_ms() is None
    assert stream.content == "acef"
    # A chunk that arrives after its deadline passed (a late timer) releases it too.
    streams.receive_chunk("s", "n", 0, "a", False, 0)
    streams.receive_chunk("s", "n", 2, "c", False, 0)
    assert indexes(streams.receive_chunk("s", "n", 3, "d", False, WINDOW_MS).released) == [2, 3]


def test_a_zero_window_never_holds_a_chunk() -> None:
    streams = table(window_ms=0)
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    result = streams.receive_chunk("s", "m", 2, "c", False, 0)
    assert indexes(result.released) == [2]
    assert result.deadline_ms is None


def test_completion_and_expiry_leave_no_timer_behind() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    streams.receive_chunk("s", "m", 2, "c", False, 0)
    streams.receive_chunk("s", "n", 3, "c", False, 0)
    streams.complete("s", "m", 1)
    streams.expire(10**6)
    assert streams.next_deadline_ms() is None
    assert streams.release_due(10**7) == []
    assert StreamTable(idle_timeout_ms=1).reorder_window_ms == DEFAULT_REORDER_WINDOW_MS


def test_duplicates_are_dropped() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    streams.receive_chunk("s", "m", 2, "c", False, 0)
    assert streams.receive_chunk("s", "m", 0, "a", False, 0).duplicate  # released before
    assert streams.receive_chunk("s", "m", 2, "c", False, 0).duplicate  # buffered
    assert indexes(streams.receive_chunk("s", "m", 1, "b", False, 0).released) == [1, 2]
    assert streams.in_progress("s")[0].content == "abc"


def test_too_far_ahead_is_refused_and_leaves_no_stream() -> None:
    streams = table()
    with pytest.raises(InvalidMessage):
        streams.receive_chunk("s", "m", MAX_PENDING_CHUNKS + 1, "x", False, 0)
    assert len(streams) == 0
    assert streams.receive_chunk("s", "m", MAX_PENDING_CHUNKS, "x", False, 0).buffered


def test_last_chunk_bounds_the_stream() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    result = streams.receive_chunk("s", "m", 1, "b", True, 0)
    assert result.released[-1].is_complete
    stream = streams.in_progress("s")[0]
    assert stream.finished
    with pytest.raises(InvalidMessage):
        streams.receive_chunk("s", "m", 2, "c", False, 0)
    # A last chunk below a buffered one is refused; the stream is unchanged.
    streams.receive_chunk("s", "n", 3, "d", False, 0)
    with pytest.raises(InvalidMessage):
        streams.receive_chunk("s", "n", 1, "b", True, 0)
    assert streams.streams["n"].last_index is None


def test_message_id_is_bound_to_its_session() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    with pytest.raises(InvalidMessage):
        streams.receive_chunk("other", "m", 1, "b", False, 0)


def test_reply_size_is_bounded() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "x" * MAX_REPLY_CHARS, False, 0)
    with pytest.raises(InvalidMessage):
        streams.receive_chunk("s", "m", 1, "y", False, 0)


def test_complete_ends_the_stream_and_later_chunks_are_duplicates() -> None:
    streams = table()
    streams.receive_chunk("s", "m", 0, "a", False, 0)
    streams.receive_chunk("s", "m", 2, "c", False, 0)  # behind a gap: never released
    stream = streams.complete("s", "m", 5)
    assert stream is not None
    assert stream.pending == {}
    assert [s.message_id for s in streams.in_progress("s")] == ["m"]  # until discarded
    assert streams.receive_chunk("s", "m", 1, "b", False, 6).duplicate
    assert streams.complete("s", "m", 7) is None
    streams.discard("m")
    assert streams.in_progress("s") == []
    assert streams.receive_chunk("s", "m", 1, "b", False, 8).duplicate
    assert streams.was_completed("m")
    # A completion with no chunks at all is a completion too.
    assert streams.complete("s", "solo", 9) is not None


def test_idle_streams_expire() -> None:
    streams = table()
    streams.receive_chunk("s", "old", 0, "a", False, 0)
    streams.receive_chunk("s", "new", 0, "a", False, 900)
    assert [s.message_id for s in streams.expire(1000)] == ["old"]
    assert [s.message_id for s in streams.in_progress("s")] == ["new"]


# Deterministic (same examples every run) and not failed by a loaded machine.
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.tuples(
        st.lists(st.text(max_size=5), min_size=1, max_size=40), st.sampled_from([0, 1])
    ).flatmap(
        lambda case: st.tuples(
            st.just(case[0]),
            st.just(case[1]),
            st.permutations(range(case[1], case[1] + len(case[0]))),
            st.lists(st.integers(case[1], case[1] + len(case[0]) - 1), max_size=20),
        )
    )
)
def test_any_arrival_order_within_the_window_releases_each_chunk_once_in_order(
    case: tuple[list[str], int, list[int], list[int]],
) -> None:
    parts, base, order, repeats = case
    last = base + len(parts) - 1
    arrivals = list(order)
    for position, index in enumerate(repeats):  # duplicates interleaved anywhere
        arrivals.insert(min(position * 2, len(arrivals)), index)
    # 0 or 1, whichever arrives first, starts the stream (0 after 1 is too late).
    start = next(index for index in arrivals if index in (0, 1))
    streams = table()
    released: list[int] = []
    for index in arrivals:
        result = streams.receive_chunk("s", "m", index, parts[index - base], index == last, 0)
        released += indexes(result.released)
    assert released == list(range(start, last + 1))
    assert streams.next_deadline_ms() is None
    stream = streams.in_progress("s")
    if "".join(parts[start - base :]):
        assert stream[0].content == "".join(parts[start - base :])
        assert stream[0].finished


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 1500)),  # (chunkIndex, ms since last)
        min_size=1,
        max_size=60,
    )
)
def test_with_a_timer_no_chunk_waits_longer_than_the_window_and_order_holds(
    arrivals: list[tuple[int, int]],
) -> None:
    window = 1000
    streams = table(window_ms=window)
    now = 0
    arrived: dict[int, int] = {}
    released_at: dict[int, int] = {}
    released: list[int] = []
    timer: int | None = None  # the one timer the shell keeps, armed from the intents

    def fire_until(t: int) -> None:
        nonlocal timer
        while timer is not None and timer <= t:
            for _, chunks in streams.release_due(timer):
                for chunk in chunks:
                    released.append(chunk.index)
                    released_at[chunk.index] = timer
            timer = streams.next_deadline_ms()

    for index, delay in arrivals:
        fire_until(now + delay)
        now += delay
        arrived.setdefault(index, now)
        result = streams.receive_chunk("s", "m", index, f"{index},", False, now)
        for chunk in result.released:
            released.append(chunk.index)
            released_at[chunk.index] = now
        if result.deadline_ms is not None:
            timer = result.deadline_ms if timer is None else min(timer, result.deadline_ms)
    fire_until(now + window)
    assert streams.next_deadline_ms() is None  # nothing is held for ever
    assert released == sorted(set(released))  # in order, each index once
    for index, at in released_at.items():
        assert at - arrived[index] <= window
    for index, at in arrived.items():
        if index not in released_at:  # dropped only when something after it went first
            assert any(j > index and released_at[j] <= at for j in released_at)


def test_typing_table() -> None:
    typing = TypingTable(timeout_ms=6000)
    assert typing.start("s", "alice", 0) is True
    assert typing.start("s", "alice", 1000) is False  # re-armed, not re-announced
    assert typing.start("s", "bob", 2000) is True
    assert typing.typing_in("s") == ["alice", "bob"]
    assert typing.next_deadline_ms() == 7000
    assert typing.expire(6999) == []
    assert typing.expire(7000) == [("s", "alice")]
    assert typing.stop("s", "alice") is False
    assert typing.stop("s", "bob") is True
    assert typing.next_deadline_ms() is None


def test_agent_event_channels() -> None:
    assert agent_event_channels(
        "chat_message_chunk", session_id="s", owner_id="alice", user_id=None
    ) == ["chat:s"]
    with pytest.raises(InvalidMessage):
        agent_event_channels("chat_message_complete", session_id=None, owner_id=None, user_id="u")
    assert agent_event_channels(
        "tool_call_start", session_id="s", owner_id="alice", user_id=None
    ) == ["chat:s", "agent-status:s", "agent:alice"]
    assert agent_event_channels(
        "agent_task_start", session_id="s", owner_id="alice", user_id="alice"
    ) == ["chat:s", "agent-status:s", "agent:alice"]
    assert agent_event_channels(
        "agent_status_update", session_id=None, owner_id=None, user_id="bob"
    ) == ["agent:bob"]
    with pytest.raises(InvalidMessage):
        agent_event_channels("agent_status_update", session_id=None, owner_id=None, user_id=None)
    with pytest.raises(ValueError, match="not an agent event"):
        agent_event_channels("notification", session_id="s", owner_id=None, user_id=None)


def test_stored_message_payload() -> None:
    extra = {"attachments": [{"id": "a"}], "toolCalls": [], "metadata": {"tokenCount": 3}}
    payload = stored_message_payload(
        message_id="m",
        role="assistant",
        user_id="agent",
        content="hi",
        payload_json=json.dumps(extra),
        seq=7,
        created_ms=1_748_395_800_000,
    )
    assert payload.wire() == {
        "messageId": "m",
        "content": "hi",
        "role": "assistant",
        "userId": "agent",
        "attachments": [{"id": "a"}],
        "toolCalls": [],
        "metadata": {"tokenCount": 3},
        "seq": 7,
        "createdAt": "2025-05-28T01:30:00.000Z",
    }
