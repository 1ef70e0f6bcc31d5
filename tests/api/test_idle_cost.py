"""What an idle connection costs the server: one task (uvicorn's, running the endpoint),
no writer or timer task of its own (api/transport/outbox.py, api/transport/link.py)."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from tests.api.opshelpers import create_trip, scrape, value
from tests.conftest import ServerProcess
from tests.wsclient import TIMEOUT_S, open_client
from tripsage_sync.sync.ysync import SyncStep2, parse_frame, sync_step1_frame

pytestmark = pytest.mark.anyio

JSON_CONNECTIONS = 8


async def test_an_idle_json_connection_holds_one_task(server: ServerProcess) -> None:
    before = value(await scrape(server), "tripsage_asyncio_tasks")
    clients = []
    for i in range(JSON_CONNECTIONS):
        client, _, _ = await open_client(server, f"user-{i}", f"s-{i}")
        clients.append(client)
    during = value(await scrape(server), "tripsage_asyncio_tasks")
    # Three a connection before (reader, writer, timer); uvicorn's reader alone now.
    assert during - before <= JSON_CONNECTIONS
    for client in clients:
        await client.close()


async def test_an_idle_yjs_peer_holds_one_task(server: ServerProcess) -> None:
    await create_trip(server, "alice", "trip-idle")
    url = f"{server.ws}/ws/yjs/trip-idle?token={server.token('alice')}"
    peers = []
    counts = []
    for _ in range(3):
        peer = await connect(url, open_timeout=TIMEOUT_S, max_size=None)
        await peer.send(sync_step1_frame(b"\x00"))
        while not isinstance(parse_frame(await peer.recv(decode=False)), SyncStep2):
            pass
        peers.append(peer)
        counts.append(value(await scrape(server), "tripsage_asyncio_tasks"))
    # The room's own work is there from the first peer on; each further peer adds one
    # task (three before: reader, writer, keepalive).
    assert counts[2] - counts[0] <= 2
    for peer in peers:
        await peer.close()
