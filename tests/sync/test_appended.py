"""Append times in spans (sync/document/appended.py) against one time per version."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.sync.document.appended import AppendTimes

steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 3), st.integers(0, 40)),  # versions, ms later
        st.tuples(st.just("load"), st.integers(0, 5), st.integers(0, 40)),
        st.tuples(st.just("prune"), st.integers(0, 6), st.just(0)),  # versions back from the end
        st.tuples(st.just("truncate"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("query"), st.integers(0, 200), st.just(0)),  # ms back from now
    ),
    max_size=60,
)


@given(st.sampled_from((0, 1, 10, 50)), steps)
def test_spans_keep_what_one_time_per_version_keeps_and_at_most_a_span_more(
    granularity_ms: int, ops: list[tuple[str, int, int]]
) -> None:
    times = AppendTimes(granularity_ms)
    exact: dict[int, int] = {}  # what the rooms kept before: version -> time
    version, now = 0, 0
    for op, n, later in ops:
        if op in ("add", "load"):
            now += later
            if op == "add":
                for _ in range(n):
                    version += 1
                    times.add(version, now)
                    exact[version] = now
            else:
                times.add_range(version + 1, version + n, now)
                for _ in range(n):
                    version += 1
                    exact[version] = now
        elif op == "prune":
            up_to = max(0, version - n)
            times.prune(up_to)
            exact = {v: at for v, at in exact.items() if v > up_to}
        elif op == "truncate":
            version = max(0, version - n)
            times.truncate(version)
            exact = {v: at for v, at in exact.items() if v <= version}
        horizon = now - (n if op == "query" else 0)
        recent = [v for v, at in exact.items() if at >= horizon]
        got = times.first_at_or_after(horizon)
        if recent:
            assert got is not None
            assert got <= min(recent)  # never less history than asked
        if got is not None:  # and at most a span more
            assert all(at >= horizon - granularity_ms for v, at in exact.items() if v >= got)
        if granularity_ms == 0:
            assert got == (min(recent) if recent else None)
    assert len(times) <= len(exact) or not exact
