"""Benchmark: confirmed durable optimistic updates per second, and their latency.

Starts a real server (``python -m tripsage_sync.api.cli serve``) on a free loopback port with
a fresh database, then runs two scenarios over real WebSockets:

- ``one-trip``: 50 editors on one trip, each sending updates back to back
  (the next one after the previous outcome) to its own field;
- ``100-trips``: 100 editors, each on its own trip.

Every confirmation is sent only after the change is committed to SQLite with
``synchronous=FULL``. Reports updates/s and p50/p99 latency from
``optimistic_update_start`` to ``optimistic_update_confirmed``, and the server's
own CPU time (utime + stime of its process, from ``/proc/<pid>/stat``, the
delta over the timed part of the scenario) per confirmed update, so that a load
generator that cannot offer enough load does not hide the server's cost.

The editors are driven by ``--procs`` worker processes (each one event loop
with its share of the editors), so that the load generator is not one Python
process decoding every broadcast: in the one-trip scenario each update reaches
49 other editors. The parent starts the server, creates the trips, starts the
workers, waits until every editor is connected and joined, then lets them all
go at once and gathers their latencies. ``--pin`` puts the server on CPU 0 and
the workers on the other CPUs.

    .venv/bin/python bench/trip_updates.py [--updates 40] [--editors 50] [--trips 100]
        [--procs 1] [--pin] [--batching]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, free_port, start_server
from tripsage_sync.api.transport.auth import JwtAuthority

OUTCOMES = frozenset(
    ("optimistic_update_confirmed", "optimistic_update_rejected", "optimistic_update_rollback")
)


class Editor:
    def __init__(self, ws: ClientConnection, user: str, trip: str, field: str) -> None:
        self.ws, self.user, self.trip, self.field = ws, user, trip, field
        self.latencies_ms: list[float] = []
        self.version = 1
        self.pending: list[dict[str, Any]] = []  # the rest of a batch frame

    async def recv_type(self, *types: str) -> dict[str, Any]:
        while True:
            if not self.pending:
                message: dict[str, Any] = orjson.loads(await self.ws.recv(decode=False))
                if message.get("type") == "batch":
                    self.pending = list(reversed(message["payload"]["messages"]))
                    continue
            else:
                message = self.pending.pop()
            kind = message.get("type")
            if kind == "trip_update_broadcast":
                self.version = max(self.version, message["payload"]["version"])
            if kind in types:
                return message

    async def run(self, updates: int) -> None:
        for i in range(updates):
            sent = time.perf_counter()
            await self.ws.send(
                orjson.dumps(
                    {
                        "type": "optimistic_update_start",
                        "payload": {
                            "updateId": f"{self.user}-{i}",
                            "tripId": self.trip,
                            "fieldName": self.field,
                            "optimisticValue": i,
                            "expectedVersion": self.version,
                            "clientTimestamp": time.strftime(
                                "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()
                            ),
                        },
                    }
                ).decode()
            )
            outcome = await self.recv_type(*OUTCOMES)
            if outcome["type"] != "optimistic_update_confirmed":
                raise SystemExit(f"unexpected outcome: {outcome}")
            self.latencies_ms.append((time.perf_counter() - sent) * 1000)
            self.version = max(self.version, outcome["payload"]["serverVersion"])


async def open_editor(
    port: int, authority: JwtAuthority, user: str, trip: str, field: str, features: list[str]
) -> Editor:
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws/chat/bench-{user}",
        max_size=None,
        max_queue=None,  # never stop reading: a paused editor would not see its close frame
        open_timeout=60,
        ping_interval=None,  # behind a saturated server a pong waits its turn
    )
    token = authority.mint(user, now_s=time.time())
    await ws.send(orjson.dumps({"token": token, "features": features}).decode())
    editor = Editor(ws, user, trip, field)
    await editor.recv_type("connection_established")
    await ws.send(
        orjson.dumps({"type": "collaboration_session_start", "payload": {"tripId": trip}}).decode()
    )
    await editor.recv_type("collaboration_session_started")
    return editor


async def drive(
    port: int, layout: list[tuple[str, str]], updates: int, features: list[str], pipe: Connection
) -> None:
    """One worker: open its editors, say ready, wait for go, run, send back what it measured."""
    authority = JwtAuthority(SECRET)
    editors = [
        await open_editor(port, authority, user, trip, f"f_{user}", features)
        for user, trip in layout
    ]
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "go"
    start = time.perf_counter()
    await asyncio.gather(*(e.run(updates) for e in editors))
    end = time.perf_counter()
    pipe.send((start, end, [x for e in editors for x in e.latencies_ms]))
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "close": all are done
    await asyncio.gather(*(e.ws.close() for e in editors))


def worker(
    port: int,
    layout: list[tuple[str, str]],
    updates: int,
    features: list[str],
    cpus: set[int] | None,
    pipe: Connection,
) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    asyncio.run(drive(port, layout, updates, features, pipe))


def create_trips(port: int, authority: JwtAuthority, by_trip: dict[str, list[str]]) -> None:
    headers = {"Authorization": f"Bearer {authority.mint('owner', now_s=time.time())}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
        for trip, users in by_trip.items():
            response = http.post(
                "/api/trips", json={"tripId": trip, "fields": {}, "manualResolutionFields": []}
            )
            response.raise_for_status()
            for user in users:
                put = http.put(
                    f"/api/trips/{trip}/collaborators/{user}", json={"permissionLevel": "editor"}
                )
                put.raise_for_status()


def close_workers(
    pipes: list[Any], workers: list[Any], reports: list[Any]
) -> tuple[float, list[float]]:
    """Tell the load workers to stop; the run's wall time and every latency, sorted."""
    for pipe in pipes:
        pipe.send("close")
    for process in workers:
        process.join(60)
    elapsed = max(end for _, end, _ in reports) - min(start for start, _, _ in reports)
    return elapsed, sorted(x for _, _, share in reports for x in share)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU time of each thread of a process, by ``name-tid``."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            threads[f"{name}-{task.name}"] = _stat_cpu(task / "stat")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return threads


