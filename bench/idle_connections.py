"""Benchmark: the server's own CPU for many idle authenticated JSON connections.

Starts a real server, opens ``--connections`` JSON connections (authenticated,
then silent: no client heartbeats; the server's own heartbeat is pushed out to
10 minutes so only the transport liveness pings remain), lets them settle, and
reads the server's CPU seconds from ``/proc`` (psutil) over ``--window`` seconds.
Run it once with the default liveness settings and once with pings effectively
off to see what detecting silent peers costs:

    .venv/bin/python bench/idle_connections.py --connections 10000
    .venv/bin/python bench/idle_connections.py --connections 10000 --ping-interval 3000

Also prints the server's RSS per connection. Run by hand; numbers go in notes,
never in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, free_port, start_server
from tripsage_sync.api.transport.auth import JwtAuthority

SETTLE_S = 5.0
OPEN_AT_ONCE = 100


async def open_idle(port: int, count: int) -> list[ClientConnection]:
    authority = JwtAuthority(SECRET)
    sockets: list[ClientConnection] = []

    async def one(i: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/ws/chat/s-{i}", open_timeout=60)
        token = authority.mint(f"u{i}", now_s=time.time(), ttl_s=3600)
        await ws.send(json.dumps({"token": token, "sessionId": f"s-{i}"}))
        await ws.recv()  # the auth reply
        sockets.append(ws)

    for start in range(0, count, OPEN_AT_ONCE):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + OPEN_AT_ONCE))))
    return sockets


async def measure(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        settings = {
            "max_connections": str(args.connections + 100),
            "max_connections_per_user": "5",
            "heartbeat_interval_s": "600",
        }
        if args.ping_interval is not None:
            settings["ping_interval_s"] = str(args.ping_interval)
            settings["peer_timeout_s"] = str(args.ping_interval * 2)
        server = start_server(port, Path(tmp) / "idle.db", **settings)
        try:
            process = psutil.Process(server.pid)
            baseline_rss = process.memory_info().rss
            sockets = await open_idle(port, args.connections)
            await asyncio.sleep(SETTLE_S)  # let the handshakes' work finish: a period
            before, started = process.cpu_times(), time.monotonic()
            await asyncio.sleep(args.window)  # the measured period itself
            after, elapsed = process.cpu_times(), time.monotonic() - started
            cpu_s = after.user + after.system - before.user - before.system
            rss = process.memory_info().rss
            still_open = sum(1 for ws in sockets if ws.state.name == "OPEN")
            per_connection_kib = (rss - baseline_rss) / 1024 / args.connections
            if args.json:
                result = {
                    "connections": args.connections,
                    "cpu_pct": round(100 * cpu_s / elapsed, 2),
                    "kb_per_connection": round((rss - baseline_rss) / 1000 / args.connections, 1),
                    "still_open": still_open,
                }
                print(json.dumps(result))
            else:
                print(
                    f"{args.connections} idle connections, ping interval "
                    f"{args.ping_interval or 'default'}: server CPU {100 * cpu_s / elapsed:.2f} % "
                    f"of a core over {elapsed:.0f} s; RSS +{per_connection_kib:.1f} KiB per "
                    f"connection; {still_open} still open"
                )
            for ws in sockets:
                ws.transport.abort()
        finally:
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ping-interval", type=float, default=None)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * args.connections + 256)), hard)
    )
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
