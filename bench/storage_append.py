"""Micro-benchmark: trip updates appended through the Storage API, without a server.

Opens a fresh database, creates ``--trips`` trips, then ``--threads`` threads
append ``--updates`` updates in all, each thread to its own trips in turn, the
way a trip room does: one ``submit_all([append_update(contiguous), put_outcome])``
per update (``--no-outcomes``: a plain ``Storage.append_update``). Each thread
keeps up to ``--window`` writes in flight, as concurrent editors do, so the
writer thread group-commits many at a time. Every write is durable
(``synchronous=FULL``) before its future resolves. ``--editors N`` instead
runs N asyncio tasks on one event loop, each awaiting its write
(``asyncio.wrap_future``, as ``api/`` does) before the next, so the cost of
waking the loop from the writer thread is counted too.

Reports appends/s, commits (fsyncs) and ops per commit, and the CPU time per
append of the whole process and of the storage writer thread alone (from
``/proc/self/task/<tid>/stat``), which is the storage cost the server pays.

    .venv/bin/python bench/storage_append.py [--updates 20000] [--trips 100] [--threads 4]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tripsage_sync.storage import Storage, ops

__all__ = ["main"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU time of one thread of this process, from /proc (Linux)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def append_many(
    store: Storage, trips: list[str], count: int, window: int, *, outcomes: bool, payload: bytes
) -> None:
    versions = dict.fromkeys(trips, 0)
    pending: collections.deque[Future[Any]] = collections.deque()
    for i in range(count):
        trip = trips[i % len(trips)]
        versions[trip] += 1
        pending.append(_write(store, trip, versions[trip], outcomes, payload))
        if len(pending) >= window:
            pending.popleft().result()
    for future in pending:
        future.result()


def _write(store: Storage, trip: str, version: int, outcomes: bool, payload: bytes) -> Future[Any]:
    now = int(time.time() * 1000)
    if not outcomes:
        return store.append_update(trip, version, payload, '{"user":"bench"}', now)
    return store.submit_all(
        [
            ops.append_update(trip, version, payload, '{"user":"bench"}', now, contiguous=True),
            ops.put_outcome(trip, f"u-{trip}-{version}", '{"ok":true}', now),
        ]
    )


async def edit_many(
    store: Storage, trips: list[str], editors: int, count: int, outcomes: bool, payload: bytes
) -> None:
    versions = dict.fromkeys(trips, 0)

    async def editor(index: int) -> None:
        for i in range(count // editors):
            trip = trips[(index + i * editors) % len(trips)]
            versions[trip] += 1
            await asyncio.wrap_future(_write(store, trip, versions[trip], outcomes, payload))

    await asyncio.gather(*(editor(i) for i in range(editors)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=20_000, help="appends in all")
    parser.add_argument("--trips", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--window", type=int, default=32, help="writes in flight per thread")
    parser.add_argument("--editors", type=int, default=0, help="asyncio editors instead of threads")
    parser.add_argument("--bytes", type=int, default=60, help="size of each update")
    parser.add_argument("--no-outcomes", dest="outcomes", action="store_false")
    args = parser.parse_args()
    payload = os.urandom(args.bytes)
    trips = [f"t-{i}" for i in range(args.trips)]
    with tempfile.TemporaryDirectory() as tmp, Storage(Path(tmp) / "bench.db") as store:
        for trip in trips:
            store.create_trip(trip, "owner", "[]", 0).result()
        if args.editors:
            total = args.updates // args.editors * args.editors
            shape = f"{args.editors} tasks"
            work = edit_many(store, trips, args.editors, total, args.outcomes, payload)
            workers = [threading.Thread(target=asyncio.run, args=(work,))]
        else:
            per_thread = args.updates // args.threads
            total = per_thread * args.threads
            shape = f"{args.threads} threads"
            workers = [
                threading.Thread(
                    target=append_many,
                    args=(store, trips[t :: args.threads], per_thread, args.window),
                    kwargs={"outcomes": args.outcomes, "payload": payload},
                )
                for t in range(args.threads)
            ]
        writer_tid = store.writer.native_id
        assert writer_tid is not None
        commits = store.writer.commit_count
        started, cpu = time.perf_counter(), time.process_time()
        writer_cpu = thread_cpu_seconds(writer_tid)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        writer_cpu = thread_cpu_seconds(writer_tid) - writer_cpu
        commits = store.writer.commit_count - commits
    print(
        "| appends | writers | trips | s | appends/s | commits | per commit | CPU us | writer us |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {total} | {shape} | {args.trips} | {elapsed:.2f} | {total / elapsed:,.0f} | {commits}"
        f" | {total / max(commits, 1):.1f} | {1e6 * cpu / total:.0f}"
        f" | {1e6 * writer_cpu / total:.0f} |"
    )
    print("(CPU us: the process's CPU per append; writer us: the storage writer thread's alone)")


if __name__ == "__main__":
    main()
