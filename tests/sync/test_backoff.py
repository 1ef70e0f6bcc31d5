"""StorageBackoff: the circuit breaker for trip edits while storage fails (sync/backoff.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripsage_sync.sync.backoff import BackoffState, StorageBackoff


def test_failures_open_a_growing_window_and_a_success_closes_it() -> None:
    backoff = StorageBackoff(initial_ms=100, max_ms=350)
    assert backoff.admit(0) is None
    assert backoff.failed(10) == 100  # first failure: open for the initial delay
    assert backoff.failed(11) == 100  # written before it opened: no escalation
    assert backoff.admit(50) == 100  # refused with the current delay
    assert backoff.admit(110) is None  # the trial
    assert backoff.state is BackoffState.TRIAL
    assert backoff.admit(111) == 100  # one trial at a time
    assert backoff.failed(120) == 200  # the trial failed: doubled
    assert backoff.admit(319) == 200
    assert backoff.admit(320) is None
    assert backoff.failed(321) == 350  # capped
    assert backoff.admit(671) is None
    assert backoff.failed(672) == 350
    assert backoff.succeeded() is True  # ends the episode
    assert backoff.admit(673) is None
    assert backoff.succeeded() is False
    assert backoff.failed(700) == 100  # a new episode starts over


def test_a_trial_that_never_reports_is_forgotten_after_the_delay() -> None:
    backoff = StorageBackoff(initial_ms=100, max_ms=1000)
    backoff.failed(0)
    assert backoff.admit(100) is None  # e.g. an edit that turned out to write nothing
    assert backoff.admit(199) == 100
    assert backoff.admit(200) is None  # a new trial


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="initial_ms"):
        StorageBackoff(initial_ms=0)
    with pytest.raises(ValueError, match="initial_ms"):
        StorageBackoff(initial_ms=10, max_ms=5)


_events = st.lists(
    st.tuples(st.sampled_from(["admit", "failed", "succeeded"]), st.integers(0, 500)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events=_events, initial=st.integers(1, 400), extra=st.integers(0, 2000))
def test_refusals_never_come_back_early_and_only_grow(
    events: list[tuple[str, int]], initial: int, extra: int
) -> None:
    """While failing: nothing is admitted before the next trial, one trial at a time,
    and retryAfter never shrinks nor passes the cap; a success admits everything."""
    backoff = StorageBackoff(initial_ms=initial, max_ms=initial + extra)
    now = 0
    last_retry = 0
    for kind, step in events:
        now += step
        if kind == "succeeded":
            backoff.succeeded()
            last_retry = 0
            assert backoff.admit(now) is None
            continue
        if kind == "failed":
            retry = backoff.failed(now)
        else:
            before = (backoff.state, backoff.retry_at_ms)
            refused = backoff.admit(now)
            if before[0] is BackoffState.HEALTHY:
                assert refused is None
                continue
            if now < before[1]:
                assert refused is not None
                assert now + refused >= before[1]  # told to wait at least until the trial
                retry = refused
            else:
                assert refused is None
                assert backoff.state is BackoffState.TRIAL
                continue
        assert initial <= retry <= initial + extra
        assert retry >= last_retry
        last_retry = retry
