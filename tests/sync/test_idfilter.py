"""sync/document/idfilter.py: a Bloom filter of update ids, never a false "no"."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.sync.document import IdFilter
from tripsage_sync.sync.document.idfilter import MIN_CAPACITY

ids = st.text(min_size=1, max_size=64)


@given(st.lists(ids, max_size=300), st.lists(ids, max_size=300))
def test_every_id_held_or_added_is_a_maybe(held: list[str], added: list[str]) -> None:
    seen = IdFilter(held)
    for id_ in added:
        seen.add(id_)
    assert all(seen.may_hold(id_) for id_ in held + added)


def test_past_its_capacity_it_grows_and_still_answers_no_for_nearly_every_new_id() -> None:
    seen = IdFilter()
    first = seen.nbytes
    count = 5 * MIN_CAPACITY  # three stages
    for n in range(count):
        seen.add(f"user-{n}")
    assert seen.nbytes > first
    assert all(seen.may_hold(f"user-{n}") for n in range(count))
    false_maybes = sum(seen.may_hold(f"other-{n}") for n in range(10_000))
    assert false_maybes < 400  # ~1 % a stage; the bound leaves room for chance
    assert seen.nbytes < 3 * count  # bytes, about 10-20 bits an id


def test_an_empty_filter_holds_nothing() -> None:
    assert not IdFilter().may_hold("u1")


def test_the_filter_of_everything_is_a_maybe_for_every_id_and_stays_small() -> None:
    everything = IdFilter.everything()
    size = everything.nbytes
    for n in range(3 * MIN_CAPACITY):
        everything.add(f"user-{n}")
    assert everything.may_hold("never-added")
    assert everything.nbytes == size
