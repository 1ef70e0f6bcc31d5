"""Property test of cluster mode's rule for trip replicas (``docs/cluster.md``).

Several nodes hold a replica of one trip. Each decides its clients' updates
on its own replica; the shared store takes a change only if it is the very
next version (the primary key of the update log), so a replica that was
behind loses, goes back to what the store holds and decides the update again.
Replicas follow each other by adopting the stored changes they have not seen
(:meth:`TripDocument.apply_logged`); a change of pending manual conflicts
(stored apart from the log) makes them load the trip anew. Nodes are killed
(their replica is lost, their clients' updates go to another node) at random.

Whatever the schedule: every replica ends identical to the trip rebuilt from
the store (fields and CRDT state vector), every update gets exactly one
outcome, and every confirmed value is the trip's unless a later confirmed
write of that field replaced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc

from tests.sync.test_document_properties import FAR_FUTURE_MS, INITIAL, MANUAL, TRIP, _draw_update
from tripsage_sync.sync.conflicts import JSON
from tripsage_sync.sync.document import Confirmed, LogEntry, TripDocument, UpdateRequest
from tripsage_sync.sync.document.clientids import state_vector
from tripsage_sync.sync.errors import InvalidState

NODES = 3


@dataclass
class Store:
    """What PostgreSQL holds of the trip: the log and the pending conflicts."""

    log: list[LogEntry]
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    conflicts_generation: int = 0

    def load(self) -> TripDocument:
        return TripDocument.restore(TRIP, MANUAL, None, self.log, self.conflicts)


@dataclass
class Replica:
    doc: TripDocument
    conflicts_generation: int

    def catch_up(self, store: Store) -> None:
        if self.conflicts_generation != store.conflicts_generation:
            self.doc = store.load()  # conflicts changed: load the trip anew
            self.conflicts_generation = store.conflicts_generation
            return
        for entry in store.log[self.doc.version :]:
            change = self.doc.apply_logged(entry)
            assert change.version == entry.version
            assert change.update == entry.update


def _fresh(store: Store) -> Replica:
    return Replica(store.load(), store.conflicts_generation)


def _decide(replica: Replica, store: Store, update: UpdateRequest) -> Any:
    """Decide on the replica; commit if it was current, else reload and decide again."""
    for _ in range(2):
        was_current = replica.doc.version == len(store.log) and (
            replica.conflicts_generation == store.conflicts_generation
        )
        before = [c.to_json() for c in replica.doc.pending_conflicts()]
        result = replica.doc.apply_optimistic(update)
        if not was_current:  # the store refuses the change: back to what it holds
            replica.doc = store.load()
            replica.conflicts_generation = store.conflicts_generation
            continue
        if result.change is not None:
            store.log.append(
                LogEntry(result.change.version, result.change.update, result.change.meta)
            )
        after = [c.to_json() for c in replica.doc.pending_conflicts()]
        if after != before:
            store.conflicts = after
            store.conflicts_generation += 1
            replica.conflicts_generation = store.conflicts_generation
        return result.outcome
    raise AssertionError("a current replica always commits")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_replicas_on_many_nodes_end_identical_and_keep_every_confirmed_edit(
    data: st.DataObject,
) -> None:
    _, change = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    store = Store([LogEntry(change.version, change.update, change.meta)])
    replicas = [_fresh(store) for _ in range(NODES)]
    outcomes: dict[str, Any] = {}
    confirmed: dict[str, tuple[int, JSON]] = {}
    for step in range(data.draw(st.integers(min_value=1, max_value=14))):
        node = data.draw(st.integers(0, NODES - 1))
        action = data.draw(st.sampled_from(["edit", "edit", "edit", "follow", "kill"]))
        replica = replicas[node]
        if action == "follow":
            replica.catch_up(store)
        elif action == "kill":
            replicas[node] = _fresh(store)  # a new process loads the trip from the store
        else:
            view = replica.doc.fields()
            update = _draw_update(data, f"u{step}", replica.doc.version, view)
            outcome = _decide(replica, store, update)
            assert update.update_id not in outcomes
            outcomes[update.update_id] = outcome
            if isinstance(outcome, Confirmed):
                confirmed[outcome.field_name] = (outcome.server_version, outcome.confirmed_value)

    reference = store.load()
    fields = reference.fields()
    for name, (_, value) in confirmed.items():
        assert fields[name] == value, name
    for replica in replicas:
        replica.catch_up(store)
        assert replica.doc.version == reference.version
        assert replica.doc.fields() == fields
        assert _clocks(replica.doc) == _clocks(reference)
    for replica in replicas:  # and the deadlines decide the same everywhere
        replica.doc.expire_conflicts(FAR_FUTURE_MS)
    reference.expire_conflicts(FAR_FUTURE_MS)
    assert all(r.doc.fields() == reference.fields() for r in replicas)


def _clocks(doc: TripDocument) -> dict[int, int]:
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.state_update())
    return state_vector(copy.get_state())


def test_adopting_a_change_that_is_not_the_next_version_is_refused() -> None:
    _, change = TripDocument.create(TRIP, INITIAL, MANUAL, created_by="owner", now_ms=1_000)
    other = TripDocument.restore(TRIP, MANUAL, None, [], [])
    entry = LogEntry(change.version + 1, change.update, change.meta)
    with pytest.raises(InvalidState, match="cannot adopt"):
        other.apply_logged(entry)
    assert other.version == 0
