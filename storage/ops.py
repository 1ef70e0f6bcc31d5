"""Write operations: factories returning a :data:`storage.writer.WriteOp`.

Theory of operation: each factory checks its arguments at once (a bad
argument is our own bug and raises :class:`ValueError` in the caller), then
returns a closure the writer thread runs on the write connection inside a
savepoint of its batch transaction. Because ``BEGIN IMMEDIATE`` holds the
database write lock, a closure's read-then-write (``SELECT`` then ``INSERT``)
is atomic across threads and processes: no other writer can run in between.
Refusals (a version that is not new, a missing trip) raise a
:mod:`storage.errors` exception from the closure, which rolls back only that
operation's savepoint and fails only its future.

Compose several operations into one all-or-nothing unit with
``Storage.submit_all([ops.append_update(...), ops.put_outcome(...)])``.

The update log's operations (``append_update``, ``put_outcome``,
``save_snapshot``) are instances of :mod:`storage.updatelog` classes, which
the writer may write many at a time (see there); every other operation
here is a :class:`~storage.updatelog.VersionNeutral`: it changes no trip's
stored versions, so the version cache survives it.
"""

from __future__ import annotations

from tripsage_sync.storage import queries
from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.errors import AlreadyExists, DuplicateId, UnknownRow
from tripsage_sync.storage.updatelog import (
    AppendUpdate,
    PutOutcome,
    SaveSnapshot,
    VersionNeutral,
    require_trip,
)
from tripsage_sync.storage.writer import WriteOp

__all__ = [
    "append_chat_message",
    "append_update",
    "claim_chat_session",
    "create_trip",
    "prune_outcomes",
    "put_conflict",
    "put_outcome",
    "remove_collaborator",
    "save_snapshot",
    "set_collaborator",
    "set_conflict_status",
    "set_meta_if_absent",
    "share_chat_session",
    "unshare_chat_session",
]


def _require_chat_session(db: Connection, session_id: str) -> None:
    if queries.chat_session_owner(db, session_id) is None:
        raise UnknownRow(f"no chat session {session_id!r}")


# -- meta ------------------------------------------------------------------


def set_meta_if_absent(key: str, value: str) -> WriteOp[str]:
    """Store ``value`` unless ``key`` has one; the result is the stored value."""

    def op(db: Connection) -> str:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, value)
        )
        stored = queries.get_meta(db, key)
        assert stored is not None  # inserted or already there, under the write lock
        return stored

    return VersionNeutral(op)


# -- chat sessions and messages ----------------------------------------------


def claim_chat_session(session_id: str, user_id: str, now_ms: int) -> WriteOp[str]:
    """Create the session owned by ``user_id`` unless it exists; the result is its owner."""

    def op(db: Connection) -> str:
        db.execute(
            "INSERT INTO chat_sessions (session_id, owner_id, created_ms) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (session_id, user_id, now_ms),
        )
        owner = queries.chat_session_owner(db, session_id)
        assert owner is not None  # inserted or already there, under the write lock
        return owner

    return VersionNeutral(op)


def share_chat_session(session_id: str, user_id: str) -> WriteOp[None]:
    def op(db: Connection) -> None:
        _require_chat_session(db, session_id)
        db.execute(
            "INSERT INTO chat_session_members (session_id, user_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (session_id, user_id),
        )

    return VersionNeutral(op)


def unshare_chat_session(session_id: str, user_id: str) -> WriteOp[bool]:
    """The result says whether the user was a member."""

    def op(db: Connection) -> bool:
        cursor = db.execute(
            "DELETE FROM chat_session_members WHERE session_id = ? AND user_id = ?",
            (session_id, user_id),
        )
        return cursor.rowcount > 0

    return VersionNeutral(op)


