"""Chat and broadcasts across the nodes of a cluster (issue 13): a user on one node, the
agent on another; ``POST /api/broadcast`` on one node reaches every node's clients."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.chathelpers import (
    assert_quiet,
    chunk,
    collect,
    connect,
    connect_agent,
    event,
    http,
    user_message,
)
from tests.api.opshelpers import run_cli
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.anyio


async def test_user_on_one_node_and_agent_on_another(cluster: Cluster) -> None:
    a, b = cluster(2)
    alice = await connect(a, "alice", "s-1")
    agent = await connect_agent(b)
    await alice.send(user_message("Find me a flight", "m-1"))
    assert (await alice.recv_type("chat_message"))["payload"]["messageId"] == "m-1"
    delivered = await agent.recv_type("chat_message")
    assert delivered["payload"]["content"] == "Find me a flight"
    parts = ["I ", "can ", "help ", "you!"]
    for index, part in enumerate(parts):
        await agent.send(chunk("s-1", "reply-1", index, part, index == len(parts) - 1))
    chunks = await collect(alice, "chat_message_chunk", len(parts))
    assert [c["payload"]["chunkIndex"] for c in chunks] == list(range(len(parts)))
    assert "".join(c["payload"]["content"] for c in chunks) == "".join(parts)
    await agent.send(
        event("chat_message_complete", "s-1", messageId="reply-1", finalContent="".join(parts))
    )
    complete = await alice.recv_type("chat_message_complete")
    assert complete["payload"]["finalContent"] == "I can help you!"
    # Resume on the other node: what was missed comes from the shared store.
    await alice.send(user_message("And a hotel", "m-2"))
    await alice.recv_type("chat_message")
    phone = await connect(b, "alice", "s-1", query="?lastMessageId=m-1")
    replayed = await collect(phone, "chat_message", 2)
    assert [m["payload"]["messageId"] for m in replayed] == ["reply-1", "m-2"]
    resumed = await phone.recv_type("chat_resumed")
    assert resumed["payload"]["found"] is True
    for client in (alice, agent, phone):
        await client.close()


async def test_a_broadcast_reaches_every_node(cluster: Cluster) -> None:
    a, b = cluster(2)
    on_a = await connect(a, "alice", "s-1")
    on_b = await connect(b, "bob", "s-2")
    note = {"title": "Maintenance", "message": "Back soon"}
    everyone = await http(
        a,
        "POST",
        "/api/broadcast",
        user="ops",
        role="admin",
        json={"type": "notification", "payload": note},
    )
    assert everyone.status_code == 200, everyone.text
    for client in (on_a, on_b):
        assert (await client.recv_type("notification"))["payload"]["message"] == "Back soon"
    to_bob = await http(
        a,
        "POST",
        "/api/broadcast",
        user="ops",
        role="admin",
        json={"type": "notification", "payload": {**note, "message": "Hi bob"}, "userId": "bob"},
    )
    assert to_bob.status_code == 200, to_bob.text
    assert (await on_b.recv_type("notification"))["payload"]["message"] == "Hi bob"
    await on_a.close()
    await on_b.close()


async def test_maintenance_drains_one_node_only(cluster: Cluster) -> None:
    a, b = cluster(2, shutdown_grace_s=1)
    on_a = await connect(a, "alice", "s-1")
    on_b = await connect(b, "bob", "s-2")
    code, _, err = await run_cli(
        "maintenance", "--in", "1s", "--duration", "60", "--message", "Node a upgrade",
        "--server", a.http, "--token", a.token("ops", role="admin"),
    )  # fmt: skip
    assert code == 0, err
    assert (await on_a.recv_type("system_message"))["payload"]["level"] == "maintenance"
    assert (await on_a.recv_type("connection_close", timeout=10))["payload"]["code"] == 1001
    assert a.process is not None
    assert await asyncio.to_thread(a.process.wait, 30) == 0
    # Node b went on: its client heard nothing, and it still serves.
    await assert_quiet(on_b, "system_message", "connection_close")
    await on_b.send(user_message("still here", "m-b"))
    assert (await on_b.recv_type("chat_message"))["payload"]["messageId"] == "m-b"
    await on_b.close()
