"""The SQLite store: one file, one writer thread, one read connection.

Theory of operation:

- :class:`Storage` (a :class:`~storage.store.Store`) opens two connections
  to one file. The write connection is migrated (``storage/migrations.py``) and then handed to a
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
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, cast

from sqlite_utils import Database

from tripsage_sync.storage.errors import StorageClosed, StorageError
from tripsage_sync.storage.migrations import migrate, schema_version
from tripsage_sync.storage.store import FileSizes, Store
from tripsage_sync.storage.updatelog import LogBatch
from tripsage_sync.storage.writer import MAX_BATCH_OPS, BatchWriter

__all__ = ["BUSY_TIMEOUT_MS", "FileSizes", "SqliteTransactor", "Storage", "connect"]

logger = logging.getLogger(__name__)

#: How long a connection waits for another process's lock before failing.
BUSY_TIMEOUT_MS: Final = 5_000
_WAL_RETRY_S: Final = 0.005


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


class SqliteTransactor:
    """The writer thread's transactions on a SQLite connection (``storage/connection.py``)."""

    error = sqlite3.Error

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = db.conn
        # The writer's own statements go through one cursor: sqlite3 keeps a weak
        # reference to every cursor a connection makes (pruned every 200), small
        # objects that would outlive the memory around them.
        self._cursor = db.conn.cursor()
        self._data_version: int | None = None

    @property
    def db(self) -> Database:
        return self._db

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def begin(self) -> None:
        self._cursor.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._cursor.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.rollback()

    def savepoint(self) -> None:
        self._cursor.execute("SAVEPOINT write_op")

    def release(self) -> None:
        self._cursor.execute("RELEASE write_op")

    def rollback_to(self) -> None:
        self._cursor.execute("ROLLBACK TO write_op")
        self._cursor.execute("RELEASE write_op")

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        self._cursor.executemany(sql, rows)

    def others_committed(self) -> bool:
        """``PRAGMA data_version`` changed: another connection committed to the file."""
        data_version = cast(int, self._cursor.execute("PRAGMA data_version").fetchone()[0])
        changed = data_version != self._data_version
        self._data_version = data_version
        return changed

    def close(self) -> None:
        self._db.close()


class Storage(Store):
    """The SQLite store; see the module docstring."""

    _read_db: Database

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch_ops: int = MAX_BATCH_OPS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        with contextlib.ExitStack() as on_error:
            write_db = connect(self.path, busy_timeout_ms=busy_timeout_ms)
            on_error.callback(write_db.close)
            version = migrate(write_db)
            self._read_db = self._connect_reader()
            on_error.callback(self._read_db.close)
            #: The writer; its ``commit_count`` and ``queue_depth`` are metrics.
            self.writer = BatchWriter(
                SqliteTransactor(write_db), max_batch_ops=max_batch_ops, bulk=LogBatch()
            )
            on_error.pop_all()  # opened: the connections now belong to self
        logger.info("opened storage at schema version %d", version)

    def _connect_reader(self) -> Database:
        db = connect(self.path, busy_timeout_ms=self._busy_timeout_ms)
        db.execute("PRAGMA query_only = ON")
        return db

    @property
    def where(self) -> str:
        return str(self.path)

    def _close_reader(self) -> None:
        self._read_db.close()

    @contextlib.contextmanager
    def _reading_file(self) -> Iterator[Database]:
        with self._reading():
            yield self._read_db

    def shrink_memory(self) -> None:
        """Open the read connection anew: its page cache, statement cache and the weakref
        ``sqlite3`` keeps per cursor would pin allocator arenas of unloaded rooms."""
        with self._read_lock:
            if self._closed:
                raise StorageClosed("storage is closed")
            fresh = self._connect_reader()
            stale, self._read_db = self._read_db, fresh
        stale.close()

    # -- maintenance ---------------------------------------------------------

    def schema_version(self) -> int:
        with self._reading_file() as db:
            return schema_version(db)

    def integrity_check(self) -> list[str]:
        """Problems found by ``integrity_check`` and ``foreign_key_check``; empty if none."""
        with self._reading_file() as db:
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
            with self._reading_file() as db:
                db.conn.backup(target)
        finally:
            target.close()
        logger.info("backed up storage (%d bytes)", os.path.getsize(path))

    def sizes(self) -> FileSizes:
        wal = Path(f"{self.path}-wal")
        with self._reading_file() as db:
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
