"""The PostgreSQL store: the shared durable store of a cluster (``docs/cluster.md``).

Theory of operation:

- :class:`PostgresStorage` is a :class:`~storage.store.Store` like the SQLite
  one: one writer thread with its own connection, group-committing every
  write (``storage/writer.py``), and one read connection behind a lock. The
  write operations and queries are the SQLite ones (``storage/ops.py``,
  ``storage/queries.py``): :class:`PgConnection` runs their SQL, spelling
  ``?`` placeholders as psycopg's ``%s``.
- Durability: a returned ``COMMIT`` is flushed to PostgreSQL's WAL
  (``synchronous_commit`` is set ``on`` for our sessions, whatever the
  server's default), so a resolved future survives kill -9 of any node; the
  commit is the point of no return.
- Several nodes write at once. Where two nodes append the same version of a
  trip, the primary key refuses the second: ``storage/updatelog.py`` turns
  that into :class:`VersionConflict`. So the update log's version cache can be
  kept between batches (emptied every :data:`VERSION_CACHE_S`,
  :meth:`PgTransactor.others_committed`): it saves a read per trip and batch.
- A lost connection (PostgreSQL restarted, a network cut) fails the reads
  and writes that were using it, with errors that
  :func:`~storage.errors.is_unavailable` recognizes, and the next read or
  batch connects again: no restart.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import psycopg
from psycopg.pq import TransactionStatus

from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.errors import StorageClosed, StorageError
from tripsage_sync.storage.pgschema import pg_migrate, pg_schema_version
from tripsage_sync.storage.store import FileSizes, Store
from tripsage_sync.storage.updatelog import LogBatch
from tripsage_sync.storage.writer import MAX_BATCH_OPS, BatchWriter

__all__ = [
    "CONNECT_TIMEOUT_S",
    "RECONNECT_PAUSE_S",
    "VERSION_CACHE_S",
    "PgConnection",
    "PgTransactor",
    "PostgresStorage",
    "pg_connect",
]

logger = logging.getLogger(__name__)

#: How long opening a connection may take before it fails.
CONNECT_TIMEOUT_S: Final = 2
#: How long the writer trusts its version cache before reading the versions again.
VERSION_CACHE_S: Final = 60.0
#: After a failed connect of the read connection, how long reads fail at once.
RECONNECT_PAUSE_S: Final = 1.0
_ONE_ROW_INSERT: Final = re.compile(
    r"\s*INSERT\s+INTO\s+(?P<table>\w+)\s*\((?P<columns>[^()]*)\)\s+VALUES"
    r"\s*(?P<group>\([?,\s]+\))\s*",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg spells them (our SQL has no literal ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


@functools.lru_cache(maxsize=64)
def _one_row_insert(sql: str) -> tuple[str, tuple[str, ...]] | None:
    """The table and columns of ``sql``, if it is an ``INSERT ... VALUES (?, ...)``."""
    match = _ONE_ROW_INSERT.fullmatch(sql)
    if match is None:
        return None
    columns = tuple(c.strip() for c in match["columns"].split(","))
    if match["group"].count("?") != len(columns):
        return None
    return match["table"], columns


def pg_connect(url: str, *, read_only: bool = False) -> psycopg.Connection[Any]:
    """Open ``url`` in autocommit mode (transactions are those we open), durable commits."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        conn.execute("SET synchronous_commit = on")
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
    except BaseException:
        conn.close()
        raise
    return conn


class PgConnection:
    """A psycopg connection as the storage SQL uses it (``storage/connection.py``)."""

    __slots__ = ("_unnest", "conn")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._unnest: dict[str, str] = {}  # insert SQL -> its many-row statement

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self.conn.execute(_pg_sql(sql), parameters)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        """An ``INSERT ... VALUES (?, ...)`` of many rows as one statement whose text does
        not depend on the number of rows (``unnest`` of one array per column), so it is
        parsed and planned once per connection (psycopg prepares it) and sent in one round
        trip per batch of the update log; other SQL row by row."""
        insert = _one_row_insert(sql)
        if insert is None or len(rows) < 2:
            with self.conn.cursor() as cursor:
                cursor.executemany(_pg_sql(sql), rows)
            return
        table, columns = insert
        statement = self._unnest.get(sql)
        if statement is None:
            types = dict(
                self.conn.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    (table,),
                ).fetchall()
            )
            arrays = ", ".join(f"%s::{types[c.strip(chr(34))]}[]" for c in columns)
            statement = f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
            self._unnest[sql] = statement
        self.conn.execute(statement, [list(column) for column in zip(*rows, strict=True)])

    @property
    def usable(self) -> bool:
        return not self.conn.closed and not self.conn.broken

    def close(self) -> None:
        self.conn.close()


