"""Read queries and the row types they return.

Theory of operation: each function takes a
:class:`~storage.connection.Connection` and runs plain SQL on it that both
engines run, so the same query serves two callers and two engines. A store
(``storage/store.py``) runs them on its read connection, where each
statement (or each read transaction) sees a consistent snapshot of the last
commit; write operations in ``storage/ops.py`` run them on the write
connection inside their transaction, where they see their own batch.
Hand-written SQL rather than ``Table`` helpers: these run on hot paths and
every statement here hits a primary key or an index.

Rows come back as named tuples of ``str``, ``int`` and ``bytes``; JSON
columns are returned as the ``str`` they were stored as.
"""

from __future__ import annotations

from typing import Final, NamedTuple, cast

from tripsage_sync.storage.connection import Connection

__all__ = [
    "CONFLICT_PENDING",
    "ChatMessage",
    "LogStats",
    "LoggedUpdate",
    "PendingConflict",
    "Snapshot",
    "Trip",
    "TripHistory",
    "chat_message",
    "chat_message_seq",
    "chat_messages",
    "chat_messages_before",
    "chat_session_members",
    "chat_session_owner",
    "collaborators",
    "get_meta",
    "get_outcome",
    "get_trip",
    "latest_snapshot",
    "log_stats",
    "max_version",
    "outcome_ids",
    "pending_conflicts",
    "permission",
    "trip_exists",
    "trip_history",
    "trip_version",
    "trips_for_user",
    "updates_since",
]

#: The conflict status :func:`pending_conflicts` lists; other statuses are the caller's.
CONFLICT_PENDING: Final = "pending"


class Trip(NamedTuple):
    trip_id: str
    owner_id: str
    manual_fields_json: str
    created_ms: int


class LoggedUpdate(NamedTuple):
    version: int
    update: bytes
    meta_json: str


class Snapshot(NamedTuple):
    version: int
    state: bytes
    meta_json: str


class TripHistory(NamedTuple):
    """A trip's latest snapshot and every logged update after it, read at one instant."""

    snapshot: Snapshot | None
    updates: list[LoggedUpdate]


class LogStats(NamedTuple):
    """Size of a trip's update log, for the compaction policy in ``sync/``."""

    update_count: int
    total_bytes: int


class ChatMessage(NamedTuple):
    seq: int
    message_id: str
    session_id: str
    role: str
    user_id: str | None
    content: str
    payload_json: str
    created_ms: int


class PendingConflict(NamedTuple):
    trip_id: str
    conflict_id: str
    state_json: str


def _scalar(db: Connection, sql: str, params: tuple[object, ...]) -> object:
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


# -- meta ------------------------------------------------------------------


def get_meta(db: Connection, key: str) -> str | None:
    return cast(str | None, _scalar(db, "SELECT value FROM meta WHERE key = ?", (key,)))


# -- chat sessions and messages ----------------------------------------------


def chat_session_owner(db: Connection, session_id: str) -> str | None:
    sql = "SELECT owner_id FROM chat_sessions WHERE session_id = ?"
    return cast(str | None, _scalar(db, sql, (session_id,)))


def chat_session_members(db: Connection, session_id: str) -> set[str]:
    """Users the session is shared with; the owner is not listed."""
    sql = "SELECT user_id FROM chat_session_members WHERE session_id = ?"
    return {cast(str, row[0]) for row in db.execute(sql, (session_id,))}


def chat_messages(db: Connection, session_id: str, after_seq: int, limit: int) -> list[ChatMessage]:
    """At most ``limit`` messages of the session with ``seq > after_seq``, oldest first."""
    sql = (
        "SELECT seq, message_id, session_id, role, user_id, content, payload, created_ms"
        " FROM chat_messages WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
    )
    return [ChatMessage._make(row) for row in db.execute(sql, (session_id, after_seq, limit))]


def chat_messages_before(
    db: Connection, session_id: str, before_seq: int, limit: int
) -> list[ChatMessage]:
    """The ``limit`` messages of the session just before ``before_seq``, oldest first."""
    sql = (
        "SELECT seq, message_id, session_id, role, user_id, content, payload, created_ms"
        " FROM chat_messages WHERE session_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
    )
    rows = db.execute(sql, (session_id, before_seq, limit)).fetchall()
    return [ChatMessage._make(row) for row in reversed(rows)]


def chat_message(db: Connection, message_id: str) -> ChatMessage | None:
    sql = (
        "SELECT seq, message_id, session_id, role, user_id, content, payload, created_ms"
        " FROM chat_messages WHERE message_id = ?"
    )
    row = db.execute(sql, (message_id,)).fetchone()
    return None if row is None else ChatMessage._make(row)


def chat_message_seq(db: Connection, message_id: str) -> int | None:
    sql = "SELECT seq FROM chat_messages WHERE message_id = ?"
    return cast(int | None, _scalar(db, sql, (message_id,)))


# -- trips and collaborators ---------------------------------------------------


def trip_exists(db: Connection, trip_id: str) -> bool:
    return _scalar(db, "SELECT 1 FROM trips WHERE trip_id = ?", (trip_id,)) is not None


def get_trip(db: Connection, trip_id: str) -> Trip | None:
    sql = "SELECT trip_id, owner_id, manual_fields, created_ms FROM trips WHERE trip_id = ?"
    row = db.execute(sql, (trip_id,)).fetchone()
    return None if row is None else Trip._make(row)


