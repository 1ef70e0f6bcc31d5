"""One writer thread that group-commits every write to the database.

Theory of operation:

- Callers :meth:`BatchWriter.submit` a *write operation*, a callable taking
  the write connection (a :class:`~storage.connection.Connection`), and get a
  :class:`concurrent.futures.Future` for its result. Futures are marked
  running at once, so they cannot be cancelled: a submitted write always runs
  (``asyncio.wrap_future`` cancelling its wrapper does not cancel the write).
  The queue is unbounded; the writer never drops an operation. Backpressure
  belongs to the callers (``STYLE.md`` convention 5).
- The thread takes everything queued, up to ``max_batch_ops``, and runs the
  batch inside one transaction, begun and ended by the engine's
  :class:`~storage.connection.Transactor` (SQLite: ``BEGIN IMMEDIATE``, which
  takes the write lock up front, waiting out other processes with
  ``busy_timeout``, so the transaction can never fail half-way with
  ``SQLITE_BUSY_SNAPSHOT`` as a deferred ``BEGIN`` would).
- Each operation runs inside its own ``SAVEPOINT``: one that raises is rolled
  back alone and its future gets the exception; the others commit.
  :meth:`BatchWriter.submit_all` puts several operations in one savepoint,
  so they commit all together or not at all. Units submitted with the same
  ``chain`` depend on each other in order (each was decided on the state the
  ones before it leave): once one fails, every later one of that chain fails
  too (:class:`ChainBroken`) without running, whatever the database holds then.
- A :class:`BulkInsert` given to the writer may take jobs instead
  (``storage/connection.py``; ``storage/updatelog.py``: appends and outcomes): it writes their rows
  together, one statement per table, before the next job that runs alone and
  before ``COMMIT``, so the batch keeps its order. If writing them fails, the
  transaction is rolled back and the whole batch runs again with every job
  alone, so the failing one fails only its own future. When the failure was a
  key another writer took meanwhile (a cluster's node appended the version the
  stale cache took for free), the batch first runs once more in bulk, on what
  the database holds now: the jobs that lost then run alone and fail at once,
  and the rest keep their bulk write.
- If a failure ends the whole transaction (a ``ROLLBACK`` trigger, a full
  disk), the operations that had succeeded before it were undone with it;
  they run again in a fresh transaction. Operations must therefore be pure
  functions of the database state and must not issue transaction control
  statements themselves.
- Futures are resolved only after ``COMMIT`` returned, and a returned
  ``COMMIT`` is on disk (SQLite ``synchronous=FULL``, PostgreSQL
  ``synchronous_commit=on``): a resolved future is durable. All the writes
  of a batch share that one fsync (group commit).
- Whoever waits for many futures from another thread (the event loop) may
  :meth:`BatchWriter.add_listener`: the thread calls each listener once per
  commit with every future it has just resolved, so that the waiter wakes
  once per batch instead of once per future (``api/transport/services.py``).
- :meth:`BatchWriter.close` refuses new writes, lets the thread drain and
  commit everything already queued, joins it and closes the connection.

Only the writer thread touches the write connection between construction
and :meth:`BatchWriter.close`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar

from tripsage_sync.storage.connection import BulkInsert, Transactor, WriteOp
from tripsage_sync.storage.errors import DUPLICATE_KEY, ChainBroken, StorageClosed

__all__ = ["MAX_BATCH_OPS", "BatchWriter", "BulkInsert", "Resolved", "WriteOp"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: A listener: called in the writer thread with the futures one batch resolved.
Resolved: TypeAlias = Callable[[list[Future[Any]]], None]

#: Most operations committed by one transaction (one fsync).
MAX_BATCH_OPS: Final = 256
#: Broken chains remembered (the oldest are forgotten: their units drained long ago).
MAX_BROKEN_CHAINS: Final = 4096


@dataclass(frozen=True, slots=True)
class _Job:
    ops: tuple[WriteOp[Any], ...]
    future: Future[Any]
    many: bool  # submitted with submit_all: the result is the list of the ops' results
    chain: int | None = None  # see submit_all

    def bulk_result(self) -> object:
        return [None] * len(self.ops) if self.many else None


class BatchWriter:
    """The single writer thread; see the module docstring."""

    def __init__(
        self,
        tx: Transactor,
        *,
        max_batch_ops: int = MAX_BATCH_OPS,
        bulk: BulkInsert | None = None,
        name: str = "storage-writer",
    ) -> None:
        if max_batch_ops < 1:
            raise ValueError("max_batch_ops must be at least 1")
        self._tx = tx
        self._bulk = bulk
        self._max_batch_ops = max_batch_ops
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _closed against submit/close races
        self._closed = False
        self._broken: dict[int, None] = {}  # chains with a failed unit, oldest first
        self._db_closed = False
        self._commits = 0
        self._ops = 0
        self._listeners: list[Resolved] = []
        self._lost_key = False  # the last bulk write failed on a key another writer took
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        logger.info("storage writer started (at most %d ops per commit)", max_batch_ops)

    def add_listener(self, listener: Resolved) -> None:
        """Call ``listener`` (in the writer thread) with each batch of resolved futures.

        Add listeners before submitting: a batch resolved meanwhile may miss one.
        A listener must be quick and must not raise (what it raises is logged).
        """
        self._listeners.append(listener)

    @property
    def commit_count(self) -> int:
        """Transactions committed so far."""
        return self._commits

    @property
    def op_count(self) -> int:
        """Operations committed so far (an atomic group counts once)."""
        return self._ops

    @property
    def native_id(self) -> int | None:
        """The writer thread's kernel thread id (``/proc/self/task/<id>``: its CPU time)."""
        return self._thread.native_id

    @property
    def queue_depth(self) -> int:
        """Operations waiting for the thread (approximate)."""
        return self._queue.qsize()

    def submit(self, op: WriteOp[_T]) -> Future[_T]:
        """Queue ``op``; its future resolves once its result is durable.

        Raises :class:`StorageClosed` after :meth:`close`.
        """
        return self._submit((op,), many=False)

    def submit_all(
        self, ops: Iterable[WriteOp[object]], *, chain: int | None = None
    ) -> Future[list[object]]:
        """Queue ``ops`` as one atomic unit: all commit or none does.

        The future holds their results in order, or the first exception. With a
        ``chain`` (an int never used for another chain), the unit runs only if no
        earlier unit of that chain failed; else it fails with :class:`ChainBroken`.
        """
        return self._submit(tuple(ops), many=True, chain=chain)

    def _submit(
        self, ops: tuple[WriteOp[Any], ...], *, many: bool, chain: int | None = None
    ) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # uncancellable: a write is never dropped
        with self._lock:
            if self._closed:
                raise StorageClosed("storage writer is closed")
            self._queue.put(_Job(ops, future, many, chain))
        return future

    def close(self, timeout_s: float | None = None) -> None:
        """Refuse new writes, commit those queued, stop the thread, close the connection.

        Idempotent. Raises :class:`TimeoutError` if the queue has not drained
        within ``timeout_s``; the connection then stays open for the thread.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("close() called from a write operation")
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)  # after every accepted job: the thread drains first
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"storage writer still draining after {timeout_s} s")
        if not self._db_closed:
            self._db_closed = True
            self._tx.close()
            logger.info(
                "storage writer closed after %d commits of %d ops", self._commits, self._ops
            )

    # -- the writer thread -------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            jobs: list[_Job] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stopping = True
                    break
                jobs.append(item)
                if len(jobs) >= self._max_batch_ops:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                bulk, again = True, True
                while jobs:
                    jobs, ok = self._commit(jobs, bulk=bulk)
                    if not ok and again and self._lost_key:  # once more in bulk, see above
                        again = False
                        continue
                    bulk = ok
            except BaseException:
                # A bug in the writer itself: fail loudly, and leave no future
                # hanging, neither in this batch nor in the queue.
                logger.exception("storage writer crashed; failing every queued write")
                self._fail_all(jobs)
                raise
            del item  # nothing of the batch is kept while the queue is empty

    def _fail_all(self, jobs: list[_Job]) -> None:
        with self._lock:
            self._closed = True
        if self._bulk is not None:
            self._bulk.discard()
        with contextlib.suppress(self._tx.error):
            self._tx.rollback()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                jobs.append(item)
        pending = [job for job in jobs if not job.future.done()]
        self._resolve([], [(job, StorageClosed("storage writer crashed")) for job in pending])

    def _commit(self, jobs: list[_Job], *, bulk: bool) -> tuple[list[_Job], bool]:
        """Run ``jobs`` in one transaction; return those to run again, and whether in bulk."""
        tx = self._tx
        started = time.perf_counter()
        rows = self._bulk if bulk else None
        try:
            tx.begin()
            if rows is not None:
                rows.begin(tx)
        except tx.error as exc:
            logger.error(
                "storage writer could not begin a transaction for %d ops: %s", len(jobs), exc
            )
            tx.rollback()
            self._resolve([], [(job, exc) for job in jobs])
            return [], True
        done: list[tuple[_Job, object]] = []
        failed: list[tuple[_Job, Exception]] = []
        taken: list[_Job] = []  # accepted by ``rows``, not yet flushed
        for index, job in enumerate(jobs):
            if job.chain is not None and (
                job.chain in self._broken or any(f.chain == job.chain for f, _ in failed)
            ):
                failed.append((job, ChainBroken(f"an earlier write of chain {job.chain} failed")))
                continue
            if rows is not None and rows.accept(tx, job.ops):
                taken.append(job)
                continue
            if taken:
                if not self._flush(rows, taken, done):
                    return jobs, False
                taken = []
            if not self._run_alone(job, done, failed):
                # The failure took the whole transaction with it.
                logger.warning(
                    "a failing write ended its transaction; running %d others again",
                    len(done) + len(jobs) - index - 1,
                )
                if self._bulk is not None:
                    self._bulk.discard()
                self._resolve([], failed)
                return [ok for ok, _ in done] + jobs[index + 1 :], True
        if taken and not self._flush(rows, taken, done):
            return jobs, False
        try:
            tx.commit()
        except tx.error as exc:
            logger.error("storage writer could not commit %d ops: %s", len(jobs), exc)
            if self._bulk is not None:
                self._bulk.discard()
            tx.rollback()
            self._resolve([], [(job, exc) for job in jobs])
            return [], True
        self._commits += 1
        self._ops += len(done)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "committed %d ops (%d failed) in %.1f ms",
                len(done),
                len(failed),
                (time.perf_counter() - started) * 1000,
            )
        self._resolve(done, failed)
        return [], True

    def _run_alone(
        self, job: _Job, done: list[tuple[_Job, object]], failed: list[tuple[_Job, Exception]]
    ) -> bool:
        """Run ``job`` in its own savepoint; ``False`` if it failed and ended the transaction."""
        tx = self._tx
        db = tx.db
        tx.savepoint()
        try:
            results = [op(db) for op in job.ops]
        except BaseException as exc:
            # A RAISE(ROLLBACK) trigger, say, can end the whole transaction, savepoint too.
            if tx.in_transaction:
                tx.rollback_to()
            if not isinstance(exc, Exception):
                raise
            failed.append((job, exc))  # delivered to the submitter's future
            return tx.in_transaction
        tx.release()
        if self._bulk is not None:
            self._bulk.ran(job.ops)
        done.append((job, results if job.many else results[0]))
        return True

    def _flush(
        self, rows: BulkInsert | None, taken: list[_Job], done: list[tuple[_Job, object]]
    ) -> bool:
        """Write the rows of the ``taken`` jobs; ``False`` if that failed and was rolled back."""
        assert rows is not None  # only jobs it accepted are taken
        self._lost_key = False
        try:
            rows.flush(self._tx)
        except Exception as exc:  # noqa: BLE001 - the batch runs again, each job alone
            self._lost_key = isinstance(exc, DUPLICATE_KEY)
            logger.log(
                # A key taken meanwhile is another writer's row (a cluster's node): routine.
                logging.INFO if isinstance(exc, DUPLICATE_KEY) else logging.WARNING,
                "writing %d jobs in bulk failed (%s); running the batch again%s",
                len(taken),
                type(exc).__name__,
                " (a key another writer took)" if self._lost_key else ", each job alone",
            )
            rows.discard()
            self._tx.rollback()
            return False
        done.extend((job, job.bulk_result()) for job in taken)
        return True

    def _resolve(
        self, done: list[tuple[_Job, object]], failed: list[tuple[_Job, Exception]]
    ) -> None:
        for job, result in done:
            job.future.set_result(result)
        for job, exc in failed:
            job.future.set_exception(exc)
            if job.chain is not None:
                self._broken[job.chain] = None
                if len(self._broken) > MAX_BROKEN_CHAINS:
                    del self._broken[next(iter(self._broken))]  # the oldest: long drained
        if not self._listeners or not (done or failed):
            return
        futures = [job.future for job, _ in done] + [job.future for job, _ in failed]
        for listener in self._listeners:
            try:
                listener(futures)
            except Exception:
                logger.exception("a storage writer listener failed")
