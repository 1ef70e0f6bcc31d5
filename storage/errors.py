"""The exception tree of the storage layer.

Storage knows nothing of the wire protocol, so these errors carry no close
codes: ``api/`` maps them onto the ``sync/errors.py`` tree. They name the
rows involved by id and number only, never by content, so they are safe to
log::

    StorageError
    ├── StorageClosed        used after close()
    ├── SchemaTooNew         the file was written by a newer server
    ├── AlreadyExists        create_trip of an existing trip id
    ├── UnknownRow           the trip / chat session / conflict is not stored
    ├── VersionConflict      append_update of a version that is not new (or not next)
    ├── StaleSnapshot        save_snapshot older than the stored snapshot
    └── DuplicateId          an outcome or chat message id reused

Wrong arguments from our own code (a negative version, pruning past the
snapshot) raise :class:`ValueError` at once, before anything is queued.

A write can also fail because the database cannot be written at all (a full
disk, an I/O error, a lock held too long): SQLite raises
``sqlite3.OperationalError``, which :func:`is_unavailable` tells apart from
refusals of one write, so callers can back off instead of blaming the write.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import psycopg
import psycopg.errors

__all__ = [
    "DUPLICATE_KEY",
    "UNAVAILABLE",
    "AlreadyExists",
    "ChainBroken",
    "DuplicateId",
    "SchemaTooNew",
    "StaleSnapshot",
    "StorageClosed",
    "StorageError",
    "UnknownRow",
    "VersionConflict",
    "is_unavailable",
]


def is_unavailable(exc: BaseException) -> bool:
    """Whether a failed write says the database cannot be written now (transient).

    ``SQLITE_FULL``, ``SQLITE_IOERR``, ``SQLITE_BUSY``/``LOCKED`` and
    ``SQLITE_READONLY`` are ``OperationalError``s, and so is psycopg's lost
    or refused connection to PostgreSQL; a closed writer cannot write
    either. Constraint failures and this module's refusals are about the
    write itself.
    """
    return isinstance(exc, UNAVAILABLE)


class StorageError(Exception):
    """Base class of every error the storage layer raises on purpose."""


class StorageClosed(StorageError):
    """The storage (or its writer) is closed: nothing was done."""


#: A row whose primary key another connection wrote first: another node's transaction
#: that committed meanwhile (PostgreSQL). SQLite's writers hold the write lock from the
#: check to the insert, so it never races.
DUPLICATE_KEY: Final = (psycopg.errors.UniqueViolation,)

#: What :func:`is_unavailable` recognizes (an HTTP shell maps each to a 503).
UNAVAILABLE: Final = (sqlite3.OperationalError, psycopg.OperationalError, StorageClosed)


class SchemaTooNew(StorageError):
    """The database's ``user_version`` is newer than this code knows."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"database schema version {found} is newer than {known}")
        self.found = found
        self.known = known


class AlreadyExists(StorageError):
    """A row that must be new already exists."""


class UnknownRow(StorageError):
    """A row the operation refers to does not exist."""


class DuplicateId(StorageError):
    """An id that must be unique was reused."""


class ChainBroken(StorageError):
    """An earlier write of the same chain failed: this one, which depends on it, is not
    run (``BatchWriter.submit_all(..., chain=)``)."""


class VersionConflict(StorageError):
    """An update's version is not greater than every stored version of its trip
    (or, appended as contiguous, not the very next one).

    A duplicate version is never an overwrite: the log is append-only.
    ``current_version`` is the trip's highest stored version (log or snapshot).
    """

    def __init__(self, trip_id: str, version: int, current_version: int) -> None:
        super().__init__(
            f"trip {trip_id!r}: version {version} is not after stored version {current_version}"
        )
        self.trip_id = trip_id
        self.version = version
        self.current_version = current_version


class StaleSnapshot(StorageError):
    """A snapshot older than the trip's stored snapshot was offered."""

    def __init__(self, trip_id: str, version: int, stored_version: int) -> None:
        super().__init__(
            f"trip {trip_id!r}: snapshot version {version} is older than stored {stored_version}"
        )
        self.trip_id = trip_id
        self.version = version
        self.stored_version = stored_version
