"""Helpers of the operations tests: scrape ``/metrics``, trips over HTTP, run the CLI."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, ServerProcess
from tests.wsclient import Client

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: ServerProcess) -> Series:
    """Every sample of ``/metrics``, keyed by (sample name, sorted labels)."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    series: Series = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, tuple(sorted(labels.items()))), 0.0)


async def create_trip(server: ServerProcess, owner: str, trip_id: str) -> dict[str, Any]:
    body = {
        "tripId": trip_id,
        "fields": {"name": "Europe", "destination": "Paris", "budget": 2000, "notes": ""},
    }
    headers = {"Authorization": f"Bearer {server.token(owner)}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post("/api/trips", json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def get_trip(server: ServerProcess, user: str, trip_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/api/trips/{trip_id}", headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def start_session(client: Client, trip_id: str) -> dict[str, Any]:
    await client.send({"type": "collaboration_session_start", "payload": {"tripId": trip_id}})
    started = await client.recv_type("collaboration_session_started", "error")
    assert started["type"] == "collaboration_session_started", started
    return started


async def update(
    client: Client, trip_id: str, update_id: str, field: str, value: Any, expected: int
) -> dict[str, Any]:
    """One optimistic update; its outcome event."""
    await client.send(
        {
            "id": f"m-{update_id}",
            "type": "optimistic_update_start",
            "payload": {
                "updateId": update_id,
                "tripId": trip_id,
                "fieldName": field,
                "optimisticValue": value,
                "expectedVersion": expected,
                "clientTimestamp": "2099-01-01T00:00:00.000Z",
            },
        }
    )
    return await client.recv_matching(
        "optimistic_update_confirmed", lambda p: p.get("updateId") == update_id
    )


async def heartbeat_round_trip(client: Client) -> dict[str, Any]:
    """A client heartbeat and the server's answer (everything sent before it was counted)."""
    await client.send({"type": "connection_heartbeat", "payload": {}})
    return await client.recv_type("connection_heartbeat")


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m tripsage_sync.api.cli ARGS`` without blocking the loop.

    Returns (exit code, stdout, stderr).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tripsage_sync.api.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
