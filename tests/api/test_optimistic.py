"""End-to-end: ``optimistic_update_start`` as spec-following clients send it (issue 10).

Updates made before the trip was loaded (version 0 / no expectedVersion), the
version a connection has seen, exactly one outcome for invalid updates (also
inside a ``batch``), and last-write-wins ties after the causal clamp.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.test_trips import OUTCOMES, auth, create_trip, join, update
from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client
from tripsage_sync.sync.wire import iso_ms

pytestmark = pytest.mark.anyio


def now_iso(offset_ms: int = 0) -> str:
    return iso_ms(int(time.time() * 1000) + offset_ms)


async def trip_fields(server: ServerProcess, trip_id: str = "trip-1") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/api/trips/{trip_id}", headers=auth(server, "alice"))
        assert response.status_code == 200, response.text
        fields: dict[str, Any] = response.json()["fields"]
        return fields


def unbased(update_id: str, field: str, value: Any, **payload: Any) -> dict[str, Any]:
    """An update as the spec's Vue example sends it: no expectedVersion, no previousValue."""
    message = update(update_id, field, value, 0, ts=payload.pop("ts", now_iso()))
    del message["payload"]["expectedVersion"]
    message["payload"].update(payload)
    return message


async def outcome_of(client: Client, update_id: str) -> dict[str, Any]:
    """The next outcome for ``update_id`` (outcomes of other updates are skipped)."""
    while True:
        message = await client.recv_type(*OUTCOMES)
        if message["payload"].get("updateId") == update_id:
            return message


# -- item 1: an update made before the trip was loaded ---------------------------------


async def test_a_version_0_update_before_joining_is_applied(server: ServerProcess) -> None:
    await create_trip(server)
    alice, _, _ = await open_client(server, "alice", "s-alice")  # never joins the trip
    queued = update("u-offline", "destination", "Rome", 0, previous=None, ts=now_iso())
    await alice.send(queued)
    outcome = await outcome_of(alice, "u-offline")
    assert outcome["type"] == "optimistic_update_confirmed", outcome
    assert outcome["payload"]["confirmedValue"] == "Rome"
    assert (await trip_fields(server))["destination"] == "Rome"
    # The text field merges the same way (diffed from the creation value).
    await alice.send(update("u-notes", "notes", "Offline note", 0, previous=None, ts=now_iso()))
    notes = await outcome_of(alice, "u-notes")
    assert notes["payload"]["confirmedValue"] == "Offline note"
    # A fresh page sees the edits.
    _, started = await join(server, "alice")
    assert started["payload"]["fields"]["destination"] == "Rome"
    await alice.close()


