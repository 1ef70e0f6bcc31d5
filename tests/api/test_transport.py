"""End-to-end: transport robustness (bad strings, raw HTTP, liveness, oversize, churn)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from tests.api.test_trips import create_trip, join, presence_of
from tests.api.yjspeer import NodePeer
from tests.conftest import ServerProcess
from tests.wsclient import open_client
from tripsage_sync.sync.ysync import sync_step1_frame

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "message",
    [
        # The case: a batch's inner message id.
        {
            "type": "batch",
            "payload": {"messages": [{"id": "\ud800", "type": "connection_heartbeat"}]},
        },
        {"type": "chat_message", "payload": {"content": "ok", "metadata": {"a": ["\udfff"]}}},
        {"type": "chat_message", "payload": {"content": "ok", "metadata": {"\ud83dx": 1}}},
    ],
    ids=["batch-inner-id", "deep-value", "key"],
)
async def test_lone_surrogate_is_refused_and_the_socket_stays_usable(
    server: ServerProcess, message: dict[str, object]
) -> None:
    client, _, _ = await open_client(server)
    await client.send(json.dumps(message))  # ensure_ascii: the surrogate travels as \\udXXX
    error = await client.recv_type("error", timeout=5)
    assert error["payload"]["code"] == "INVALID_MESSAGE_FORMAT"
    assert error["payload"]["details"]["received"] == "lone surrogate"
    await client.send({"type": "connection_heartbeat", "payload": {}})
    await client.recv_type("connection_heartbeat", timeout=5)
    # A valid pair (an emoji) is fine.
    await client.send(json.dumps({"type": "connection_heartbeat", "id": "\U0001f600"}))
    await client.recv_type("connection_heartbeat", timeout=5)
    await client.close()


async def test_lone_surrogate_in_the_auth_frame_is_refused(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    from tests.wsclient import Client

    client = await Client.connect(f"{server.ws}/ws/chat/s-1")
    await client.send(json.dumps({"token": server.token("alice"), "sessionId": "\ud800"}))
    response = await client.recv(timeout=5)
    assert response["success"] is False
    assert await client.closed(timeout=5) == 3000


# -- the request head (item 10) --------------------------------------------------------------


def _upgrade(path: str, *extra: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer(port: int, request: bytes, *, within_s: float) -> bytes:
    """Send ``request`` on a raw TCP connection; the status line the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), within_s)
    finally:
        writer.close()


@pytest.mark.parametrize("endpoint", ["/ws/chat/s-1", "/ws/yjs/trip-1"])
async def test_every_upgrade_request_gets_an_answer_within_a_second(
    server: ServerProcess, endpoint: str
) -> None:
    port = server.port
    line = await _answer(port, _upgrade(endpoint + "?pad=" + "x" * 7900), within_s=5)
    assert line.startswith(b"HTTP/1.1 101"), line
    for size in (8_300, 12_000, 30_000, 70_000, 1 << 20):
        line = await _answer(port, _upgrade(endpoint + "?token=" + "x" * size), within_s=1)
        assert line.split(b" ")[1] in (b"414", b"400"), (size, line)
    for size in (9_000, 30_000):
        line = await _answer(port, _upgrade(endpoint, "X-Pad: " + "y" * size), within_s=1)
        assert line.split(b" ")[1] in (b"431", b"400"), (size, line)


async def test_a_connection_without_a_complete_request_head_is_closed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(header_timeout_s=1)
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", server.port)
    drip_r, drip_w = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    request = _upgrade("/ws/chat/s-1")

    async def drip() -> None:
        for byte in request[:-4]:  # a byte at a time, never the end of the head
            if drip_w.is_closing():
                return
            drip_w.write(bytes([byte]))
            with contextlib.suppress(ConnectionError):
                await drip_w.drain()
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(drip())
    try:
        # EOF (b"") on both, well before the drip could have finished (~40 s).
        assert await asyncio.wait_for(silent_r.read(), 5) == b""
        try:
            answer = await asyncio.wait_for(drip_r.read(), 5)
        except ConnectionResetError:  # closed while a dripped byte was on its way: a reset
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 5
    finally:
        dripping.cancel()
        silent_w.close()
        drip_w.close()
    # A keep-alive HTTP connection gets the same deadline for its next request head.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /hea")
    await asyncio.wait_for(reader.read(), 10)  # the rest of the response, then EOF
    writer.close()


