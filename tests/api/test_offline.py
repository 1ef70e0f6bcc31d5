"""Offline scenario: two Python clients lose their sockets, edit, and come back.

Each client reaches the server through a :class:`Proxy` the test can cut:
both TCP legs are reset (no close handshake) and new connections are refused
until it is restored, so the clients really are offline and reconnect with
their backoff. The same edits are replayed with the clients coming back in
both orders, each on a fresh server with the same trip and update ids (Yjs
orders concurrent inserts by client ids derived from those): the final trip
must be identical, and every queued update must get exactly one outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.test_trips import CREATED_MS, create_trip, get_trip
from tests.conftest import ServerProcess, free_port
from tripsage_sync.client import OUTCOME_TYPES, SyncClient, UpdateStatus
from tripsage_sync.sync.wire import iso_ms

pytestmark = pytest.mark.anyio

TIMEOUT_S = 30.0


class Proxy:
    """A loopback TCP relay to ``target_port`` that can be cut and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def cut(self) -> None:
        """Stop listening and reset every relayed connection (both legs)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


def at(offset_ms: int) -> str:
    """A clientTimestamp just after the trip was created (stamps are clamped to now)."""
    return iso_ms(CREATED_MS[0] + offset_ms)


# (field, value, clientTimestamp offset) per user, in the order they are edited offline.
EDITS: dict[str, list[tuple[str, Any, int]]] = {
    "alice": [
        ("destination", "Rome", 2),
        ("notes", "Alice: pack light.", 2),
        ("itinerary", ["Louvre"], 2),
        ("name", "Grand tour", 4),
        ("destination", "Lima", 6),  # chained after her first destination edit
    ],
    "bob": [
        ("destination", "Oslo", 3),
        ("notes", "Bob: bring a hat.", 3),
        ("itinerary", ["Colosseum"], 3),
        ("budget", 3000, 5),
        ("name", "Euro trip", 5),
    ],
}


def is_offline(client: SyncClient) -> bool:
    return client.state != "open"


def all_settled(client: SyncClient) -> bool:
    return not client.pending_updates()


def at_version(client: SyncClient, version: int) -> bool:
    return client.trip("trip-1").version == version


async def offline_round(server: ServerProcess, order: tuple[str, str]) -> dict[str, Any]:
    """Both clients go offline, edit, and come back in ``order``; the final trip."""
    await create_trip(server, collaborators={"bob": "editor"}, manual=[])
    proxies = {user: Proxy(server.port) for user in EDITS}
    clients = {
        user: SyncClient(
            proxies[user].url,
            server.token(user),
            session_id=f"s-{user}",
            max_reconnect_attempts=None,
            reconnect_delay_s=0.02,
            max_reconnect_delay_s=0.1,
        )
        for user in EDITS
    }
    outcome_events: Counter[str] = Counter()

    def count(event: dict[str, Any]) -> None:
        outcome_events[event["payload"]["updateId"]] += 1

    try:
        for user, client in clients.items():
            await proxies[user].start()
            for type_ in OUTCOME_TYPES:
                client.on(type_, count)
            await client.connect()
            await client.join("trip-1")
        alice = clients["alice"]
        await alice.wait_until(
            lambda: {c["userId"] for c in alice.trip("trip-1").collaborators} == {"alice", "bob"}
        )
        # The network goes away under both: sockets reset, reconnections refused.
        for user, client in clients.items():
            proxies[user].cut()
            await client.wait_until(functools.partial(is_offline, client))
        updates = []
        for user, client in clients.items():
            for n, (field, value, offset) in enumerate(EDITS[user]):
                updates.append(
                    client.update_field(
                        "trip-1", field, value, client_timestamp=at(offset), update_id=f"{user}-{n}"
                    )
                )
            assert client.metrics().queued_messages == len(EDITS[user])
        assert clients["alice"].optimistic_fields("trip-1")["destination"] == "Lima"
        # Back online one after the other.
        for user in order:
            client = clients[user]
            await proxies[user].start()
            await client.wait_until(functools.partial(all_settled, client))
        trip = await get_trip(server)
        for client in clients.values():
            await client.wait_until(functools.partial(at_version, client, trip["version"]))
            assert client.trip("trip-1").fields == trip["fields"]
            assert client.optimistic_fields("trip-1") == trip["fields"]
        assert all(u.status is not UpdateStatus.PENDING for u in updates)
        assert outcome_events == {u.update_id: 1 for u in updates}
        return {"fields": trip["fields"], "statuses": {u.update_id: u.status for u in updates}}
    finally:
        for user, client in clients.items():
            await client.close()
            await proxies[user].close()


async def test_offline_edits_converge_in_both_orders(
    server_factory: Callable[..., ServerProcess],
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        alice_first = await offline_round(server_factory(), ("alice", "bob"))
        bob_first = await offline_round(server_factory(), ("bob", "alice"))
    assert alice_first["fields"] == bob_first["fields"]
    fields = alice_first["fields"]
    assert fields["destination"] == "Lima"  # the latest stamp wins either way
    assert fields["name"] == "Euro trip"
    assert fields["budget"] == 3000
    assert sorted(fields["itinerary"]) == ["Colosseum", "Louvre"]  # merged
    assert "Alice: pack light." in fields["notes"]
    assert "Bob: bring a hat." in fields["notes"]
    # Who lost depends on the order; that each update got its outcome does not.
    assert alice_first["statuses"]["bob-0"] is UpdateStatus.REJECTED
    assert bob_first["statuses"]["alice-0"] is UpdateStatus.REJECTED
    assert bob_first["statuses"]["alice-4"] is UpdateStatus.CONFIRMED