async def test_a_version_0_update_is_concurrent_with_later_changes(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor"}, manual=["budget"])
    bob, _ = await join(server, "bob")
    await bob.send(update("u-bob", "destination", "Oslo", 1, ts=now_iso()))
    assert (await outcome_of(bob, "u-bob"))["type"] == "optimistic_update_confirmed"
    await bob.send(update("u-bob-2", "budget", 2500, 2, ts=now_iso()))
    assert (await outcome_of(bob, "u-bob-2"))["type"] == "optimistic_update_confirmed"
    alice, _, _ = await open_client(server, "alice", "s-alice")
    # Made (by its clock) before bob's change: last-write-wins keeps bob's, out loud.
    await alice.send(update("u-old", "destination", "Rome", 0, previous=None, ts=now_iso(-60_000)))
    lost = await outcome_of(alice, "u-old")
    assert lost["type"] == "optimistic_update_rejected", lost
    assert lost["payload"]["currentServerValue"] == "Oslo"
    assert lost["payload"]["message"]
    # Made after it: applied.
    await alice.send(update("u-new", "destination", "Lima", 0, previous=None, ts=now_iso()))
    assert (await outcome_of(alice, "u-new"))["payload"]["confirmedValue"] == "Lima"
    # A manual field changed since the creation: the conflict is raised, not dropped.
    await alice.send(update("u-budget", "budget", 3000, 0, previous=None, ts=now_iso()))
    manual = await outcome_of(alice, "u-budget")
    assert manual["payload"]["suggestedResolution"] == "merge_required"
    assert (await bob.recv_type("conflict_resolution_required"))["payload"]["fieldName"] == "budget"
    await alice.close()
    await bob.close()


async def test_rollbacks_are_worded_for_people_and_retry_only_if_useful(
    server: ServerProcess,
) -> None:
    await create_trip(server)
    alice, _ = await join(server, "alice")
    await alice.send(update("u-stale", "destination", "Rome", 1, previous="Berlin"))
    stale = await outcome_of(alice, "u-stale")
    assert stale["type"] == "optimistic_update_rollback"
    assert stale["payload"]["canRetry"] is False
    assert stale["payload"]["rollbackToValue"] == "Paris"
    await alice.send(update("u-future", "destination", "Rome", 7))
    future = await outcome_of(alice, "u-future")
    assert future["payload"]["rollbackReason"] == "invalid_expected_version"
    assert future["payload"]["canRetry"] is False
    for message in (stale["payload"]["message"], future["payload"]["message"]):
        assert "expectedVersion" not in message
        assert "between" not in message
        assert message.endswith(".")
    await alice.close()


# -- item 2: no expectedVersion ----------------------------------------------------------


async def test_without_expected_version_the_base_is_the_latest_version_seen(
    server: ServerProcess,
) -> None:
    await create_trip(server, collaborators={"bob": "editor"}, manual=[])
    alice, started = await join(server, "alice")
    assert started["payload"]["version"] == 1
    bob, _ = await join(server, "bob")
    await bob.send(update("u-bob", "destination", "Oslo", 1, ts=now_iso()))
    assert (await outcome_of(bob, "u-bob"))["type"] == "optimistic_update_confirmed"
    broadcast = await alice.recv_type("trip_update_broadcast")
    assert broadcast["payload"]["version"] == 2
    # alice saw Oslo (version 2); her clock is a minute slow. Based on what she
    # saw, her edit is causally later and wins; as a version-0 edit it would lose.
    await alice.send(unbased("u-alice", "destination", "Rome", ts=now_iso(-60_000)))
    mine = await outcome_of(alice, "u-alice")
    assert mine["type"] == "optimistic_update_confirmed", mine
    assert mine["payload"]["serverVersion"] == 3
    # Her own confirmation counts as seen: the next edit builds on version 3.
    await alice.send(unbased("u-alice-2", "destination", "Lima", ts=now_iso(-120_000)))
    assert (await outcome_of(alice, "u-alice-2"))["type"] == "optimistic_update_confirmed"
    # A connection that never saw the trip: as version 0, concurrent, and it loses.
    carol_like, _, _ = await open_client(server, "bob", "s-bob-2")
    await carol_like.send(unbased("u-unseen", "destination", "Kyiv", ts=now_iso(-60_000)))
    unseen = await outcome_of(carol_like, "u-unseen")
    assert unseen["type"] == "optimistic_update_rejected", unseen
    assert (await trip_fields(server))["destination"] == "Lima"
    for client in (alice, bob, carol_like):
        await client.close()


async def test_sync_complete_sets_the_version_seen(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor"}, manual=[])
    bob, _ = await join(server, "bob")
    await bob.send(update("u-bob", "destination", "Oslo", 1, ts=now_iso()))
    assert (await outcome_of(bob, "u-bob"))["type"] == "optimistic_update_confirmed"
    alice, _, _ = await open_client(server, "alice", "s-alice")  # resumes, never joins
    await alice.send({"type": "sync_request", "payload": {"tripId": "trip-1", "sinceVersion": 1}})
    assert (await alice.recv_type("sync_complete"))["payload"]["version"] == 2
    await alice.send(unbased("u-alice", "destination", "Rome", ts=now_iso(-60_000)))
    assert (await outcome_of(alice, "u-alice"))["type"] == "optimistic_update_confirmed"
    await alice.close()
    await bob.close()


async def test_the_spec_vue_example_gets_its_outcome(server: ServerProcess) -> None:
    await create_trip(server)
    alice, _, _ = await open_client(server, "alice", "s-alice")
    message = {
        "type": "optimistic_update_start",
        "payload": {
            "updateId": "vue-1",
            "tripId": "trip-1",
            "fieldName": "destination",
            "optimisticValue": "Rome, Italy",
            "clientTimestamp": now_iso(),
        },
    }
    await alice.send(message)
    outcome = await outcome_of(alice, "vue-1")
    assert outcome["type"] == "optimistic_update_confirmed", outcome
    await alice.close()


# -- item 3: exactly one outcome for an invalid update -----------------------------------

INVALID: list[tuple[str, dict[str, Any], str]] = [
    # (what, payload changes (None deletes), the field the details name)
    ("no tripId", {"tripId": None}, "payload.tripId"),
    ("no value", {"optimisticValue": None}, "payload.optimisticValue"),
    ("bad field name", {"fieldName": "bad name"}, "payload.fieldName"),
    ("no field name", {"fieldName": None}, "payload.fieldName"),
    ("wrong kind", {"fieldName": "notes", "optimisticValue": 42}, "payload.optimisticValue"),
    ("list into a scalar", {"optimisticValue": ["a"]}, "payload.optimisticValue"),
    ("version as text", {"expectedVersion": "5"}, "payload.expectedVersion"),
    ("tripId a number", {"tripId": 7}, "payload.tripId"),
]


def invalid_message(update_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    message = update(update_id, "destination", "Rome", 1, ts=now_iso())
    for key, value in changes.items():
        if value is None:
            del message["payload"][key]
        else:
            message["payload"][key] = value
    return message


async def expect_refusal(client: Client, update_id: str, field: str) -> None:
    error = await client.recv_type("error")
    assert error["payload"]["code"] == "INVALID_MESSAGE_FORMAT", error
    refused = await outcome_of(client, update_id)
    assert refused["type"] == "optimistic_update_rejected", refused
    assert refused["payload"]["rejectionReason"] == "invalid_message"
    assert refused["payload"]["details"]["field"] == field
    assert refused["payload"]["message"]


@pytest.mark.parametrize("in_batch", [False, True])
async def test_an_invalid_update_gets_an_error_and_its_rejection(
    server: ServerProcess, in_batch: bool
) -> None:
    await create_trip(server)
    alice, _, _ = await open_client(server, "alice", "s-alice")
    messages = [invalid_message(f"bad-{i}", changes) for i, (_, changes, _) in enumerate(INVALID)]
    if in_batch:
        await alice.send({"type": "batch", "payload": {"messages": messages}})
    else:
        for message in messages:
            await alice.send(message)
    for i, (_, _, field) in enumerate(INVALID):
        await expect_refusal(alice, f"bad-{i}", field)
    # Nothing else arrives for them: the next answer is the heartbeat's.
    await alice.send({"type": "connection_heartbeat", "payload": {}})
    await alice.recv_type("connection_heartbeat")
    assert not [m for m in alice.backlog if m.get("type") in OUTCOMES]
    assert (await trip_fields(server))["destination"] == "Paris"
    await alice.close()


async def test_the_spec_jest_example_and_the_value_alias(server: ServerProcess) -> None:
    await create_trip(server)
    alice, _, _ = await open_client(server, "alice", "s-alice")
    # Literally the spec's Jest test: no tripId, `value` for optimisticValue.
    payload = {"updateId": "test-123", "fieldName": "destination", "value": "Paris"}
    await alice.send({"type": "optimistic_update_start", "payload": payload})
    await expect_refusal(alice, "test-123", "payload.tripId")
    payload = {**payload, "tripId": "trip-1", "value": "Rome", "updateId": "t-2"}
    await alice.send({"type": "optimistic_update_start", "payload": payload})
    aliased = await outcome_of(alice, "t-2")
    assert aliased["type"] == "optimistic_update_confirmed", aliased
    assert aliased["payload"]["confirmedValue"] == "Rome"
    await alice.close()


# -- item 5: last-write-wins ties after the causal clamp ------------------------------------

# user, clientTimestamp lag behind the server clock (ms): alice's clock is the least slow.
SKEWED: list[tuple[str, int]] = [("alice", 10_000), ("bob", 20_000), ("carol", 30_000)]


async def test_clamped_ties_are_won_by_the_latest_own_clock_in_every_order(
    server: ServerProcess,
) -> None:
    clients: dict[str, Client] = {}
    for user, _ in SKEWED:
        clients[user], _, _ = await open_client(server, user, f"s-{user}")
    for n, order in enumerate(itertools.permutations(SKEWED)):
        trip_id = f"trip-skew-{n}"
        await create_trip(
            server, trip_id=trip_id, collaborators={"bob": "editor", "carol": "editor"}, manual=[]
        )
        for user, lag in order:  # each saw the first value (version 1)
            message = update(
                f"u-{n}-{user}", "destination", f"by-{user}", 1, ts=now_iso(-lag), trip_id=trip_id
            )
            await clients[user].send(message)
            await outcome_of(clients[user], f"u-{n}-{user}")
        fields = await trip_fields(server, trip_id)
        assert fields["destination"] == "by-alice", (order, fields)
    for client in clients.values():
        await client.close()


async def test_a_rate_limited_update_gets_a_retryable_rollback(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(rate_limit_messages_per_min=3)
    await create_trip(server)
    alice, _, _ = await open_client(server, "alice", "s-alice")
    for i in range(4):
        await alice.send(update(f"u-{i}", "destination", f"v{i}", 0, ts=now_iso()))
    outcomes = [await outcome_of(alice, f"u-{i}") for i in range(4)]
    assert [o["type"] for o in outcomes[:3]] == ["optimistic_update_confirmed"] * 3
    limited = outcomes[3]["payload"]
    assert outcomes[3]["type"] == "optimistic_update_rollback", outcomes[3]
    assert limited["rollbackReason"] == "rate_limited"
    assert limited["canRetry"] is True
    assert limited["retryAfter"] > 0
    assert (await alice.recv_type("error"))["payload"]["code"] == "RATE_LIMITED"
    await alice.close()
