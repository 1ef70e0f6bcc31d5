"""Copying every row of one store into another (``tripsage-sync db copy``), and checking it.

Theory of operation:

- :data:`TABLES` lists every table with its columns and primary key, parents
  before children, so foreign keys hold at every commit. Both engines have
  the same tables at the same schema version (``storage/pgschema.py``).
- :func:`copy_rows` reads each table from the source's read connection in
  batches of :data:`BATCH_ROWS`, in primary key order (each batch one
  statement starting after the last key, so memory stays flat), and writes
  each batch through the target's writer as one transaction, every row
  ``INSERT ... ON CONFLICT DO NOTHING``: a copy that stopped half-way (a
  crash, Ctrl-C, a lost connection) is run again and skips what it already
  wrote, so it is resumable, and a row never lands twice. A row the target
  holds with other contents is not overwritten; :func:`compare` reports it.
- :func:`compare` digests each table on both sides: the row count and the
  sum of each row's SHA-256 (order-free, so the engines' different
  collations do not matter).
- The source should be quiet (no server writing to it): rows written after
  their table was copied are not copied, and :func:`compare` says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.store import Store

__all__ = ["BATCH_ROWS", "TABLES", "Table", "TableDigest", "compare", "copy_rows"]

#: Rows written per transaction of the target.
BATCH_ROWS: Final = 1000

#: ``progress(table, rows_done, rows_total)``, after each batch.
Progress = Callable[[str, int, int], None]


class Table(NamedTuple):
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    def select(self) -> str:
        return f"SELECT {', '.join(self.quoted)} FROM {self.name}"

    def insert(self) -> str:
        marks = ", ".join("?" for _ in self.columns)
        return (
            f"INSERT INTO {self.name} ({', '.join(self.quoted)}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(self.key)}) DO NOTHING"
        )

    @property
    def quoted(self) -> tuple[str, ...]:
        return tuple(f'"{column}"' for column in self.columns)


TABLES: Final = (
    Table("meta", ("key", "value"), ("key",)),
    Table("trips", ("trip_id", "owner_id", "manual_fields", "created_ms"), ("trip_id",)),
    Table("trip_collaborators", ("trip_id", "user_id", "permission"), ("trip_id", "user_id")),
    Table("trip_snapshots", ("trip_id", "version", "state", "meta", "created_ms"), ("trip_id",)),
    Table(
        "trip_updates",
        ("trip_id", "version", "update", "meta", "created_ms"),
        ("trip_id", "version"),
    ),
    Table(
        "update_outcomes",
        ("trip_id", "update_id", "outcome", "created_ms"),
        ("trip_id", "update_id"),
    ),
    Table("trip_conflicts", ("conflict_id", "trip_id", "state", "status"), ("conflict_id",)),
    Table("chat_sessions", ("session_id", "owner_id", "created_ms"), ("session_id",)),
    Table("chat_session_members", ("session_id", "user_id"), ("session_id", "user_id")),
    Table(
        "chat_messages",
        ("seq", "message_id", "session_id", "role", "user_id", "content", "payload", "created_ms"),
        ("seq",),
    ),
)


class TableDigest(NamedTuple):
    rows: int
    digest: int


def _batches(store: Store, table: Table) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in primary key order, a batch per statement (keyset pagination)."""
    keys = ", ".join(table.key)
    at = [table.columns.index(column) for column in table.key]
    after: tuple[Any, ...] | None = None
    while True:
        sql, params = table.select(), ()
        if after is not None:
            marks = ", ".join("?" for _ in after)
            sql, params = f"{sql} WHERE ({keys}) > ({marks})", after
        with store.reading() as db:
            rows = db.execute(f"{sql} ORDER BY {keys} LIMIT {BATCH_ROWS:d}", params).fetchall()
        if not rows:
            return
        batch = [tuple(row) for row in rows]
        yield batch
        after = tuple(batch[-1][i] for i in at)


def _count(store: Store, table: Table) -> int:
    with store.reading() as db:
        return int(db.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])


def _inserting(sql: str, rows: list[tuple[Any, ...]]) -> Callable[[Connection], None]:
    def write(db: Connection) -> None:
        for row in rows:
            db.execute(sql, row)

    return write


def copy_rows(source: Store, target: Store, progress: Progress | None = None) -> int:
    """Copy every row of ``source`` that ``target`` lacks; the number of rows read."""
    read = 0
    for table in TABLES:
        total, done = _count(source, table), 0
        sql = table.insert()
        for rows in _batches(source, table):
            target.submit(_inserting(sql, rows)).result()
            done += len(rows)
            if progress is not None:
                progress(table.name, done, total)
        if progress is not None and total == 0:
            progress(table.name, 0, 0)
        read += done
    target.after_copy()
    return read


def _row_hash(row: tuple[Any, ...]) -> int:
    parts = []
    for value in row:
        if value is None:
            parts.append(b"n")
        elif isinstance(value, bytes | memoryview):
            parts.append(b"b" + bytes(value).hex().encode())
        elif isinstance(value, int):
            parts.append(b"i%d" % value)
        else:
            parts.append(b"s" + str(value).encode("utf-8", "surrogatepass"))
    return int.from_bytes(hashlib.sha256(b"\x1f".join(parts)).digest(), "big")


def digest(store: Store, table: Table) -> TableDigest:
    rows, total = 0, 0
    for batch in _batches(store, table):
        rows += len(batch)
        total += sum(_row_hash(row) for row in batch)
    return TableDigest(rows, total % (1 << 256))


def compare(source: Store, target: Store) -> list[str]:
    """How the two stores differ, table by table; empty if they hold the same rows."""
    problems = []
    for table in TABLES:
        ours, theirs = digest(source, table), digest(target, table)
        if ours.rows != theirs.rows:
            problems.append(f"{table.name}: {ours.rows} rows in the source, {theirs.rows} copied")
        elif ours.digest != theirs.digest:
            problems.append(f"{table.name}: the rows differ ({ours.rows} on each side)")
    return problems
