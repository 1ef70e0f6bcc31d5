"""End-to-end: ``sync_request`` (api/trips/resume.py) against a real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.test_trips import OUTCOMES, after_creation, create_trip, get_trip, join, update
from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client

pytestmark = pytest.mark.anyio

EDITS: list[tuple[str, Any]] = [
    ("destination", "Rome"),
    ("notes", "Bring a hat."),
    ("itinerary", ["Colosseum"]),
    ("budget", 2500),
    ("destination", "Milan"),
]


async def make_edits(alice: Client, first_version: int = 1) -> None:
    """Apply :data:`EDITS` one after the other, each confirmed."""
    for i, (field, value) in enumerate(EDITS):
        await alice.send(update(f"u{i}", field, value, first_version + i, ts=after_creation(i + 1)))
        outcome = await alice.recv_type(*OUTCOMES)
        assert outcome["type"] == "optimistic_update_confirmed", outcome


async def sync_request(client: Client, since: int, trip_id: str = "trip-1") -> list[dict[str, Any]]:
    """Send ``sync_request``; every answer event up to and including the marker."""
    await client.send(
        {
            "id": f"sync-{since}",
            "type": "sync_request",
            "payload": {"tripId": trip_id, "sinceVersion": since},
        }
    )
    events: list[dict[str, Any]] = []
    while True:
        event = await client.recv_type("trip_update_broadcast", "trip_snapshot", "sync_complete")
        events.append(event)
        if event["type"] == "sync_complete":
            return events


async def test_sync_request_returns_changes_in_order_then_marker(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor", "carol": "viewer"})
    alice, _ = await join(server, "alice")
    carol, _ = await join(server, "carol")  # records the live broadcasts
    await make_edits(alice)
    live = [await carol.recv_type("trip_update_broadcast") for _ in EDITS]

    bob, _, _ = await open_client(server, "bob", "s-bob")  # back from offline, not joined
    events = await sync_request(bob, 2)
    *changes, marker = events
    assert [e["type"] for e in changes] == ["trip_update_broadcast"] * 4
    assert [e["payload"]["version"] for e in changes] == [3, 4, 5, 6]
    for replayed, original in zip(changes, live[1:], strict=True):
        assert replayed["payload"]["replayed"] is True
        for key in ("tripId", "updatedBy", "updateType", "changes", "version"):
            assert replayed["payload"][key] == original["payload"][key], key
    assert changes[-1]["payload"]["changes"]["destination"] == {
        "oldValue": "Rome",
        "newValue": "Milan",
        "fieldPath": "trip.destination",
    }
    assert marker["payload"] == {
        "tripId": "trip-1",
        "version": 6,
        "fromVersion": 2,
        "changes": 4,
        "snapshot": False,
        "requestId": "sync-2",
    }
    # Since 0: the creation too. Up to date: only the marker.
    assert [e["payload"].get("version") for e in await sync_request(bob, 0)] == [
        1,
        2,
        3,
        4,
        5,
        6,
        6,
    ]
    assert [e["type"] for e in await sync_request(bob, 6)] == ["sync_complete"]
    # Ahead of the server (say, a restored backup): a snapshot of the current trip.
    *_, snapshot, marker = await sync_request(bob, 99)
    assert snapshot["payload"]["reason"] == "unknown_version"
    assert snapshot["payload"]["fields"] == (await get_trip(server))["fields"]
    assert marker["payload"]["snapshot"] is True
    for client in (alice, bob, carol):
        await client.close()


async def test_sync_request_after_compaction_sends_a_snapshot(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(compact_every_updates=2, history_retention_days=0)
    await create_trip(server, collaborators={"bob": "editor"})
    alice, _ = await join(server, "alice")
    await make_edits(alice)
    bob, _, _ = await open_client(server, "bob", "s-bob")
    events = await sync_request(bob, 1)
    assert [e["type"] for e in events] == ["trip_snapshot", "sync_complete"]
    snapshot, marker = events
    trip = await get_trip(server)
    assert snapshot["payload"] == {
        "tripId": "trip-1",
        "version": trip["version"],
        "fields": trip["fields"],
        "reason": "history_compacted",
    }
    assert marker["payload"]["version"] == trip["version"] == 6
    assert marker["payload"]["snapshot"] is True
    assert marker["payload"]["changes"] == 0
    assert [e["type"] for e in await sync_request(bob, 6)] == ["sync_complete"]
    # After a restart the compacted history is read back from SQLite: same answer.
    server.stop()
    server.start()
    bob2, _, _ = await open_client(server, "bob", "s-bob2")
    assert [e["type"] for e in await sync_request(bob2, 1)] == ["trip_snapshot", "sync_complete"]
    for client in (alice, bob, bob2):
        await client.close()


async def test_sync_request_refused_without_leaking_existence(server: ServerProcess) -> None:
    await create_trip(server)
    eve, _, _ = await open_client(server, "eve", "s-eve")
    answers = []
    for trip_id in ("trip-1", "trip-missing"):
        await eve.send(
            {
                "id": "m-1",
                "type": "sync_request",
                "payload": {"tripId": trip_id, "sinceVersion": 0},
            }
        )
        error = await eve.recv_type("error", "trip_update_broadcast", "sync_complete")
        assert error["type"] == "error", error
        payload = error["payload"]
        assert payload["code"] == "PERMISSION_DENIED"
        assert payload["details"]["tripId"] == trip_id
        answers.append({**payload, "details": {**payload["details"], "tripId": None}})
    assert answers[0] == answers[1]  # an unknown trip looks exactly like a forbidden one
    admin, _, _ = await open_client(server, "root", "s-root", role="admin")
    assert [e["type"] for e in await sync_request(admin, 0)][-1] == "sync_complete"
    await eve.close()
    await admin.close()


@pytest.mark.parametrize(("window", "restart"), [(0, False), (1, False), (1, True)])
async def test_history_below_the_memory_window_is_read_from_storage(
    server_factory: Callable[..., ServerProcess], window: int, restart: bool
) -> None:
    # With a window of 1 the room keeps one or two log entries in memory: replays and
    # updates at old versions read the rest from SQLite, and answer as with all (0).
    server = server_factory(history_window_updates=window)
    await create_trip(server, collaborators={"bob": "editor", "carol": "viewer"})
    alice, _ = await join(server, "alice")
    carol, _ = await join(server, "carol")
    await make_edits(alice)
    live = [await carol.recv_type("trip_update_broadcast") for _ in EDITS]
    if restart:  # a room loaded from storage, not created here
        server.stop()
        server.start()
        alice, _ = await join(server, "alice")
    bob, _, _ = await open_client(server, "bob", "s-bob")
    *changes, marker = await sync_request(bob, 1)
    assert [e["payload"]["version"] for e in changes] == [2, 3, 4, 5, 6]
    for replayed, original in zip(changes, live, strict=True):
        for key in ("tripId", "updatedBy", "updateType", "changes", "version"):
            assert replayed["payload"][key] == original["payload"][key], key
    assert marker["payload"]["changes"] == 5
    # Made at version 3, where notes was "Bring a hat.": merged into the current text.
    late_text = update("late-1", "notes", "Bring a red hat.", 3, previous="Bring a hat.")
    await alice.send(late_text)
    outcome = await alice.recv_type(*OUTCOMES)
    assert outcome["type"] == "optimistic_update_confirmed", outcome
    # Made at version 2 (destination "Rome", changed since) with a wrong previousValue.
    await alice.send(update("late-2", "destination", "Oslo", 2, previous="Nice"))
    outcome = await alice.recv_type(*OUTCOMES)
    assert outcome["type"] == "optimistic_update_rollback", outcome
    assert outcome["payload"]["rollbackReason"] == "stale_previous_value", outcome
    for client in (alice, bob, carol):
        await client.close()
