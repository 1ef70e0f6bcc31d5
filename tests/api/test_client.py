"""End-to-end: the Python client (client/) and ``tripsage-sync watch``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.test_trips import after_creation, create_trip, get_trip
from tests.conftest import ROOT, ServerProcess, free_port
from tripsage_sync.client import (
    AuthenticationFailed,
    QueueFile,
    RequestRefused,
    SyncClient,
    UpdateStatus,
)

pytestmark = pytest.mark.anyio

TIMEOUT_S = 10.0


def client_for(
    server: ServerProcess,
    user: str,
    *,
    url: str | None = None,
    queue_path: Path | None = None,
    max_reconnect_attempts: int | None = 5,
) -> SyncClient:
    """A client of ``user`` with a fast backoff (50 ms doubling, at most 200 ms)."""
    return SyncClient(
        url or server.ws,
        server.token(user),
        session_id=f"s-{user}",
        queue_path=queue_path,
        max_reconnect_attempts=max_reconnect_attempts,
        reconnect_delay_s=0.05,
        max_reconnect_delay_s=0.2,
    )


async def test_connect_join_update_and_metrics(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor"})
    async with asyncio.timeout(TIMEOUT_S):
        alice = client_for(server, "alice")
        bob = client_for(server, "bob")
        await alice.connect()
        await bob.connect()
        assert alice.user_id == "alice"
        view = await alice.join("trip-1")
        assert view.version == 1
        assert view.fields["destination"] == "Paris"
        assert view.permission_level == "owner"
        await bob.join("trip-1")
        await alice.wait_until(
            lambda: {c["userId"] for c in alice.trip("trip-1").collaborators} == {"alice", "bob"}
        )
        update = alice.update_field(
            "trip-1", "destination", "Rome", previous_value="Paris", client_timestamp=0
        )
        assert alice.optimistic_fields("trip-1")["destination"] == "Rome"
        assert alice.trip("trip-1").fields["destination"] == "Paris"
        await alice.wait_until(lambda: update.status is not UpdateStatus.PENDING)
        assert update.status is UpdateStatus.CONFIRMED
        assert update.server_value == "Rome"
        assert update.server_version == 2
        assert alice.trip("trip-1").fields["destination"] == "Rome"
        await bob.wait_until(lambda: bob.trip("trip-1").version == 2)
        assert bob.trip("trip-1").fields["destination"] == "Rome"
        # A stale previousValue: rolled back, with the server's value.
        stale = bob.update_field("trip-1", "destination", "Oslo", previous_value="Paris")
        await bob.wait_until(lambda: stale.status is not UpdateStatus.PENDING)
        assert stale.status is UpdateStatus.ROLLED_BACK
        assert stale.server_value == "Rome"
        assert bob.optimistic_fields("trip-1")["destination"] == "Rome"

        latency = await alice.ping()
        assert 0 < latency < TIMEOUT_S * 1000
        metrics = alice.metrics()
        data = metrics.to_json()
        assert set(data) >= {
            "messagesSent",
            "messagesReceived",
            "bytesSent",
            "bytesReceived",
            "connectionDuration",
            "messagesPerSecond",
            "averageMessageSize",
            "queuedMessages",
            "isHighFrequency",
            "latency",
            "averageLatency",
        }
        # auth, join, update, heartbeat
        assert metrics.messages_sent == 4
        assert metrics.messages_received >= 6
        assert metrics.bytes_sent > 0
        assert metrics.bytes_received > 0
        assert metrics.average_message_size == pytest.approx(metrics.bytes_sent / 4)
        assert metrics.connection_duration_ms > 0
        assert metrics.messages_per_second > 0
        assert metrics.queued_messages == 0
        assert metrics.latency_ms == latency == metrics.average_latency_ms
        await alice.close()
        await bob.close()


async def test_collaborators_are_known_as_soon_as_join_returns(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor"})
    async with asyncio.timeout(TIMEOUT_S):
        alice = client_for(server, "alice")
        bob = client_for(server, "bob")
        await alice.connect()
        await bob.connect()
        first = await alice.join("trip-1")
        assert [c["userId"] for c in first.collaborators] == ["alice"]
        view = await bob.join("trip-1")  # no presence event awaited
        assert {c["userId"] for c in view.collaborators} == {"alice", "bob"}
        assert all(c["isActive"] for c in view.collaborators)
        await alice.close()
        await bob.close()


async def test_refusals(server: ServerProcess) -> None:
    await create_trip(server)
    async with asyncio.timeout(TIMEOUT_S):
        bad = SyncClient(server.ws, "not-a-token", reconnect_delay_s=0.05)
        with pytest.raises(AuthenticationFailed):
            await bad.connect()
        assert bad.state == "failed"
        await bad.close()
        eve = client_for(server, "eve")
        await eve.connect()
        with pytest.raises(RequestRefused) as refused:
            await eve.join("trip-1")
        assert refused.value.code == "PERMISSION_DENIED"
        with pytest.raises(RequestRefused):
            await eve.sync("trip-1", 0)
        await eve.close()


async def test_backoff_doubles_then_gives_up() -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    client = SyncClient(
        f"ws://127.0.0.1:{free_port()}",  # nothing listens: every attempt is refused
        "t",
        max_reconnect_attempts=5,
        reconnect_delay_s=1.0,
        max_reconnect_delay_s=10.0,
        sleep=record,
    )
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(ConnectionError, match="5 reconnection attempts"):
            await client.connect()
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0]  # 1 s doubling (capped), then give up
    assert client.state == "failed"
    await client.close()


async def test_persisted_queue_survives_a_client_restart(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    await create_trip(server, collaborators={"bob": "editor"})
    queue = tmp_path / "alice.jsonl"
    async with asyncio.timeout(TIMEOUT_S * 3):
        alice = client_for(server, "alice", queue_path=queue, max_reconnect_attempts=None)
        await alice.connect()
        await alice.join("trip-1")
        server.stop()  # the server goes away: alice is offline
        await alice.wait_until(lambda: alice.state != "open")
        first = alice.update_field("trip-1", "destination", "Rome", client_timestamp=0)
        second = alice.update_field("trip-1", "destination", "Lima", client_timestamp=0)
        third = alice.update_field("trip-1", "budget", 3000, client_timestamp=0)
        alice.send({"type": "chat_message", "payload": {"content": "back soon"}})
        assert alice.metrics().queued_messages == 4
        await alice.close()  # the process ends with everything pending
        updates, messages = QueueFile(queue).load()
        assert [u.update_id for u in updates] == [
            first.update_id,
            second.update_id,
            third.update_id,
        ]
        assert second.expected_version is None  # chained after the first
        assert [m["payload"]["content"] for _, m in messages] == ["back soon"]

        server.start()  # a new client process on the same queue file
        again = client_for(server, "alice", queue_path=queue)
        assert [u.update_id for u in again.pending_updates()] == [
            first.update_id,
            second.update_id,
            third.update_id,
        ]
        outcomes: list[str] = []
        again.on_outcome(lambda u: outcomes.append(u.update_id))
        await again.connect()
        await again.wait_until(lambda: not again.pending_updates())
        assert sorted(outcomes) == sorted([first.update_id, second.update_id, third.update_id])
        assert all(u.status is UpdateStatus.CONFIRMED for u in again.updates.values())
        assert again.updates[second.update_id].expected_version == 2
        trip = await get_trip(server)
        assert trip["fields"]["destination"] == "Lima"
        assert trip["fields"]["budget"] == 3000
        assert again.trip("trip-1").fields == trip["fields"]
        await again.wait_until(lambda: again.metrics().queued_messages == 0)
        await again.close()
        assert QueueFile(queue).load() == ([], [])


async def test_watch_prints_changes(server: ServerProcess) -> None:
    await create_trip(server, collaborators={"bob": "editor"})
    async with asyncio.timeout(TIMEOUT_S * 2):
        watch = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tripsage_sync.api.cli",
            "watch",
            "trip-1",
            "--token",
            server.token("bob"),
            "--url",
            server.ws,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert watch.stdout is not None
        try:
            lines: list[str] = []
            while not (lines and lines[-1].startswith("joined trip-1")):
                lines.append((await watch.stdout.readline()).decode().strip())
            alice = client_for(server, "alice")
            await alice.connect()
            await alice.join("trip-1")
            alice.update_field("trip-1", "destination", "Rome", client_timestamp=after_creation(1))
            while "Rome" not in lines[-1]:
                lines.append((await watch.stdout.readline()).decode().strip())
            assert lines[-1] == 'v2 alice: destination "Paris" -> "Rome"'
            assert "presence: alice, bob" in lines
            await alice.close()
        finally:
            watch.terminate()
            await watch.wait()


async def test_client_pings_at_the_servers_heartbeat_interval(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A server heartbeat shorter than the default: the client learns it before its first
    ping, measures latency, and is never closed as idle (two silent intervals)."""
    server = server_factory(heartbeat_interval_s=1)
    client = SyncClient(server.ws, server.token("alice"), session_id="s-alice")
    async with asyncio.timeout(TIMEOUT_S):
        await client.connect()
        connection_id = client.connection_id
        # Several server intervals pass: latency is measured from the client's own pings.
        await client.wait_until(lambda: len(client._latencies) >= 3)
    assert client.connection_id == connection_id
    assert client.metrics().reconnections == 0
    assert client.state == "open"
    await client.close()
