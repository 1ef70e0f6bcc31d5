"""Durable storage for TripSage Sync: a dumb log and index on one SQLite file.

Layout (``STYLE.md`` "The shape"): ``api`` imports ``storage``; ``storage``
imports neither ``sync`` nor ``api``, nor pycrdt, pydantic or asyncio. It
stores ``bytes``, ``int`` and ``str`` (JSON as ``str``)::

    storage/sqlite.py      Storage: connections, pragmas, the public facade
    storage/writer.py      BatchWriter: one thread, group commit, futures
    storage/ops.py         write operations run by the writer
    storage/updatelog.py   the update log's operations, and their bulk path
    storage/queries.py     read queries and their row types
    storage/migrations.py  schema, migrations by PRAGMA user_version
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
from tripsage_sync.storage.sqlite import FileSizes, Storage
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
    "SchemaTooNew",
    "Snapshot",
    "StaleSnapshot",
    "Storage",
    "StorageClosed",
    "StorageError",
    "Trip",
    "TripHistory",
    "UnknownRow",
    "VersionConflict",
    "WriteOp",
]
