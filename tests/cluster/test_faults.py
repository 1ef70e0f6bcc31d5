"""Faults in a cluster (issue 13): Redis down and back, a node killed with kill -9.

Edits are refused (``optimistic_update_rollback``, ``server_error``, ``canRetry``) while
the bus is down, reads keep working, and the nodes recover by themselves; a node killed
mid-burst loses nothing it confirmed, and its clients carry on through another node.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.test_trips import OUTCOMES, create_trip, get_trip, join, presence_of, update
from tests.cluster.conftest import Cluster
from tests.conftest import ServerProcess
from tests.services import RedisServer, fresh_postgres_url, services_dir
from tests.wsclient import Client

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start again."""
    with services_dir() as base:
        try:
            server = RedisServer.start(base / "redis")
        except FileNotFoundError:
            pytest.skip("Redis is not installed here")
        try:
            yield server
        finally:
            server.stop()


async def health_when(
    node: ServerProcess, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """``/health`` once it satisfies ``predicate`` (the node noticing a dependency)."""
    async with asyncio.timeout(20), httpx.AsyncClient(base_url=node.http) as http:
        while True:
            health: dict[str, Any] = (await http.get("/health")).json()
            if predicate(health):
                return health
            await asyncio.sleep(0.05)  # polling another process's state, not an event


async def until_confirmed(client: Client, message: dict[str, Any]) -> dict[str, Any]:
    """Send ``message`` until it is confirmed, honouring each rollback's retryAfter."""
    async with asyncio.timeout(30):
        while True:
            await client.send(message)
            outcome = await client.recv_type(*OUTCOMES)
            if outcome["type"] == "optimistic_update_confirmed":
                return outcome
            assert outcome["type"] == "optimistic_update_rollback", outcome
            assert outcome["payload"]["canRetry"] is True
            await asyncio.sleep(outcome["payload"].get("retryAfter", 100) / 1000)


async def test_redis_down_refuses_edits_keeps_reads_and_recovers(
    server_factory: Callable[..., ServerProcess], postgres_url: str, own_redis: RedisServer
) -> None:
    database_url = fresh_postgres_url(postgres_url)
    a, b = (
        server_factory(
            database_url=database_url,
            redis_url=own_redis.url,
            node_id=f"node-{n}",
            storage_retry_initial_ms=100,
            storage_retry_max_ms=400,
        )
        for n in range(2)
    )
    await create_trip(a, collaborators={"bob": "editor"})
    alice, _ = await join(a, "alice")
    bob, _ = await join(b, "bob")
    await until_confirmed(alice, update("u1", "destination", "Rome", 1))
    assert (await bob.recv_type("trip_update_broadcast"))["payload"]["version"] == 2

    own_redis.stop()
    health = await health_when(a, lambda h: h["dependencies"].get("redis") == "unreachable")
    assert health["status"] == "degraded"
    assert health["dependencies"] == {"database": "ok", "redis": "unreachable"}
    assert health["nodeId"] == "node-0"
    await alice.send(update("u2", "destination", "Oslo", 2))
    refused = await alice.recv_type(*OUTCOMES)
    assert refused["type"] == "optimistic_update_rollback", refused
    assert refused["payload"]["rollbackReason"] == "server_error"
    assert refused["payload"]["canRetry"] is True
    assert refused["payload"]["retryAfter"] > 0
    trip = await get_trip(b, "bob")  # reads keep working
    assert trip["fields"]["destination"] == "Rome"

    restarted = own_redis.restart()
    try:
        confirmed = await until_confirmed(alice, update("u2", "destination", "Oslo", 2))
        told = await bob.recv_matching(
            "trip_update_broadcast",
            lambda p: p["version"] == confirmed["payload"]["serverVersion"],
        )
        assert told["payload"]["changes"]["destination"]["newValue"] == "Oslo"
        assert (await get_trip(b, "bob"))["fields"]["destination"] == "Oslo"
    finally:
        restarted.stop()
    await alice.close()
    await bob.close()


async def test_kill_9_of_a_node_mid_burst_loses_nothing_confirmed(
    server_factory: Callable[..., ServerProcess], postgres_url: str, redis_url: str
) -> None:
    database_url = fresh_postgres_url(postgres_url)
    a, b = (
        server_factory(database_url=database_url, redis_url=redis_url, node_id=f"node-{n}")
        for n in range(2)
    )
    await create_trip(a, collaborators={"bob": "editor"})
    alice, _ = await join(a, "alice")
    bob, _ = await join(b, "bob")
    sent = [update(f"u{i}", f"field{i}", i, 1) for i in range(40)]
    for message in sent:
        await alice.send(message)
    confirmed: dict[str, int] = {}
    while len(confirmed) < 10:
        outcome = await alice.recv_type(*OUTCOMES)
        assert outcome["type"] == "optimistic_update_confirmed", outcome
        confirmed[outcome["payload"]["updateId"]] = outcome["payload"]["serverVersion"]
    a.stop(signal.SIGKILL)
    # The client's offline queue: everything not confirmed is sent again, to node b.
    again, _ = await join(b, "alice")
    for message in sent:
        if message["payload"]["updateId"] not in confirmed:
            await again.send(message)
    while len(confirmed) < len(sent):
        outcome = await again.recv_type(*OUTCOMES)
        assert outcome["type"] == "optimistic_update_confirmed", outcome
        confirmed[outcome["payload"]["updateId"]] = outcome["payload"]["serverVersion"]
    trip = await get_trip(b, "bob")
    for i in range(len(sent)):
        assert trip["fields"][f"field{i}"] == i
    assert sorted(set(confirmed.values())) == list(range(2, len(sent) + 2))
    assert trip["version"] == len(sent) + 1
    await again.close()
    await bob.close()


async def test_a_change_confirmed_just_before_kill_9_reaches_the_other_nodes(
    cluster: Cluster,
) -> None:
    a, b = cluster(2)
    await create_trip(a, collaborators={"bob": "editor"})
    bob, _ = await join(b, "bob")  # node b has the trip loaded
    alice, _ = await join(a, "alice")
    await presence_of(bob, {"alice", "bob"})  # b hears a's presence reports
    await alice.send(update("u1", "destination", "Rome", 1))
    confirmed = await alice.recv_type(*OUTCOMES)
    a.stop(signal.SIGKILL)  # its record to b may die with it: b reads the store when a's
    assert confirmed["payload"]["serverVersion"] == 2  # report expires (or names v2)
    told = await bob.recv_matching(  # within a beat and a report's lifetime
        "trip_update_broadcast", lambda p: p["version"] == 2, 30
    )
    assert told["payload"]["changes"]["destination"]["newValue"] == "Rome"
    assert (await get_trip(b, "bob"))["version"] == 2
    await bob.close()
