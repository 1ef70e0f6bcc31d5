"""Who hears a trip's changes on the bus (issue 13).

Only the nodes of the trip's own cluster: clusters sharing one Redis name their
channels after their database's cluster id (Redis pub/sub has one namespace,
whatever the database number in the URL).

And only while another node has the trip loaded. A node learns who else has a
trip from the trip's topic (hello, here, bye: ``api/trips/replica.py``). Until
then it publishes nothing per edit; a node that loads the trip while another is
committing reads what it was not told from the store, so its clients still get
every version, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.api.opshelpers import Series, scrape, value
from tests.api.test_trips import OUTCOMES, create_trip, get_trip, join, update
from tests.cluster.conftest import Cluster
from tests.conftest import ServerProcess
from tests.services import fresh_postgres_url

pytestmark = pytest.mark.anyio

PUBLISHED = "tripsage_bus_messages_total"


async def published(node: ServerProcess) -> float:
    series: Series = await scrape(node)
    return value(series, PUBLISHED, direction="published")


async def test_edits_of_a_trip_served_by_one_node_are_not_published(cluster: Cluster) -> None:
    a, b = cluster(2)
    await create_trip(a, collaborators={"bob": "editor"})
    alice, _ = await join(a, "alice")
    before = await published(a)
    for i in range(20):
        await alice.send(update(f"u{i}", "budget", 3000 + i, 1 + i))
        outcome = await alice.recv_type(*OUTCOMES)
        assert outcome["type"] == "optimistic_update_confirmed", outcome
    assert await published(a) - before < 5  # no record per edit: no other node hears them
    # Once node b has the trip, an edit on a reaches b's clients again.
    bob, started = await join(b, "bob")
    assert started["payload"]["version"] == 21
    async with asyncio.timeout(20):
        version = 21
        while True:  # until a knows of b: its edits are then published
            version += 1
            await alice.send(update(f"v{version}", "destination", f"City {version}", version - 1))
            outcome = await alice.recv_type(*OUTCOMES)
            assert outcome["type"] == "optimistic_update_confirmed", outcome
            told = await bob.recv_type("trip_update_broadcast")
            assert told["payload"]["version"] == version, told  # none missed, none twice
            if await published(a) - before >= 5:
                break
    assert (await get_trip(b, "bob"))["fields"]["destination"] == f"City {version}"
    await alice.close()
    await bob.close()


async def test_a_node_that_loads_a_trip_mid_burst_tells_its_clients_every_version(
    cluster: Cluster,
) -> None:
    a, b = cluster(2)
    await create_trip(a, collaborators={"bob": "editor"})
    alice, _ = await join(a, "alice")
    joined, under_way = asyncio.Event(), asyncio.Event()
    sent = 0

    async def burst() -> None:  # edits back to back until b has loaded the trip, then none
        nonlocal sent
        while not joined.is_set():
            await alice.send(update(f"u{sent}", f"field{sent}", sent, 1))
            sent += 1
            if sent > 4:  # four in flight
                await alice.recv_type(*OUTCOMES)
                under_way.set()
        for _ in range(min(sent, 4)):
            await alice.recv_type(*OUTCOMES)

    editing = asyncio.get_running_loop().create_task(burst())
    await under_way.wait()
    bob, started = await join(b, "bob")  # b loads the trip while a commits
    joined.set()
    await editing
    joined_at = started["payload"]["version"]
    final = sent + 1  # the last edits may fall before a hears of b: nothing after them
    seen: list[int] = []
    async with asyncio.timeout(20):
        while not seen or seen[-1] < final:
            told = await bob.recv_type("trip_update_broadcast")
            seen.append(told["payload"]["version"])
    assert seen == list(range(joined_at + 1, final + 1))  # every version once, in order
    trip = await get_trip(b, "bob")
    assert trip["version"] == final
    assert all(trip["fields"][f"field{i}"] == i for i in range(sent))
    await alice.close()
    await bob.close()


async def test_two_clusters_on_one_redis_do_not_hear_each_other(
    server_factory: Callable[..., ServerProcess], postgres_url: str, redis_url: str
) -> None:
    first, second = (
        [
            server_factory(database_url=database, redis_url=redis_url, node_id=f"node-{n}")
            for n in range(2)
        ]
        for database in (fresh_postgres_url(postgres_url), fresh_postgres_url(postgres_url))
    )
    for cluster in (first, second):  # one trip-1 in each cluster, a client on each node
        await create_trip(cluster[0], collaborators={"bob": "editor"})
    clients = [
        [(await join(node, user))[0] for node, user in zip(c, ("alice", "bob"), strict=True)]
        for c in (first, second)
    ]
    await clients[0][0].send(update("u1", "destination", "Rome", 1))
    assert (await clients[0][0].recv_type(*OUTCOMES))["payload"]["serverVersion"] == 2
    assert (await clients[0][1].recv_type("trip_update_broadcast"))["payload"]["version"] == 2
    await clients[1][0].send(update("w1", "budget", 10, 1))
    assert (await clients[1][0].recv_type(*OUTCOMES))["payload"]["serverVersion"] == 2
    told = await clients[1][1].recv_type("trip_update_broadcast")  # its own, not the other's
    assert told["payload"]["changes"] == {"budget": told["payload"]["changes"]["budget"]}
    for node in second:
        trip = await get_trip(node, "bob")
        assert (trip["version"], trip["fields"]["destination"]) == (2, "Paris")
    for node in first:
        assert (await get_trip(node, "bob"))["fields"]["budget"] == 2000
    for pair in clients:
        for client in pair:
            await client.close()