# -- oversize messages caught by the transport (item 11) -------------------------------------


async def test_frames_over_the_transport_limit_get_the_documented_error_first(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # Limit 2,000 bytes: the transport's own limit is 2,000 + 64 KiB; beyond it websockets
    # fails the frame before the app sees it.
    server = server_factory(max_message_size=2000)
    whole, _, _ = await open_client(server)
    fragmented, _, _ = await open_client(server, "bob", "s-2")
    await whole.send("x" * 200_000)
    # 2 MiB in 4 KiB fragments: the server fails the message while most of it is still
    # on its way, and its reply must not be lost to a reset of the unread rest.
    await fragmented.ws.send(["y" * 4096 for _ in range(512)])
    for client in (whole, fragmented):
        error = await client.recv_type("error", timeout=5)
        assert error["payload"]["code"] == "MESSAGE_TOO_LARGE"
        assert error["payload"]["details"]["limit"] == 2000
        assert error["payload"]["details"]["size"] > 2000
        problem = await client.recv_type("connection_error", timeout=5)
        assert problem["payload"]["errorCode"] == "MESSAGE_TOO_LARGE"
        assert await client.closed(timeout=5) == 1009


async def test_a_yjs_frame_over_the_transport_limit_closes_4413(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(max_message_size=2000)
    await create_trip(server)
    url = f"{server.ws}/ws/yjs/trip-1?token={server.token('alice')}"
    async with connect(url, open_timeout=5, max_size=None) as ws:
        await ws.send(b"\x00" * 200_000)
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert ws.close_code == 4413


# -- liveness: busy peers stay, silent ones go (items 13, 15) --------------------------------


class StallingProxy:
    """A TCP proxy on loopback whose link can stall: sockets stay open, nothing is forwarded."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stalled = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stalled.is_set():
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if self.stalled.is_set():
                    await asyncio.Event().wait()  # hold the socket open, forward nothing
                sink.write(data)
                await sink.drain()

    def stall(self) -> None:
        self.stalled.set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()


async def test_a_stalled_json_collaborator_leaves_within_15_s(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor"})
    proxy = StallingProxy(server.port)
    port = await proxy.start()
    try:
        alice, _ = await join(server, "alice")
        via = ServerProcess(port=port, db=server.db, env={}, authority=server.authority)
        bob, _ = await join(via, "bob")
        await presence_of(alice, {"alice", "bob"})
        await bob.send({"type": "connection_heartbeat", "payload": {}})
        proxy.stall()
        stalled_at = time.monotonic()
        left = await alice.recv_type("trip_collaboration_leave", timeout=15)
        assert left["payload"]["userId"] == "bob"
        assert time.monotonic() - stalled_at < 15
        await alice.close()
    finally:
        await proxy.close()


async def test_a_stalled_yjs_collaborator_leaves_awareness_and_presence_within_15_s(
    server: ServerProcess,
) -> None:
    await create_trip(server, collaborators={"bob": "editor", "carol": "editor"})
    proxy = StallingProxy(server.port)
    port = await proxy.start()
    alice, _ = await join(server, "alice")
    via = ServerProcess(port=port, db=server.db, env={}, authority=server.authority)
    bob = await NodePeer.start(via, "trip-1", "bob", token=server.token("bob"))
    carol = await NodePeer.start(server, "trip-1", "carol")
    try:
        await bob.synced()
        await bob.send({"cmd": "awareness", "state": {"currentField": "notes"}})

        def bob_seen(states: list[dict[str, Any]]) -> bool:
            return any(s.get("user", {}).get("id") == "bob" for s in states)

        await carol.awareness(bob_seen)
        await presence_of(alice, {"alice", "bob", "carol"})
        mark = carol.mark()
        proxy.stall()
        stalled_at = time.monotonic()
        await alice.recv_matching(
            "trip_collaborator_presence",
            lambda p: {c["userId"] for c in p["activeCollaborators"]} == {"alice", "carol"},
            timeout=15,
        )
        await carol.wait(
            lambda e: (
                e["event"] == "awareness" and not bob_seen([s for s in e["states"].values() if s])
            ),
            after=mark,
            timeout=15 - (time.monotonic() - stalled_at),
        )
        assert time.monotonic() - stalled_at < 15
        await alice.close()
    finally:
        await bob.close()
        await carol.close()
        await proxy.close()


async def _raw_websocket(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_upgrade(path))
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    return reader, writer


def _opcodes(data: bytes) -> list[int]:
    """The opcodes of the (unmasked, server-sent) frames in ``data``."""
    found, at = [], 0
    while at + 2 <= len(data):
        found.append(data[at] & 0x0F)
        length, at = data[at + 1] & 0x7F, at + 2
        if length >= 126:
            width = 2 if length == 126 else 8
            length, at = int.from_bytes(data[at : at + width]), at + width
        at += length
    return found


def _masked(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True)


async def test_a_busy_peer_that_never_answers_pings_stays_and_a_silent_one_goes(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(ping_interval_s=0.5, peer_timeout_s=1.5)
    reader, writer = await _raw_websocket(server.port, "/ws/chat/s-1")
    writer.write(_masked(json.dumps({"token": server.token("alice"), "sessionId": "s-1"})))
    # Three peer timeouts long, a frame every 0.8 s: each gap is over the ping interval, so
    # the server pings, and the client never reads nor answers a ping (as a fast writer's
    # pong waits behind its own frames). Its frames prove it alive all the same.
    deadline = time.monotonic() + 4.5
    sent = 0
    while time.monotonic() < deadline:
        writer.write(_masked(json.dumps({"type": "connection_heartbeat", "payload": {}})))
        await writer.drain()
        sent += 1
        await asyncio.sleep(0.8)  # the client's pace, not a wait for the server
    received = b""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.5):
            while chunk := await reader.read(65536):
                received += chunk
    assert b"keepalive" not in received, "closed while busy"
    assert received.count(b"connection_heartbeat") >= sent - 1
    assert Opcode.PING.value in _opcodes(received)  # it was pinged, and never answered
    # Silent from now on: closed as dead (1011) within the timeout plus a check.
    silent_at = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), 5)
    assert b"keepalive timeout" in rest
    assert time.monotonic() - silent_at < 4
    writer.close()


# -- unauthenticated sockets have their own cap (item 9) -------------------------------------


async def test_a_flood_of_unauthenticated_sockets_does_not_lock_users_out(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        max_connections=100, max_unauthenticated_connections=50, trusted_proxies="127.0.0.1"
    )
    await create_trip(server)
    flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open_flood(count: int) -> None:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_upgrade("/ws/chat/flood", "X-Forwarded-For: 203.0.113.7"))
            await reader.readuntil(b"\r\n\r\n")
            flood.append((reader, writer))

    try:
        await open_flood(300)  # three times the server's cap; none ever authenticates
        clients = [(await open_client(server, f"user{i}", f"s-{i}"))[0] for i in range(3)]
        flooding = asyncio.create_task(open_flood(150))  # and while the flood goes on:
        clients += [(await open_client(server, f"late{i}", f"s-late{i}"))[0] for i in range(3)]
        url = f"{server.ws}/ws/yjs/trip-1?token={server.token('alice')}"
        async with connect(url, open_timeout=5, max_size=None) as yjs:
            assert (await asyncio.wait_for(yjs.recv(), 5))[:1] == b"\x00"  # sync step 1
        await flooding
        # The displaced flood sockets were told why and closed with 3001.
        reader, _ = flood[0]
        answer = b""
        async with asyncio.timeout(5):
            while not re.search(rb"\x88.\x0b\xb9", answer, re.DOTALL):  # a close frame, 3001
                answer += await reader.read(65536)
        assert b"CONNECTION_LIMIT_EXCEEDED" in answer
        for client in clients:
            await client.send({"type": "connection_heartbeat", "payload": {}})
            await client.recv_type("connection_heartbeat", timeout=5)
            await client.close()
    finally:
        for _, writer in flood:
            writer.close()


# -- REST bodies are refused while reading (item 11) -----------------------------------------


async def _post_partial(
    server: ServerProcess, method: str, path: str, *, chunked: bool, sent_bytes: int
) -> bytes:
    """Start a 50 MB upload, send ``sent_bytes`` of it; the server's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {50 << 20}"
    token = server.token("alice", role="admin") if server.authority else "none"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n"
    )
    writer.write(head.encode())
    piece = b"x" * 65536
    try:
        for _ in range(sent_bytes // len(piece)):
            writer.write(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
            await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    except ConnectionError:  # refused and closed while we were still sending: read the answer
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/trips"),
        ("PUT", "/api/trips/trip-1/collaborators/bob"),
        ("POST", "/api/sessions/s-1/events"),
        ("POST", "/api/broadcast"),
        ("POST", "/api/maintenance"),
    ],
)
async def test_rest_bodies_over_the_limit_get_413_while_reading(
    server_factory: Callable[..., ServerProcess], method: str, path: str
) -> None:
    server = server_factory(max_message_size=100_000)
    await create_trip(server)
    # Declared too large: refused before the body is read.
    line = await _post_partial(server, method, path, chunked=False, sent_bytes=0)
    assert line.startswith(b"HTTP/1.1 413"), line
    # Chunked (no declared size): refused once 100 kB arrived, not after 50 MB.
    line = await _post_partial(server, method, path, chunked=True, sent_bytes=1 << 20)
    assert line.startswith(b"HTTP/1.1 413"), line


async def test_the_dev_token_body_gets_413_while_reading(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(secret=None, dev_mode=1, header_timeout_s=1)
    for chunked, sent in ((False, 0), (True, 1 << 20)):
        line = await _post_partial(
            server, "POST", "/api/dev/token", chunked=chunked, sent_bytes=sent
        )
        assert line.startswith(b"HTTP/1.1 413"), line
    # The rest of a refused body is dropped unread for at most the header timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /api/dev/token HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 413")
    writer.write(b"x" * 1000)  # still sending, slowly: closed anyway
    started = time.monotonic()
    await asyncio.wait_for(reader.read(), 5)
    assert time.monotonic() - started < 4
    writer.close()


# -- every task the server starts is awaited (item 16) ---------------------------------------


@pytest.mark.parametrize("abort", [True, False], ids=["abort", "close"])
async def test_yjs_churn_leaves_no_pending_task_behind(
    server_factory: Callable[..., ServerProcess], abort: bool
) -> None:
    server = server_factory()
    await create_trip(server)
    url = f"{server.ws}/ws/yjs/trip-1?token={server.token('alice')}"

    async def peer() -> None:
        async with connect(url, open_timeout=10, max_size=None) as ws:
            await ws.send(sync_step1_frame(b"\x00"))
            await asyncio.wait_for(ws.recv(), 10)
            if abort:
                ws.transport.abort()

    for _ in range(30):  # 300 peers, 10 at a time
        await asyncio.gather(*(peer() for _ in range(10)), return_exceptions=abort)
    server.stop()
    assert "Task was destroyed but it is pending" not in server.logs()


@pytest.mark.parametrize("enabled", [False, True])
async def test_permessage_deflate_is_accepted_only_when_enabled(
    server_factory: Callable[..., ServerProcess], enabled: bool
) -> None:
    """Off by default (about 46 KB per connection, CPU per frame): offered, not accepted."""
    server = server_factory(**({"ws_compression": "true"} if enabled else {}))
    for path in ("/ws/chat/s-z", "/ws/yjs/trip-z"):  # the offer is websockets' default
        async with connect(f"{server.ws}{path}", open_timeout=10) as ws:
            assert ws.response is not None
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in accepted) == enabled, (path, accepted)
