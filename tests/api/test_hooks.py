"""Extension points: the application's Python hooks and the outgoing webhook, on a real
server. The hooks module reports every call over a TCP socket the test reads, and the
webhook posts to a small HTTP receiver run by the test: every wait is for a line or a
request, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.api.test_operator import _one_line, _run
from tests.api.test_optimistic import outcome_of
from tests.api.test_trips import create_trip, join, update
from tests.conftest import ServerProcess
from tests.wsclient import TIMEOUT_S, Client

pytestmark = pytest.mark.anyio

HOOKS = """
import asyncio, json, os, socket
from tripsage_sync.api.transport.hooks import HookRefused, Hooks

class Recorder(Hooks):
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", int(os.environ["HOOK_SINK_PORT"])))

    def tell(self, hook, **data):
        self.sock.sendall((json.dumps({"hook": hook, **data}) + "\\n").encode())

    async def on_authenticate(self, c):
        if c.user_id == "mallory":
            raise HookRefused("mallory is not welcome")
        self.tell("on_authenticate", user=c.user_id, endpoint=c.endpoint)

    def on_connect(self, c):  # a plain function works as well
        self.tell("on_connect", user=c.user_id, endpoint=c.endpoint)

    async def on_disconnect(self, c):
        self.tell("on_disconnect", user=c.user_id, endpoint=c.endpoint)

    async def on_store(self, s):
        self.tell("on_store", trip=s.trip_id, version=s.version, bytes=len(s.update))

    async def on_change(self, c):
        self.tell("on_change", trip=c.trip_id, version=c.version, by=c.updated_by,
                  changes=c.changes, origin=c.origin)
        if "slow" in c.changes:
            await asyncio.Event().wait()  # a hook that never returns
