"""Durable storage for TripSage Sync: a dumb log and index, on one SQLite file or PostgreSQL.

Layout (``STYLE.md`` "The shape"): ``api`` imports ``storage``; ``storage``
imports neither ``sync`` nor ``api``, nor pycrdt, pydantic or asyncio. It
stores ``bytes``, ``int`` and ``str`` (JSON as ``str``)::

    storage/store.py       Store: the facade every engine offers
    storage/sqlite.py      Storage: the SQLite file, its connections and pragmas
    storage/postgres.py    PostgresStorage: the shared store of a cluster
    storage/connection.py  what the SQL and the writer need of a connection
    storage/writer.py      BatchWriter: one thread, group commit, futures
    storage/ops.py         write operations run by the writer
    storage/updatelog.py   the update log's operations, and their bulk path
    storage/queries.py     read queries and their row types
    storage/migrations.py  schema, migrations by PRAGMA user_version
    storage/pgschema.py    the same schema in PostgreSQL's types
    storage/errors.py      the exception tree
"""

from __future__ import annotations

from tripsage_sync.storage.errors import (
    AlreadyExists,
    DuplicateId,
    SchemaTooNew,
    StaleSnapshot,
    StorageClosed,
    StorageError,
    UnknownRow,
    VersionConflict,
)
from tripsage_sync.storage.postgres import PostgresStorage
from tripsage_sync.storage.queries import (
    CONFLICT_PENDING,
    ChatMessage,
    LoggedUpdate,
    LogStats,
    PendingConflict,
    Snapshot,
    Trip,
    TripHistory,
)
from tripsage_sync.storage.sqlite import Storage
from tripsage_sync.storage.store import FileSizes, Store
from tripsage_sync.storage.writer import BatchWriter, WriteOp

__all__ = [
    "CONFLICT_PENDING",
    "AlreadyExists",
    "BatchWriter",
    "ChatMessage",
    "DuplicateId",
    "FileSizes",
    "LogStats",
    "LoggedUpdate",
    "PendingConflict",
    "PostgresStorage",
    "SchemaTooNew",
    "Snapshot",
    "StaleSnapshot",
    "Storage",
    "StorageClosed",
    "StorageError",
    "Store",
    "Trip",
    "TripHistory",
    "UnknownRow",
    "VersionConflict",
    "WriteOp",
    "open_store",
]


def open_store(location: str) -> Store:
    """The store at ``location``: a ``postgresql://`` URL, else a SQLite file's path."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresStorage(location)
    return Storage(location)
