"""BatchWriter: group commit, per-operation savepoints, durability, drain on close."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.storage.helpers import WriterGate
from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.errors import ChainBroken, StorageClosed
from tripsage_sync.storage.sqlite import SqliteTransactor, connect
from tripsage_sync.storage.writer import BatchWriter, WriteOp

SCHEMA = """
CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE) STRICT;
CREATE TRIGGER items_doom BEFORE INSERT ON items WHEN new.value = 'doom'
BEGIN SELECT RAISE(ROLLBACK, 'doomed'); END;
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    db = connect(tmp_path / "w.db")
    db.executescript(SCHEMA)
    db.close()
    return tmp_path / "w.db"


@pytest.fixture
def writer(path: Path) -> Iterator[BatchWriter]:
    writer = BatchWriter(SqliteTransactor(connect(path)))
    try:
        yield writer
    finally:
        writer.close()


def insert(value: str) -> WriteOp[int]:
    def op(db: Connection) -> int:
        row = db.execute("INSERT INTO items (value) VALUES (?) RETURNING id", (value,)).fetchone()
        return int(row[0])

    return op


def fail(db: Connection) -> None:
    raise ValueError("refused")


def stored_values(path: Path) -> list[str]:
    """What a brand-new connection sees: only committed data."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT value FROM items ORDER BY id")]
    finally:
        conn.close()


def test_submit_returns_result(writer: BatchWriter, path: Path) -> None:
    assert writer.submit(insert("a")).result() == 1
    assert stored_values(path) == ["a"]
    assert writer.commit_count == 1
    assert writer.op_count == 1


def test_concurrent_submits_share_commits(writer: BatchWriter, path: Path) -> None:
    gate = WriterGate(writer)
    futures: list[Future[int]] = []
    lock = threading.Lock()

    def submitter(thread: int) -> None:
        for n in range(50):
            future = writer.submit(insert(f"{thread}-{n}"))
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gate.release()
    assert len({future.result(10) for future in futures}) == 400
    # The gate's commit, then 400 queued ops at most 256 per transaction: two
    # commits, not 400.
    assert writer.commit_count == 1 + 2
    assert writer.op_count == 1 + 400
    writer.close()
    assert len(stored_values(path)) == 400


def test_batch_size_is_bounded(path: Path) -> None:
    writer = BatchWriter(SqliteTransactor(connect(path)), max_batch_ops=10)
    try:
        gate = WriterGate(writer)
        futures = [writer.submit(insert(str(n))) for n in range(25)]
        gate.release()
        for future in futures:
            future.result(10)
        assert writer.commit_count == 1 + 3  # the gate, then 10 + 10 + 5
    finally:
        writer.close()


def test_failing_op_does_not_poison_its_batch(writer: BatchWriter, path: Path) -> None:
    gate = WriterGate(writer)
    first = writer.submit(insert("a"))
    bad = writer.submit(fail)
    duplicate = writer.submit(insert("a"))  # UNIQUE violation after "a" in the same batch
    last = writer.submit(insert("b"))
    gate.release()
    assert first.result(10) == 1
    assert last.result(10) == 2
    with pytest.raises(ValueError, match="refused"):
        bad.result(10)
    with pytest.raises(sqlite3.IntegrityError):
        duplicate.result(10)
    assert writer.commit_count == 1 + 1  # the gate's, then one for the whole batch
    assert stored_values(path) == ["a", "b"]


def test_op_that_ends_the_transaction_is_failed_alone(writer: BatchWriter, path: Path) -> None:
    gate = WriterGate(writer)
    before = writer.submit(insert("a"))
    doomed = writer.submit(insert("doom"))  # RAISE(ROLLBACK) undoes the whole transaction
    after = writer.submit(insert("b"))
    gate.release()
    with pytest.raises(sqlite3.IntegrityError, match="doomed"):
        doomed.result(10)
    assert before.result(10) == 1
    assert after.result(10) == 2
    assert stored_values(path) == ["a", "b"]


def test_submit_all_is_all_or_nothing(writer: BatchWriter, path: Path) -> None:
    assert writer.submit_all([insert("a"), insert("b")]).result() == [1, 2]
    with pytest.raises(ValueError, match="refused"):
        writer.submit_all([insert("c"), fail, insert("d")]).result()
    assert stored_values(path) == ["a", "b"]


def test_a_chain_stops_at_its_first_failure(writer: BatchWriter, path: Path) -> None:
    gate = WriterGate(writer)  # in one batch
    first = writer.submit_all([insert("a")], chain=1)
    failing = writer.submit_all([fail], chain=1)
    after = writer.submit_all([insert("b")], chain=1)  # decided on the failed one: not run
    other = writer.submit_all([insert("c")], chain=2)
    gate.release()
    assert first.result(10) == [1]
    with pytest.raises(ValueError, match="refused"):
        failing.result(10)
    with pytest.raises(ChainBroken):
        after.result(10)
    assert other.result(10) == [2]
    # In later batches too, and also when the failure ended the whole transaction.
    with pytest.raises(ChainBroken):
        writer.submit_all([insert("d")], chain=1).result(10)
    with pytest.raises(sqlite3.IntegrityError, match="doomed"):
        writer.submit_all([insert("doom")], chain=3).result(10)
    with pytest.raises(ChainBroken):
        writer.submit_all([insert("e")], chain=3).result(10)
    assert writer.submit_all([insert("f")], chain=4).result(10) == [3]
    assert stored_values(path) == ["a", "c", "f"]


def test_future_resolves_only_after_commit(writer: BatchWriter, path: Path) -> None:
    seen: list[list[str]] = []
    called = threading.Event()

    def on_done(_: Future[int]) -> None:
        # Runs in the writer thread the moment the future resolves: the row
        # must already be visible to another connection, i.e. committed.
        seen.append(stored_values(path))
        called.set()

    gate = WriterGate(writer)
    pending = writer.submit(insert("a"))
    pending.add_done_callback(on_done)
    gate.release()
    assert called.wait(10)
    assert seen == [["a"]]


def test_futures_cannot_be_cancelled(writer: BatchWriter, path: Path) -> None:
    gate = WriterGate(writer)
    future = writer.submit(insert("a"))
    assert not future.cancel()
    gate.release()
    assert future.result(10) == 1
    assert stored_values(path) == ["a"]


def test_close_drains_the_queue(path: Path) -> None:
    writer = BatchWriter(SqliteTransactor(connect(path)))
    gate = WriterGate(writer)
    futures = [writer.submit(insert(str(n))) for n in range(300)]
    closer = threading.Thread(target=writer.close)
    closer.start()
    gate.release()
    closer.join(10)
    assert not closer.is_alive()
    assert all(future.done() and future.exception() is None for future in futures)
    assert len(stored_values(path)) == 300
    with pytest.raises(StorageClosed):
        writer.submit(insert("late"))
    writer.close()  # idempotent


def test_close_from_an_operation_is_refused(writer: BatchWriter) -> None:
    def close_self(db: Connection) -> None:
        writer.close()

    with pytest.raises(RuntimeError, match="close"):
        writer.submit(close_self).result()


def test_max_batch_ops_must_be_positive(path: Path) -> None:
    db = connect(path)
    try:
        with pytest.raises(ValueError, match="max_batch_ops"):
            BatchWriter(SqliteTransactor(db), max_batch_ops=0)
    finally:
        db.close()
