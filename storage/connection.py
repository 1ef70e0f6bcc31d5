"""What the storage code needs of a database connection, whatever the engine.

Theory of operation: the write operations (``storage/ops.py``,
``storage/updatelog.py``) and the read queries (``storage/queries.py``) are
written once, in SQL both engines run, against :class:`Connection`: one
``execute`` with ``?`` placeholders, as ``sqlite3`` spells them. SQLite hands
them its ``sqlite_utils.Database`` as it is; PostgreSQL hands them an adapter
that spells the placeholders its way (``storage/postgres.py``).

The writer thread (``storage/writer.py``) drives its transactions through a
:class:`Transactor`, which each engine implements once: ``begin`` takes the
write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL serializes writers with row
locks and unique keys), savepoints are plain SQL in both, and
``others_committed`` says whether another connection may have written since
the last transaction (what the update log's version cache must know). A
:class:`BulkInsert` writes some of a batch's operations together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

__all__ = ["BulkInsert", "Connection", "Cursor", "Transactor", "WriteOp"]

_T = TypeVar("_T")


class Cursor(Protocol):
    """The result of :meth:`Connection.execute`."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection as write operations and queries use it: SQL with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class Transactor(Protocol):
    """The write connection as the writer thread drives it (one thread only)."""

    @property
    def error(self) -> type[Exception]:
        """The engine's error base class: what a failed statement raises."""
        ...

    @property
    def db(self) -> Connection:
        """What write operations are called with."""
        ...

    @property
    def in_transaction(self) -> bool: ...

    def begin(self) -> None:
        """Open a write transaction."""

    def commit(self) -> None: ...

    def rollback(self) -> None:
        """End the transaction if one is open; quiet if none is."""

    def savepoint(self) -> None: ...

    def release(self) -> None: ...

    def rollback_to(self) -> None:
        """Undo the savepoint's writes and release it."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None: ...

    def others_committed(self) -> bool:
        """Whether another connection may have committed since the last call."""
        ...

    def close(self) -> None: ...


#: A write operation: runs on the write connection inside a savepoint.
WriteOp: TypeAlias = Callable[[Connection], _T]


class BulkInsert(Protocol):
    """Writes some jobs of a batch together; the writer thread calls it, in this order.

    ``begin`` once the batch's transaction holds the write lock; ``accept``
    for each job, which takes the job's rows if it is sure they can be
    written (each of its operations then has the result ``None``); ``flush``
    to write the rows taken, which raises if they cannot be; ``ran`` after a
    job that ran alone succeeded; ``discard`` when the rows taken or written
    were not committed after all (a failed flush, a lost transaction).
    """

    def begin(self, tx: Transactor) -> None: ...

    def accept(self, tx: Transactor, ops: Sequence[WriteOp[Any]]) -> bool: ...

    def flush(self, tx: Transactor) -> None: ...

    def ran(self, ops: Sequence[WriteOp[Any]]) -> None: ...

    def discard(self) -> None: ...
