"""What every store offers, whatever the engine: the facade ``api`` uses.

Theory of operation: a store has one :class:`~storage.writer.BatchWriter`
(one thread, group commit) for every write and one read connection, guarded
by a lock so any thread may read. Every write method returns a
:class:`concurrent.futures.Future` that resolves once the change is committed
and durable; every read runs at once in the caller's thread and sees the last
commit. The write operations and queries are the same for every engine
(``storage/ops.py``, ``storage/queries.py``); an engine's subclass opens the
connections and adds what only it can do (``storage/sqlite.py``,
``storage/postgres.py``).

Storage holds bytes, ints and str only: CRDT updates and states are opaque
``bytes``, everything structured is JSON kept as ``str``. It knows nothing of
pycrdt, the wire protocol or asyncio.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import ClassVar, NamedTuple, Self, TypeVar

from tripsage_sync.storage import ops, queries
from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.errors import UNAVAILABLE, StorageClosed
from tripsage_sync.storage.queries import (
    ChatMessage,
    LoggedUpdate,
    LogStats,
    PendingConflict,
    Snapshot,
    Trip,
    TripHistory,
)
from tripsage_sync.storage.writer import BatchWriter, WriteOp

__all__ = ["FileSizes", "Store"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class FileSizes(NamedTuple):
    """How big the database is (for SQLite, its file and WAL; for PostgreSQL, its relations)."""

    db_bytes: int
    wal_bytes: int
    page_size: int
    page_count: int
    freelist_count: int


class Store(abc.ABC):
    """Durable trip update log, snapshots and indexes; see the module docstring.

    A subclass sets :attr:`writer` and :attr:`_read_db`, and implements the
    maintenance methods at the end.
    """

    #: What opens a read transaction that sees one instant.
    _BEGIN_READ: ClassVar[str] = "BEGIN"
    writer: BatchWriter
    _read_db: Connection

    def __init__(self) -> None:
        self._read_lock = threading.Lock()
        self._closed = False

    def close(self, timeout_s: float | None = None) -> None:
        """Commit every queued write, stop the writer and close both connections."""
        self.writer.close(timeout_s)
        with self._read_lock:
            if not self._closed:
                self._closed = True
                self._close_reader()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> bool:
        """Whether the database answers now (``/health``)."""
        try:
            with self._reading() as db:
                db.execute("SELECT 1").fetchone()
        except UNAVAILABLE:
            return False
        return True

    def reading(
        self, *, transaction: bool = False
    ) -> contextlib.AbstractContextManager[Connection]:
        """The read connection, for storage's own tools (``storage/copy.py``)."""
        return self._reading(transaction=transaction)

    def after_copy(self) -> None:  # noqa: B027 - a hook: most engines need nothing here
        """After rows were copied in with their keys: what the engine must catch up on."""

    @contextlib.contextmanager
    def _reading(self, *, transaction: bool = False) -> Iterator[Connection]:
        with self._read_lock:
            if self._closed:
                raise StorageClosed("storage is closed")
            self._before_read()
            if not transaction:
                yield self._read_db
                return
            self._read_db.execute(self._BEGIN_READ)
            try:
                yield self._read_db
            finally:
                self._read_db.execute("COMMIT")

    # -- writes: each returns a Future resolved once durable ----------------

    def submit(self, op: WriteOp[_T]) -> Future[_T]:
        """Run any write operation (see ``storage/ops.py``) on the writer."""
        return self.writer.submit(op)

    def submit_all(
        self, write_ops: Iterable[WriteOp[object]], *, chain: int | None = None
    ) -> Future[list[object]]:
        """Run several write operations as one all-or-nothing unit; with a ``chain``,
        only if no earlier unit of that chain failed (``BatchWriter.submit_all``)."""
        return self.writer.submit_all(write_ops, chain=chain)

    def set_meta_if_absent(self, key: str, value: str) -> Future[str]:
        return self.submit(ops.set_meta_if_absent(key, value))

    def claim_chat_session(self, session_id: str, user_id: str, now_ms: int) -> Future[str]:
        return self.submit(ops.claim_chat_session(session_id, user_id, now_ms))

    def share_chat_session(self, session_id: str, user_id: str) -> Future[None]:
        return self.submit(ops.share_chat_session(session_id, user_id))

    def unshare_chat_session(self, session_id: str, user_id: str) -> Future[bool]:
        return self.submit(ops.unshare_chat_session(session_id, user_id))

    def append_chat_message(
        self,
        session_id: str,
        message_id: str,
        role: str,
        user_id: str | None,
        content: str,
        payload_json: str,
        now_ms: int,
    ) -> Future[int]:
        return self.submit(
            ops.append_chat_message(
                session_id, message_id, role, user_id, content, payload_json, now_ms
            )
        )

    def create_trip(
        self, trip_id: str, owner_id: str, manual_fields_json: str, now_ms: int
    ) -> Future[None]:
        return self.submit(ops.create_trip(trip_id, owner_id, manual_fields_json, now_ms))

    def set_collaborator(self, trip_id: str, user_id: str, permission: str) -> Future[None]:
        return self.submit(ops.set_collaborator(trip_id, user_id, permission))

    def remove_collaborator(self, trip_id: str, user_id: str) -> Future[bool]:
        return self.submit(ops.remove_collaborator(trip_id, user_id))

    def append_update(
        self, trip_id: str, version: int, update: bytes, meta_json: str, now_ms: int
    ) -> Future[None]:
        return self.submit(ops.append_update(trip_id, version, update, meta_json, now_ms))

    def save_snapshot(
        self,
        trip_id: str,
        version: int,
        state: bytes,
        meta_json: str,
        now_ms: int,
        prune_log_up_to_version: int | None = None,
    ) -> Future[int]:
        return self.submit(
            ops.save_snapshot(trip_id, version, state, meta_json, now_ms, prune_log_up_to_version)
        )

    def put_outcome(
        self, trip_id: str, update_id: str, outcome_json: str, now_ms: int
    ) -> Future[None]:
        return self.submit(ops.put_outcome(trip_id, update_id, outcome_json, now_ms))

    def prune_outcomes(self, before_ms: int) -> Future[int]:
        return self.submit(ops.prune_outcomes(before_ms))

    def put_conflict(
        self, trip_id: str, conflict_id: str, state_json: str, status: str
    ) -> Future[None]:
        return self.submit(ops.put_conflict(trip_id, conflict_id, state_json, status))

    def set_conflict_status(self, conflict_id: str, status: str) -> Future[bool]:
        return self.submit(ops.set_conflict_status(conflict_id, status))

    # -- reads: direct, from the last commit ---------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._reading() as db:
            return queries.get_meta(db, key)

    def chat_session_owner(self, session_id: str) -> str | None:
        with self._reading() as db:
            return queries.chat_session_owner(db, session_id)

    def chat_session_members(self, session_id: str) -> set[str]:
        with self._reading() as db:
            return queries.chat_session_members(db, session_id)

    def chat_messages(
        self, session_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[ChatMessage]:
        with self._reading() as db:
            return queries.chat_messages(db, session_id, after_seq, limit)

    def chat_messages_before(
        self, session_id: str, *, before_seq: int, limit: int = 100
    ) -> list[ChatMessage]:
        with self._reading() as db:
            return queries.chat_messages_before(db, session_id, before_seq, limit)

    def chat_message(self, message_id: str) -> ChatMessage | None:
        with self._reading() as db:
            return queries.chat_message(db, message_id)

    def chat_message_seq(self, message_id: str) -> int | None:
        with self._reading() as db:
            return queries.chat_message_seq(db, message_id)

    def get_trip(self, trip_id: str) -> Trip | None:
        with self._reading() as db:
            return queries.get_trip(db, trip_id)

    def trip_ids(self) -> list[str]:
        with self._reading() as db:
            return queries.trip_ids(db)

    def trips_for_user(self, user_id: str) -> list[Trip]:
        with self._reading() as db:
            return queries.trips_for_user(db, user_id)

    def collaborators(self, trip_id: str) -> dict[str, str]:
        with self._reading() as db:
            return queries.collaborators(db, trip_id)

    def permission(self, trip_id: str, user_id: str) -> str | None:
        with self._reading() as db:
            return queries.permission(db, trip_id, user_id)

    def updates_since(
        self, trip_id: str, after_version: int, up_to_version: int | None = None
    ) -> list[LoggedUpdate]:
        with self._reading() as db:
            return queries.updates_since(db, trip_id, after_version, up_to_version)

    def latest_snapshot(self, trip_id: str) -> Snapshot | None:
        with self._reading() as db:
            return queries.latest_snapshot(db, trip_id)

    def max_version(self, trip_id: str) -> int:
        with self._reading() as db:
            return queries.max_version(db, trip_id)

    def trip_history(self, trip_id: str) -> TripHistory:
        """Snapshot plus the updates after it, read in one transaction (what a load needs)."""
        with self._reading(transaction=True) as db:
            return queries.trip_history(db, trip_id)

    def log_stats(self, trip_id: str) -> LogStats:
        with self._reading() as db:
            return queries.log_stats(db, trip_id)

    def get_outcome(self, trip_id: str, update_id: str) -> str | None:
        with self._reading() as db:
            return queries.get_outcome(db, trip_id, update_id)

    def outcome_ids(self, trip_id: str, limit: int) -> list[str]:
        with self._reading() as db:
            return queries.outcome_ids(db, trip_id, limit)

    def pending_conflicts(self, trip_id: str | None = None) -> list[PendingConflict]:
        with self._reading() as db:
            return queries.pending_conflicts(db, trip_id)

    # -- maintenance: each engine's own ---------------------------------------

    def _before_read(self) -> None:  # noqa: B027 - a hook: most engines need nothing here
        """Called under the read lock before each read (PostgreSQL: connect again if lost)."""

    @abc.abstractmethod
    def _close_reader(self) -> None: ...

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the data is, for humans and logs (never a password)."""

    @abc.abstractmethod
    def shrink_memory(self) -> None:
        """Give back what the read connection holds of rooms that were unloaded."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def integrity_check(self) -> list[str]:
        """Problems found in the stored data; empty if none."""

    @abc.abstractmethod
    def backup(self, path: str | Path) -> None:
        """Copy a consistent image of the last commit to ``path``."""

    @abc.abstractmethod
    def sizes(self) -> FileSizes: ...
