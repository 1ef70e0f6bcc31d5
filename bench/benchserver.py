"""A real server for the benchmarks: ``python -m tripsage_sync.api.cli serve`` on a free port.

Rate limits are lifted (the load generator is one IP and few users); logs are
kept to warnings so they cost nothing (``BENCH_LOG_LEVEL=info`` to see more, on the
benchmark's own output). Shared by ``bench/*.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["ROOT", "SECRET", "free_port", "start_server"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "b" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    port: int, db: Path, *, pin_cpu: int | None = None, **settings: str
) -> subprocess.Popen[bytes]:
    """Start the server (on CPU ``pin_cpu`` alone when given, with ``taskset``);
    ``settings`` are extra ``TRIPSAGE_*`` values by name."""
    env = {
        **os.environ,
        "TRIPSAGE_JWT_SECRET": SECRET,
        "TRIPSAGE_RATE_LIMIT_CONNECTIONS_PER_MIN": "0",
        "TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN": "0",
        "TRIPSAGE_RATE_LIMIT_MESSAGES_PER_MIN": "0",
        "TRIPSAGE_RATE_LIMIT_SUBSCRIPTIONS_PER_MIN": "0",
        "TRIPSAGE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        **{"TRIPSAGE_" + name.upper(): value for name, value in settings.items()},
    }
    pin = [] if pin_cpu is None else ["taskset", "-c", str(pin_cpu)]
    proc = subprocess.Popen(
        [
            *pin,
            sys.executable,
            "-m",
            "tripsage_sync.api.cli",
            "serve",
            "--port",
            str(port),
            "--db",
            str(db),
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")
