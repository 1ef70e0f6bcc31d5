"""End-to-end: graceful shutdown, slow consumers, the token CLI, log hygiene."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request

from tests.conftest import ROOT, SQLITE_ONLY, ServerProcess
from tests.wsclient import Client, open_client

pytestmark = pytest.mark.anyio


async def test_graceful_shutdown_tells_clients(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(shutdown_grace_s=2, reconnect_after_s=7)
    clients = [(await open_client(server, f"user{i}", f"s-{i}"))[0] for i in range(3)]
    stopping = asyncio.create_task(asyncio.to_thread(server.stop))
    for client in clients:
        event = await client.recv_type("connection_close")
        assert event["payload"] == {
            "reason": "Server shutting down",
            "code": 1001,
            "gracePeriod": 2.0,
            "reconnectAfter": 7.0,
        }
        assert await client.closed() == 1001
    # uvicorn re-raises the signal it handled once shutdown is complete.
    assert await stopping in (0, -15)
    assert "storage flushed and closed" in server.logs()
    assert "Application shutdown complete" in server.logs()


def _stalled_client(port: int, token: str) -> socket.socket:
    """A client that authenticates and then never reads again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target="/ws/chat/stalled")))
    accepted = False
    sock.settimeout(10)
    while not accepted:
        ws.receive_data(sock.recv(65536))
        accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
    sock.sendall(ws.send(Message(data=json.dumps({"token": token}))))
    junk = [{"type": "x" * 60, "payload": {}} for _ in range(100)]
    frame = ws.send(Message(data=json.dumps({"type": "batch", "payload": {"messages": junk}})))
    sock.settimeout(2)
    try:
        for _ in range(2000):  # about 20 MB of error events owed to a reader that never reads
            sock.sendall(frame)
    except OSError:
        pass  # the server gave up on us: exactly what we want
    return sock


def _connections(server: ServerProcess) -> int:
    count: int = httpx.get(server.http + "/health").json()["connections"]
    return count


async def test_slow_consumer_is_released_within_15_s(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(outbound_queue_size=64, send_timeout_s=2)
    healthy, _, _ = await open_client(server, "bob", "healthy")
    sock = await asyncio.to_thread(_stalled_client, server.port, server.token("alice"))
    try:
        # Another client is not delayed while the stalled one is being dealt with.
        await healthy.send({"type": "connection_heartbeat", "payload": {}})
        await healthy.recv_type("connection_heartbeat", timeout=5)
        deadline = time.monotonic() + 15
        while _connections(server) > 1:
            assert time.monotonic() < deadline, "stalled socket still held after 15 s"
            await asyncio.sleep(0.1)  # polling the server's own count, bounded by the deadline
        assert "slow consumer" in server.logs() or "send stalled" in server.logs()
        await healthy.send({"type": "connection_heartbeat", "payload": {}})
        await healthy.recv_type("connection_heartbeat", timeout=5)
    finally:
        sock.close()
        await healthy.close()


def _cli(*args: str, db: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tripsage_sync.api.cli", *args, "--db", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    return result.stdout.strip()


@SQLITE_ONLY
async def test_token_cli_uses_the_secret_kept_with_the_database(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(secret=None)
    token = await asyncio.to_thread(
        _cli,
        "token",
        "--user",
        "alice",
        "--name",
        "Alice",
        "--role",
        "admin",
        "--ttl",
        "600",
        db=str(server.db),
    )
    client, auth, _ = await open_client(server, "alice", "s-1", token=token)
    assert auth["userId"] == "alice"
    await client.close()
    with sqlite3.connect(server.db) as db:
        (secret,) = db.execute("SELECT value FROM meta WHERE key = 'jwt_secret'").fetchone()
    db.close()
    logs = server.logs()
    assert secret not in logs
    assert token not in logs


async def test_tokens_in_urls_are_masked_in_logs(server: ServerProcess) -> None:
    token = server.token("alice")
    client = await Client.connect(f"{server.ws}/ws/chat/s-1?token={token}")
    await client.send({"token": token})
    assert (await client.recv())["success"] is True
    await client.close()
    async with httpx.AsyncClient() as http:
        await http.get(f"{server.http}/health?token={token}")
    logs = server.logs()
    assert "token=***" in logs
    assert token not in logs
    assert token.split(".")[2] not in logs
