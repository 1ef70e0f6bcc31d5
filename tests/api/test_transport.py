"""End-to-end: transport robustness (bad strings, raw HTTP, liveness, oversize, churn)."""

from __future__ import annotations

import json
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
