"""Benchmark: a churn soak -- the server's memory and CPU under steady edits and churn.

Starts a real server on a fresh database (``--port``, default 8400), creates ``--trips``
trips with ``--connections`` collaborator slots spread over them, and keeps one live
JSON connection per slot: every second ``--churn`` connections are closed (after their
update in flight, if any, was answered) and as many new ones opened on the same slots.
Every connection edits its own scalar field, one update at a time, each with the
``expectedVersion`` it last saw; together they offer about ``--rate`` updates per second
(``optimistic_update_start`` -> ``optimistic_update_confirmed``, each after an fsync'd
commit). Every ``--every`` seconds the server's RSS (``VmRSS``), CPU (utime+stime of
``/proc/PID/stat``) and open file descriptors (``/proc/PID/fd``) are sampled, with the
rooms loaded and the asyncio tasks from ``/metrics``.

After ``--minutes`` every connection is closed and the rooms' idle unload is awaited
(the bench runs the server with ``TRIPSAGE_ROOM_IDLE_UNLOAD_S=--idle``, 10 s by default,
instead of the default 300 s), then the server is sampled once more. The baseline is
taken before the soak, after the trips were created and their rooms unloaded.

Drift is RSS at the end of the edits against RSS at minute ``--warmup`` (2); CPU per
confirmed update is given per sample so a growing per-update cost shows.

    .venv/bin/python bench/churn_soak.py --minutes 12 [--json]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, start_server
from tripsage_sync.api.transport.auth import JwtAuthority

OWNER = "owner"
POLL_S = 0.2
RAMP_PER_S = 50  # connections opened a second until every slot is live


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def gauges(http: httpx.AsyncClient, *names: str) -> dict[str, float]:
    response = await http.get("/metrics")
    out = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in out:
                out[sample.name] = float(sample.value)
    return out


@dataclass
class Counters:
    confirmed: int = 0
    other: int = 0  # rejected, rolled back or failed
    opened: int = 0
    closed: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


class Slot:
    """One collaborator of one trip; at most one live connection at a time."""

    def __init__(self, user: str, trip: str) -> None:
        self.user, self.trip = user, trip
        self.sent = 0


class Editor:
    """One live connection of a slot, editing ``f_<user>`` until told to stop.

    One reader task takes every message as it comes (so broadcasts never back up
    into the server's outbound queue) and hands outcomes to the editing loop.
    """

    def __init__(self, ws: ClientConnection, slot: Slot, counters: Counters) -> None:
        self.ws, self.slot, self.counters = ws, slot, counters
        self.version = 1
        self.stopping = asyncio.Event()
        self.waiting: asyncio.Future[dict[str, Any]] | None = None

    async def recv_type(self, *types: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await self.ws.recv())
            self._seen(message)
            if message.get("type") in types:
                return message

    def _seen(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("trip_update_broadcast", "collaboration_session_started"):
            self.version = max(self.version, message["payload"]["version"])

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                message: dict[str, Any] = json.loads(raw)
                self._seen(message)
                if message.get("type") in OUTCOMES and self.waiting is not None:
                    if not self.waiting.done():
                        self.waiting.set_result(message)

    async def run(self, mean_gap_s: float) -> None:
        slot, counters = self.slot, self.counters
        reader = asyncio.create_task(self.read())
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(random.expovariate(1 / mean_gap_s)):
                        await self.stopping.wait()
                if self.stopping.is_set() or reader.done():
                    break
                slot.sent += 1
                self.waiting = asyncio.get_running_loop().create_future()
                sent = time.perf_counter()
                await self.ws.send(
                    json.dumps(
                        {
                            "type": "optimistic_update_start",
                            "payload": {
                                "updateId": f"{slot.user}-{slot.sent}",
                                "tripId": slot.trip,
                                "fieldName": f"f_{slot.user}",
                                "optimisticValue": slot.sent,
                                "expectedVersion": self.version,
                                "clientTimestamp": time.strftime(
                                    "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()
                                ),
                            },
                        }
                    )
                )
                async with asyncio.timeout(OUTCOME_TIMEOUT_S):
                    outcome = await self.waiting
                if outcome["type"] == "optimistic_update_confirmed":
                    counters.confirmed += 1
                    counters.latencies_ms.append((time.perf_counter() - sent) * 1000)
                    self.version = max(self.version, outcome["payload"]["serverVersion"])
                else:
                    counters.other += 1
        finally:
            await self.ws.close()
            await reader


OUTCOMES = frozenset(
    ("optimistic_update_confirmed", "optimistic_update_rejected", "optimistic_update_rollback")
)
OUTCOME_TIMEOUT_S = 30.0


async def open_editor(port: int, authority: JwtAuthority, slot: Slot, c: Counters) -> Editor:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/chat/soak-{slot.user}", max_size=None)
    await ws.send(json.dumps({"token": authority.mint(slot.user, now_s=time.time())}))
    editor = Editor(ws, slot, c)
    await editor.recv_type("connection_established")
    start = {"type": "collaboration_session_start", "payload": {"tripId": slot.trip}}
    await ws.send(json.dumps(start))
    await editor.recv_type("collaboration_session_started")
    c.opened += 1
    return editor


async def live(port: int, authority: JwtAuthority, slot: Slot, c: Counters, gap_s: float) -> None:
    """One connection's life: open, edit until stopped, close."""
    editor = await open_editor(port, authority, slot, c)
    slot_live[slot.user] = editor
    try:
        await editor.run(gap_s)
    except Exception as exc:
        c.failures.append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        del slot_live[slot.user]
        c.closed += 1


slot_live: dict[str, Editor] = {}


async def create_trips(http: httpx.AsyncClient, authority: JwtAuthority, slots: list[Slot]) -> None:
    headers = {"Authorization": f"Bearer {authority.mint(OWNER, now_s=time.time())}"}
    trips = sorted({s.trip for s in slots})
    for trip in trips:
        body = {"tripId": trip, "fields": {"name": trip}, "manualResolutionFields": []}
        (await http.post("/api/trips", headers=headers, json=body)).raise_for_status()
    for slot in slots:
        put = await http.put(
            f"/api/trips/{slot.trip}/collaborators/{slot.user}",
            headers=headers,
            json={"permissionLevel": "editor"},
        )
        put.raise_for_status()


async def until_unloaded(http: httpx.AsyncClient, timeout_s: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while True:
            if (await gauges(http, "tripsage_trips_loaded"))["tripsage_trips_loaded"] == 0:
                break
            await asyncio.sleep(POLL_S)  # polling the gauge, under a deadline
    return time.monotonic() - started


async def sample(
    http: httpx.AsyncClient, pid: int, t0: float, phase: str, c: Counters
) -> dict[str, Any]:
    g = await gauges(http, "tripsage_trips_loaded", "tripsage_asyncio_tasks")
    return {
        "phase": phase,
        "t_s": round(time.monotonic() - t0, 1),
        "rss_kib": rss_kib(pid),
        "cpu_s": cpu_seconds(pid),
        "fds": open_fds(pid),
        "connections": len(slot_live),
        "confirmed": c.confirmed,
        "trips_loaded": int(g["tripsage_trips_loaded"]),
        "tasks": int(g["tripsage_asyncio_tasks"]),
    }


async def soak(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    authority = JwtAuthority(SECRET)
    # ``--churn`` more slots than connections: the ones closing and opening.
    count = args.connections + args.churn
    slots = [Slot(f"s{i:04d}", f"soak-{i % args.trips:03d}") for i in range(count)]
    counters = Counters()
    gap_s = args.connections / args.rate
    samples: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        await create_trips(http, authority, slots)
        await until_unloaded(http, args.idle * 4 + 60)
        t0 = time.monotonic()
        samples.append(await sample(http, pid, t0, "baseline", counters))
        tasks: set[asyncio.Task[None]] = set()

        busy: set[str] = set()  # slots with a connection opening, live or closing

        def spawn(slot: Slot) -> None:
            busy.add(slot.user)
            task = asyncio.create_task(live(port, authority, slot, counters, gap_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _: busy.discard(slot.user))

        end = t0 + args.minutes * 60
        next_sample = t0 + args.every
        while time.monotonic() < end:
            tick = time.monotonic()
            steady = len(busy) >= args.connections
            if steady:  # churn: close some, open as many on other slots
                live_now = list(slot_live.values())
                for editor in random.sample(live_now, min(args.churn, len(live_now))):
                    editor.stopping.set()
            free = [s for s in slots if s.user not in busy]
            opening = args.churn if steady else RAMP_PER_S
            for slot in random.sample(free, min(opening, len(free))):
                spawn(slot)
            if time.monotonic() >= next_sample:
                samples.append(await sample(http, pid, t0, "soak", counters))
                next_sample += args.every
                if not args.json:
                    print(_row(samples[-1], samples[-2]), flush=True)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        samples.append(await sample(http, pid, t0, "soak", counters))
        for editor in list(slot_live.values()):
            editor.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        samples.append(await sample(http, pid, t0, "closed", counters))
        waited = await until_unloaded(http, args.idle * 4 + 60)
        samples.append(await sample(http, pid, t0, "unloaded", counters))
        # Everything given back: one more idle period.
        await asyncio.sleep(args.idle)
        samples.append(await sample(http, pid, t0, "settled", counters))
    return _summary(args, samples, counters, waited)


def _row(now: dict[str, Any], before: dict[str, Any]) -> str:
    updates = now["confirmed"] - before["confirmed"]
    cpu = now["cpu_s"] - before["cpu_s"]
    seconds = now["t_s"] - before["t_s"]
    per = f"{1e6 * cpu / updates:.0f}" if updates else "-"
    return (
        f"| {now['phase']} | {now['t_s']:.0f} | {now['rss_kib'] / 1024:.1f} | "
        f"{100 * cpu / seconds:.0f} % | {per} | {updates / seconds:.0f} | {now['fds']} | "
        f"{now['connections']} | {now['trips_loaded']} | {now['tasks']} |"
    )


HEADER = (
    "| phase | t s | RSS MiB | server CPU | CPU us/update | updates/s | fds | connections"
    " | rooms | tasks |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _summary(
    args: argparse.Namespace, samples: list[dict[str, Any]], c: Counters, waited: float
) -> dict[str, Any]:
    base = samples[0]
    soak = [s for s in samples if s["phase"] == "soak"]
    warm = min(soak, key=lambda s: abs(s["t_s"] - args.warmup * 60))
    last = soak[-1]
    final = samples[-1]

    def cpu_per_update(a: dict[str, Any], b: dict[str, Any]) -> float | None:
        n = b["confirmed"] - a["confirmed"]
        return round(1e6 * (b["cpu_s"] - a["cpu_s"]) / n) if n else None

    mid = soak[len(soak) // 2] if len(soak) > 2 else warm
    lat = sorted(c.latencies_ms)
    return {
        "minutes": args.minutes,
        "connections": args.connections,
        "trips": args.trips,
        "churn_per_s": args.churn,
        "idle_unload_s": args.idle,
        "confirmed": c.confirmed,
        "not_confirmed": c.other,
        "opened": c.opened,
        "failures": c.failures[:5],
        "failure_count": len(c.failures),
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
        "baseline_kib": base["rss_kib"],
        "warm_kib": warm["rss_kib"],
        "end_kib": last["rss_kib"],
        "drift_pct": round(100 * (last["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"], 1),
        "settled_kib": final["rss_kib"],
        "settled_vs_baseline_pct": round(
            100 * (final["rss_kib"] - base["rss_kib"]) / base["rss_kib"], 1
        ),
        "cpu_us_per_update_first_half": cpu_per_update(warm, mid),
        "cpu_us_per_update_second_half": cpu_per_update(mid, last),
        "fds_baseline": base["fds"],
        "fds_settled": final["fds"],
        "unload_wait_s": round(waited, 1),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--trips", type=int, default=20)
    parser.add_argument("--churn", type=int, default=10, help="connections in and out a second")
    parser.add_argument("--rate", type=float, default=150.0, help="updates offered a second")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes before drift counts")
    parser.add_argument("--idle", type=float, default=10.0, help="TRIPSAGE_ROOM_IDLE_UNLOAD_S")
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(
            args.port,
            Path(tmp) / "soak.db",
            max_connections_per_user="1000",
            room_idle_unload_s=str(args.idle),
        )
        try:
            if not args.json:
                print(HEADER, flush=True)
            result = asyncio.run(soak(args, args.port, proc.pid))
        finally:
            proc.terminate()
            proc.wait(30)
    if args.json:
        print(json.dumps(result))
        return
    for s in result["samples"]:
        if s["phase"] != "soak":
            print(
                f"{s['phase']}: RSS {s['rss_kib'] / 1024:.1f} MiB, fds {s['fds']}, "
                f"rooms {s['trips_loaded']}, tasks {s['tasks']}, t {s['t_s']} s"
            )
    keys = [k for k in result if k != "samples"]
    print(json.dumps({k: result[k] for k in keys}, indent=1))


if __name__ == "__main__":
    main()
