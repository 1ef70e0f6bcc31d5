"""End-to-end: transport robustness (bad strings, raw HTTP, liveness, oversize, churn)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import pytest

from tests.conftest import ServerProcess
from tests.wsclient import open_client

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
        answer = await asyncio.wait_for(drip_r.read(), 5)
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
