"""WriteLanding (api/transport/services.py): a group commit's results reach the loop together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.helpers import WriterGate
from tests.storage.test_writer import SCHEMA, fail, insert, stored_values
from tripsage_sync.api.transport.services import WriteLanding
from tripsage_sync.storage.errors import StorageClosed
from tripsage_sync.storage.sqlite import SqliteTransactor, connect
from tripsage_sync.storage.writer import BatchWriter

pytestmark = pytest.mark.anyio


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[BatchWriter]:
    db = connect(tmp_path / "w.db")
    db.executescript(SCHEMA)
    writer = BatchWriter(SqliteTransactor(db))
    try:
        yield writer
    finally:
        writer.close()


async def test_a_batch_lands_whole_with_results_errors_and_cancelled_waiters(
    writer: BatchWriter, tmp_path: Path
) -> None:
    landing = WriteLanding(writer)
    gate = WriterGate(writer)  # the next submits pile up: one batch
    waiters = [landing.wait(writer.submit(insert(f"v{i}"))) for i in range(20)]
    failing = landing.wait(writer.submit(fail))
    abandoned = landing.wait(writer.submit(insert("abandoned")))
    abandoned.cancel()  # its caller gave up; the write still commits
    gate.release()
    assert await asyncio.gather(*waiters) == list(range(1, 21))
    with pytest.raises(ValueError, match="refused"):
        await failing
    assert stored_values(tmp_path / "w.db") == [f"v{i}" for i in range(20)] + ["abandoned"]
    # A future already resolved lands too, and a later batch on its own.
    done = writer.submit(insert("late"))
    done.result(5)
    assert await landing.wait(done) == 22


async def test_a_write_resolved_while_its_waiter_is_made_still_lands(writer: BatchWriter) -> None:
    landing = WriteLanding(writer)
    for i in range(200):  # the writer resolves some before wait() looks, some after
        assert await landing.wait(writer.submit(insert(f"r{i}"))) == i + 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_crashed_writer_fails_every_waiter(tmp_path: Path) -> None:
    db = connect(tmp_path / "c.db")
    db.executescript(SCHEMA)
    writer = BatchWriter(SqliteTransactor(db))
    landing = WriteLanding(writer)
    gate = WriterGate(writer)
    waiters = [landing.wait(writer.submit(insert(f"c{i}"))) for i in range(3)]
    writer._commit = crash  # type: ignore[method-assign,assignment]  # a bug in the writer itself
    gate.release()
    for waiter in waiters:
        with pytest.raises(StorageClosed):
            await asyncio.wait_for(waiter, 10)
    writer.close(5)


def crash(jobs: object, *, bulk: bool) -> object:
    raise RuntimeError("writer bug")
