"""End-to-end: trips over HTTP and real WebSockets (collaboration, optimistic updates)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, SQLITE_ONLY, ServerProcess
from tests.wsclient import TIMEOUT_S, Client, open_client
from tripsage_sync.sync.wire import iso_ms

pytestmark = pytest.mark.anyio

T0 = "2025-05-28T01:30:00.000Z"


def after_creation(offset_ms: int) -> str:
    """A clientTimestamp just after the trip was created (and before now)."""
    return iso_ms(CREATED_MS[0] + offset_ms)


CREATED_MS = [0]


def auth(server: ServerProcess, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user)}"}


async def create_trip(
    server: ServerProcess,
    owner: str = "alice",
    *,
    trip_id: str = "trip-1",
    fields: dict[str, Any] | None = None,
    manual: list[str] | None = None,
    collaborators: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tripId": trip_id,
        "fields": fields
        if fields is not None
        else {
            "name": "Europe",
            "destination": "Paris",
            "budget": 2000,
            "notes": "",
            "itinerary": [],
        },
    }
    if manual is not None:
        body["manualResolutionFields"] = manual
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post("/api/trips", json=body, headers=auth(server, owner))
        assert response.status_code == 201, response.text
        for user, level in (collaborators or {}).items():
            put = await http.put(
                f"/api/trips/{trip_id}/collaborators/{user}",
                json={"permissionLevel": level},
                headers=auth(server, owner),
            )
            assert put.status_code == 200, put.text
    CREATED_MS[0] = int(time.time() * 1000)
    data: dict[str, Any] = response.json()
    return data


async def join(
    server: ServerProcess, user: str, trip_id: str = "trip-1"
) -> tuple[Client, dict[str, Any]]:
    client, _, _ = await open_client(server, user, f"s-{user}")
    await client.send({"type": "collaboration_session_start", "payload": {"tripId": trip_id}})
    started = await client.recv_type("collaboration_session_started", "error")
    assert started["type"] == "collaboration_session_started", started
    return client, started


def update(
    update_id: str,
    field: str,
    value: Any,
    expected: int,
    *,
    previous: Any = ...,
    ts: str = T0,
    trip_id: str = "trip-1",
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": f"m-{update_id}",
        "type": "optimistic_update_start",
        "timestamp": ts,
        "payload": {
            "updateId": update_id,
            "tripId": trip_id,
            "fieldName": field,
            "optimisticValue": value,
            "expectedVersion": expected,
            "clientTimestamp": ts,
        },
    }
    if previous is not ...:
        message["payload"]["previousValue"] = previous
    return message


OUTCOMES = (
    "optimistic_update_confirmed",
    "optimistic_update_rejected",
    "optimistic_update_rollback",
)


async def presence_of(
    client: Client, users: set[str], *, timeout: float = TIMEOUT_S
) -> dict[str, Any]:
    """The next presence event that lists exactly ``users``."""
    return await client.recv_matching(
        "trip_collaborator_presence",
        lambda p: {c["userId"] for c in p["activeCollaborators"]} == users,
        timeout,
    )


async def get_trip(
    server: ServerProcess, user: str = "alice", trip_id: str = "trip-1"
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/api/trips/{trip_id}", headers=auth(server, user))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_http_trip_lifecycle(server: ServerProcess) -> None:
    created = await create_trip(server, collaborators={"bob": "editor"}, manual=["budget"])
    assert created["tripId"] == "trip-1"
    assert created["version"] == 1
    assert created["fields"]["destination"] == "Paris"
    assert created["manualResolutionFields"] == ["budget"]
    trip = await get_trip(server, "bob")
    assert {"userId": "bob", "permissionLevel": "editor"} in trip["collaborators"]
    async with httpx.AsyncClient(base_url=server.http) as http:
        listed = (await http.get("/api/trips", headers=auth(server, "bob"))).json()
        assert [t["tripId"] for t in listed["trips"]] == ["trip-1"]
        assert (await http.get("/api/trips/trip-1", headers=auth(server, "eve"))).status_code == 404
        assert (await http.get("/api/trips/trip-1")).status_code == 401
        dup = await http.post("/api/trips", json={"tripId": "trip-1"}, headers=auth(server, "x"))
        assert dup.status_code == 409
        bad = await http.post(
            "/api/trips", json={"fields": {"notes": 5}}, headers=auth(server, "x")
        )
        assert bad.status_code == 400
        assert bad.json()["code"] == "INVALID_MESSAGE_FORMAT"
        forbidden = await http.put(
            "/api/trips/trip-1/collaborators/eve",
            json={"permissionLevel": "editor"},
            headers=auth(server, "bob"),
        )
        assert forbidden.status_code == 403
        default = await http.post("/api/trips", json={"fields": {}}, headers=auth(server, "x"))
        assert default.json()["manualResolutionFields"] == ["budget"]


async def test_collaboration_session_presence_and_leave(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "viewer"})
    alice, started = await join(server, "alice")
    assert started["payload"]["fields"]["name"] == "Europe"
    assert started["payload"]["serverVersion"] == 1
    assert started["payload"]["yourPermissions"] == {
        "canEdit": True,
        "canInvite": True,
        "canDelete": True,
    }
    bob, bob_started = await join(server, "bob")
    assert bob_started["payload"]["yourPermissions"]["canEdit"] is False
    joined = await alice.recv_type("trip_collaboration_join")
    assert joined["payload"]["userId"] == "bob"
    assert joined["payload"]["permissionLevel"] == "viewer"
    presence = await presence_of(alice, {"alice", "bob"})
    users = {c["userId"]: c for c in presence["payload"]["activeCollaborators"]}
    assert users["bob"]["permissionLevel"] == "viewer"
    assert users["bob"]["isActive"] is True
    assert set(users["bob"]) >= {"userName", "avatarUrl", "lastSeen", "currentField"}
    # A socket that dies: bob disappears from presence at once (no ghost).
    bob.ws.transport.abort()
    left = await alice.recv_type("trip_collaboration_leave")
    assert left["payload"]["userId"] == "bob"
    await presence_of(alice, {"alice"})
    await alice.close()


async def test_optimistic_update_confirmed_and_broadcast(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor", "carol": "viewer"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    carol, _ = await join(server, "carol")
    await alice.send(update("u1", "destination", "Rome, Italy", 1, previous="Paris"))
    confirmed = await alice.recv_type(*OUTCOMES)
    assert confirmed["type"] == "optimistic_update_confirmed"
    assert confirmed["payload"]["confirmedValue"] == "Rome, Italy"
    assert confirmed["payload"]["serverVersion"] == 2
    assert confirmed["payload"]["processingTime"] >= 0
    for other in (bob, carol):
        broadcast = await other.recv_type("trip_update_broadcast")
        assert broadcast["payload"]["changes"] == {
            "destination": {
                "oldValue": "Paris",
                "newValue": "Rome, Italy",
                "fieldPath": "trip.destination",
            }
        }
        assert broadcast["payload"]["version"] == 2
        assert broadcast["payload"]["updatedBy"] == "alice"
    assert (await get_trip(server))["fields"]["destination"] == "Rome, Italy"
    for client in (alice, bob, carol):
        await client.close()


async def test_viewer_and_stranger_are_refused(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"carol": "viewer"})
    carol, _ = await join(server, "carol")
    await carol.send(update("v1", "destination", "Oslo", 1))
    error = await carol.recv_type("error")
    assert error["payload"]["code"] == "PERMISSION_DENIED"
    rollback = await carol.recv_type(*OUTCOMES)
    assert rollback["type"] == "optimistic_update_rollback"
    assert rollback["payload"]["rollbackReason"] == "permission_denied"
    assert rollback["payload"]["rollbackToValue"] == "Paris"
    assert (await get_trip(server))["version"] == 1

    eve, _, _ = await open_client(server, "eve", "s-eve")
    await eve.send({"type": "collaboration_session_start", "payload": {"tripId": "trip-1"}})
    assert (await eve.recv_type("error"))["payload"]["code"] == "PERMISSION_DENIED"
    await eve.send({"type": "subscribe", "payload": {"channels": ["trip:trip-1"]}})
    update_event = await eve.recv_type("subscription_update")
    assert update_event["payload"]["deniedChannels"] == [
        {"channel": "trip:trip-1", "code": "PERMISSION_DENIED"}
    ]
    await eve.send(update("e1", "destination", "Oslo", 1))
    assert (await eve.recv_type(*OUTCOMES))["payload"]["rollbackReason"] == "permission_denied"
    for client in (carol, eve):
        await client.close()


async def test_concurrent_scalar_last_write_wins(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor", "carol": "editor"}, manual=[])
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    carol, _ = await join(server, "carol")
    # All three edit from version 1; bob's clientTimestamp is the latest.
    await alice.send(update("a", "destination", "Rome", 1, ts=after_creation(2)))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await carol.send(update("c", "destination", "Lima", 1, ts=after_creation(1)))
    rejected = await carol.recv_type(*OUTCOMES)
    assert rejected["type"] == "optimistic_update_rejected"
    assert rejected["payload"]["rejectionReason"] == "version_conflict"
    assert rejected["payload"]["currentServerValue"] == "Rome"
    assert rejected["payload"]["conflictingUpdate"]["userId"] == "alice"
    await bob.send(update("b", "destination", "Oslo", 1, ts=after_creation(3)))
    assert (await bob.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    detected = await alice.recv_type("trip_conflict_detected")
    assert detected["payload"]["resolutionStrategy"] == "last_write_wins"
    assert detected["payload"]["fieldName"] == "destination"
    assert (await get_trip(server))["fields"]["destination"] == "Oslo"
    for client in (alice, bob, carol):
        await client.close()


async def test_text_and_list_edits_merge(server: ServerProcess) -> None:
    await create_trip(
        server,
        fields={"notes": "Day one. Day two.", "itinerary": [{"city": "Paris"}]},
        collaborators={"bob": "editor"},
    )
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    await alice.send(
        update("n1", "notes", "Day one: Louvre. Day two.", 1, previous="Day one. Day two.")
    )
    await bob.send(
        update("n2", "notes", "Day one. Day two: Versailles.", 1, previous="Day one. Day two.")
    )
    await alice.recv_type(*OUTCOMES)
    assert (await bob.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await alice.send(
        update(
            "l1",
            "itinerary",
            [{"city": "Paris"}, {"city": "Lyon"}],
            3,
            previous=[{"city": "Paris"}],
        )
    )
    await bob.send(
        update(
            "l2",
            "itinerary",
            [{"city": "Nice"}, {"city": "Paris"}],
            3,
            previous=[{"city": "Paris"}],
        )
    )
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    assert (await bob.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    fields = (await get_trip(server))["fields"]
    assert fields["notes"] == "Day one: Louvre. Day two: Versailles."
    assert fields["itinerary"] == [{"city": "Nice"}, {"city": "Paris"}, {"city": "Lyon"}]
    for client in (alice, bob):
        await client.close()


async def test_idempotent_resend(server: ServerProcess) -> None:
    await create_trip(server)
    alice, _ = await join(server, "alice")
    await alice.send(update("once", "budget", 2500, 1))
    first = await alice.recv_type(*OUTCOMES)
    await alice.close()
    again, _ = await join(server, "alice")  # "after a reconnect"
    await again.send(update("once", "budget", 2500, 1))
    second = await again.recv_type(*OUTCOMES)
    assert second["type"] == first["type"] == "optimistic_update_confirmed"
    first["payload"].pop("processingTime")
    second["payload"].pop("processingTime")
    assert second["payload"] == first["payload"]
    assert (await get_trip(server))["version"] == 2
    await again.close()


async def test_manual_conflict_resolution_flow(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    await create_trip(server, manual=["budget"], collaborators={"bob": "editor", "carol": "viewer"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    carol, _ = await join(server, "carol")
    await alice.send(update("a", "budget", 2500, 1, ts=after_creation(2)))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await bob.send(update("b", "budget", 3000, 1, ts=after_creation(1)))
    rejected = await bob.recv_type(*OUTCOMES)
    assert rejected["type"] == "optimistic_update_rejected"
    assert rejected["payload"]["suggestedResolution"] == "merge_required"
    conflict_id = rejected["payload"]["conflictId"]
    for editor in (alice, bob):
        required = await editor.recv_type("conflict_resolution_required")
        payload = required["payload"]
        assert payload["conflictId"] == conflict_id
        assert payload["fieldName"] == "budget"
        assert payload["autoResolveAfter"] == 30000
        values = {o["value"]: o for o in payload["options"]}
        assert values[2500]["source"] == "alice"
        assert values[3000]["source"] == "bob"
        assert values[2750]["source"] == "system"
        assert payload["defaultOption"] == values[2500]["id"]
    # The viewer is told nothing it could act on, and cannot resolve.
    await carol.send(
        {
            "type": "conflict_resolution_submit",
            "payload": {"conflictId": conflict_id, "customValue": 1},
        }
    )
    assert (await carol.recv_type("error"))["payload"]["code"] == "PERMISSION_DENIED"
    assert not any(m.get("type") == "conflict_resolution_required" for m in carol.seen)
    await bob.send(
        {
            "type": "conflict_resolution_submit",
            "payload": {"conflictId": conflict_id, "chosenOptionId": values[3000]["id"]},
        }
    )
    broadcast = await alice.recv_type("trip_update_broadcast")
    assert broadcast["payload"]["changes"]["budget"]["newValue"] == 3000
    assert (await get_trip(server))["fields"]["budget"] == 3000
    for client in (alice, bob, carol):
        await client.close()


async def test_manual_conflict_default_applies_and_survives_restart(
    server_factory: Callable[..., ServerProcess],
) -> None:
    first = server_factory(conflict_auto_resolve_ms=4000)
    await create_trip(first, manual=["budget"], collaborators={"bob": "editor"})
    alice, _ = await join(first, "alice")
    bob, _ = await join(first, "bob")
    await alice.send(update("a", "budget", 2500, 1, ts=after_creation(1)))
    await alice.recv_type(*OUTCOMES)
    await bob.send(update("b", "budget", 3000, 1, ts=after_creation(5)))
    assert (await bob.recv_type(*OUTCOMES))["type"] == "optimistic_update_rejected"
    for client in (alice, bob):
        await client.close()
    assert (await get_trip(first))["fields"]["budget"] == 2500  # pending, unresolved
    first.stop()  # the pending conflict (and its deadline) must survive the restart
    second = server_factory(db=first.db, conflict_auto_resolve_ms=4000)
    alice, started = await join(second, "alice")
    if started["payload"]["fields"]["budget"] == 2500:  # deadline not yet reached
        pending = await alice.recv_type("conflict_resolution_required")
        assert pending["payload"]["fieldName"] == "budget"
        resolved = await alice.recv_type("trip_update_broadcast", timeout=10)
        assert resolved["payload"]["changes"]["budget"]["newValue"] == 3000
    # Either way the default (the last_write_wins choice) was applied after the restart.
    assert (await get_trip(second))["fields"]["budget"] == 3000
    await alice.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill-9"])
async def test_confirmed_changes_survive(
    server_factory: Callable[..., ServerProcess], sig: int
) -> None:
    first = server_factory()
    await create_trip(first, manual=[])
    alice, _ = await join(first, "alice")
    for i in range(20):
        await alice.send(update(f"u{i}", "budget", 1000 + i, 1 + i))
        confirmed = await alice.recv_type(*OUTCOMES)
        assert confirmed["payload"]["serverVersion"] == 2 + i
    await alice.send(update("t", "notes", "kept", 21, previous=""))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    first.stop(sig)
    await alice.closed()
    second = server_factory(db=first.db)
    trip = await get_trip(second)
    assert trip["version"] == 22
    assert trip["fields"]["budget"] == 1019
    assert trip["fields"]["notes"] == "kept"
    alice, _ = await join(second, "alice")
    await alice.send(update("after", "budget", 1, 22))
    assert (await alice.recv_type(*OUTCOMES))["payload"]["serverVersion"] == 23
    await alice.close()


async def test_field_locks_and_permission_change(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(field_lock_ttl_s=1)
    await create_trip(server, collaborators={"bob": "viewer"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    await alice.send(
        {
            "type": "trip_field_editing_start",
            "payload": {"tripId": "trip-1", "fieldName": "destination"},
        }
    )
    start = await bob.recv_type("trip_field_editing_start")
    assert start["payload"]["userId"] == "alice"
    lock_id = start["payload"]["lockId"]
    await bob.recv_matching(
        "trip_collaborator_presence",
        lambda p: any(
            c["userId"] == "alice" and c["currentField"] == "destination"
            for c in p["activeCollaborators"]
        ),
    )
    stop = await bob.recv_type("trip_field_editing_stop", timeout=5)  # the lock times out
    assert stop["payload"]["lockId"] == lock_id
    # Bob, a viewer, cannot take a lock; once promoted he can edit at once.
    await bob.send(
        {"type": "trip_field_editing_start", "payload": {"tripId": "trip-1", "fieldName": "budget"}}
    )
    assert (await bob.recv_type("error"))["payload"]["code"] == "PERMISSION_DENIED"
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.put(
            "/api/trips/trip-1/collaborators/bob",
            json={"permissionLevel": "editor"},
            headers=auth(server, "alice"),
        )
        assert response.status_code == 200
    change = await bob.recv_type("trip_permission_change")
    assert change["payload"] == {
        "tripId": "trip-1",
        "targetUserId": "bob",
        "changedBy": "alice",
        "oldPermission": "viewer",
        "newPermission": "editor",
        "effectiveImmediately": True,
    }
    await bob.send(update("b1", "destination", "Nice", 1))
    assert (await bob.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    async with httpx.AsyncClient(base_url=server.http) as http:
        removed = await http.delete(
            "/api/trips/trip-1/collaborators/bob", headers=auth(server, "alice")
        )
        assert removed.status_code == 200
    assert (await bob.recv_type("trip_permission_change"))["payload"]["newPermission"] is None
    assert (await alice.recv_type("trip_collaboration_leave"))["payload"]["userId"] == "bob"
    await bob.send(update("b2", "destination", "Bern", 2))
    assert (await bob.recv_type(*OUTCOMES))["payload"]["rollbackReason"] == "permission_denied"
    for client in (alice, bob):
        await client.close()


async def test_many_concurrent_editors_get_one_outcome_each(server: ServerProcess) -> None:
    editors = {f"user{i}": "editor" for i in range(8)}
    await create_trip(server, collaborators=editors, manual=[])
    clients = [(await join(server, user))[0] for user in editors]
    await asyncio.gather(
        *(
            c.send(update(f"up-{i}", f"field{i % 3}", i, 1, ts=after_creation(i + 1)))
            for i, c in enumerate(clients)
        )
    )
    outcomes = [await c.recv_type(*OUTCOMES) for c in clients]
    assert len({o["payload"]["updateId"] for o in outcomes}) == 8
    fields = (await get_trip(server))["fields"]
    # Per field, the latest clientTimestamp wins whatever the arrival order.
    assert fields["field0"] == 6
    assert fields["field1"] == 7
    assert fields["field2"] == 5
    for c in clients:
        await c.close()


@SQLITE_ONLY
async def test_compaction_keeps_trip_and_prunes_log(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(compact_every_updates=5, history_retention_days=0)
    await create_trip(server, manual=[])
    alice, _ = await join(server, "alice")
    for i in range(12):
        await alice.send(update(f"c{i}", "budget", i, 1 + i))
        assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await alice.close()
    server.stop()
    with sqlite3.connect(server.db) as db:
        (snapshot_version,) = db.execute("SELECT version FROM trip_snapshots").fetchone()
        (logged,) = db.execute("SELECT COUNT(*) FROM trip_updates").fetchone()
    db.close()
    assert snapshot_version >= 10
    assert logged <= 13 - snapshot_version
    again = server_factory(db=server.db)
    trip = await get_trip(again)
    assert trip["version"] == 13
    assert trip["fields"]["budget"] == 11


async def test_idle_and_silent_collaborators(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(presence_idle_s=0.5, heartbeat_interval_s=1)
    await create_trip(server, collaborators={"bob": "editor"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    # Bob does nothing: he shows as not active, then his silent socket is dropped.
    await alice.recv_matching(
        "trip_collaborator_presence",
        lambda p: any(c["userId"] == "bob" and not c["isActive"] for c in p["activeCollaborators"]),
    )
    for _ in range(4):  # alice keeps her own connection alive meanwhile
        await alice.send({"type": "connection_heartbeat", "payload": {}})
        await alice.recv_type("connection_heartbeat")
        if any(m.get("type") == "trip_collaboration_leave" for m in alice.backlog):
            break
    left = await alice.recv_type("trip_collaboration_leave", timeout=5)
    assert left["payload"]["userId"] == "bob"
    assert await bob.closed() == 1001
    await alice.close()


async def test_the_readmes_create_trip_example_is_answered_as_documented(
    server: ServerProcess,
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Creating a trip.**", 1)[1]
    body = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    async with httpx.AsyncClient(base_url=server.http) as http:
        created = await http.post("/api/trips", json=body, headers=auth(server, "alice"))
        assert created.status_code == 201, created.text
        trip = created.json()
        assert set(trip) == {
            "tripId",
            "version",
            "fields",
            "manualResolutionFields",
            "collaborators",
            "ownerId",
        }
        assert trip["fields"] == body["fields"]
        assert trip["collaborators"] == [{"userId": "alice", "permissionLevel": "owner"}]
        fetched = await http.get(f"/api/trips/{body['tripId']}", headers=auth(server, "alice"))
        assert fetched.json() == trip
        again = await http.post("/api/trips", json=body, headers=auth(server, "alice"))
        assert again.status_code == 409
        bad = await http.post("/api/trips", json={"colour": 1}, headers=auth(server, "alice"))
        assert bad.status_code == 400
        assert bad.json()["code"] == "INVALID_MESSAGE_FORMAT"
        assert bad.json()["details"]["field"] == "colour"
        anonymous = await http.post("/api/trips", json={})
        assert anonymous.status_code == 401