"""


@dataclass
class Sink:
    """The lines the hooks module sends."""

    lines: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the server hung up

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                await self.lines.put(json.loads(line))
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        self.ended.set()

    async def next(self, hook: str | None = None) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(self.lines.get(), TIMEOUT_S)
            if hook is None or line["hook"] == hook:
                return line


@pytest.fixture
async def hooked(
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[ServerProcess, Sink]]:
    (tmp_path / "recording_hooks.py").write_text(textwrap.dedent(HOOKS))
    sink = Sink()
    listener = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
    monkeypatch.setenv("HOOK_SINK_PORT", str(listener.sockets[0].getsockname()[1]))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    server = await asyncio.to_thread(server_factory, hooks="recording_hooks:Recorder")
    try:
        yield server, sink
    finally:
        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(sink.ended.wait(), TIMEOUT_S)
        listener.close()


async def _until_closed(peer: websockets.ClientConnection) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(peer.recv(), TIMEOUT_S)


async def _auth(server: ServerProcess, user: str) -> tuple[Client, dict[str, Any]]:
    client = await Client.connect(f"{server.ws}/ws/chat/s-{user}")
    await client.send({"token": server.token(user), "sessionId": f"s-{user}"})
    return client, await client.recv()


async def test_hooks_vet_connections_and_hear_connects_changes_and_stores(
    hooked: tuple[ServerProcess, Sink],
) -> None:
    server, sink = hooked
    # Refused by on_authenticate: the documented answer, the hook's words, then 3000.
    mallory, answer = await _auth(server, "mallory")
    assert answer["success"] is False
    assert answer["code"] == "AUTH_FAILED"
    assert answer["error"] == "mallory is not welcome"
    assert await mallory.closed() == 3000
    yjs_url = f"{server.ws}/ws/yjs/trip-1?token={server.token('mallory')}"
    async with websockets.connect(yjs_url) as peer:
        await _until_closed(peer)
        assert peer.close_code == 4401  # unauthorized, though the token is good

    await create_trip(server)
    alice, _ = await join(server, "alice")
    assert await sink.next() == {"hook": "on_authenticate", "user": "alice", "endpoint": "chat"}
    assert await sink.next() == {"hook": "on_connect", "user": "alice", "endpoint": "chat"}
    await alice.send(update("u-1", "budget", 2500, 1))
    assert (await outcome_of(alice, "u-1"))["type"] == "optimistic_update_confirmed"
    stored = await sink.next()
    assert stored["hook"] == "on_store"
    assert (stored["trip"], stored["version"]) == ("trip-1", 2)
    assert stored["bytes"] > 0
    assert await sink.next() == {
        "hook": "on_change",
        "trip": "trip-1",
        "version": 2,
        "by": "alice",
        "changes": {"budget": {"oldValue": 2000, "newValue": 2500}},
        "origin": "json",
    }
    # A hook that never returns delays no edit: the next ones are confirmed all the same.
    await alice.send(update("u-2", "slow", 1, 2))
    assert (await outcome_of(alice, "u-2"))["type"] == "optimistic_update_confirmed"
    assert (await sink.next("on_change"))["changes"] == {"slow": {"oldValue": None, "newValue": 1}}
    for n in range(3, 6):
        await alice.send(update(f"u-{n}", "budget", 2500 + n, n))
        assert (await outcome_of(alice, f"u-{n}"))["type"] == "optimistic_update_confirmed"
    await alice.close()


async def test_a_connection_hook_hears_the_disconnect(hooked: tuple[ServerProcess, Sink]) -> None:
    server, sink = hooked
    bob, answer = await _auth(server, "bob")
    assert answer["success"] is True
    assert (await sink.next("on_connect"))["user"] == "bob"
    await bob.close()
    assert await sink.next("on_disconnect") == {
        "hook": "on_disconnect",
        "user": "bob",
        "endpoint": "chat",
    }


async def test_hooks_that_cannot_be_loaded_stop_serve_in_one_line(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        _run, "serve", "--port", "0", cwd=tmp_path, env={"TRIPSAGE_HOOKS": "nowhere.at_all:Hooks"}
    )
    _one_line(result, "nowhere.at_all:Hooks", "No module named")


# -- the webhook --------------------------------------------------------------------------

SECRET = "webhook-secret-for-the-tests-0123"


@dataclass
class Receiver:
    """An HTTP receiver: each request is queued; ``answers`` says how to answer each
    (a status, or ``None``: never answer)."""

    answers: list[int | None]
    requests: asyncio.Queue[tuple[dict[str, str], bytes]] = field(default_factory=asyncio.Queue)

    connections: int = 0
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.all_closed.clear()
        try:
            await self._answer(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.connections -= 1
            if not self.connections:
                self.all_closed.set()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self.requests.put((headers, body))
                status = self.answers.pop(0) if self.answers else 200
                if status is None:  # hold the request until the sender gives up on it
                    await reader.read()
                    break
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nRetry-After: 0\r\n\r\n".encode()
                )
                await writer.drain()

    async def next(self) -> tuple[dict[str, str], dict[str, Any], bytes]:
        headers, body = await asyncio.wait_for(self.requests.get(), 30)
        return headers, json.loads(body), body


async def test_the_webhook_posts_signed_changes_retries_and_never_blocks_an_edit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    receiver = Receiver(answers=[503, 200, None, 200, 400])
    listener = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server = await asyncio.to_thread(
        server_factory,
        webhook_url=f"http://127.0.0.1:{port}/hooks/tripsage",
        webhook_secret=SECRET,
        webhook_timeout_s=1,
        webhook_attempts=3,
    )
    try:
        await create_trip(server)
        alice, _ = await join(server, "alice")
        await alice.send(update("u-1", "budget", 2500, 1))
        assert (await outcome_of(alice, "u-1"))["type"] == "optimistic_update_confirmed"
        # 503 first: tried again, the same delivery, byte for byte.
        first_headers, first, first_body = await receiver.next()
        again_headers, _, again_body = await receiver.next()
        assert first_body == again_body
        for headers, body in ((first_headers, first_body), (again_headers, again_body)):
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-tripsage-signature"], expected)
            assert headers["x-tripsage-event"] == "trip.changed"
            assert headers["x-tripsage-delivery"] == "trip-1:2"
            assert headers["content-type"] == "application/json"
        assert {k: v for k, v in first.items() if k not in ("timestamp", "node")} == {
            "event": "trip.changed",
            "deliveryId": "trip-1:2",
            "tripId": "trip-1",
            "version": 2,
            "updatedBy": "alice",
            "origin": "json",
            "changes": {"budget": {"oldValue": 2000, "newValue": 2500}},
        }
        # The receiver holds the next one: edits are confirmed meanwhile.
        await alice.send(update("u-2", "budget", 2600, 2))
        assert (await outcome_of(alice, "u-2"))["type"] == "optimistic_update_confirmed"
        held, _, _ = await receiver.next()
        assert held["x-tripsage-delivery"] == "trip-1:3"
        await alice.send(update("u-3", "budget", 2700, 3))
        assert (await outcome_of(alice, "u-3"))["type"] == "optimistic_update_confirmed"
        retried, _, _ = await receiver.next()  # the timeout counts as a failed try
        assert retried["x-tripsage-delivery"] == "trip-1:3"
        # 400: refused, not tried again; the next delivery is the next change.
        refused, _, _ = await receiver.next()
        assert refused["x-tripsage-delivery"] == "trip-1:4"
        await alice.send(update("u-4", "budget", 2800, 4))
        assert (await outcome_of(alice, "u-4"))["type"] == "optimistic_update_confirmed"
        following, _, _ = await receiver.next()
        assert following["x-tripsage-delivery"] == "trip-1:5"
        await alice.close()
    finally:
        await asyncio.to_thread(server.stop)
        if receiver.connections:
            await asyncio.wait_for(receiver.all_closed.wait(), TIMEOUT_S)
        listener.close()
