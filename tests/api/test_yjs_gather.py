"""A room's Yjs broadcasts: the first change after a pause at once, the next ones gathered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc, Map

from tests.api.test_trips import create_trip
from tests.api.test_yjs import raw_peer
from tests.conftest import ServerProcess
from tests.wsclient import TIMEOUT_S
from tripsage_sync.sync.ysync import (
    SyncStep2,
    SyncUpdate,
    parse_frame,
    sync_step1_frame,
    sync_update_frame,
)

pytestmark = pytest.mark.anyio


async def synced_peer(server: ServerProcess, user: str) -> tuple[Any, Doc[Any]]:
    ws = await raw_peer(server, user)
    await ws.send(sync_step1_frame(b"\x00"))
    while not isinstance(reply := parse_frame(await ws.recv()), SyncStep2):
        pass
    doc = Doc[Any]()
    doc.apply_update(reply.update)
    return ws, doc


async def next_update(ws: Any) -> bytes:
    while not isinstance(
        frame := parse_frame(await asyncio.wait_for(ws.recv(), TIMEOUT_S)), SyncUpdate
    ):
        pass
    return frame.update


async def test_changes_committed_within_the_gather_interval_reach_a_peer_in_one_frame(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(yjs_peer_frames_per_s=2)  # 2 peers: a frame a second
    await create_trip(server, fields={"name": "Europe"}, collaborators={"bob": "editor"})
    writer, doc = await synced_peer(server, "alice")
    reader, _ = await synced_peer(server, "bob")
    root = doc.get("trip", type=Map)

    async def write(key: str) -> None:
        before = doc.get_state()
        root[key] = 1
        await writer.send(sync_update_frame(doc.get_update(before)))

    await write("k1")
    first = Doc[Any]()
    first.apply_update(await next_update(reader))  # after a pause: at once
    assert set(first.get("trip", type=Map).keys()) == {"k1"}
    await write("k2")  # each its own commit: the writer's frames are read one by one
    await write("k3")
    merged = Doc[Any]()
    merged.apply_update(await next_update(reader))
    assert set(merged.get("trip", type=Map).keys()) == {"k2", "k3"}
    await writer.close()
    await reader.close()
