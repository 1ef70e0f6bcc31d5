"""The update log's write operations, and the writer's fast path for them.

Theory of operation
-------------------
:class:`AppendUpdate`, :class:`PutOutcome` and :class:`SaveSnapshot` are the
operations ``storage/ops.py`` hands out for the update log. Called on the
write connection, each runs alone with its checks in SQL, as every write
operation does.

Most of the writer's work is appends and their outcomes, so it writes those
in bulk (:class:`LogBatch`, the :class:`~storage.writer.BulkWriter` of a
:class:`~storage.sqlite.Storage`): a job made only of them is *accepted* when
its appends are sure to be new, judged against each trip's highest stored
version kept in memory, and its rows go into one ``executemany`` per table
for the whole batch. Nothing else runs a ``SELECT`` per append. Anything else,
or an append that would be refused, runs alone as above after the rows so
far are written, so the batch keeps its order and a refusal is the same error
in the same place.

The versions in memory are right because of where they are used. The writer
holds the write lock for the whole batch, and at its start the transactor
says whether any other connection (another process, a second store on the
same database) may have committed since our last batch
(:meth:`~storage.connection.Transactor.others_committed`: SQLite's ``PRAGMA
data_version``; for PostgreSQL, whose other nodes write all the time, every
minute, see ``storage/postgres.py``): if one may have, the cache is emptied.
A trip missing from the cache is read once (``queries.trip_version``), which
also proves the trip exists. Within our
own batches the cache follows every write: accepted appends and appends that
ran alone set it, a snapshot raises it, a :class:`VersionNeutral` operation
leaves it, and any other operation, a failed bulk write or a transaction that
did not commit empties it.

Where two connections race on one version anyway (PostgreSQL's writers do
not lock each other out), the primary key refuses the second row: the bulk
write fails and the batch runs again, job by job, so the append that lost
gets :class:`VersionConflict` as it would alone.

A bulk write that fails (a duplicate outcome, an outcome of an unknown trip,
a full disk) rolls the transaction back and the writer runs the batch again,
every job alone as before, so one bad operation still fails only its own
future.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from tripsage_sync.storage import queries
from tripsage_sync.storage.connection import Connection, Transactor
from tripsage_sync.storage.errors import (
    DUPLICATE_KEY,
    DuplicateId,
    StaleSnapshot,
    UnknownRow,
    VersionConflict,
)

__all__ = [
    "INSERT_OUTCOME_SQL",
    "INSERT_UPDATE_SQL",
    "MAX_CACHED_TRIPS",
    "AppendUpdate",
    "LogBatch",
    "PutOutcome",
    "SaveSnapshot",
    "VersionNeutral",
    "require_trip",
]

_T = TypeVar("_T")

#: A row of the update log, and of the outcomes: written by one operation or by many at once.
INSERT_UPDATE_SQL: Final = (
    'INSERT INTO trip_updates (trip_id, version, "update", meta, created_ms) VALUES (?, ?, ?, ?, ?)'
)
INSERT_OUTCOME_SQL: Final = (
    "INSERT INTO update_outcomes (trip_id, update_id, outcome, created_ms) VALUES (?, ?, ?, ?)"
)


class VersionNeutral(Generic[_T]):
    """A write operation that changes no trip's stored versions (see the module docstring)."""

    __slots__ = ("__weakref__", "_op")

    def __init__(self, op: Callable[[Connection], _T]) -> None:
        self._op = op

    def __call__(self, db: Connection) -> _T:
        return self._op(db)


#: Trips whose versions are kept; past it the cache starts again (at a batch's start).
MAX_CACHED_TRIPS: Final = 10_000


def require_trip(db: Connection, trip_id: str) -> None:
    if not queries.trip_exists(db, trip_id):
        raise UnknownRow(f"no trip {trip_id!r}")


class AppendUpdate:
    """Append one update to the trip's log (see :func:`append_update`)."""

    __slots__ = ("__weakref__", "contiguous", "meta_json", "now_ms", "trip_id", "update", "version")

    def __init__(
        self,
        trip_id: str,
        version: int,
        update: bytes,
        meta_json: str,
        now_ms: int,
        *,
        contiguous: bool = False,
    ) -> None:
        if version < 1:
            raise ValueError(f"update version must be at least 1, not {version}")
        self.trip_id = trip_id
        self.version = version
        self.update = update
        self.meta_json = meta_json
        self.now_ms = now_ms
        self.contiguous = contiguous

    def refusal(self, current: int) -> VersionConflict | None:
        """Why the update cannot follow the trip's highest stored version ``current``, if not."""
        if self.version <= current or (self.contiguous and self.version != current + 1):
            return VersionConflict(self.trip_id, self.version, current)
        return None

    def row(self) -> tuple[str, int, bytes, str, int]:
        return (self.trip_id, self.version, self.update, self.meta_json, self.now_ms)

    def __call__(self, db: Connection) -> None:
        require_trip(db, self.trip_id)
        refusal = self.refusal(queries.max_version(db, self.trip_id))
        if refusal is not None:
            raise refusal
        try:
            db.execute(INSERT_UPDATE_SQL, self.row())
        except DUPLICATE_KEY as exc:  # another node appended it between the check and here
            raise VersionConflict(self.trip_id, self.version, self.version) from exc


