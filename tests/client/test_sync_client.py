"""The client survives a server that sends something new, or something broken.

A scripted peer (websockets' own server on a free loopback port) answers the
authentication and a join, sending before the join's answer what this server never
sends: undecodable frames, events of unknown types, known events with unusable
payloads, a batch with items that are not events. The client stays open, changes
nothing for those, hands every event to its listeners as the raw dict, and acts on
the valid events that follow.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from tripsage_sync.client import SyncClient, UpdateStatus

pytestmark = pytest.mark.anyio

TIMEOUT_S = 10.0

STRANGE: list[Any] = [
    "not json",
    [1, 2],
    {"type": "brand_new_event", "payload": {"tripId": "trip-1", "version": 99}},
    {"type": "trip_snapshot", "payload": {"tripId": "trip-1"}},
    {"type": "trip_update_broadcast", "payload": {"tripId": "trip-1", "version": "late"}},
    {"type": "connection_established", "payload": ["not", "an", "object"]},
    {"type": "optimistic_update_confirmed", "payload": {"serverVersion": 7}},
    {"type": "error", "payload": "broken"},
    {"type": "batch", "payload": {"messages": [{"type": "also_new"}, "not an event", 3]}},
]


def frame(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item)


async def script(ws: ServerConnection) -> None:
    auth = json.loads(await ws.recv())
    assert auth["token"] == "t"
    await ws.send(json.dumps({"success": True, "userId": "alice", "connectionId": "c-1"}))
    async for text in ws:
        message = json.loads(text)
        payload = message.get("payload", {})
        if message["type"] == "collaboration_session_start":
            for item in STRANGE:
                await ws.send(frame(item))
            started = {"tripId": payload["tripId"], "version": 3, "fields": {"a": 1}}
            await ws.send(json.dumps({"type": "collaboration_session_started", "payload": started}))
        elif message["type"] == "optimistic_update_start":
            confirmed = {
                "updateId": payload["updateId"],
                "confirmedValue": payload["optimisticValue"],
                "serverVersion": 4,
            }
            await ws.send(json.dumps({"type": "optimistic_update_confirmed", "payload": confirmed}))


@pytest.fixture
async def scripted() -> AsyncIterator[Server]:
    async with serve(script, "127.0.0.1", 0) as server:
        yield server


async def test_strange_events_change_nothing_and_reach_listeners(scripted: Server) -> None:
    port = next(iter(scripted.sockets)).getsockname()[1]
    client = SyncClient(f"ws://127.0.0.1:{port}", "t", max_reconnect_attempts=0)
    seen: list[dict[str, Any]] = []
    client.on("*", seen.append)
    async with asyncio.timeout(TIMEOUT_S):
        await client.connect()
        view = await client.join("trip-1")
        assert (view.version, view.fields) == (3, {"a": 1})
        update = client.update_field("trip-1", "a", 2)
        await client.wait_until(lambda: update.status is not UpdateStatus.PENDING)
    assert update.status is UpdateStatus.CONFIRMED
    assert client.trip("trip-1").version == 4
    assert client.state == "open"
    assert client.metrics().reconnections == 0
    assert client.metrics().errors == 2  # the two frames that are not events
    types = [event.get("type") for event in seen]
    assert types == [
        "brand_new_event",
        "trip_snapshot",
        "trip_update_broadcast",
        "connection_established",
        "optimistic_update_confirmed",
        "error",
        "also_new",
        "collaboration_session_started",
        "optimistic_update_confirmed",
    ]
    assert seen[0] == STRANGE[2]  # the raw dict, as received
    await client.close()
