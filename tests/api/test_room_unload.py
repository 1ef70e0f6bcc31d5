"""End-to-end: idle trip rooms are unloaded and loaded again (api/trips/sweep.py).

A real server with ``TRIPSAGE_ROOM_IDLE_UNLOAD_S=0.2``; every wait polls ``/metrics``
(``tripsage_trips_loaded``, ``tripsage_trips_unloaded_total``) with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.opshelpers import Series, scrape, value
from tests.api.test_trips import OUTCOMES, after_creation, create_trip, get_trip, join, update
from tests.api.yjspeer import NodePeer
from tests.conftest import ServerProcess
from tests.wsclient import open_client

pytestmark = pytest.mark.anyio

IDLE_S = 0.2
POLL_S = 0.02
DEADLINE_S = 15.0
LOADED = "tripsage_trips_loaded"
UNLOADED = "tripsage_trips_unloaded_total"
RESOLVED = "tripsage_conflicts_resolved_total"
FIELDS: dict[str, Any] = {
    "name": "Europe",
    "destination": "Paris",
    "budget": 2000,
    "notes": "",
    "itinerary": [],
}


async def metrics_until(
    server: ServerProcess, check: Callable[[Series], bool], *, timeout: float = DEADLINE_S
) -> Series:
    """The first scrape of ``/metrics`` that satisfies ``check``."""
    async with asyncio.timeout(timeout):
        while True:
            series = await scrape(server)
            if check(series):
                return series
            await asyncio.sleep(POLL_S)  # polling the server's state, under a deadline


def unloaded(count: float, *, loaded: float | None = None) -> Callable[[Series], bool]:
    """``count`` rooms unloaded so far (and ``loaded`` rooms loaded, if given)."""
    return lambda series: (
        value(series, UNLOADED) == count and (loaded is None or value(series, LOADED) == loaded)
    )


def has(**expected: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda trip: all(trip.get(k) == v for k, v in expected.items())


async def test_an_idle_room_is_unloaded_and_comes_back_with_every_confirmed_edit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(room_idle_unload_s=IDLE_S)
    await create_trip(server, fields=FIELDS, collaborators={"bob": "editor", "carol": "editor"})
    alice, started = await join(server, "alice")
    bob = await NodePeer.start(server, "trip-1", "bob")
    try:
        await bob.synced()
        version = started["payload"]["version"]
        await alice.send(update("a1", "destination", "Rome", version))
        confirmed = await alice.recv_type(*OUTCOMES)
        assert confirmed["type"] == "optimistic_update_confirmed", confirmed
        await bob.send({"cmd": "set", "key": "name", "value": "Italy"})
        await bob.send({"cmd": "insertText", "index": 0, "text": "bob "})
        await alice.recv_matching(
            "trip_update_broadcast", lambda p: p["changes"].get("notes", {}).get("newValue")
        )
        await bob.trip(has(destination="Rome"))
    finally:
        await bob.close()
    await alice.close()
    series = await metrics_until(server, lambda s: value(s, LOADED) == 0)
    # (On a slow machine the room may also have gone between its creation and the join.)
    unloads = value(series, UNLOADED)
    assert unloads >= 1
    # A JSON client joining loads it from storage: every confirmed edit is there.
    carol, rejoined = await join(server, "carol")
    fields = rejoined["payload"]["fields"]
    assert has(destination="Rome", name="Italy", notes="bob ")(fields), fields
    # ... and a Yjs peer syncs the same document, then edits on.
    dave = await NodePeer.start(server, "trip-1", "carol")
    try:
        assert has(destination="Rome", name="Italy", notes="bob ")(await dave.synced())
    finally:
        await dave.close()
    reloaded_version = rejoined["payload"]["version"]
    await carol.send(update("c1", "budget", 2100, reloaded_version))
    confirmed = await carol.recv_type(*OUTCOMES)
    assert confirmed["type"] == "optimistic_update_confirmed", confirmed
    assert confirmed["payload"]["serverVersion"] == reloaded_version + 1
    await carol.close()
    await metrics_until(server, unloaded(unloads + 1, loaded=0))
    trip = await get_trip(server, "alice")
    assert has(destination="Rome", name="Italy", notes="bob ", budget=2100)(trip["fields"])


async def test_a_room_with_a_client_or_a_peer_stays_loaded(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(room_idle_unload_s=IDLE_S)
    for trip_id in ("trip-1", "trip-2"):
        await create_trip(server, trip_id=trip_id, fields=FIELDS, collaborators={"bob": "editor"})
    alice, started = await join(server, "alice", "trip-1")
    bob = await NodePeer.start(server, "trip-2", "bob")
    try:
        await bob.synced()
        # (On a slow machine a room may have gone between its creation and the join.)
        before = value(await scrape(server), UNLOADED)
        # Rooms opened later than these two go first: theirs would have gone before.
        for n, trip_id in enumerate(("trip-3", "trip-4"), start=1):
            await create_trip(server, trip_id=trip_id, fields=FIELDS)
            series = await metrics_until(server, unloaded(before + n))
            assert value(series, LOADED) == 2
        # Both rooms are the same ones: the client edits on, the peer sees it.
        version = started["payload"]["version"]
        await alice.send(update("a1", "destination", "Rome", version))
        confirmed = await alice.recv_type(*OUTCOMES)
        assert confirmed["payload"]["serverVersion"] == version + 1
        await bob.send({"cmd": "set", "key": "destination", "value": "Oslo"})
        await bob.trip(has(destination="Oslo"))
    finally:
        await bob.close()
    await alice.close()
    await metrics_until(server, unloaded(before + 4, loaded=0))
    assert (await get_trip(server, "alice", "trip-1"))["fields"]["destination"] == "Rome"
    assert (await get_trip(server, "bob", "trip-2"))["fields"]["destination"] == "Oslo"


async def raise_conflict(server: ServerProcess) -> str:
    """Alice and Bob both set the manual ``budget``; Bob's later stamp is the default."""
    await create_trip(server, manual=["budget"], collaborators={"bob": "editor"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    await alice.send(update("a", "budget", 2500, 1, ts=after_creation(1)))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await bob.send(update("b", "budget", 3000, 1, ts=after_creation(5)))
    rejected = await bob.recv_type(*OUTCOMES)
    assert rejected["type"] == "optimistic_update_rejected", rejected
    conflict_id: str = rejected["payload"]["conflictId"]
    for client in (alice, bob):
        await client.close()
    return conflict_id


async def test_a_conflict_deadline_after_the_unload_still_applies_its_default(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(room_idle_unload_s=IDLE_S, conflict_auto_resolve_ms=3000)
    await raise_conflict(server)
    series = await metrics_until(server, lambda s: value(s, LOADED) == 0)
    assert value(series, RESOLVED) == 0, "unloaded before the deadline"
    # The deadline loads the trip, its timer applies the default; then it goes again.
    await metrics_until(server, lambda s: value(s, RESOLVED) == 1)
    await metrics_until(server, unloaded(value(series, UNLOADED) + 1, loaded=0))
    alice, started = await join(server, "alice")
    assert started["payload"]["fields"]["budget"] == 3000
    assert not any(m.get("type") == "conflict_resolution_required" for m in alice.seen)
    await alice.close()
    assert "manual-conflict deadline" in server.logs()


async def test_a_conflict_of_an_unloaded_trip_can_still_be_resolved(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(room_idle_unload_s=IDLE_S)
    conflict_id = await raise_conflict(server)
    await metrics_until(server, lambda s: value(s, LOADED) == 0)
    # Bob answers from a new connection without joining the trip first.
    bob, _, _ = await open_client(server, "bob", "s-bob-2")
    await bob.send(
        {
            "type": "conflict_resolution_submit",
            "payload": {"conflictId": conflict_id, "customValue": 2800},
        }
    )
    await metrics_until(server, lambda s: value(s, RESOLVED) == 1)
    assert not any(m.get("type") == "error" for m in bob.seen)
    await bob.close()
    assert (await get_trip(server))["fields"]["budget"] == 2800


async def test_a_resend_to_a_reloaded_room_gets_the_stored_outcome_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # The reloaded room knows the update ids stored before it (api/trips/optimistic.py).
    server = server_factory(room_idle_unload_s=IDLE_S)
    await create_trip(server, fields=FIELDS)
    alice, started = await join(server, "alice")
    version = started["payload"]["version"]
    await alice.send(update("once", "budget", 2500, version))
    first = await alice.recv_type(*OUTCOMES)
    assert first["type"] == "optimistic_update_confirmed", first
    await alice.close()
    before = value(await metrics_until(server, lambda s: value(s, LOADED) == 0), UNLOADED)
    again, rejoined = await join(server, "alice")  # loads the room anew
    await again.send(update("once", "budget", 2500, version))
    second = await again.recv_type(*OUTCOMES)
    first["payload"].pop("processingTime")
    second["payload"].pop("processingTime")
    assert second == {**second, "type": first["type"], "payload": first["payload"]}
    await again.send(update("next", "budget", 2600, rejoined["payload"]["version"]))
    assert (await again.recv_type(*OUTCOMES))["payload"]["serverVersion"] == version + 2
    await again.close()
    await metrics_until(server, unloaded(before + 1, loaded=0))
    assert (await get_trip(server, "alice"))["version"] == version + 2