class SaveSnapshot:
    """Replace the trip's snapshot and prune its log (see :func:`save_snapshot`)."""

    __slots__ = ("__weakref__", "meta_json", "now_ms", "prune_up_to", "state", "trip_id", "version")

    def __init__(
        self,
        trip_id: str,
        version: int,
        state: bytes,
        meta_json: str,
        now_ms: int,
        prune_log_up_to_version: int | None = None,
    ) -> None:
        if version < 0:
            raise ValueError(f"snapshot version must be at least 0, not {version}")
        prune = prune_log_up_to_version
        if prune is not None and not 0 <= prune <= version:
            raise ValueError(f"cannot prune up to {prune} with snapshot {version}")
        self.trip_id = trip_id
        self.version = version
        self.state = state
        self.meta_json = meta_json
        self.now_ms = now_ms
        self.prune_up_to = prune

    def __call__(self, db: Connection) -> int:
        trip_id, version = self.trip_id, self.version
        require_trip(db, trip_id)
        stored = queries.latest_snapshot(db, trip_id)
        if stored is not None and version < stored.version:
            raise StaleSnapshot(trip_id, version, stored.version)
        db.execute(
            "INSERT INTO trip_snapshots (trip_id, version, state, meta, created_ms)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (trip_id) DO UPDATE"
            " SET version = excluded.version, state = excluded.state, meta = excluded.meta,"
            " created_ms = excluded.created_ms",
            (trip_id, version, self.state, self.meta_json, self.now_ms),
        )
        if self.prune_up_to is None:
            return 0
        cursor = db.execute(
            "DELETE FROM trip_updates WHERE trip_id = ? AND version <= ?",
            (trip_id, self.prune_up_to),
        )
        return cursor.rowcount


class PutOutcome:
    """Record the outcome of a client update (see :func:`put_outcome`)."""

    __slots__ = ("__weakref__", "now_ms", "outcome_json", "trip_id", "update_id")

    def __init__(self, trip_id: str, update_id: str, outcome_json: str, now_ms: int) -> None:
        self.trip_id = trip_id
        self.update_id = update_id
        self.outcome_json = outcome_json
        self.now_ms = now_ms

    def row(self) -> tuple[str, str, str, int]:
        return (self.trip_id, self.update_id, self.outcome_json, self.now_ms)

    def __call__(self, db: Connection) -> None:
        require_trip(db, self.trip_id)
        duplicate = f"trip {self.trip_id!r}: update {self.update_id!r} already has an outcome"
        if queries.get_outcome(db, self.trip_id, self.update_id) is not None:
            raise DuplicateId(duplicate)
        try:
            db.execute(INSERT_OUTCOME_SQL, self.row())
        except DUPLICATE_KEY as exc:  # another node stored it between the check and here
            raise DuplicateId(duplicate) from exc


class LogBatch:
    """The writer's bulk path for appends and outcomes; see the module docstring.

    Implements :class:`~storage.writer.BulkInsert`; used by the writer thread only.
    """

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}  # trip -> highest stored version, in this transaction
        self._updates: list[tuple[str, int, bytes, str, int]] = []
        self._outcomes: list[tuple[str, str, str, int]] = []
        self._outcome_keys: set[tuple[str, str]] = set()

    def begin(self, tx: Transactor) -> None:
        if tx.others_committed() or len(self._versions) > MAX_CACHED_TRIPS:
            self._versions.clear()  # another connection committed: what we knew may be wrong

    def accept(self, tx: Transactor, ops: Sequence[Any]) -> bool:
        for op in ops:
            if type(op) is not AppendUpdate and type(op) is not PutOutcome:
                return False
        versions = self._versions
        staged: dict[str, int] = {}
        keys: list[tuple[str, str]] = []
        for op in ops:
            if type(op) is AppendUpdate:
                trip_id = op.trip_id
                current = staged.get(trip_id)
                if current is None:
                    current = versions.get(trip_id)
                    if current is None:
                        current = queries.trip_version(tx.db, trip_id)
                        if current is None:
                            return False  # no such trip: alone, it is refused with UnknownRow
                        versions[trip_id] = current  # true now: no row of it is waiting
                if op.refusal(current) is not None:
                    return False  # alone, it is refused with the same error
                staged[trip_id] = op.version
            else:
                key = (op.trip_id, op.update_id)
                if key in self._outcome_keys or key in keys:
                    return False  # alone, after the rows so far: DuplicateId
                keys.append(key)
        versions.update(staged)
        self._outcome_keys.update(keys)
        for op in ops:
            (self._updates if type(op) is AppendUpdate else self._outcomes).append(op.row())
        return True

    def flush(self, tx: Transactor) -> None:
        updates, outcomes = self._updates, self._outcomes
        self._updates, self._outcomes = [], []
        self._outcome_keys.clear()
        if updates:
            tx.executemany(INSERT_UPDATE_SQL, updates)
        if outcomes:
            tx.executemany(INSERT_OUTCOME_SQL, outcomes)

    def ran(self, ops: Sequence[Any]) -> None:
        versions = self._versions
        for op in ops:
            kind = type(op)
            if kind is AppendUpdate:
                versions[op.trip_id] = op.version  # it ran, so it was above every stored one
            elif kind is SaveSnapshot:
                if op.trip_id in versions:
                    versions[op.trip_id] = max(versions[op.trip_id], op.version)
            elif kind is not PutOutcome and kind is not VersionNeutral:
                versions.clear()  # it may have written anything
                return

    def discard(self) -> None:
        self._versions.clear()
        self._updates.clear()
        self._outcomes.clear()
        self._outcome_keys.clear()
