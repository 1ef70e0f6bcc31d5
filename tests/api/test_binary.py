"""The single-file executable of ``.ci/build-binary`` (set ``TRIPSAGE_BINARY`` to it).

It runs with an empty environment (no virtualenv, no PYTHONPATH): serves a fresh
database, mints a token from that database's secret, and completes an
authenticated WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.wsclient import Client
from tripsage_sync.api import __version__

BINARY = os.environ.get("TRIPSAGE_BINARY")
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}

pytestmark = [
    pytest.mark.skipif(not BINARY, reason="TRIPSAGE_BINARY is not set (.ci/build-binary)"),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, float]]:
    """(base URL, database, seconds until /health answered) of the running binary."""
    assert BINARY is not None
    db, port = tmp_path / "fresh.db", free_port()
    log = (tmp_path / "binary.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [BINARY, "serve", "--port", str(port), "--db", str(db)],
        env=CLEAN_ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = started + 60
        while True:
            assert process.poll() is None, (tmp_path / "binary.log").read_text()
            assert time.monotonic() < deadline, "the binary did not answer /health"
            try:
                if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a process start, not waiting on an event
        yield url, db, time.monotonic() - started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        log.close()
    # uvicorn re-raises the SIGTERM it handled once the graceful shutdown is done.
    assert code in (0, -signal.SIGTERM)
    assert "storage flushed and closed" in (tmp_path / "binary.log").read_text()


async def _run(*args: str) -> tuple[int, str]:
    """The binary with ``args`` and an empty environment: (exit code, stdout)."""
    assert BINARY is not None
    process = await asyncio.create_subprocess_exec(
        BINARY, *args, env=CLEAN_ENV, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.anyio
async def test_binary_serves_mints_and_authenticates(served: tuple[str, Path, float]) -> None:
    url, db, start_s = served
    assert BINARY is not None
    async with httpx.AsyncClient(base_url=url) as http:
        health = (await http.get("/health")).json()
    assert health["status"] == "operational"
    code, out = await _run("token", "--db", str(db), "--user", "alice")
    assert code == 0
    token = out.strip()
    client = await Client.connect(url.replace("http", "ws", 1) + "/ws/chat/s-1")
    await client.send({"token": token, "sessionId": "s-1"})
    auth = await client.recv()
    assert auth["success"] is True, auth
    assert auth["userId"] == "alice"
    established = await client.recv_type("connection_established")
    assert established["payload"]["serverVersion"] == __version__
    await client.close()
    async with httpx.AsyncClient(base_url=url) as http:
        metrics = (await http.get("/metrics")).text
    assert 'tripsage_connections_opened_total{endpoint="chat"} 1.0' in metrics
    code, out = await _run("db", "check", "--db", str(db))
    assert code == 0, out
    assert "integrity: ok" in out
    print(f"binary started in {start_s:.2f} s")  # noqa: T201