def trip_ids(db: Connection) -> list[str]:
    """Every trip's id, sorted (maintenance: ``tripsage-sync db compact``)."""
    return [cast(str, row[0]) for row in db.execute("SELECT trip_id FROM trips ORDER BY trip_id")]


def trips_for_user(db: Connection, user_id: str) -> list[Trip]:
    """Trips the user owns or collaborates on, oldest first."""
    sql = (
        "SELECT trip_id, owner_id, manual_fields, created_ms FROM trips WHERE owner_id = ?"
        " UNION"
        " SELECT t.trip_id, t.owner_id, t.manual_fields, t.created_ms"
        " FROM trip_collaborators AS c JOIN trips AS t USING (trip_id) WHERE c.user_id = ?"
        " ORDER BY created_ms, trip_id"
    )
    return [Trip._make(row) for row in db.execute(sql, (user_id, user_id))]


def collaborators(db: Connection, trip_id: str) -> dict[str, str]:
    """``{user_id: permission}``; the owner is listed only if added as a collaborator."""
    sql = "SELECT user_id, permission FROM trip_collaborators WHERE trip_id = ?"
    return {cast(str, user): cast(str, perm) for user, perm in db.execute(sql, (trip_id,))}


def permission(db: Connection, trip_id: str, user_id: str) -> str | None:
    """The collaborator's stored permission; ownership is ``Trip.owner_id``."""
    sql = "SELECT permission FROM trip_collaborators WHERE trip_id = ? AND user_id = ?"
    return cast(str | None, _scalar(db, sql, (trip_id, user_id)))


# -- update log and snapshots --------------------------------------------------


def updates_since(
    db: Connection, trip_id: str, after_version: int, up_to_version: int | None = None
) -> list[LoggedUpdate]:
    """Logged updates with ``after_version < version [<= up_to_version]``, in version order."""
    sql = (
        'SELECT version, "update", meta FROM trip_updates'
        " WHERE trip_id = ? AND version > ? AND version <= ? ORDER BY version"
    )
    up_to = (1 << 62) if up_to_version is None else up_to_version
    return [LoggedUpdate._make(row) for row in db.execute(sql, (trip_id, after_version, up_to))]


def latest_snapshot(db: Connection, trip_id: str) -> Snapshot | None:
    sql = "SELECT version, state, meta FROM trip_snapshots WHERE trip_id = ?"
    row = db.execute(sql, (trip_id,)).fetchone()
    return None if row is None else Snapshot._make(row)


#: The highest stored version of trip ``?`` (given twice), in SQL both engines run.
_MAX_VERSION: Final = (
    "(SELECT coalesce(max(v), 0) FROM ("
    "SELECT max(version) AS v FROM trip_updates WHERE trip_id = ?"
    " UNION ALL SELECT version FROM trip_snapshots WHERE trip_id = ?) AS versions)"
)


def max_version(db: Connection, trip_id: str) -> int:
    """The highest version stored for the trip, logged or snapshotted; 0 if none."""
    return cast(int, db.execute(f"SELECT {_MAX_VERSION}", (trip_id, trip_id)).fetchone()[0])


def trip_version(db: Connection, trip_id: str) -> int | None:
    """:func:`max_version` of a stored trip, in one statement; ``None`` if there is no such trip."""
    sql = f"SELECT {_MAX_VERSION} FROM trips WHERE trip_id = ?"
    row = db.execute(sql, (trip_id, trip_id, trip_id)).fetchone()
    return None if row is None else cast(int, row[0])


def trip_history(db: Connection, trip_id: str) -> TripHistory:
    """The snapshot and the updates after it; run inside one read transaction."""
    snapshot = latest_snapshot(db, trip_id)
    after = 0 if snapshot is None else snapshot.version
    return TripHistory(snapshot, updates_since(db, trip_id, after))


def log_stats(db: Connection, trip_id: str) -> LogStats:
    sql = 'SELECT count(*), coalesce(sum(length("update")), 0) FROM trip_updates WHERE trip_id = ?'
    count, total = db.execute(sql, (trip_id,)).fetchone()
    return LogStats(cast(int, count), cast(int, total))


# -- outcomes and conflicts ----------------------------------------------------


def get_outcome(db: Connection, trip_id: str, update_id: str) -> str | None:
    sql = "SELECT outcome FROM update_outcomes WHERE trip_id = ? AND update_id = ?"
    return cast(str | None, _scalar(db, sql, (trip_id, update_id)))


def outcome_ids(db: Connection, trip_id: str, limit: int) -> list[str]:
    """Up to ``limit`` update ids of a trip that have a stored outcome (from the primary
    key's index)."""
    sql = "SELECT update_id FROM update_outcomes WHERE trip_id = ? LIMIT ?"
    return [cast(str, row[0]) for row in db.execute(sql, (trip_id, limit))]


def pending_conflicts(db: Connection, trip_id: str | None = None) -> list[PendingConflict]:
    """Conflicts with status :data:`CONFLICT_PENDING`, of one trip or of all."""
    sql = "SELECT trip_id, conflict_id, state FROM trip_conflicts WHERE status = ?"
    params: tuple[str, ...] = (CONFLICT_PENDING,)
    if trip_id is not None:
        sql += " AND trip_id = ?"
        params += (trip_id,)
    sql += " ORDER BY trip_id, conflict_id"
    return [PendingConflict._make(row) for row in db.execute(sql, params)]