class PgTransactor:
    """The writer thread's transactions on PostgreSQL; connects again after a lost link."""

    error = psycopg.Error

    def __init__(self, url: str, db: PgConnection) -> None:
        self._url = url
        self._db = db
        self._cache_since = float("-inf")

    @property
    def db(self) -> PgConnection:
        return self._db

    @property
    def in_transaction(self) -> bool:
        return self._db.conn.info.transaction_status != TransactionStatus.IDLE

    def begin(self) -> None:
        if not self._db.usable:
            self._db.close()
            self._db = PgConnection(pg_connect(self._url))
            logger.info("storage writer connected to PostgreSQL again")
        self._db.execute("BEGIN")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.usable and self.in_transaction:
            self._db.execute("ROLLBACK")

    def savepoint(self) -> None:
        self._db.execute("SAVEPOINT write_op")

    def release(self) -> None:
        self._db.execute("RELEASE write_op")

    def rollback_to(self) -> None:
        self._db.execute("ROLLBACK TO write_op")
        self._db.execute("RELEASE write_op")

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        self._db.executemany(sql, rows)

    def others_committed(self) -> bool:
        """Every :data:`VERSION_CACHE_S`: other nodes write to the same database.

        In between, the update log's version cache may lag behind another node's
        appends; that costs nothing wrong: an append the cache takes for the next
        version while another node wrote it is refused by the primary key (and then
        :class:`VersionConflict`), and one the cache refuses runs alone against the
        table. The cache is only ever behind by recent versions, never by versions a
        snapshot pruned (history is kept for days), so a pruned version cannot
        come back.
        """
        now = time.monotonic()
        if now - self._cache_since < VERSION_CACHE_S:
            return False
        self._cache_since = now
        return True

    def close(self) -> None:
        self._db.close()


class PostgresStorage(Store):
    """The PostgreSQL store; see the module docstring."""

    _BEGIN_READ: ClassVar[str] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    _read_db: PgConnection

    def __init__(self, url: str, *, max_batch_ops: int = MAX_BATCH_OPS) -> None:
        super().__init__()
        self.url = url
        with contextlib.ExitStack() as on_error:
            write_db = PgConnection(pg_connect(url))
            on_error.callback(write_db.close)
            version = pg_migrate(write_db)
            self._read_db = PgConnection(pg_connect(url, read_only=True))
            on_error.callback(self._read_db.close)
            self._next_connect = 0.0
            info = self._read_db.conn.info
            self._where = f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"
            #: The writer; its ``commit_count`` and ``queue_depth`` are metrics.
            self.writer = BatchWriter(
                PgTransactor(url, write_db), max_batch_ops=max_batch_ops, bulk=LogBatch()
            )
            on_error.pop_all()
        logger.info("opened PostgreSQL storage at schema version %d", version)

    @property
    def where(self) -> str:
        """The URL without its password."""
        return self._where

    def _before_read(self) -> None:
        """A new read connection if the old one was lost (under the read lock).

        Reads run on the caller's thread (the event loop): while PostgreSQL is
        unreachable, a failed attempt is not repeated for :data:`RECONNECT_PAUSE_S`,
        so that reads fail at once instead of each waiting for a connect timeout.
        """
        if self._read_db.usable:
            return
        now = time.monotonic()
        if now < self._next_connect:
            raise psycopg.OperationalError("PostgreSQL is unreachable (connecting again soon)")
        self._read_db.close()
        try:
            self._read_db = PgConnection(pg_connect(self.url, read_only=True))
        except psycopg.OperationalError:
            self._next_connect = time.monotonic() + RECONNECT_PAUSE_S
            raise
        logger.info("storage reader connected to PostgreSQL again")

    def after_copy(self) -> None:
        """Chat messages came with their ``seq``: the identity continues after the highest."""

        def op(db: Connection) -> None:
            db.execute(
                "SELECT setval(pg_get_serial_sequence('chat_messages', 'seq'),"
                " coalesce((SELECT max(seq) FROM chat_messages), 0) + 1, false)"
            )

        self.submit(op).result()

    def _close_reader(self) -> None:
        self._read_db.close()

    def shrink_memory(self) -> None:
        """Nothing to give back: the server holds the pages, not this process."""
        with self._read_lock:
            if self._closed:
                raise StorageClosed("storage is closed")

    def schema_version(self) -> int:
        with self._reading() as db:
            return pg_schema_version(db)

    def integrity_check(self) -> list[str]:
        """PostgreSQL enforces every key and reference itself: only its own catalog errors."""
        with self._reading() as db:
            db.execute("SELECT count(*) FROM trips").fetchone()
        return []

    def backup(self, path: str | Path) -> None:
        raise StorageError("back up a PostgreSQL database with pg_dump, or `db copy` to a file")

    def sizes(self) -> FileSizes:
        with self._reading() as db:
            total, block = db.execute(
                "SELECT pg_database_size(current_database()), current_setting('block_size')::bigint"
            ).fetchone()
        return FileSizes(
            db_bytes=int(total),
            wal_bytes=0,
            page_size=int(block),
            page_count=int(total) // int(block),
            freelist_count=0,
        )
