"""Benchmark: one agent streams a long reply to many subscribers of one chat session.

Starts a real server (``python -m tripsage_sync.api.cli serve``) on a free loopback port with
a fresh database. Alice owns session ``bench``; it is shared with the other
users, and each of ``--subscribers`` users opens ``/ws/chat/bench``. An agent
(a ``role: agent`` token) then sends ``--chunks`` ``chat_message_chunk`` frames
over one WebSocket, then ``chat_message_complete``. Two scenarios:

- ``burst``: the agent sends every chunk back to back (2,000 in ~0.1 s) and
  subscribers ask for ``message_batching``: measures delivery throughput;
  latency is then mostly time spent queued behind the burst;
- ``paced``: the agent sends ``--rate`` chunks per second (default 50, an
  LLM-like stream; x100 subscribers = 5,000 deliveries/s), subscribers also
  batch: measures the latency of a chunk when the server is not saturated.

``--no-batching`` makes subscribers take one frame per event in both.

Reports:

- chunks/s delivered: subscribers x chunks, over the time from the first
  chunk sent to the last chunk received by the slowest subscriber;
- p50/p99/max chunk latency: from the agent's send to a subscriber's receive
  (one clock: every client runs in this process), over every (subscriber,
  chunk) pair;
- that every subscriber got every index once and in order;
- the server's own CPU seconds (utime + stime from ``/proc``) from the first
  chunk sent to the last one received, and per delivered chunk, so that a load
  generator that cannot keep up does not hide the server's cost.

    /tmp/venv/bin/python bench/chat_stream.py [--scenario all|burst|paced]
        [--chunks 2000] [--subscribers 100] [--rate 200]

A burst without batching overflows the subscribers' outbound queues (1,024
events by default) and they are closed as slow consumers (1001): the
documented policy; a reconnecting client gets the reply so far as one
catch-up chunk. Run by hand; numbers go in notes, never in tests.
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def open_ws(port: int, token: str, path: str, features: list[str]) -> ClientConnection:
    # No protocol pings: behind a saturated stream the pong waits its turn and the
    # client would give up; the application heartbeat (keepalive) is enough.
    ws = await connect(
        f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30, ping_interval=None
    )
    await ws.send(json.dumps({"token": token, "features": features}))
    auth = json.loads(await ws.recv())
    if auth.get("success") is not True:
        raise SystemExit(f"authentication refused: {auth}")
    while json.loads(await ws.recv()).get("type") != "connection_established":
        pass
    return ws


async def keepalive(ws: ClientConnection) -> None:
    """What a real client does: a heartbeat now and then, so it is not idle."""
    while True:
        await asyncio.sleep(5)
        await ws.send(json.dumps({"type": "connection_heartbeat", "payload": {}}))


async def subscriber(
    ws: ClientConnection, chunks: int, received_at: list[float], indexes: list[int]
) -> None:
    while len(indexes) < chunks:
        message = json.loads(await ws.recv())
        batch = message["payload"]["messages"] if message.get("type") == "batch" else [message]
        now = time.perf_counter()
        for inner in batch:
            if inner.get("type") == "chat_message_chunk":
                indexes.append(inner["payload"]["chunkIndex"])
                received_at.append(now)


async def run(
    port: int, pid: int, session: str, chunks: int, subscribers: int, batching: bool, rate: float
) -> dict[str, Any]:
    authority = JwtAuthority(SECRET)
    users = [f"u{i}" for i in range(subscribers)]

    def token(user: str, role: str = "user") -> str:
        return authority.mint(user, now_s=time.time(), ttl_s=3600, role=role)

    features = ["message_batching"] if batching else []
    owner = await open_ws(port, token(users[0]), f"/ws/chat/{session}", features)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        headers = {"Authorization": f"Bearer {token(users[0])}"}
        for user in users[1:]:
            response = await http.put(f"/api/sessions/{session}/members/{user}", headers=headers)
            response.raise_for_status()
    conns = [owner] + [
        await open_ws(port, token(user), f"/ws/chat/{session}", features) for user in users[1:]
    ]
    agent = await open_ws(port, token("bench-agent", "agent"), "/ws/chat/agent-bench", [])

    received = [[] for _ in conns]  # type: list[list[float]]
    indexes = [[] for _ in conns]  # type: list[list[int]]
    readers = [
        asyncio.create_task(subscriber(ws, chunks, received[i], indexes[i]))
        for i, ws in enumerate(conns)
    ]
    beats = [asyncio.create_task(keepalive(ws)) for ws in (*conns, agent)]
    print(f"{session}: {len(conns)} subscribers connected", file=sys.stderr)
    sent_at: list[float] = []
    text = "word " * 4  # 20 characters per chunk
    cpu_before, client_cpu_before = cpu_seconds(pid), time.process_time()
    start = time.perf_counter()
    for index in range(chunks):
        if rate > 0:
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        sent_at.append(time.perf_counter())
        await agent.send(
            json.dumps(
                {
                    "type": "chat_message_chunk",
                    "sessionId": session,
                    "payload": {
                        "messageId": f"{session}-reply",
                        "content": text,
                        "chunkIndex": index,
                        "isComplete": index == chunks - 1,
                    },
                }
            )
        )
    sending_s = time.perf_counter() - start
    await asyncio.wait_for(asyncio.gather(*readers), timeout=300)
    elapsed_s = max(r[-1] for r in received) - start
    server_cpu_s = cpu_seconds(pid) - cpu_before
    client_cpu_s = time.process_time() - client_cpu_before
    await agent.send(
        json.dumps(
            {
                "type": "chat_message_complete",
                "sessionId": session,
                "payload": {"messageId": f"{session}-reply", "finalContent": text * chunks},
            }
        )
    )
    for beat in beats:
        beat.cancel()
    in_order = all(ix == list(range(chunks)) for ix in indexes)
    latencies_ms = sorted((r[i] - sent_at[i]) * 1000 for r in received for i in range(chunks))
    for ws in (*conns, agent):
        await ws.close()
    delivered = subscribers * chunks
    return {
        "session": session,
        "subscribers": subscribers,
        "chunks": chunks,
        "batching": batching,
        "agent_rate_per_s": rate or "unpaced",
        "delivered": delivered,
        "in_order_no_gaps_no_duplicates": in_order,
        "agent_send_s": round(sending_s, 3),
        "elapsed_s": round(elapsed_s, 3),
        "chunks_per_s_delivered": round(delivered / elapsed_s),
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p99_ms": round(latencies_ms[int(0.99 * (len(latencies_ms) - 1))], 1),
        "max_ms": round(latencies_ms[-1], 1),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_us_per_delivery": round(server_cpu_s / delivered * 1e6, 1),
        "load_generator_cpu_s": round(client_cpu_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--scenario", choices=["all", "burst", "paced"], default="all")
    parser.add_argument("--rate", type=float, default=50.0, help="paced: chunks/s")
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--queue-size", type=int, default=1024, help="TRIPSAGE_OUTBOUND_QUEUE_SIZE")
    parser.add_argument(
        "--gather-s", type=float, default=None, help="TRIPSAGE_CHAT_CHUNK_GATHER_S (server default)"
    )
    args = parser.parse_args()
    batching = not args.no_batching
    scenarios = {"burst": (batching, 0.0), "paced": (batching, args.rate)}
    chosen = list(scenarios) if args.scenario == "all" else [args.scenario]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        extra = {} if args.gather_s is None else {"chat_chunk_gather_s": str(args.gather_s)}
        server = start_server(
            port, Path(tmp) / "bench.db", outbound_queue_size=str(args.queue_size), **extra
        )
        try:
            for name in chosen:
                batched, rate = scenarios[name]
                results.append(
                    asyncio.run(
                        run(port, server.pid, name, args.chunks, args.subscribers, batched, rate)
                    )
                )
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
