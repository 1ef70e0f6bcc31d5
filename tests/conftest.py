"""Shared fixtures: a real server process on a free loopback port.

``server_factory(**env)`` starts ``python -m tripsage_sync.api.cli serve`` (uvicorn with the
protocols of api/transport/protocol.py) against a fresh SQLite file with ``TRIPSAGE_*``
settings from ``env``, waits until ``/health`` answers, and stops it (SIGTERM, then kill)
when the test ends. Tests then talk to it over real WebSockets. A server log
that says a task was destroyed while pending fails the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import fresh_postgres_url, need_postgres, need_redis
from tripsage_sync.api.transport.auth import JwtAuthority

SECRET = "test-secret-" + "x" * 40
ROOT = Path(__file__).resolve().parent.parent
DESTROYED_TASK = "Task was destroyed but it is pending"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    port: int
    db: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    authority: JwtAuthority = field(default_factory=lambda: JwtAuthority(SECRET))

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(
        self, user: str, *, role: str = "user", name: str | None = None, ttl_s: float = 3600
    ) -> str:
        return self.authority.mint(
            user, now_s=time.time(), ttl_s=ttl_s, role=role, name=name or user.title()
        )

    def start(self) -> None:
        assert self.log_path is not None
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tripsage_sync.api.cli",
                "serve",
                "--port",
                str(self.port),
                "--db",
                str(self.db),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(self.http + "/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a process start, not waiting on an event
        self.process.kill()  # never left running behind a failed test
        self.process.wait()
        raise RuntimeError(f"server did not start:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A running PostgreSQL for the whole session (each test takes a schema of its own,
    ``tests.services.fresh_postgres_url``)."""
    yield from need_postgres()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A running Redis for the whole session."""
    yield from need_redis()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


#: ``TRIPSAGE_TEST_BACKEND=cluster`` runs every server of the suite as a one-node cluster
#: on PostgreSQL and Redis (``.ci/run`` runs the suite both ways): a test's database file
#: stands for a schema of its own, the same one for every server started on that file.
BACKEND = os.environ.get("TRIPSAGE_TEST_BACKEND", "sqlite")
#: Tests that look into the SQLite file itself, which a cluster does not have.
SQLITE_ONLY = pytest.mark.skipif(BACKEND == "cluster", reason="reads the SQLite file itself")


@pytest.fixture
def server_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []
    schemas: dict[Path, str] = {}

    def make(
        *, db: Path | None = None, secret: str | None = SECRET, **settings: Any
    ) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPSAGE_")}
        env["PYTHONUNBUFFERED"] = "1"
        if secret is not None:
            env["TRIPSAGE_JWT_SECRET"] = secret
        # Generous defaults so tests that do not test limits are not limited.
        defaults = {
            "rate_limit_connections_per_min": 1000,
            "rate_limit_auth_per_min": 1000,
            "rate_limit_messages_per_min": 100000,
            "rate_limit_subscriptions_per_min": 10000,
        }
        for key, value in {**defaults, **settings}.items():
            env["TRIPSAGE_" + key.upper()] = str(value)
        db = db or tmp_path / f"t{len(started)}.db"
        if BACKEND == "cluster" and "database_url" not in settings:
            if db not in schemas:
                schemas[db] = fresh_postgres_url(request.getfixturevalue("postgres_url"))
            env["TRIPSAGE_DATABASE_URL"] = schemas[db]
            env["TRIPSAGE_REDIS_URL"] = request.getfixturevalue("redis_url")
        proc = ServerProcess(port=free_port(), db=db, env=env)
        proc.log_path = tmp_path / f"server{len(started)}.log"
        if secret is None:
            proc.authority = None  # type: ignore[assignment]
        proc.start()
        started.append(proc)
        return proc

    yield make
    leaked = []
    for proc in started:
        proc.stop()
        if DESTROYED_TASK in proc.logs():  # a task its owner neither awaited nor cancelled
            leaked.append(str(proc.log_path))
    if leaked:
        pytest.fail(f"{DESTROYED_TASK!r} in server log(s): {', '.join(leaked)}")


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()
