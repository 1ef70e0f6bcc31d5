"""End-to-end: rate limits, connection caps, Origin allowlist, trusted proxies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client

pytestmark = pytest.mark.anyio


def assert_rate_limited(error: dict[str, Any], limit: int) -> None:
    payload = error["payload"]
    assert payload["code"] == "RATE_LIMITED"
    assert payload["retryAfter"] > 0
    limits = payload["limits"]
    assert limits["limit"] == limit
    assert limits["window"] == 60
    assert limits["current"] > limit
    assert limits["reset"].endswith("Z")


async def test_message_rate_limit_then_abuse_close(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(rate_limit_messages_per_min=5)
    client, _, _ = await open_client(server)
    ping = {"type": "unsubscribe", "payload": {"channels": []}}
    for _ in range(5):
        await client.send(ping)
        await client.recv_type("subscription_update")
    await client.send(ping)
    assert_rate_limited(await client.recv_type("error"), 5)
    # Heartbeats are never rate limited, so a limited client can stay alive.
    await client.send({"type": "connection_heartbeat", "payload": {}})
    await client.recv_type("connection_heartbeat")
    # Persistent abuse: connection_error, then closed with 3001 (reconnect after a delay).
    for _ in range(12):
        await client.send(ping)
    problem = await client.recv_type("connection_error")
    assert problem["payload"]["errorCode"] == "RATE_LIMITED"
    assert problem["payload"]["severity"] == "warning"
    assert problem["payload"]["retryAfter"] > 0
    assert await client.closed() == 3001


async def test_subscription_rate_limit(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(rate_limit_subscriptions_per_min=3)
    client, _, _ = await open_client(server)
    # A refused subscription still counts; the implicit ones (chat:s-1, user:alice) do not.
    channels = ["global", "agent:alice", "user:bob", "agent:carol"]
    await client.send({"type": "subscribe", "payload": {"channels": channels}})
    update = await client.recv_type("subscription_update")
    assert set(update["payload"]["subscribedChannels"]) >= {"global", "user:alice", "agent:alice"}
    assert update["payload"]["success"] is False
    assert update["payload"]["deniedChannels"] == [
        {"channel": "user:bob", "code": "PERMISSION_DENIED"},
        {"channel": "agent:carol", "code": "RATE_LIMITED"},
    ]
    assert (await client.recv_type("error"))["payload"]["code"] == "PERMISSION_DENIED"
    assert_rate_limited(await client.recv_type("error"), 3)
    await client.close()


async def test_connection_rate_limit_per_ip(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(rate_limit_connections_per_min=2)
    first = await Client.connect(f"{server.ws}/ws/chat/a")
    second = await Client.connect(f"{server.ws}/ws/chat/b")
    third = await Client.connect(f"{server.ws}/ws/chat/c")
    error = await third.recv_type("error")
    assert_rate_limited(error, 2)
    assert await third.closed() == 3001
    await first.close()
    await second.close()


async def test_auth_rate_limit_per_ip(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(rate_limit_auth_per_min=2)
    for _ in range(2):
        client = await Client.connect(f"{server.ws}/ws/chat/s")
        await client.send({"token": "wrong"})
        assert (await client.recv())["code"] == "INVALID_TOKEN"
        assert await client.closed() == 3000
    client = await Client.connect(f"{server.ws}/ws/chat/s")
    await client.send({"token": server.token("alice")})
    response = await client.recv()
    assert response["success"] is False
    assert response["code"] == "RATE_LIMITED"
    assert response["retryAfter"] > 0
    assert await client.closed() == 3001


async def test_per_user_connection_cap(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(max_connections_per_user=1)
    first, _, _ = await open_client(server, "alice", "s-1")
    client = await Client.connect(f"{server.ws}/ws/chat/s-1")
    await client.send({"token": server.token("alice"), "sessionId": "s-1"})
    response = await client.recv()
    assert response["success"] is False
    assert response["code"] == "CONNECTION_LIMIT_EXCEEDED"
    assert await client.closed() == 1008
    other, _, _ = await open_client(server, "bob", "s-2")  # other users are unaffected
    await other.close()
    await first.close()


async def test_server_connection_cap(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(max_connections=1)
    first, _, _ = await open_client(server, "alice", "s-1")
    client = await Client.connect(f"{server.ws}/ws/chat/s-2")
    error = await client.recv_type("error")
    assert error["payload"]["code"] == "CONNECTION_LIMIT_EXCEEDED"
    assert error["payload"]["retryAfter"] > 0
    assert await client.closed() == 3001
    await first.close()


async def test_origin_allowlist(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(allowed_origins="https://app.example")
    with pytest.raises(InvalidStatus) as refused:
        await Client.connect(f"{server.ws}/ws/chat/s-1", origin="https://evil.example")
    assert refused.value.response.status_code == 403
    allowed, _, _ = await open_client(server)  # no Origin header: a native client
    await allowed.close()
    ok = await Client.connect(f"{server.ws}/ws/chat/s-1", origin="https://app.example")
    await ok.close()
    same_host = await Client.connect(
        f"{server.ws}/ws/chat/s-1", origin=f"http://127.0.0.1:{server.port}"
    )
    await same_host.close()


async def test_forwarded_for_only_from_trusted_proxies(
    server_factory: Callable[..., ServerProcess],
) -> None:
    trusting = server_factory(rate_limit_connections_per_min=1, trusted_proxies="127.0.0.1")
    url = f"{trusting.ws}/ws/chat/s"
    a = await Client.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.1"})
    b = await Client.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.2"})
    again = await Client.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.1"})
    assert (await again.recv_type("error"))["payload"]["code"] == "RATE_LIMITED"
    assert await again.closed() == 3001
    for client in (a, b):
        await client.close()

    untrusting = server_factory(rate_limit_connections_per_min=1)
    url = f"{untrusting.ws}/ws/chat/s"
    c = await Client.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.1"})
    spoofed = await Client.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.9"})
    assert (await spoofed.recv_type("error"))["payload"]["code"] == "RATE_LIMITED"
    assert await spoofed.closed() == 3001
    await c.close()


async def test_agents_are_not_message_rate_limited(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(rate_limit_messages_per_min=3)
    agent, _, _ = await open_client(server, "travel-agent", "agent-1", role="agent")
    for _ in range(10):
        await agent.send({"type": "unsubscribe", "payload": {"channels": []}})
        await agent.recv_type("subscription_update")
    assert not any(m.get("type") == "error" for m in agent.backlog)
    await agent.close()
