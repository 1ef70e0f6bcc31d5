"""``GET /metrics``: the Prometheus text format, moving with real traffic."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect

from tests.api.opshelpers import (
    create_trip,
    heartbeat_round_trip,
    scrape,
    start_session,
    update,
    value,
)
from tests.conftest import ServerProcess
from tests.wsclient import TIMEOUT_S, Client, open_client
from tripsage_sync.api.transport.metrics import Metrics, event_type_of
from tripsage_sync.sync.ysync import SyncStep2, parse_frame, sync_step1_frame

pytestmark = pytest.mark.anyio

FAMILIES = (
    "tripsage_connections_active",
    "tripsage_connections_peak",
    "tripsage_connections_opened_total",
    "tripsage_messages_received_total",
    "tripsage_messages_sent_total",
    "tripsage_bytes_received_total",
    "tripsage_bytes_sent_total",
    "tripsage_auth_failures_total",
    "tripsage_optimistic_updates_total",
    "tripsage_conflicts_raised_total",
    "tripsage_conflicts_resolved_total",
    "tripsage_update_log_appends_total",
    "tripsage_commit_seconds_count",
    "tripsage_broadcast_fanout_seconds_count",
    "tripsage_gc_pause_seconds_count",
    "tripsage_trips_loaded",
    "tripsage_yjs_peers",
    "tripsage_asyncio_tasks",
    "tripsage_outbound_queue_depth",
    "tripsage_slow_consumer_disconnects_total",
)


def test_event_type_is_read_from_the_encoded_text() -> None:
    assert event_type_of('{"id":"x-1","type":"trip_update_broadcast","payload":{}}') == (
        "trip_update_broadcast"
    )
    assert event_type_of('{"success":true,"connectionId":"c"}') == "auth_response"


def test_the_cycle_collector_is_timed_only_while_started() -> None:
    """Each collection is observed in its generation's series, once, while started."""
    metrics, other = Metrics(), Metrics()
    metrics.gc_pauses.start()
    metrics.gc_pauses.start()  # once only
    try:
        gc.collect()
    finally:
        metrics.gc_pauses.stop()
    gc.collect()
    full = 'tripsage_gc_pause_seconds_count{generation="2"}'
    assert f"{full} 1.0".encode() in metrics.exposition()
    assert f"{full} 0.0".encode() in other.exposition()


def test_two_apps_do_not_share_counters() -> None:
    first, second = Metrics(), Metrics()
    first.received("connection_heartbeat", 10)
    assert first.total_in == 1
    assert second.total_in == 0
    assert b'tripsage_messages_received_total{type="connection_heartbeat"} 1.0' in (
        first.exposition()
    )


async def test_metrics_parse_and_count_real_traffic(server: ServerProcess) -> None:
    before = await scrape(server)
    names = {name for name, _ in before}
    for family in ("tripsage_connections_peak", "tripsage_trips_loaded"):
        assert family in names
    assert value(before, "tripsage_connections_active", endpoint="chat") == 0

    # An authentication failure with its code.
    bad = await Client.connect(f"{server.ws}/ws/chat/s-bad")
    await bad.send({"token": "not-a-jwt"})
    assert (await bad.recv())["code"] == "INVALID_TOKEN"
    assert await bad.closed() == 3000

    # A collaborator: session start, two confirmed updates, a heartbeat.
    await create_trip(server, "alice", "trip-m")
    alice, _, _ = await open_client(server, "alice", "s-alice")
    watcher, _, _ = await open_client(server, "alice", "s-watch")
    await start_session(alice, "trip-m")
    await start_session(watcher, "trip-m")
    first = await update(alice, "trip-m", "u-1", "destination", "Rome", expected=1)
    await update(
        alice, "trip-m", "u-2", "name", "Italy", expected=first["payload"]["serverVersion"]
    )
    await watcher.recv_matching("trip_update_broadcast", lambda p: p.get("updatedBy") == "alice")
    await heartbeat_round_trip(alice)
    await heartbeat_round_trip(watcher)

    after = await scrape(server)
    assert set(FAMILIES) <= {name for name, _ in after}

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tripsage_auth_failures_total", code="INVALID_TOKEN") == 1
    assert delta("tripsage_connections_opened_total", endpoint="chat") == 3
    assert value(after, "tripsage_connections_active", endpoint="chat") == 2
    assert value(after, "tripsage_connections_peak") >= 2
    assert delta("tripsage_messages_received_total", type="optimistic_update_start") == 2
    assert delta("tripsage_messages_received_total", type="connection_heartbeat") == 2
    assert delta("tripsage_messages_received_total", type="auth") == 3
    assert delta("tripsage_bytes_received_total", type="optimistic_update_start") > 200
    # Sent before the last heartbeat answer, so counted by now.
    assert delta("tripsage_messages_sent_total", type="connection_established") == 2
    assert delta("tripsage_messages_sent_total", type="optimistic_update_confirmed") == 2
    assert delta("tripsage_messages_sent_total", type="trip_update_broadcast") >= 1
    assert delta("tripsage_bytes_sent_total", type="auth_response") > 0
    assert delta("tripsage_optimistic_updates_total", outcome="optimistic_update_confirmed") == 2
    assert delta("tripsage_update_log_appends_total") == 2
    assert delta("tripsage_commit_seconds_count") >= 2
    assert delta("tripsage_commit_seconds_sum") > 0
    assert delta("tripsage_broadcast_fanout_seconds_count") >= 2
    assert value(after, "tripsage_gc_pause_seconds_count", generation="0") > 0
    assert value(after, "tripsage_trips_loaded") == 1
    assert value(after, "tripsage_outbound_queue_depth") >= 0
    assert value(after, "process_resident_memory_bytes") > 0
    await alice.close()
    await watcher.close()


async def test_rate_limit_refusals_are_counted_by_limit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(rate_limit_messages_per_min=2)
    client, _, _ = await open_client(server)
    for _ in range(3):
        await client.send({"type": "subscribe", "payload": {"channels": []}})
    error = await client.recv_type("error")
    assert error["payload"]["code"] == "RATE_LIMITED"
    assert value(await scrape(server), "tripsage_rate_limited_total", limit="messages") == 1
    await client.close()


async def test_yjs_peers_and_event_loop_tasks_are_counted(server: ServerProcess) -> None:
    """Yjs peers are not JSON connections: their own gauge; the loop's tasks too."""
    await create_trip(server, "alice", "trip-y")
    before = await scrape(server)
    assert value(before, "tripsage_yjs_peers") == 0
    url = f"{server.ws}/ws/yjs/trip-y?token={server.token('alice')}"
    async with connect(url, open_timeout=TIMEOUT_S, max_size=None) as peer:
        await peer.send(sync_step1_frame(b"\x00"))
        while not isinstance(parse_frame(await peer.recv(decode=False)), SyncStep2):
            pass
        during = await scrape(server)
        assert value(during, "tripsage_yjs_peers") == 1
        assert value(during, "tripsage_asyncio_tasks") > value(before, "tripsage_asyncio_tasks")
