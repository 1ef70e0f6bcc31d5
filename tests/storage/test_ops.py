"""Write operations, checked through a store's facade and its reads, on every engine.

Each test here runs on SQLite and on PostgreSQL (``any_store``): what one
engine does, the other must do the same."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.storage.helpers import WriterGate
from tripsage_sync.storage import (
    CONFLICT_PENDING,
    AlreadyExists,
    DuplicateId,
    LoggedUpdate,
    PendingConflict,
    Snapshot,
    StaleSnapshot,
    Storage,
    UnknownRow,
    VersionConflict,
    ops,
)
from tripsage_sync.storage.store import Store


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


def append(store: Store, trip: str, *versions: int) -> None:
    for version in versions:
        store.append_update(trip, version, f"u{version}".encode(), f'{{"v": {version}}}', 2_000)
    store.submit(lambda db: None).result()  # FIFO: every append above is done


def logged_versions(store: Store, trip: str) -> list[int]:
    return [update.version for update in store.updates_since(trip, 0)]


# -- meta ----------------------------------------------------------------------


def test_set_meta_if_absent_keeps_the_first_value(store: Store) -> None:
    assert store.get_meta("jwt_secret") is None
    assert store.set_meta_if_absent("jwt_secret", "first").result() == "first"
    assert store.set_meta_if_absent("jwt_secret", "second").result() == "first"
    assert store.get_meta("jwt_secret") == "first"


# -- trips and collaborators ---------------------------------------------------


def test_create_trip_refuses_an_existing_id(store: Store, trip: str) -> None:
    with pytest.raises(AlreadyExists):
        store.create_trip(trip, "mallory", "{}", 2_000).result()
    stored = store.get_trip(trip)
    assert stored is not None
    assert (stored.owner_id, stored.manual_fields_json, stored.created_ms) == (
        "alice",
        '{"fields": []}',
        1_000,
    )
    assert store.get_trip("nope") is None


def test_collaborators(store: Store, trip: str) -> None:
    store.create_trip("trip-2", "bob", "{}", 2_000).result()
    store.create_trip("trip-3", "carol", "{}", 3_000).result()
    store.set_collaborator(trip, "bob", "view").result()
    store.set_collaborator(trip, "bob", "edit").result()
    store.set_collaborator(trip, "dave", "admin").result()
    assert store.collaborators(trip) == {"bob": "edit", "dave": "admin"}
    assert store.permission(trip, "bob") == "edit"
    assert store.permission(trip, "alice") is None  # ownership is Trip.owner_id
    assert [t.trip_id for t in store.trips_for_user("bob")] == [trip, "trip-2"]
    assert [t.trip_id for t in store.trips_for_user("alice")] == [trip]
    assert store.remove_collaborator(trip, "bob").result() is True
    assert store.remove_collaborator(trip, "bob").result() is False
    assert store.permission(trip, "bob") is None
    assert [t.trip_id for t in store.trips_for_user("bob")] == ["trip-2"]
    with pytest.raises(UnknownRow):
        store.set_collaborator("nope", "bob", "edit").result()


# -- update log and snapshots --------------------------------------------------


def test_updates_come_back_in_version_order(store: Store, trip: str) -> None:
    append(store, trip, 1, 2, 3)
    assert store.updates_since(trip, 0) == [
        LoggedUpdate(1, b"u1", '{"v": 1}'),
        LoggedUpdate(2, b"u2", '{"v": 2}'),
        LoggedUpdate(3, b"u3", '{"v": 3}'),
    ]
    assert logged_versions(store, trip) == [1, 2, 3]
    assert [u.version for u in store.updates_since(trip, 2)] == [3]
    assert store.max_version(trip) == 3
    assert store.max_version("nope") == 0
    assert store.log_stats(trip) == (3, 6)


def test_duplicate_version_is_refused_not_overwritten(store: Store, trip: str) -> None:
    append(store, trip, 1, 2)
    with pytest.raises(VersionConflict) as raised:
        store.append_update(trip, 2, b"other", "{}", 3_000).result()
    assert (raised.value.version, raised.value.current_version) == (2, 2)
    with pytest.raises(VersionConflict):
        store.append_update(trip, 1, b"older", "{}", 3_000).result()
    assert store.updates_since(trip, 1) == [LoggedUpdate(2, b"u2", '{"v": 2}')]


def test_a_contiguous_append_needs_its_predecessor(store: Store, trip: str) -> None:
    """The trip log never gets a gap: an update whose predecessor never committed is refused."""
    append(store, trip, 1, 2)
    with pytest.raises(VersionConflict) as raised:
        store.submit(ops.append_update(trip, 4, b"u4", "{}", 3_000, contiguous=True)).result()
    assert (raised.value.version, raised.value.current_version) == (4, 2)
    store.submit(ops.append_update(trip, 3, b"u3", "{}", 3_000, contiguous=True)).result()
    assert store.save_snapshot(trip, 3, b"s3", "{}", 3_000, 3).result() == 3
    store.submit(ops.append_update(trip, 4, b"u4", "{}", 3_000, contiguous=True)).result()
    assert logged_versions(store, trip) == [4]


def test_append_update_checks_its_arguments_and_trip(store: Store) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        store.append_update("nope", 0, b"", "{}", 0)
    with pytest.raises(UnknownRow):
        store.append_update("nope", 1, b"", "{}", 0).result()


def test_snapshot_and_prune(store: Store, trip: str) -> None:
    append(store, trip, *range(1, 11))
    assert store.save_snapshot(trip, 6, b"state6", '{"s": 6}', 3_000, 6).result() == 6
    assert store.latest_snapshot(trip) == Snapshot(6, b"state6", '{"s": 6}')
    assert logged_versions(store, trip) == [7, 8, 9, 10]
    history = store.trip_history(trip)
    assert history.snapshot == Snapshot(6, b"state6", '{"s": 6}')
    assert [u.version for u in history.updates] == [7, 8, 9, 10]
    # A pruned version cannot come back into the log.
    with pytest.raises(VersionConflict):
        store.append_update(trip, 5, b"late", "{}", 4_000).result()


def test_snapshot_without_prune_keeps_the_log(store: Store, trip: str) -> None:
    append(store, trip, 1, 2, 3)
    assert store.save_snapshot(trip, 2, b"s", "{}", 3_000).result() == 0
    assert logged_versions(store, trip) == [1, 2, 3]
    assert [u.version for u in store.trip_history(trip).updates] == [3]


def test_stale_snapshot_is_refused_and_prunes_nothing(store: Store, trip: str) -> None:
    append(store, trip, 1, 2, 3, 4)
    store.save_snapshot(trip, 3, b"s3", "{}", 3_000).result()
    with pytest.raises(StaleSnapshot):
        store.save_snapshot(trip, 2, b"s2", "{}", 3_000, 2).result()
    assert store.latest_snapshot(trip) == Snapshot(3, b"s3", "{}")
    assert logged_versions(store, trip) == [1, 2, 3, 4]


def test_snapshot_and_prune_are_one_transaction(store: Store, trip: str) -> None:
    append(store, trip, 1, 2, 3)
    unit = [
        ops.save_snapshot(trip, 3, b"s3", "{}", 3_000, 3),
        ops.append_update(trip, 3, b"dup", "{}", 3_000),  # fails: the snapshot goes too
    ]
    with pytest.raises(VersionConflict):
        store.submit_all(unit).result()
    assert store.latest_snapshot(trip) is None
    assert logged_versions(store, trip) == [1, 2, 3]


def test_pruning_past_the_snapshot_is_refused(store: Store, trip: str) -> None:
    with pytest.raises(ValueError, match="prune"):
        store.save_snapshot(trip, 3, b"s", "{}", 0, 4)


# -- outcomes ------------------------------------------------------------------


def test_update_and_outcome_commit_together(store: Store, trip: str) -> None:
    first = [
        ops.append_update(trip, 1, b"u1", "{}", 2_000),
        ops.put_outcome(trip, "upd-1", '{"accepted": 1}', 2_000),
    ]
    assert store.submit_all(first).result() == [None, None]
    assert store.get_outcome(trip, "upd-1") == '{"accepted": 1}'
    # A re-send with the same update id: the duplicate outcome refuses the unit,
    # so the update is not appended a second time.
    resend = [
        ops.append_update(trip, 2, b"u1", "{}", 2_500),
        ops.put_outcome(trip, "upd-1", '{"accepted": 2}', 2_500),
    ]
    with pytest.raises(DuplicateId):
        store.submit_all(resend).result()
    assert logged_versions(store, trip) == [1]
    assert store.get_outcome(trip, "upd-1") == '{"accepted": 1}'
    assert store.get_outcome(trip, "upd-2") is None


def test_prune_outcomes(store: Store, trip: str) -> None:
    store.put_outcome(trip, "old", "{}", 1_000).result()
    store.put_outcome(trip, "new", "{}", 5_000).result()
    assert store.prune_outcomes(before_ms=5_000).result() == 1
    assert store.get_outcome(trip, "old") is None
    assert store.get_outcome(trip, "new") == "{}"


# -- conflicts -----------------------------------------------------------------


def test_pending_conflicts(store: Store, trip: str) -> None:
    store.create_trip("trip-2", "bob", "{}", 2_000).result()
    store.put_conflict(trip, "c1", '{"n": 1}', CONFLICT_PENDING).result()
    store.put_conflict("trip-2", "c2", '{"n": 2}', CONFLICT_PENDING).result()
    store.put_conflict(trip, "c3", '{"n": 3}', "resolved").result()
    assert store.pending_conflicts() == [
        PendingConflict(trip, "c1", '{"n": 1}'),
        PendingConflict("trip-2", "c2", '{"n": 2}'),
    ]
    assert store.pending_conflicts("trip-2") == [PendingConflict("trip-2", "c2", '{"n": 2}')]
    store.put_conflict(trip, "c1", '{"n": 11}', CONFLICT_PENDING).result()
    assert store.pending_conflicts(trip) == [PendingConflict(trip, "c1", '{"n": 11}')]
    assert store.set_conflict_status("c1", "resolved").result() is True
    assert store.set_conflict_status("nope", "resolved").result() is False
    assert store.pending_conflicts(trip) == []
    with pytest.raises(DuplicateId):
        store.put_conflict("trip-2", "c1", "{}", CONFLICT_PENDING).result()


# -- chat sessions and messages ----------------------------------------------


def test_chat_session_claim_is_first_wins(store: Store) -> None:
    assert store.chat_session_owner("s1") is None
    assert store.claim_chat_session("s1", "alice", 1_000).result() == "alice"
    assert store.claim_chat_session("s1", "bob", 2_000).result() == "alice"
    assert store.chat_session_owner("s1") == "alice"


def test_concurrent_claims_agree_on_one_owner(store: Store) -> None:
    gate = WriterGate(store.writer)
    owners: list[str] = []
    lock = threading.Lock()

    def claim(user: str) -> None:
        owner = store.claim_chat_session("s1", user, 1_000).result(10)
        with lock:
            owners.append(owner)

    threads = [threading.Thread(target=claim, args=(f"user-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    gate.release()
    for thread in threads:
        thread.join(10)
    assert len(owners) == 8
    assert set(owners) == {store.chat_session_owner("s1")}


def test_chat_session_sharing(store: Store) -> None:
    store.claim_chat_session("s1", "alice", 1_000).result()
    store.share_chat_session("s1", "bob").result()
    store.share_chat_session("s1", "bob").result()
    store.share_chat_session("s1", "carol").result()
    assert store.chat_session_members("s1") == {"bob", "carol"}
    assert store.unshare_chat_session("s1", "bob").result() is True
    assert store.unshare_chat_session("s1", "bob").result() is False
    assert store.chat_session_members("s1") == {"carol"}
    assert store.chat_session_members("nope") == set()
    with pytest.raises(UnknownRow):
        store.share_chat_session("nope", "bob").result()


def test_chat_messages(store: Store) -> None:
    store.claim_chat_session("s1", "alice", 1_000).result()
    store.claim_chat_session("s2", "bob", 1_000).result()
    seqs = [
        store.append_chat_message(session, f"m{n}", "user", user, f"text {n}", "{}", n).result()
        for n, (session, user) in enumerate([("s1", "alice"), ("s2", "bob"), ("s1", None)])
    ]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    # Re-sending a message id is idempotent within its session...
    assert store.append_chat_message("s1", "m0", "user", "alice", "again", "{}", 9).result() == 1
    # ...and refused in another.
    with pytest.raises(DuplicateId):
        store.append_chat_message("s2", "m0", "user", "bob", "x", "{}", 9).result()
    with pytest.raises(UnknownRow):
        store.append_chat_message("nope", "m9", "user", "bob", "x", "{}", 9).result()
    messages = store.chat_messages("s1")
    assert [(m.message_id, m.user_id, m.content) for m in messages] == [
        ("m0", "alice", "text 0"),
        ("m2", None, "text 2"),
    ]
    assert store.chat_messages("s1", after_seq=messages[0].seq) == messages[1:]
    assert store.chat_messages("s1", limit=1) == messages[:1]
    assert store.chat_message_seq("m2") == seqs[2]
    assert store.chat_message_seq("nope") is None


# -- the update log against a model --------------------------------------------

_actions = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(min_value=-2, max_value=2), st.just(False)),
        st.tuples(st.just("snapshot"), st.integers(min_value=0, max_value=3), st.booleans()),
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(actions=_actions)
def test_log_matches_a_model(actions: list[tuple[str, int, bool]]) -> None:
    """Appends (valid or not) and snapshots (with or without prune) never lose an update."""
    log: dict[int, bytes] = {}
    snapshot = 0
    with tempfile.TemporaryDirectory() as tmp, Storage(Path(tmp) / "m.db") as store:
        store.create_trip("t", "alice", "{}", 0).result()
        for kind, offset, prune in actions:
            top = max([snapshot, *log])
            if kind == "append":
                version = top + 1 + offset
                if version < 1:
                    with pytest.raises(ValueError, match="at least 1"):
                        ops.append_update("t", version, b"", "{}", 0)
                    continue
                future = store.submit(ops.append_update("t", version, b"%d" % version, "{}", 0))
                if version > top:
                    future.result()
                    log[version] = b"%d" % version
                else:
                    with pytest.raises(VersionConflict):
                        future.result()
            else:
                version = max(snapshot, top - offset)
                store.save_snapshot(
                    "t", version, b"s", "{}", 0, version if prune else None
                ).result()
                snapshot = version
                if prune:
                    log = {v: u for v, u in log.items() if v > version}
            history = store.trip_history("t")
            assert store.max_version("t") == max([snapshot, *log])
            assert [u.update for u in history.updates] == [
                log[v] for v in sorted(log) if v > snapshot
            ]
