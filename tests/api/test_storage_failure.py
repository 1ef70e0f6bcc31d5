"""End-to-end: storage that fails (a full disk) and comes back, over real sockets.

The disk is "filled" with ``RLIMIT_FSIZE`` on the server process, set from
outside with prlimit(2): every write past the limit fails with ``EFBIG``
(CPython ignores ``SIGXFSZ``), at the same points as ``ENOSPC`` on a full disk,
and SQLite reports it as a failed write (``SQLITE_IOERR``/``SQLITE_FULL``).
Reads go on working, as on a full disk. No tmpfs, loop device or root needed;
``PRAGMA max_page_count`` cannot be used from outside, as it binds only the
connection that sets it. While the limit holds, the server's own log lines
cannot be written either.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.opshelpers import scrape, value
from tests.api.test_trips import OUTCOMES, after_creation, create_trip, get_trip, join, update
from tests.api.test_yjs import FIELDS, has
from tests.api.yjspeer import NodePeer
from tests.conftest import SQLITE_ONLY, ServerProcess
from tests.wsclient import Client

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs prlimit(2) (Linux)"),
    # A full disk under the SQLite file; a cluster's PostgreSQL down: tests/cluster.
    SQLITE_ONLY,
]

RETRY_INITIAL_MS = 200
RETRY_MAX_MS = 1600


class FullDisk:
    """Writes of one server process fail (``fill``) until ``free``."""

    def __init__(self, server: ServerProcess) -> None:
        assert server.process is not None
        self.pid = server.process.pid
        self.soft, self.hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)

    def fill(self) -> None:
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (0, self.hard))

    def free(self) -> None:
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (self.soft, self.hard))


async def outcome_of(client: Client, message: dict[str, Any]) -> dict[str, Any]:
    await client.send(message)
    return await client.recv_type(*OUTCOMES)


def closes(peer: NodePeer) -> list[dict[str, Any]]:
    return [e for e in peer.events if e["event"] in ("closed", "terminal")]


async def test_a_full_disk_backs_off_keeps_everyone_connected_and_recovers(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        storage_retry_initial_ms=RETRY_INITIAL_MS, storage_retry_max_ms=RETRY_MAX_MS
    )
    await create_trip(server, fields=FIELDS, collaborators={"bob": "editor", "carol": "editor"})
    carol, started = await join(server, "carol")
    version = started["payload"]["version"]
    alice = await NodePeer.start(server, "trip-1", "alice")
    bob = await NodePeer.start(server, "trip-1", "bob")
    disk = FullDisk(server)
    try:
        await alice.synced()
        await bob.synced()
        disk.fill()
        # A Yjs peer's edit that cannot be stored: the peer is told and stays connected.
        mark = alice.mark()
        await alice.send({"cmd": "set", "key": "destination", "value": "Rome"})
        denied = await alice.wait_event("denied", after=mark)
        assert "storage" in denied["reason"]
        # A JSON edit: rolled back with canRetry and a retryAfter that grows; the client
        # retries as told (waiting retryAfter is the protocol, not a wait for an event).
        retry_after = []
        for _ in range(5):
            outcome = await outcome_of(carol, update("c1", "name", "Italy", version))
            assert outcome["type"] == "optimistic_update_rollback", outcome
            payload = outcome["payload"]
            assert (payload["rollbackReason"], payload["canRetry"]) == ("server_error", True)
            retry_after.append(payload["retryAfter"])
            await asyncio.sleep(payload["retryAfter"] / 1000)
        assert retry_after == sorted(retry_after), retry_after
        assert RETRY_INITIAL_MS <= retry_after[0] < retry_after[-1] <= RETRY_MAX_MS
        # No reconnect storm: nobody was closed while storage failed.
        for peer in (alice, bob):
            assert closes(peer) == [], closes(peer)
        gauge = value(await scrape(server), "tripsage_storage_retry_after_ms")
        assert retry_after[-1] <= gauge <= RETRY_MAX_MS
        disk.free()
        # Space is back: the retried JSON edit lands once the backoff lets it try ...
        for _ in range(5):
            outcome = await outcome_of(carol, update("c1", "name", "Italy", version))
            if outcome["type"] != "optimistic_update_rollback":
                break
            await asyncio.sleep(outcome["payload"]["retryAfter"] / 1000)
        assert outcome["type"] == "optimistic_update_confirmed", outcome
        # ... and so does the Yjs peer's edit, kept in its replica: the server asks again.
        await carol.recv_matching(
            "trip_update_broadcast",
            lambda p: p["updatedBy"] == "alice" and "destination" in p["changes"],
        )
        done = has(name="Italy", destination="Rome")
        seen = [await alice.trip(done), await bob.trip(done)]
        http = await get_trip(server, "carol")
        assert seen[0] == seen[1] == http["fields"]
        for peer in (alice, bob):
            assert closes(peer) == [], closes(peer)
        assert value(await scrape(server), "tripsage_storage_retry_after_ms") == 0
    finally:
        disk.free()
        await alice.close()
        await bob.close()
        await carol.close()
    # Every confirmed edit is durable: a restart has them all.
    server.stop()
    restarted = server_factory(db=server.db)
    assert (await get_trip(restarted, "carol"))["fields"] == http["fields"]


async def test_a_conflict_choice_on_a_full_disk_is_refused_with_retry_after_not_a_crash(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        storage_retry_initial_ms=RETRY_INITIAL_MS, storage_retry_max_ms=RETRY_MAX_MS
    )
    await create_trip(server, manual=["budget"], collaborators={"bob": "editor"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    await alice.send(update("a", "budget", 2500, 1, ts=after_creation(2)))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await bob.send(update("b", "budget", 3000, 1, ts=after_creation(1)))
    conflict_id = (await bob.recv_type(*OUTCOMES))["payload"]["conflictId"]
    required = await bob.recv_type("conflict_resolution_required")
    option = next(o for o in required["payload"]["options"] if o["value"] == 3000)
    choice = {
        "type": "conflict_resolution_submit",
        "payload": {"conflictId": conflict_id, "chosenOptionId": option["id"]},
    }
    disk = FullDisk(server)
    disk.fill()
    try:
        for _ in range(2):  # the failed commit, then the refusal while backing off
            await bob.send(choice)
            error = (await bob.recv_type("error"))["payload"]
            assert error["code"] == "SERVER_ERROR"
            assert error["retryAfter"] > 0
    finally:
        disk.free()
    # Still connected, and the conflict still pending: the choice lands once retried.
    for _ in range(5):
        await asyncio.sleep(error["retryAfter"])  # seconds, as the error says
        await bob.send(choice)
        answer = await bob.recv_type("conflict_resolved", "error")
        if answer["type"] == "conflict_resolved":
            break
        error = answer["payload"]
    assert answer["type"] == "conflict_resolved", answer
    assert (await get_trip(server))["fields"]["budget"] == 3000
    await alice.close()
    await bob.close()


async def test_edits_in_flight_when_the_disk_fills_are_confirmed_only_if_stored(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A burst from two editors with the disk filling mid-way: each edit gets one
    outcome, every confirmed edit survives a restart, no rolled-back one appears."""
    server = server_factory(
        storage_retry_initial_ms=RETRY_INITIAL_MS, storage_retry_max_ms=RETRY_MAX_MS
    )
    await create_trip(server, fields=FIELDS, collaborators={"bob": "editor"})
    clients = [(await join(server, user))[0] for user in ("alice", "bob")]
    disk = FullDisk(server)
    burst = 12
    outcomes: dict[str, dict[str, Any]] = {}

    async def collect(count: int) -> None:
        for client in clients:
            for _ in range(count):
                outcome = await client.recv_type(*OUTCOMES)
                outcomes[outcome["payload"]["updateId"]] = outcome

    try:
        for i in range(burst):
            for n, client in enumerate(clients):
                await client.send(update(f"u{n}-{i}", f"f{n}_{i}", i, 1))
            if i == 2:
                await collect(3)  # stored before the disk fills
            if i == 5:
                disk.fill()  # while the next ones are in flight
        await collect(burst - 3)
    finally:
        disk.free()
    assert len(outcomes) == 2 * burst
    confirmed = {
        p["fieldName"]: p["confirmedValue"]
        for o in outcomes.values()
        if o["type"] == "optimistic_update_confirmed"
        for p in [o["payload"]]
    }
    rolled_back = [o for o in outcomes.values() if o["type"] == "optimistic_update_rollback"]
    assert confirmed
    assert rolled_back  # the disk did fill
    assert all(o["payload"]["canRetry"] for o in rolled_back)
    for client in clients:
        await client.close()
    server.stop()
    restarted = server_factory(db=server.db)  # loads: the log has no gap
    fields = (await get_trip(restarted))["fields"]
    assert {k: v for k, v in fields.items() if k not in FIELDS} == confirmed


async def test_http_writes_on_a_full_disk_get_503_with_retry_after(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(storage_retry_initial_ms=RETRY_INITIAL_MS)
    await create_trip(server)
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    disk = FullDisk(server)
    disk.fill()
    try:
        async with httpx.AsyncClient(base_url=server.http) as http:
            created = await http.post("/api/trips", json={"tripId": "t-2"}, headers=headers)
            shared = await http.put(
                "/api/trips/trip-1/collaborators/bob",
                json={"permissionLevel": "editor"},
                headers=headers,
            )
            read = await http.get("/api/trips/trip-1", headers=headers)
    finally:
        disk.free()
    for refused in (created, shared):
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "SERVER_ERROR"
        assert int(refused.headers["Retry-After"]) >= 1
    assert read.status_code == 200  # reads keep working
    async with httpx.AsyncClient(base_url=server.http) as http:
        again = await http.post("/api/trips", json={"tripId": "t-2"}, headers=headers)
    assert again.status_code == 201, again.text
