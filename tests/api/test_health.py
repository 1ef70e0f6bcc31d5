"""Health payloads (``connection_health``, ``server_health``, ``performance_metrics``),
``GET /health`` and the lifecycle log lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.api.opshelpers import create_trip, heartbeat_round_trip
from tests.conftest import BACKEND, SECRET, ServerProcess
from tests.wsclient import Client, open_client
from tripsage_sync.api import __version__
from tripsage_sync.api.app import create_app
from tripsage_sync.api.settings import Settings
from tripsage_sync.sync.health import RoundTrips, connection_health

pytestmark = pytest.mark.anyio


def test_round_trips_accept_only_echoes_of_sent_heartbeats() -> None:
    trips = RoundTrips()
    trips.heartbeat_sent("2025-05-28T01:30:00.000Z", 1_000)
    assert trips.heartbeat_received(1_010, "2025-05-28T01:29:00.000Z") is None  # never sent
    assert trips.heartbeat_received(1_040, "2025-05-28T01:30:00.000Z") == 40
    assert trips.heartbeat_received(1_050, "2025-05-28T01:30:00.000Z") is None  # measured once
    assert trips.latency_ms == 40
    assert trips.last_received_ms == 1_050
    health = connection_health(trips, queued=600, queue_limit=1024, last_heartbeat=None)
    assert health.status == "degraded"
    assert health.connectionStable is False


def _machine_rss_fraction(pid: int) -> float:
    """The server's resident memory over the machine's RAM, read from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = next(
        int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")
    )
    return rss_kb / total_kb


async def test_connection_health_measures_heartbeat_echoes(server: ServerProcess) -> None:
    client, _, _ = await open_client(server)
    await client.send({"type": "connection_health", "payload": {}})
    first = (await client.recv_type("connection_health"))["payload"]
    assert set(first) == {
        "status",
        "latency",
        "lastHeartbeat",
        "messagesInQueue",
        "connectionStable",
    }
    assert first["latency"] is None  # nothing echoed yet
    assert first["status"] == "healthy"
    assert first["connectionStable"] is True

    beat = await heartbeat_round_trip(client)  # the server's answer carries serverTime
    echo = {
        "type": "connection_heartbeat",
        "payload": {"serverTime": beat["payload"]["serverTime"]},
    }
    await client.send(echo)  # an echo gets no answer
    await client.send({"type": "connection_health", "payload": {}})
    health = (await client.recv_type("connection_health"))["payload"]
    assert isinstance(health["latency"], int | float)
    assert 0 <= health["latency"] < 5000
    assert health["lastHeartbeat"].endswith("Z")
    assert health["messagesInQueue"] >= 0
    assert not [m for m in client.backlog if m["type"] == "connection_heartbeat"]
    await client.close()


async def test_admin_payloads_have_measured_values(server: ServerProcess) -> None:
    user, _, _ = await open_client(server, "bob", "s-bob")
    admin, _, _ = await open_client(server, "root", "s-root", role="admin")
    for type_ in ("server_health", "performance_metrics"):
        await user.send({"id": f"q-{type_}", "type": type_, "payload": {}})
        error = await user.recv_type("error")
        assert error["payload"]["code"] == "PERMISSION_DENIED"
        assert error["payload"]["details"]["messageId"] == f"q-{type_}"

    await admin.send({"type": "server_health", "payload": {}})
    health = (await admin.recv_type("server_health"))["payload"]
    assert set(health) == {
        "status",
        "version",
        "uptime",
        "connections",
        "memoryUsage",
        "cpuUsage",
        "nodeId",
        "dependencies",
    }
    assert health["status"] == "operational"
    # One node has no Redis to reach (a one-node cluster has: TRIPSAGE_TEST_BACKEND).
    expected = {"database": "ok"} | ({"redis": "ok"} if BACKEND == "cluster" else {})
    assert health["dependencies"] == expected
    assert health["nodeId"]
    assert health["connections"] == 2
    assert health["uptime"] > 0
    assert server.process is not None
    measured = _machine_rss_fraction(server.process.pid)
    assert 0 < health["memoryUsage"] < 1
    assert health["memoryUsage"] == pytest.approx(measured, rel=0.5)
    assert 0 <= health["cpuUsage"] <= 1

    await heartbeat_round_trip(user)
    await admin.send({"type": "performance_metrics", "payload": {}})
    perf = (await admin.recv_type("performance_metrics"))["payload"]
    assert perf["connections"]["active"] == 2
    assert perf["connections"]["peak"] >= 2
    assert perf["connections"]["total"] >= 2
    assert perf["messages"]["received"] >= 5
    assert perf["messages"]["sent"] >= 4
    assert perf["messages"]["perSecond"] >= 0
    assert perf["performance"]["uptime"] > 0
    assert set(perf["performance"]) == {"averageLatency", "maxLatency", "uptime"}
    await user.close()
    await admin.close()


async def test_http_health_is_server_health(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "operational"
    assert body["version"] == __version__
    assert 0 < body["memoryUsage"] < 1
    assert 0 <= body["cpuUsage"] <= 1


async def test_health_is_503_while_draining(tmp_path: Path) -> None:
    """In-process (a real drain is over too soon to catch from outside)."""
    app = create_app(Settings(db=str(tmp_path / "h.db"), jwt_secret=SECRET))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ops") as http,
    ):
        assert (await http.get("/health")).status_code == 200
        app.state.services.hub.accepting = False  # what a drain sets first
        response = await http.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "draining"


async def test_json_log_lines_carry_ids_as_keys(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(log_format="json")
    token = server.token("alice")
    bad = await Client.connect(f"{server.ws}/ws/chat/s-bad")
    await bad.send({"token": token[:-4] + "AAAA"})
    await bad.recv()
    await bad.closed()
    await create_trip(server, "alice", "trip-log")
    client, auth, _ = await open_client(server, "alice", "s-1", channels=["trip:trip-log"])
    await client.close()
    server.stop()
    records = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    conn = auth["connectionId"]
    mine = [r for r in records if r.get("conn") == conn]
    messages = [r["message"] for r in mine]
    assert any("connected from" in m for m in messages)
    assert any("authenticated" in r["message"] and r.get("user") == "alice" for r in mine)
    assert any("closed (code=" in m for m in messages)
    subscribed = next(r for r in mine if "subscribed to" in r["message"])
    assert subscribed["trip"] == "trip-log"
    closed = next(r for r in mine if "closed (code=" in r["message"])
    assert closed["user"] == "alice"
    assert "code" in closed
    failed = [r for r in records if "authentication failed" in r["message"]]
    assert failed
    assert failed[0]["code"] == "INVALID_TOKEN"
    assert token not in server.logs()
    assert token.split(".")[2][:-4] not in server.logs()
