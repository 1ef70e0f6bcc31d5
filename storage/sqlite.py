"""The SQLite store: one file, one writer thread, one read connection.

Theory of operation:

- :class:`Storage` opens two connections to one file. The write connection
  is migrated (``storage/migrations.py``) and then handed to a
  :class:`~storage.writer.BatchWriter`, whose thread alone uses it: every
  write method returns a :class:`concurrent.futures.Future` that resolves
  once the change is committed and on disk. Appends and outcomes go through
  its bulk path, :class:`~storage.updatelog.LogBatch`. The ``api`` layer awaits them
  through the writer's listener (:meth:`~storage.writer.BatchWriter.add_listener`).
- Reads run directly, in the caller's thread, on the read connection
  (``query_only``), guarded by a lock so any thread may call them. In WAL
  mode a reader never waits for the writer and sees the last commit; reads
  that combine several statements (:meth:`Storage.trip_history`) run inside
  one read transaction, so they see one instant.
- Both connections run with ``journal_mode=WAL`` (kept in the file),
  ``synchronous=FULL`` (a commit returns only after the WAL is fsynced, so
  a power loss cannot take back a confirmed change), ``foreign_keys=ON`` and
  a busy timeout, so other processes on the same file (the CLI) wait for the
  lock instead of failing.
- Storage holds bytes, ints and str only: CRDT updates and states are
  opaque ``bytes``, everything structured is JSON kept as ``str``. It knows
  nothing of pycrdt, the wire protocol or asyncio.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Final, NamedTuple, TypeVar, cast

from sqlite_utils import Database

from tripsage_sync.storage import ops, queries
from tripsage_sync.storage.errors import StorageClosed, StorageError
from tripsage_sync.storage.migrations import migrate, schema_version
from tripsage_sync.storage.queries import (
    ChatMessage,
    LoggedUpdate,
    LogStats,
    PendingConflict,
    Snapshot,
    Trip,
    TripHistory,
)
from tripsage_sync.storage.updatelog import LogBatch
from tripsage_sync.storage.writer import MAX_BATCH_OPS, BatchWriter, WriteOp

__all__ = ["BUSY_TIMEOUT_MS", "FileSizes", "Storage", "connect"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How long a connection waits for another process's lock before failing.
BUSY_TIMEOUT_MS: Final = 5_000
_WAL_RETRY_S: Final = 0.005


class FileSizes(NamedTuple):
    db_bytes: int
    wal_bytes: int
    page_size: int
    page_count: int
    freelist_count: int


def connect(path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Database:
    """Open ``path`` with the pragmas of the module docstring, in WAL mode.

    The connection is in driver autocommit mode (``isolation_level=None``):
    transactions are only those we open explicitly. ``check_same_thread`` is
    off because the writer thread (or the read lock) serializes its use.
    """
    conn = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        db = Database(conn, execute_plugins=False)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = FULL")
        _enable_wal(db, deadline=time.monotonic() + busy_timeout_ms / 1000)
    except BaseException:
        conn.close()
        raise
    return db


def _enable_wal(db: Database, deadline: float) -> None:
    """Switch a new file to WAL, retrying while another process holds it.

    Leaving rollback-journal mode needs an exclusive lock, and SQLite does not
    call the busy handler for it: two processes creating the same file at once
    (the server and the CLI) would otherwise fail with "database is locked".
    """
    while True:
        try:
            mode = cast(str, db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)
            continue
        if mode != "wal":
            raise StorageError(f"cannot use WAL mode here (journal mode {mode!r})")
        return


class Storage:
    """Durable trip update log, snapshots and indexes; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch_ops: int = MAX_BATCH_OPS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._read_lock = threading.Lock()
        self._closed = False
        with contextlib.ExitStack() as on_error:
            write_db = connect(self.path, busy_timeout_ms=busy_timeout_ms)
            on_error.callback(write_db.close)
            version = migrate(write_db)
            self._read_db = self._connect_reader()
            on_error.callback(self._read_db.close)
            #: The writer; its ``commit_count`` and ``queue_depth`` are metrics.
            self.writer = BatchWriter(write_db, max_batch_ops=max_batch_ops, bulk=LogBatch())
            on_error.pop_all()  # opened: the connections now belong to self
        logger.info("opened storage at schema version %d", version)

    def close(self, timeout_s: float | None = None) -> None:
        """Commit every queued write, stop the writer and close both connections."""
        self.writer.close(timeout_s)
        with self._read_lock:
            if not self._closed:
                self._closed = True
                self._read_db.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _reading(self, *, transaction: bool = False) -> Iterator[Database]:
        with self._read_lock:
            if self._closed:
                raise StorageClosed("storage is closed")
            if not transaction:
                yield self._read_db
                return
            self._read_db.execute("BEGIN")
            try:
                yield self._read_db
            finally:
                self._read_db.execute("COMMIT")

    def _connect_reader(self) -> Database:
        db = connect(self.path, busy_timeout_ms=self._busy_timeout_ms)
        db.execute("PRAGMA query_only = ON")
        return db

    def shrink_memory(self) -> None:
        """Open the read connection anew: its page cache, statement cache and the weakref
        ``sqlite3`` keeps per cursor would pin allocator arenas of unloaded rooms."""
        with self._read_lock:
            if self._closed:
                raise StorageClosed("storage is closed")
            fresh = self._connect_reader()
            stale, self._read_db = self._read_db, fresh
        stale.close()

    # -- writes: each returns a Future resolved once durable ----------------

    def submit(self, op: WriteOp[_T]) -> Future[_T]:
        """Run any write operation (see ``storage/ops.py``) on the writer."""
        return self.writer.submit(op)

    def submit_all(self, write_ops: Iterable[WriteOp[object]]) -> Future[list[object]]:
        """Run several write operations as one all-or-nothing unit."""
        return self.writer.submit_all(write_ops)

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

    # -- maintenance ---------------------------------------------------------

    def schema_version(self) -> int:
        with self._reading() as db:
            return schema_version(db)

    def integrity_check(self) -> list[str]:
        """Problems found by ``integrity_check`` and ``foreign_key_check``; empty if none."""
        with self._reading() as db:
            problems = [cast(str, row[0]) for row in db.execute("PRAGMA integrity_check")]
            if problems == ["ok"]:
                problems = []
            problems.extend(
                f"foreign key: {table} row {rowid} -> {parent}"
                for table, rowid, parent, _ in db.execute("PRAGMA foreign_key_check")
            )
        logger.info("integrity check found %d problems", len(problems))
        return problems

    def backup(self, path: str | Path) -> None:
        """Copy a consistent image of the last commit to ``path`` (sqlite3 backup API)."""
        target = sqlite3.connect(path)
        try:
            with self._reading() as db:
                db.conn.backup(target)
        finally:
            target.close()
        logger.info("backed up storage (%d bytes)", os.path.getsize(path))

    def sizes(self) -> FileSizes:
        wal = Path(f"{self.path}-wal")
        with self._reading() as db:
            page_size, page_count, freelist_count = (
                cast(int, db.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("page_size", "page_count", "freelist_count")
            )
        return FileSizes(
            db_bytes=self.path.stat().st_size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            page_size=page_size,
            page_count=page_count,
            freelist_count=freelist_count,
        )
