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

    .venv/bin/python bench/trip_updates.py [--updates 40] [--editors 50] [--trips 100]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, free_port, start_server
from tripsage_sync.api.transport.auth import JwtAuthority


class Editor:
    def __init__(self, ws: ClientConnection, user: str, trip: str, field: str) -> None:
        self.ws, self.user, self.trip, self.field = ws, user, trip, field
        self.latencies_ms: list[float] = []
        self.version = 1

    async def recv_type(self, *types: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await self.ws.recv())
            if message.get("type") in ("trip_update_broadcast",):
                self.version = max(self.version, message["payload"]["version"])
            if message.get("type") in types:
                return message

    async def run(self, updates: int) -> None:
        for i in range(updates):
            sent = time.perf_counter()
            await self.ws.send(
                json.dumps(
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
                )
            )
            outcome = await self.recv_type(
                "optimistic_update_confirmed",
                "optimistic_update_rejected",
                "optimistic_update_rollback",
            )
            if outcome["type"] != "optimistic_update_confirmed":
                raise SystemExit(f"unexpected outcome: {outcome}")
            self.latencies_ms.append((time.perf_counter() - sent) * 1000)
            self.version = max(self.version, outcome["payload"]["serverVersion"])


async def open_editor(
    port: int, authority: JwtAuthority, user: str, trip: str, field: str
) -> Editor:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/chat/bench-{user}", max_size=None)
    await ws.send(json.dumps({"token": authority.mint(user, now_s=time.time())}))
    editor = Editor(ws, user, trip, field)
    await editor.recv_type("connection_established")
    await ws.send(json.dumps({"type": "collaboration_session_start", "payload": {"tripId": trip}}))
    await editor.recv_type("collaboration_session_started")
    return editor


async def create_trip(
    http: httpx.AsyncClient, authority: JwtAuthority, owner: str, trip: str, editors: list[str]
) -> None:
    headers = {"Authorization": f"Bearer {authority.mint(owner, now_s=time.time())}"}
    response = await http.post(
        "/api/trips",
        headers=headers,
        json={"tripId": trip, "fields": {}, "manualResolutionFields": []},
    )
    response.raise_for_status()
    for user in editors:
        put = await http.put(
            f"/api/trips/{trip}/collaborators/{user}",
            headers=headers,
            json={"permissionLevel": "editor"},
        )
        put.raise_for_status()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scenario(
    port: int, pid: int, name: str, layout: list[tuple[str, str]], updates: int
) -> dict[str, Any]:
    authority = JwtAuthority(SECRET)
    by_trip: dict[str, list[str]] = {}
    for user, trip in layout:
        by_trip.setdefault(trip, []).append(user)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for trip, users in by_trip.items():
            await create_trip(http, authority, "owner", trip, users)
    editors = [await open_editor(port, authority, user, trip, f"f_{user}") for user, trip in layout]
    start, cpu_start = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(e.run(updates) for e in editors))
    elapsed = time.perf_counter() - start
    server_cpu = cpu_seconds(pid) - cpu_start
    for e in editors:
        await e.ws.close()
    latencies = sorted(x for e in editors for x in e.latencies_ms)
    total = len(latencies)
    return {
        "scenario": name,
        "editors": len(editors),
        "trips": len(by_trip),
        "confirmed": total,
        "seconds": round(elapsed, 2),
        "updates_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(total - 1, int(total * 0.99))], 1),
        "server_cpu_pct": round(100 * server_cpu / elapsed),
        "server_cpu_us_per_update": round(1e6 * server_cpu / total),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=40, help="updates per editor")
    parser.add_argument("--editors", type=int, default=50)
    parser.add_argument("--trips", type=int, default=100)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(port, Path(tmp) / "bench.db", max_connections_per_user="1000")
        try:
            results = [
                await scenario(
                    port,
                    proc.pid,
                    "one-trip",
                    [(f"e{i}", "t-shared") for i in range(args.editors)],
                    args.updates,
                ),
                await scenario(
                    port,
                    proc.pid,
                    f"{args.trips}-trips",
                    [(f"u{i}", f"t-{i}") for i in range(args.trips)],
                    args.updates,
                ),
            ]
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


if __name__ == "__main__":
    asyncio.run(main())
