"""The writer's bulk path for appends and outcomes (storage/updatelog.py).

Each test piles its writes up behind a :class:`WriterGate` so that they run
in one batch, where the bulk path writes them together, then checks that
every future got what the same write would get alone.
"""

from __future__ import annotations

import sqlite3
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.storage.helpers import WriterGate
from tripsage_sync.storage import Storage, ops
from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.errors import DuplicateId, UnknownRow, VersionConflict
from tripsage_sync.storage.migrations import migrate
from tripsage_sync.storage.sqlite import SqliteTransactor, connect
from tripsage_sync.storage.writer import BatchWriter, WriteOp


def append(trip: str, version: int, *, contiguous: bool = True) -> WriteOp[None]:
    return ops.append_update(trip, version, b"u%d" % version, "{}", 0, contiguous=contiguous)


def edit(trip: str, version: int, update_id: str) -> list[WriteOp[object]]:
    """What a trip room commits for one confirmed update."""
    return [append(trip, version), ops.put_outcome(trip, update_id, '{"ok": true}', 0)]


def logged(store: Storage, trip: str) -> list[int]:
    return [u.version for u in store.updates_since(trip, 0)]


def outcome_ids(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT trip_id, update_id FROM update_outcomes ORDER BY trip_id, update_id"
        return [(row[0], row[1]) for row in conn.execute(sql)]
    finally:
        conn.close()


@pytest.fixture
def trips(store: Storage) -> list[str]:
    for trip in ("a", "b"):
        store.create_trip(trip, "alice", "{}", 0).result()
    return ["a", "b"]


def test_a_refused_version_mid_batch_fails_only_its_own_future(
    store: Storage, trips: list[str]
) -> None:
    store.submit_all(edit("a", 1, "a1")).result()
    gate = WriterGate(store.writer)
    commits = store.writer.commit_count
    first = store.submit_all(edit("a", 2, "a2"))
    duplicate = store.submit_all(edit("a", 2, "a2-again"))  # version 2 is taken by then
    stale = store.submit(append("a", 1, contiguous=False))
    gap = store.submit(append("a", 5))  # contiguous: 3 comes first
    other_trip = store.submit_all(edit("b", 1, "b1"))
    after = store.submit_all(edit("a", 3, "a3"))
    plain = store.append_update("a", 9, b"u9", "{}", 0)
    gate.release()
    assert first.result(10) == [None, None]
    assert other_trip.result(10) == [None, None]
    assert after.result(10) == [None, None]
    assert plain.result(10) is None
    for refused, current in ((duplicate, 2), (stale, 2), (gap, 2)):
        with pytest.raises(VersionConflict) as info:
            refused.result(10)
        assert info.value.current_version == current
    assert store.writer.commit_count == commits + 2  # the gate's, then one for all
    assert logged(store, "a") == [1, 2, 3, 9]
    assert logged(store, "b") == [1]
    assert outcome_ids(store.path) == [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1")]


def test_a_duplicate_outcome_mid_batch_fails_only_its_own_future(
    store: Storage, trips: list[str]
) -> None:
    store.submit_all(edit("b", 1, "stored")).result()
    gate = WriterGate(store.writer)
    commits = store.writer.commit_count
    before = store.submit_all(edit("a", 1, "a1"))
    stored_again = store.submit_all(edit("b", 2, "stored"))  # found only by the insert
    in_batch_again = store.submit_all(edit("a", 2, "a1"))
    after = store.submit_all(edit("b", 2, "b2"))
    gate.release()
    assert before.result(10) == [None, None]
    assert after.result(10) == [None, None]
    for refused in (stored_again, in_batch_again):
        with pytest.raises(DuplicateId):
            refused.result(10)
    # The failed bulk insert is rolled back and the batch runs again, in one commit.
    assert store.writer.commit_count == commits + 2  # the gate's, then one
    assert logged(store, "a") == [1]
    assert logged(store, "b") == [1, 2]
    assert outcome_ids(store.path) == [("a", "a1"), ("b", "b2"), ("b", "stored")]


def test_writes_to_an_unknown_trip_fail_alone(store: Storage, trips: list[str]) -> None:
    gate = WriterGate(store.writer)
    before = store.submit_all(edit("a", 1, "a1"))
    no_trip = store.submit(append("nope", 1))
    outcome_only = store.put_outcome("nope", "n1", "{}", 0)  # found only by the foreign key
    after = store.submit_all(edit("b", 1, "b1"))
    gate.release()
    for refused in (no_trip, outcome_only):
        with pytest.raises(UnknownRow):
            refused.result(10)
    assert before.result(10) == [None, None]
    assert after.result(10) == [None, None]
    assert outcome_ids(store.path) == [("a", "a1"), ("b", "b1")]


def test_a_write_that_ends_the_transaction_fails_alone(
    store: Storage, trips: list[str], db_path: Path
) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TRIGGER doom BEFORE INSERT ON update_outcomes WHEN new.update_id = 'doom'"
        " BEGIN SELECT RAISE(ROLLBACK, 'doomed'); END"
    )
    conn.commit()
    conn.close()
    gate = WriterGate(store.writer)
    before = store.submit_all(edit("a", 1, "a1"))
    doomed = store.submit_all(edit("b", 1, "doom"))
    after = store.submit_all(edit("a", 2, "a2"))
    gate.release()
    with pytest.raises(sqlite3.IntegrityError, match="doomed"):
        doomed.result(10)
    assert before.result(10) == [None, None]
    assert after.result(10) == [None, None]
    assert logged(store, "a") == [1, 2]
    assert logged(store, "b") == []
    assert store.submit_all(edit("b", 1, "b1")).result(10) == [None, None]


def test_versions_continue_after_a_restart(db_path: Path) -> None:
    with Storage(db_path) as store:
        store.create_trip("a", "alice", "{}", 0).result()
        for version in (1, 2, 3):
            store.submit_all(edit("a", version, f"a{version}")).result()
    with Storage(db_path) as store:
        with pytest.raises(VersionConflict):
            store.submit(append("a", 3)).result()
        with pytest.raises(VersionConflict):
            store.submit(append("a", 5)).result()
        store.submit_all(edit("a", 4, "a4")).result()
        assert logged(store, "a") == [1, 2, 3, 4]


def test_versions_follow_another_storage_on_the_file(store: Storage, trips: list[str]) -> None:
    store.submit_all(edit("a", 1, "a1")).result()  # now kept in memory
    with Storage(store.path) as other:
        other.submit_all(edit("a", 2, "a2")).result()
    with pytest.raises(VersionConflict) as info:
        store.submit_all(edit("a", 2, "a2-mine")).result()
    assert info.value.current_version == 2
    store.submit_all(edit("a", 3, "a3")).result()
    with Storage(store.path) as other:
        other.save_snapshot("a", 10, b"s", "{}", 0, prune_log_up_to_version=3).result()
    with pytest.raises(VersionConflict):
        store.submit(append("a", 4)).result()
    store.submit(append("a", 11)).result()
    assert logged(store, "a") == [11]


def test_versions_follow_snapshots_and_other_writes(store: Storage, trips: list[str]) -> None:
    store.submit(append("a", 1)).result()
    store.save_snapshot("a", 5, b"s", "{}", 0).result()
    with pytest.raises(VersionConflict):
        store.submit(append("a", 2)).result()
    store.submit(append("a", 6)).result()

    def sneak(db: Connection) -> None:  # a write the bulk path knows nothing of
        db.execute("INSERT INTO trip_updates VALUES ('a', 9, x'00', '{}', 0)")

    gate = WriterGate(store.writer)
    sneaked = store.submit(sneak)
    behind = store.submit(append("a", 7))  # next after 6, but 9 is stored by then
    gate.release()
    sneaked.result(10)
    with pytest.raises(VersionConflict):
        behind.result(10)
    store.submit(append("a", 10)).result()
    assert logged(store, "a") == [1, 6, 9, 10]


# -- one batch against the same writes one at a time, without the bulk path ----

_writes = st.lists(
    st.tuples(
        st.sampled_from(["edit", "append", "loose", "outcome", "snapshot", "neutral", "sneak"]),
        st.sampled_from(["a", "b", "nope"]),
        st.integers(min_value=-1, max_value=2),  # version offset from the model's top
        st.integers(min_value=0, max_value=3),  # update id
    ),
    max_size=16,
)


def _op(kind: str, trip: str, version: int, uid: int) -> list[WriteOp[Any]]:
    outcome = ops.put_outcome(trip, f"u{uid}", "{}", 0)
    match kind:
        case "edit":
            return [append(trip, version), outcome]
        case "append":
            return [append(trip, version)]
        case "loose":
            return [append(trip, version, contiguous=False)]
        case "outcome":
            return [outcome]
        case "snapshot":
            return [ops.save_snapshot(trip, version, b"s", "{}", 0, max(0, version - 1))]
        case "neutral":
            return [ops.put_conflict(trip, f"c{uid}", "{}", "pending")]
        case _:  # a write the bulk path knows nothing of
            sql = "INSERT OR IGNORE INTO trip_updates VALUES (?, ?, x'00', '{}', 0)"
            return [lambda db: db.execute(sql, (trip, version + 1)).rowcount]


def _outcomes(futures: list[Future[list[object]]]) -> list[str]:
    outcomes = []
    for future in futures:
        error = future.exception(10)
        outcomes.append(repr(future.result()) if error is None else type(error).__name__)
    return outcomes


def _contents(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [
            *conn.execute("SELECT trip_id, version FROM trip_updates ORDER BY 1, 2"),
            *conn.execute("SELECT trip_id, version FROM trip_snapshots ORDER BY 1"),
            *conn.execute("SELECT trip_id, update_id FROM update_outcomes ORDER BY 1, 2"),
            *conn.execute("SELECT trip_id, conflict_id FROM trip_conflicts ORDER BY 1, 2"),
        ]
    finally:
        conn.close()


@settings(max_examples=60, deadline=None)
@given(writes=_writes)
def test_one_batch_matches_the_writes_one_by_one(
    writes: list[tuple[str, str, int, int]],
) -> None:
    """Every future and the stored rows are what they are with one write per transaction."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "bulk.db", Path(tmp) / "alone.db"]
        for path in paths:
            with Storage(path) as store:
                for trip in ("a", "b"):
                    store.create_trip(trip, "alice", "{}", 0).result()
                store.submit_all(edit("a", 1, "u0")).result()
        top = {"a": 1, "b": 0, "nope": 0}
        batch = []
        for kind, trip, offset, uid in writes:
            version = max(0 if kind == "snapshot" else 1, top[trip] + 1 + offset)
            if kind in ("edit", "append", "loose", "snapshot"):
                top[trip] = max(top[trip], version)  # a guess: the writes may be refused
            batch.append(_op(kind, trip, version, uid))
        with Storage(paths[0]) as store:
            store.submit_all(edit("a", 2, "warm")).result()  # the bulk path knows trip a
            gate = WriterGate(store.writer)
            futures = [store.submit_all(writes) for writes in batch]
            gate.release()
            bulk = _outcomes(futures)
        db = connect(paths[1])
        migrate(db)
        writer = BatchWriter(
            SqliteTransactor(db), max_batch_ops=1
        )  # no bulk path, one write per commit
        try:
            writer.submit_all(edit("a", 2, "warm")).result()
            alone = _outcomes([writer.submit_all(writes) for writes in batch])
        finally:
            writer.close()
        assert bulk == alone
        assert _contents(paths[0]) == _contents(paths[1])
