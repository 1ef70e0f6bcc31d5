"""Explicit, numbered schema migrations tracked by ``PRAGMA user_version``.

Theory of operation:

- :data:`MIGRATIONS` is append-only. Migration *n* takes a database at
  ``user_version`` *n - 1* to *n*. A shipped migration is never edited: a
  change to the schema is a new migration at the end of the list.
- :func:`migrate` applies each missing migration once, in order, each inside
  its own ``BEGIN IMMEDIATE ... COMMIT`` together with the ``user_version``
  bump (SQLite DDL is transactional), so a crash leaves the file at a whole
  version. ``BEGIN IMMEDIATE`` takes the write lock before ``user_version`` is
  read again, so two processes opening a fresh file at once apply each
  migration exactly once; reopening a current file changes nothing.
- A file newer than this code raises :class:`SchemaTooNew` rather than being
  opened by a server that does not know its tables.

Schema (every table ``STRICT``; JSON is stored as ``TEXT``, CRDT updates and
states as ``BLOB``; times are integer milliseconds given by the caller)::

    meta                 key -> value                              (v1)
    trips                trip_id, owner_id, manual_fields, created_ms
    trip_collaborators   (trip_id, user_id) -> permission          -> trips
    trip_updates         (trip_id, version) -> update, meta        -> trips
    trip_snapshots       trip_id -> version, state, meta           -> trips
    update_outcomes      (trip_id, update_id) -> outcome           -> trips
    trip_conflicts       conflict_id -> trip_id, state, status     -> trips
    chat_sessions        session_id -> owner_id, created_ms
    chat_session_members (session_id, user_id)                     -> chat_sessions
    chat_messages        seq AUTOINCREMENT, message_id UNIQUE, ... (v2)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, cast

from sqlite_utils import Database

from tripsage_sync.storage.errors import SchemaTooNew

__all__ = ["MIGRATIONS", "Migration", "latest_version", "migrate", "schema_version"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step: ``sql`` takes the file from ``version - 1`` to ``version``."""

    version: int
    description: str
    sql: str


_V1_SQL: Final = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE trips (
    trip_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    manual_fields TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX trips_by_owner ON trips (owner_id);

CREATE TABLE trip_collaborators (
    trip_id TEXT NOT NULL REFERENCES trips (trip_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (trip_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX trip_collaborators_by_user ON trip_collaborators (user_id);

CREATE TABLE trip_updates (
    trip_id TEXT NOT NULL REFERENCES trips (trip_id) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version >= 1),
    "update" BLOB NOT NULL,
    meta TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (trip_id, version)
) STRICT;

CREATE TABLE trip_snapshots (
    trip_id TEXT PRIMARY KEY REFERENCES trips (trip_id) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version >= 0),
    state BLOB NOT NULL,
    meta TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE update_outcomes (
    trip_id TEXT NOT NULL REFERENCES trips (trip_id) ON DELETE CASCADE,
    update_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (trip_id, update_id)
) STRICT;
CREATE INDEX update_outcomes_by_time ON update_outcomes (created_ms);

CREATE TABLE trip_conflicts (
    conflict_id TEXT PRIMARY KEY,
    trip_id TEXT NOT NULL REFERENCES trips (trip_id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    status TEXT NOT NULL
) STRICT;
CREATE INDEX trip_conflicts_by_status ON trip_conflicts (status, trip_id);

CREATE TABLE chat_sessions (
    session_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE chat_session_members (
    session_id TEXT NOT NULL REFERENCES chat_sessions (session_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (session_id, user_id)
) STRICT, WITHOUT ROWID;
"""

_V2_SQL: Final = """
CREATE TABLE chat_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL REFERENCES chat_sessions (session_id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    user_id TEXT,
    content TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX chat_messages_by_session ON chat_messages (session_id, seq);
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "trips, update log, snapshots, outcomes, conflicts, chat sessions", _V1_SQL),
    Migration(2, "chat messages with a database-wide sequence", _V2_SQL),
)


def latest_version() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1].version


def schema_version(db: Database) -> int:
    """The file's ``PRAGMA user_version``."""
    return cast(int, db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, target: int | None = None) -> int:
    """Bring ``db`` up to ``target`` (default: the latest) and return its version.

    ``db`` must be in driver autocommit mode (``isolation_level=None``) with no
    transaction open. Raises :class:`SchemaTooNew` for a file from newer code.
    """
    known = latest_version()
    goal = known if target is None else target
    if not 0 <= goal <= known:
        raise ValueError(f"no migration to version {goal}")
    found = schema_version(db)
    if found > known:
        raise SchemaTooNew(found, known)
    for migration in MIGRATIONS:
        if found >= migration.version or migration.version > goal:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            found = schema_version(db)
            if found < migration.version:
                if found != migration.version - 1:
                    raise AssertionError(f"schema version {found} skips migrations")
                db.executescript(migration.sql)
                db.execute(f"PRAGMA user_version = {migration.version:d}")
                logger.info(
                    "migrated schema to version %d (%s)", migration.version, migration.description
                )
                found = migration.version
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise
    if found > known:  # a newer server migrated while we waited for the lock
        raise SchemaTooNew(found, known)
    return found
