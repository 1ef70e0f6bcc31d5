"""End-to-end: channel subscriptions and chat session ownership."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.api.chathelpers import assert_quiet, http
from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client

pytestmark = pytest.mark.anyio


async def test_subscribe_allowed_denied_unknown(server: ServerProcess) -> None:
    client, _, _ = await open_client(server, "alice", "s-a")
    await client.send(
        {
            "type": "subscribe",
            "payload": {
                "channels": ["global", "agent:alice", "user:alice"],
                "unsubscribeChannels": ["never-subscribed"],
            },
        }
    )
    update = await client.recv_type("subscription_update")
    assert update["payload"]["success"] is True
    assert {"global", "agent:alice", "user:alice", "chat:s-a"} <= set(
        update["payload"]["subscribedChannels"]
    )

    for channel, code in [
        ("agent:bob", "PERMISSION_DENIED"),
        ("user:bob", "PERMISSION_DENIED"),
        ("trip:unknown-trip", "PERMISSION_DENIED"),
        ("weather:paris", "CHANNEL_NOT_FOUND"),
        ("nonsense", "CHANNEL_NOT_FOUND"),
    ]:
        await client.send({"type": "subscribe", "payload": {"channels": [channel]}})
        update = await client.recv_type("subscription_update")
        assert update["payload"]["success"] is False
        assert update["payload"]["deniedChannels"] == [{"channel": channel, "code": code}]
        error = await client.recv_type("error")
        assert error["payload"]["code"] == code

    await client.send({"type": "unsubscribe", "payload": {"channels": ["global"]}})
    update = await client.recv_type("subscription_update")
    assert "global" not in update["payload"]["subscribedChannels"]
    assert update["payload"]["unsubscribedChannels"] == ["global"]
    await client.close()


async def test_the_specs_user_specific_channel_is_your_own_user_channel(
    server: ServerProcess,
) -> None:
    # The spec's WebSocketManager authenticates with these channels.
    client, auth, _ = await open_client(
        server, "alice", "s-a", channels=["global", "user_specific"]
    )
    assert {"global", "user:alice"} <= set(auth["availableChannels"])
    assert "user_specific" not in auth["availableChannels"]
    await assert_quiet(client, "error")
    await client.send({"type": "unsubscribe", "payload": {"channels": ["user_specific"]}})
    update = (await client.recv_type("subscription_update"))["payload"]
    assert update["unsubscribedChannels"] == ["user:alice"]
    assert "user:alice" not in update["subscribedChannels"]
    await client.send({"type": "subscribe", "payload": {"channels": ["user_specific"]}})
    update = (await client.recv_type("subscription_update"))["payload"]
    assert update["success"] is True
    assert "user:alice" in update["subscribedChannels"]
    # Messages to the user's channel arrive again.
    sent = await http(
        server,
        "POST",
        "/api/broadcast",
        user="root",
        role="admin",
        json={
            "type": "notification",
            "payload": {"title": "t", "message": "m"},
            "channel": "user:alice",
        },
    )
    assert sent.json() == {"delivered": 1}
    assert (await client.recv_type("notification"))["payload"]["title"] == "t"
    await assert_quiet(client, "error")
    await client.close()


async def test_unsubscribing_what_was_never_subscribed_is_reported(server: ServerProcess) -> None:
    client, _, _ = await open_client(server, "alice", "s-a")
    # The spec's subscribe example, literally.
    await client.send(
        {
            "type": "subscribe",
            "payload": {
                "channels": ["chat:s-a", "agent:alice"],
                "unsubscribeChannels": ["old-channel"],
            },
        }
    )
    update = (await client.recv_type("subscription_update"))["payload"]
    assert update["success"] is True
    assert {"chat:s-a", "agent:alice"} <= set(update["subscribedChannels"])
    assert update["unsubscribedChannels"] == []
    assert update["notSubscribedChannels"] == ["old-channel"]
    await client.send({"type": "unsubscribe", "payload": {"channels": ["agent:alice", "global"]}})
    update = (await client.recv_type("subscription_update"))["payload"]
    assert update["unsubscribedChannels"] == ["agent:alice"]
    assert update["notSubscribedChannels"] == ["global"]
    await assert_quiet(client, "error")
    await client.close()


async def test_chat_session_belongs_to_first_user(server: ServerProcess) -> None:
    alice, _, _ = await open_client(server, "alice", "trip-chat")
    # Bob can neither open the session nor subscribe to its channel.
    bob = await Client.connect(f"{server.ws}/ws/chat/trip-chat")
    await bob.send({"token": server.token("bob"), "sessionId": "trip-chat"})
    refusal = await bob.recv()
    assert refusal["success"] is False
    assert refusal["code"] == "PERMISSION_DENIED"
    assert await bob.closed() == 1008

    bob2, _, _ = await open_client(server, "bob", "bob-chat")
    await bob2.send({"type": "subscribe", "payload": {"channels": ["chat:trip-chat"]}})
    update = await bob2.recv_type("subscription_update")
    assert update["payload"]["deniedChannels"] == [
        {"channel": "chat:trip-chat", "code": "PERMISSION_DENIED"}
    ]
    # The same refusal on the agent-status endpoint of that session.
    status = await Client.connect(f"{server.ws}/ws/agent-status/trip-chat")
    await status.send({"token": server.token("bob"), "sessionId": "trip-chat"})
    assert (await status.recv())["code"] == "PERMISSION_DENIED"
    assert await status.closed() == 1008

    # Alice herself may open a second device on the session and its agent status.
    again, _, _ = await open_client(server, "alice", "trip-chat", endpoint="agent-status")
    for client in (alice, bob2, again):
        await client.close()


async def test_ownership_survives_restart(server_factory: Callable[..., ServerProcess]) -> None:
    first = server_factory()
    alice, _, _ = await open_client(first, "alice", "kept")
    await alice.close()
    first.stop()
    second = server_factory(db=first.db)
    bob = await Client.connect(f"{second.ws}/ws/chat/kept")
    await bob.send({"token": second.token("bob"), "sessionId": "kept"})
    assert (await bob.recv())["code"] == "PERMISSION_DENIED"
    assert await bob.closed() == 1008


async def test_agent_role_may_open_any_session(server: ServerProcess) -> None:
    alice, _, _ = await open_client(server, "alice", "s-owned")
    agent, auth, _ = await open_client(server, "travel-agent", "s-owned", role="agent")
    assert auth["success"] is True
    for client in (alice, agent):
        await client.close()
