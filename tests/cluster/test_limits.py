"""Rate limits and per-user connection caps hold across the nodes (issue 13), a tick late
(``api/transport/limitshare.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.test_trips import create_trip
from tests.api.yjspeer import NodePeer
from tests.cluster.conftest import Cluster
from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client

pytestmark = pytest.mark.anyio

PING = {"type": "unsubscribe", "payload": {"channels": []}}


async def attempt(node: ServerProcess, user: str, session_id: str) -> tuple[Client, dict[str, Any]]:
    client = await Client.connect(f"{node.ws}/ws/chat/{session_id}")
    await client.send({"token": node.token(user), "sessionId": session_id})
    return client, await client.recv()


async def refused_once_heard(
    node: ServerProcess, user: str, session_id: str
) -> tuple[Client, dict[str, Any]]:
    """Connect again and again until ``node`` has heard another node's count and refuses."""
    async with asyncio.timeout(10):
        while True:
            client, answer = await attempt(node, user, session_id)
            if answer.get("success") is False:
                return client, answer
            await client.close()
            await asyncio.sleep(0.1)  # polling another process's report, not an event


async def test_a_users_connection_cap_counts_every_node(cluster: Cluster) -> None:
    a, b = cluster(2, max_connections_per_user=2)
    first, _, _ = await open_client(a, "alice", "s-1")
    second, _, _ = await open_client(b, "alice", "s-2")
    client, answer = await refused_once_heard(a, "alice", "s-3")  # of node b's (a tick)
    assert answer["code"] == "CONNECTION_LIMIT_EXCEEDED"
    assert await client.closed() == 1008
    other, _, _ = await open_client(a, "bob", "s-4")  # other users are unaffected
    # One leaves node b: room again on node a, once the count is reported.
    await second.close()
    async with asyncio.timeout(10):
        while True:
            client, answer = await attempt(a, "alice", "s-5")
            if answer.get("success") is True:
                break
            await asyncio.sleep(0.1)
    for c in (client, first, other):
        await c.close()


async def test_yjs_peers_count_in_the_cap_on_every_node(cluster: Cluster) -> None:
    a, b = cluster(2, max_connections_per_user=2)
    await create_trip(a)
    peer = await NodePeer.start(b, "trip-1", "alice")  # a y-websocket peer on node b
    try:
        await peer.synced()
        first, _, _ = await open_client(a, "alice", "s-1")
        client, answer = await refused_once_heard(a, "alice", "s-2")  # of b's peer
        assert answer["code"] == "CONNECTION_LIMIT_EXCEEDED"
        assert await client.closed() == 1008
        await first.close()
    finally:
        await peer.close()


async def test_a_users_message_budget_is_the_clusters(cluster: Cluster) -> None:
    a, b = cluster(2, rate_limit_messages_per_min=10)
    on_a, _, _ = await open_client(a, "alice", "s-1")
    on_b, _, _ = await open_client(b, "alice", "s-2")
    for _ in range(10):  # the whole budget, spent on node a
        await on_a.send(PING)
        await on_a.recv_type("subscription_update")
    accepted_on_b = 0
    async with asyncio.timeout(10):
        while True:  # node b refuses once it has heard what node a spent
            await on_b.send(PING)
            answer = await on_b.recv_type("subscription_update", "error")
            if answer["type"] == "error":
                break
            accepted_on_b += 1
            await asyncio.sleep(0.2)
    assert answer["payload"]["code"] == "RATE_LIMITED"
    # A tick's worth of lateness at most (0.5 s: about 3 at 5/s here), never a budget of
    # its own (10: what node b alone would have allowed).
    assert accepted_on_b <= 4
    await on_a.close()
    await on_b.close()