def append_chat_message(
    session_id: str,
    message_id: str,
    role: str,
    user_id: str | None,
    content: str,
    payload_json: str,
    now_ms: int,
) -> WriteOp[int]:
    """Append a message; the result is its ``seq``, increasing across the database.

    Idempotent: a ``message_id`` already stored in the same session returns
    its first ``seq`` and changes nothing; in another session it is a
    :class:`DuplicateId`.
    """

    def op(db: Connection) -> int:
        _require_chat_session(db, session_id)
        row = db.execute(
            "SELECT seq, session_id FROM chat_messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        if row is not None:
            seq, stored_session = row
            if stored_session != session_id:
                raise DuplicateId(f"chat message id {message_id!r} belongs to another session")
            return int(seq)
        row = db.execute(
            "INSERT INTO chat_messages"
            " (message_id, session_id, role, user_id, content, payload, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            (message_id, session_id, role, user_id, content, payload_json, now_ms),
        ).fetchone()
        return int(row[0])

    return VersionNeutral(op)


# -- trips and collaborators ---------------------------------------------------


def create_trip(trip_id: str, owner_id: str, manual_fields_json: str, now_ms: int) -> WriteOp[None]:
    """Create a trip; :class:`AlreadyExists` if the id is taken."""

    def op(db: Connection) -> None:
        if queries.trip_exists(db, trip_id):
            raise AlreadyExists(f"trip {trip_id!r} already exists")
        db.execute(
            "INSERT INTO trips (trip_id, owner_id, manual_fields, created_ms) VALUES (?, ?, ?, ?)",
            (trip_id, owner_id, manual_fields_json, now_ms),
        )

    return VersionNeutral(op)


def set_collaborator(trip_id: str, user_id: str, permission: str) -> WriteOp[None]:
    """Add the collaborator or change their permission."""

    def op(db: Connection) -> None:
        require_trip(db, trip_id)
        db.execute(
            "INSERT INTO trip_collaborators (trip_id, user_id, permission) VALUES (?, ?, ?)"
            " ON CONFLICT (trip_id, user_id) DO UPDATE SET permission = excluded.permission",
            (trip_id, user_id, permission),
        )

    return VersionNeutral(op)


def remove_collaborator(trip_id: str, user_id: str) -> WriteOp[bool]:
    """The result says whether the user was a collaborator."""

    def op(db: Connection) -> bool:
        cursor = db.execute(
            "DELETE FROM trip_collaborators WHERE trip_id = ? AND user_id = ?", (trip_id, user_id)
        )
        return cursor.rowcount > 0

    return VersionNeutral(op)


# -- update log and snapshots --------------------------------------------------


def append_update(
    trip_id: str,
    version: int,
    update: bytes,
    meta_json: str,
    now_ms: int,
    *,
    contiguous: bool = False,
) -> WriteOp[None]:
    """Append one update to the trip's log.

    ``version`` must be greater than every version stored for the trip,
    logged or snapshotted, else :class:`VersionConflict`: the log is never
    overwritten, and a pruned version cannot come back. With ``contiguous``
    it must be exactly the next one: an update whose predecessor failed to
    commit is refused too, so the log never has a gap.
    """
    return AppendUpdate(trip_id, version, update, meta_json, now_ms, contiguous=contiguous)


def save_snapshot(
    trip_id: str,
    version: int,
    state: bytes,
    meta_json: str,
    now_ms: int,
    prune_log_up_to_version: int | None = None,
) -> WriteOp[int]:
    """Replace the trip's snapshot and prune its log, in one transaction.

    A snapshot older than the stored one is :class:`StaleSnapshot` (equal
    replaces it). Logged updates with ``version <= prune_log_up_to_version``
    are deleted; the result is how many. Pruning past ``version`` would lose
    updates the snapshot does not hold, so it is a :class:`ValueError`.
    """
    return SaveSnapshot(trip_id, version, state, meta_json, now_ms, prune_log_up_to_version)


# -- outcomes and conflicts ----------------------------------------------------


def put_outcome(trip_id: str, update_id: str, outcome_json: str, now_ms: int) -> WriteOp[None]:
    """Record the outcome of a client update; a second one is :class:`DuplicateId`.

    Submit it with its ``append_update`` through ``submit_all`` so that the
    update and its outcome commit together or not at all.
    """
    return PutOutcome(trip_id, update_id, outcome_json, now_ms)


def prune_outcomes(before_ms: int) -> WriteOp[int]:
    """Forget outcomes recorded before ``before_ms``; the result is how many."""

    def op(db: Connection) -> int:
        cursor = db.execute("DELETE FROM update_outcomes WHERE created_ms < ?", (before_ms,))
        return cursor.rowcount

    return VersionNeutral(op)


def put_conflict(trip_id: str, conflict_id: str, state_json: str, status: str) -> WriteOp[None]:
    """Store the conflict or replace its state and status."""

    def op(db: Connection) -> None:
        require_trip(db, trip_id)
        row = db.execute(
            "SELECT trip_id FROM trip_conflicts WHERE conflict_id = ?", (conflict_id,)
        ).fetchone()
        if row is not None and row[0] != trip_id:
            raise DuplicateId(f"conflict {conflict_id!r} belongs to another trip")
        db.execute(
            "INSERT INTO trip_conflicts (conflict_id, trip_id, state, status) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (conflict_id) DO UPDATE"
            " SET state = excluded.state, status = excluded.status",
            (conflict_id, trip_id, state_json, status),
        )

    return VersionNeutral(op)


def set_conflict_status(conflict_id: str, status: str) -> WriteOp[bool]:
    """The result says whether the conflict exists."""

    def op(db: Connection) -> bool:
        cursor = db.execute(
            "UPDATE trip_conflicts SET status = ? WHERE conflict_id = ?", (status, conflict_id)
        )
        return cursor.rowcount > 0

    return VersionNeutral(op)
