"""Benchmark: the memory of trip rooms opened once and left (``TRIPSAGE_ROOM_IDLE_UNLOAD_S``).

Creates ``--trips`` trips on a first server and stops it, then starts a second one on
the same database with ``room_idle_unload_s=--idle`` and reads its RSS (``VmRSS`` of
``/proc/PID/status``):

- *baseline*: after ``--warmup`` trips were opened and unloaded again (so code paths
  used on first open are resident already; the fresh figure is printed too);
- *opened*: after every trip was opened once (``GET /api/trips/{tripId}`` loads its room);
- *unloaded*: once ``tripsage_trips_loaded`` is back at 0 after the idle time.

    .venv/bin/python bench/room_memory.py --trips 2000 --idle 5

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, free_port, start_server
from tripsage_sync.api.transport.auth import JwtAuthority

AT_ONCE = 50
POLL_S = 0.1
OWNER = "owner"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc")


async def gauge(http: httpx.AsyncClient, name: str) -> float:
    response = await http.get("/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


async def in_batches(ids: list[str], one: Callable[[str], Awaitable[None]]) -> None:
    for start in range(0, len(ids), AT_ONCE):
        await asyncio.gather(*(one(trip_id) for trip_id in ids[start : start + AT_ONCE]))


async def create(port: int, ids: list[str], headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

        async def one(trip_id: str) -> None:
            body = {"tripId": trip_id, "fields": {"name": trip_id, "budget": 100, "notes": ""}}
            response = await http.post("/api/trips", json=body, headers=headers)
            response.raise_for_status()

        await in_batches(ids, one)


async def open_all(http: httpx.AsyncClient, ids: list[str], headers: dict[str, str]) -> None:
    async def one(trip_id: str) -> None:
        (await http.get(f"/api/trips/{trip_id}", headers=headers)).raise_for_status()

    await in_batches(ids, one)


async def until_unloaded(http: httpx.AsyncClient, timeout_s: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while True:
            if await gauge(http, "tripsage_trips_loaded") == 0:
                return time.monotonic() - started
            await asyncio.sleep(POLL_S)  # polling the gauge, under a deadline


async def measure(args: argparse.Namespace) -> None:
    token = JwtAuthority(SECRET).mint(OWNER, now_s=time.time(), ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    ids = [f"trip-{i:05d}" for i in range(args.trips)]
    warm = [f"warm-{i:03d}" for i in range(args.warmup)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rooms.db"
        port = free_port()
        first = start_server(port, db)
        try:
            await create(port, ids + warm, headers)
        finally:
            first.terminate()
            first.wait(30)
        port = free_port()
        server = start_server(port, db, room_idle_unload_s=str(args.idle))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                fresh = rss_kib(server.pid)
                await open_all(http, warm, headers)
                await until_unloaded(http, args.idle * 4 + 60)
                baseline = rss_kib(server.pid)
                await open_all(http, ids, headers)
                loaded = await gauge(http, "tripsage_trips_loaded")
                opened = rss_kib(server.pid)
                waited = await until_unloaded(http, args.idle * 4 + 60)
                unloaded = rss_kib(server.pid)
                count = await gauge(http, "tripsage_trips_unloaded_total")
        finally:
            server.terminate()
            server.wait(30)
    per_room = (opened - baseline) / args.trips
    if args.json:
        result = {
            "trips": args.trips,
            "baseline_kib": baseline,
            "opened_kib": opened,
            "unloaded_kib": unloaded,
            "after_unload_pct": round(100 * (unloaded - baseline) / baseline, 1),
        }
        print(json.dumps(result))
        return
    print(
        f"{args.trips} trips opened once, idle unload {args.idle} s: RSS fresh {fresh} KiB, "
        f"baseline {baseline} KiB (after {args.warmup} warm-up trips), opened {opened} KiB "
        f"({loaded:.0f} rooms loaded, +{per_room:.1f} KiB each), after unload {unloaded} KiB "
        f"({100 * (unloaded - baseline) / baseline:+.1f} % of baseline; gauge at 0 "
        f"{waited:.1f} s after the last open, {count:.0f} unloads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=5.0, help="TRIPSAGE_ROOM_IDLE_UNLOAD_S")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--warmup", type=int, default=20, help="trips opened before baseline")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
