"""``tripsage-sync maintenance``: notice now, drain at the scheduled time, then exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from tests.api.opshelpers import run_cli
from tests.conftest import ServerProcess
from tests.wsclient import open_client
from tripsage_sync.sync.wire import parse_iso_ms

pytestmark = pytest.mark.anyio


async def test_maintenance_notice_drain_and_exit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(shutdown_grace_s=3)
    client, _, _ = await open_client(server, "alice", "s-1")
    admin = server.token("ops", role="admin")

    # Only admins schedule maintenance.
    code, _, err = await run_cli(
        "maintenance", "--in", "2s", "--message", "x", "--server", server.http,
        "--token", server.token("bob"),
    )  # fmt: skip
    assert code == 1
    assert "refused (403)" in err

    sent_ms = int(time.time() * 1000)
    code, out, err = await run_cli(
        "maintenance", "--in", "2s", "--duration", "15m",
        "--message", "Upgrading the database", "--services", "chat,trips",
        "--server", server.http, "--token", admin,
    )  # fmt: skip
    assert code == 0, err
    assert "notice delivered to 1 connection(s)" in out

    notice = await client.recv_type("system_message")
    payload = notice["payload"]
    assert payload["level"] == "maintenance"
    assert payload["message"] == "Upgrading the database"
    assert payload["estimatedDuration"] == 900
    assert payload["affectedServices"] == ["chat", "trips"]
    scheduled_ms = parse_iso_ms(payload["scheduledTime"])
    assert sent_ms + 1500 <= scheduled_ms <= sent_ms + 4000

    # Someone joining before the drain hears about it too.
    late, _, _ = await open_client(server, "carol", "s-2")
    assert (await late.recv_type("system_message"))["payload"]["level"] == "maintenance"

    close = await client.recv_type("connection_close", timeout=10)
    assert int(time.time() * 1000) >= scheduled_ms - 50
    assert close["payload"]["code"] == 1001
    assert close["payload"]["reason"] == "Server maintenance"
    assert close["payload"]["gracePeriod"] == 3
    assert close["payload"]["reconnectAfter"] == 900
    assert await client.closed() == 1001
    assert await late.closed() == 1001

    assert server.process is not None
    exit_code = await asyncio.to_thread(server.process.wait, 30)
    assert exit_code == 0
    logs = server.logs()
    assert "maintenance scheduled by ops" in logs
    assert "maintenance: stopping the server" in logs
    assert "storage flushed and closed" in logs


async def test_maintenance_can_be_cancelled(server: ServerProcess) -> None:
    client, _, _ = await open_client(server, "alice", "s-1")
    admin = server.token("ops", role="admin")
    code, _, err = await run_cli(
        "maintenance", "--in", "1h", "--message", "later", "--server", server.http,
        "--token", admin,
    )  # fmt: skip
    assert code == 0, err
    assert (await client.recv_type("system_message"))["payload"]["level"] == "maintenance"
    code, out, _ = await run_cli(
        "maintenance", "--cancel", "--server", server.http, "--token", admin
    )
    assert code == 0
    assert out.strip() == "cancelled"
    cancelled = await client.recv_type("system_message")
    assert cancelled["payload"]["level"] == "info"
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.get("/health")).status_code == 200
    await client.close()


def test_durations_read_like_the_flag_says() -> None:
    from tripsage_sync.api.cli import parse_duration

    assert parse_duration("15m") == 900
    assert parse_duration("2s") == 2
    assert parse_duration("90") == 90
    assert parse_duration("1h") == 3600
    assert parse_duration("500ms") == 0.5