def gc_pauses(port: int) -> dict[str, dict[str, float]]:
    """The server's ``tripsage_gc_pause_seconds`` so far, by generation: ``count``,
    ``sum`` and each bucket's count (keyed by its ``le``)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "tripsage_gc_pause_seconds":
            continue
        for sample in family.samples:
            series = out.setdefault(sample.labels["generation"], {})
            if sample.name.endswith("_bucket"):
                series[sample.labels["le"]] = sample.value
            elif sample.name.endswith(("_count", "_sum")):
                series[sample.name.rsplit("_", 1)[1]] = sample.value
    return out


def gc_summary(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> str:
    """The collections between two :func:`gc_pauses`: how many, how long in all, and the
    bucket bound the longest fits under."""
    parts = []
    for gen in sorted(after):
        d = {k: v - before.get(gen, {}).get(k, 0.0) for k, v in after[gen].items()}
        bounds = [
            float(le) for le, n in d.items() if le not in ("count", "sum") and n >= d["count"]
        ]
        longest = min(bounds, default=float("inf"))
        parts.append(
            f"gen{gen} {d['count']:.0f} x, {1000 * d['sum']:.0f} ms in all,"
            f" each <= {1000 * longest:g} ms"
        )
    return "; ".join(parts)


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scenario(
    port: int,
    pid: int,
    name: str,
    layout: list[tuple[str, str]],
    updates: int,
    procs: int,
    cpus: set[int] | None,
    features: list[str],
) -> dict[str, Any]:
    by_trip: dict[str, list[str]] = {}
    for user, trip in layout:
        by_trip.setdefault(trip, []).append(user)
    create_trips(port, JwtAuthority(SECRET), by_trip)
    context = mp.get_context("spawn")
    pipes, workers = [], []
    for share in (layout[i::procs] for i in range(procs)):
        if not share:
            continue
        ours, theirs = context.Pipe()
        process = context.Process(
            target=worker, args=(port, share, updates, features, cpus, theirs)
        )
        process.start()
        pipes.append(ours)
        workers.append(process)
    for pipe in pipes:
        if pipe.recv() != "ready":
            raise SystemExit("a worker failed to start")
    gc_start = gc_pauses(port)
    cpu_start, threads_start = cpu_seconds(pid), thread_cpu_seconds(pid)
    for pipe in pipes:
        pipe.send("go")
    reports = [pipe.recv() for pipe in pipes]
    server_cpu = cpu_seconds(pid) - cpu_start
    threads = {
        name: cpu - threads_start.get(name, 0.0)
        for name, cpu in thread_cpu_seconds(pid).items()
        if cpu - threads_start.get(name, 0.0) > 0
    }
    collections = gc_summary(gc_start, gc_pauses(port))
    elapsed, latencies = close_workers(pipes, workers, reports)
    total = len(latencies)
    return {
        "scenario": name,
        "editors": len(layout),
        "trips": len(by_trip),
        "confirmed": total,
        "seconds": round(elapsed, 2),
        "updates_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(total - 1, int(total * 0.99))], 1),
        "server_cpu_pct": round(100 * server_cpu / elapsed),
        "server_cpu_us_per_update": round(1e6 * server_cpu / total),
        "threads_us_per_update": {n: round(1e6 * cpu / total) for n, cpu in threads.items()},
        "gc": collections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=40, help="updates per editor")
    parser.add_argument("--editors", type=int, default=50)
    parser.add_argument("--trips", type=int, default=100)
    parser.add_argument("--procs", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--pin", action="store_true", help="server on CPU 0, load generator on the others"
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="also the server's CPU per update by thread, and its cycle collections",
    )
    parser.add_argument(
        "--batching",
        action="store_true",
        help="editors ask for message_batching (events that meet go in one batch frame)",
    )
    parser.add_argument(
        "--scenario", choices=("both", "one-trip", "trips"), default="both", help="which to run"
    )
    args = parser.parse_args()
    port = free_port()
    cpus = (os.sched_getaffinity(0) - {0}) or None if args.pin else None
    features = ["message_batching"] if args.batching else []
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(
            port,
            Path(tmp) / "bench.db",
            pin_cpu=0 if args.pin else None,
            max_connections_per_user="1000",
        )
        results = []
        try:
            if args.scenario in ("both", "one-trip"):
                layout = [(f"e{i}", "t-shared") for i in range(args.editors)]
                results.append(
                    scenario(
                        port, proc.pid, "one-trip", layout, args.updates, args.procs, cpus, features
                    )
                )
            if args.scenario in ("both", "trips"):
                layout = [(f"u{i}", f"t-{i}") for i in range(args.trips)]
                results.append(
                    scenario(
                        port,
                        proc.pid,
                        f"{args.trips}-trips",
                        layout,
                        args.updates,
                        args.procs,
                        cpus,
                        features,
                    )
                )
        finally:
            proc.terminate()
            proc.wait(20)
    print(
        "| scenario | editors | trips | confirmed | s | updates/s | p50 ms | p99 ms | server CPU"
        " | server CPU us/update |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['scenario']} | {r['editors']} | {r['trips']} | {r['confirmed']} | "
            f"{r['seconds']} | {r['updates_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['server_cpu_pct']}% | {r['server_cpu_us_per_update']} |"
        )
    if args.threads:
        for r in results:
            print(f"{r['scenario']}: server CPU us/update by thread {r['threads_us_per_update']}")
            print(f"{r['scenario']}: the server's cycle collections: {r['gc']}")


if __name__ == "__main__":
    main()
