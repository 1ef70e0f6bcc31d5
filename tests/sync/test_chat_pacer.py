"""sync/chat/pacer.py: released chunks published at most once per session per window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.sync.chat import Chunk, ChunkPacer


def chunks(*indexes: int, message_id: str = "r") -> list[Chunk]:
    return [Chunk(message_id, i, f"c{i}", False) for i in indexes]


def indexes(published: tuple[Chunk, ...] | list[Chunk]) -> list[int]:
    return [c.index for c in published]


def test_the_first_chunk_after_a_quiet_spell_goes_at_once_and_opens_a_window() -> None:
    pacer = ChunkPacer(interval_ms=25)
    first = pacer.publish("s", chunks(0), now_ms=1000)
    assert indexes(first.chunks) == [0]
    assert first.deadline_ms == 1025
    assert pacer.next_deadline_ms() == 1025


def test_chunks_in_a_window_are_held_and_published_when_it_ends() -> None:
    pacer = ChunkPacer(interval_ms=25)
    pacer.publish("s", chunks(0), now_ms=1000)
    for now, index in [(1005, 1), (1010, 2), (1024, 3)]:
        held = pacer.publish("s", chunks(index), now_ms=now)
        assert held.chunks == ()
        assert held.deadline_ms is None
    assert pacer.held("s") == 3
    assert pacer.due(1024) == []
    [(session, out)] = pacer.due(1025)
    assert session == "s"
    assert indexes(out) == [1, 2, 3]
    # Something was published: the next window opened at once.
    assert pacer.next_deadline_ms() == 1050
    assert pacer.publish("s", chunks(4), now_ms=1030).chunks == ()


def test_a_window_that_ends_empty_closes_and_the_session_is_quiet_again() -> None:
    pacer = ChunkPacer(interval_ms=25)
    pacer.publish("s", chunks(0), now_ms=1000)
    assert pacer.due(1025) == []
    assert pacer.next_deadline_ms() is None
    assert pacer.windows == {}
    assert indexes(pacer.publish("s", chunks(1), now_ms=1100).chunks) == [1]


def test_a_full_window_is_published_at_once() -> None:
    pacer = ChunkPacer(interval_ms=25, max_held=3)
    pacer.publish("s", chunks(0), now_ms=1000)
    assert pacer.publish("s", chunks(1, 2), now_ms=1001).chunks == ()
    assert indexes(pacer.publish("s", chunks(3), now_ms=1002).chunks) == [1, 2, 3]
    assert pacer.held("s") == 0
    assert pacer.publish("s", chunks(4), now_ms=1003).chunks == ()  # the window stays


def test_take_hands_back_what_is_held_and_the_window_stays() -> None:
    pacer = ChunkPacer(interval_ms=25)
    assert pacer.take("s") == []
    pacer.publish("s", chunks(0), now_ms=1000)
    pacer.publish("s", chunks(1, 2), now_ms=1001)
    assert indexes(pacer.take("s")) == [1, 2]
    assert pacer.take("s") == []
    assert pacer.publish("s", chunks(3), now_ms=1002).chunks == ()
    assert [(s, indexes(c)) for s, c in pacer.due(1025)] == [("s", [3])]


def test_a_late_timer_does_not_hold_chunks_longer() -> None:
    pacer = ChunkPacer(interval_ms=25)
    pacer.publish("s", chunks(0), now_ms=1000)
    pacer.publish("s", chunks(1), now_ms=1010)
    # The window ended at 1025 and the timer has not run yet: everything goes now.
    late = pacer.publish("s", chunks(2), now_ms=1040)
    assert indexes(late.chunks) == [1, 2]
    assert late.deadline_ms == 1065
    assert pacer.due(1030) == []  # the old window's deadline is stale
    assert pacer.next_deadline_ms() == 1065


def test_sessions_have_windows_of_their_own() -> None:
    pacer = ChunkPacer(interval_ms=25)
    pacer.publish("a", chunks(0), now_ms=1000)
    assert indexes(pacer.publish("b", chunks(0), now_ms=1010).chunks) == [0]
    pacer.publish("a", chunks(1), now_ms=1011)
    pacer.publish("b", chunks(1), now_ms=1012)
    assert [(s, indexes(c)) for s, c in pacer.due(1025)] == [("a", [1])]
    assert [(s, indexes(c)) for s, c in pacer.due(1035)] == [("b", [1])]


def test_a_zero_interval_publishes_everything_at_once() -> None:
    pacer = ChunkPacer(interval_ms=0)
    for now in range(3):
        published = pacer.publish("s", chunks(now), now_ms=now)
        assert indexes(published.chunks) == [now]
        assert published.deadline_ms is None
    assert pacer.next_deadline_ms() is None
    assert pacer.windows == {}


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 40), st.integers(1, 3)),
        max_size=60,
    ),
    st.integers(1, 30),
    st.integers(1, 8),
)
def test_every_chunk_is_published_once_in_order_and_never_late(
    steps: list[tuple[str, int, int]], interval_ms: int, max_held: int
) -> None:
    """A timer that runs at every deadline: no chunk waits past its window's end."""
    pacer = ChunkPacer(interval_ms=interval_ms, max_held=max_held)
    now = 0
    sent: dict[str, list[int]] = {"a": [], "b": []}
    published: dict[str, list[int]] = {"a": [], "b": []}
    released_at: dict[tuple[str, int], int] = {}

    def publish(session: str, out: list[Chunk] | tuple[Chunk, ...], at: int) -> None:
        for chunk in out:
            assert at - released_at[(session, chunk.index)] <= interval_ms
            published[session].append(chunk.index)

    def run_timer_until(until: int) -> None:
        while (deadline := pacer.next_deadline_ms()) is not None and deadline <= until:
            for session, out in pacer.due(deadline):
                publish(session, out, deadline)

    for session, gap_ms, count in steps:
        now += gap_ms
        run_timer_until(now)
        new = chunks(*range(len(sent[session]), len(sent[session]) + count))
        for chunk in new:
            sent[session].append(chunk.index)
            released_at[(session, chunk.index)] = now
        publish(session, pacer.publish(session, new, now).chunks, now)
    run_timer_until(now + 10 * interval_ms)
    assert published == sent
    assert pacer.windows == {}
