"""Benchmark: one stock y-websocket peer making many small transactions at full speed.

Issue 10 item 13: a busy writer must never be cut for a late keepalive pong. Starts a
real server, creates a trip, runs ``tests/node/burst.mjs`` (yjs + y-websocket, one update
message per transaction), then waits until the trip's version has every transaction.
Prints the close codes the peer saw (none expected) and how long the server took.

    .venv/bin/python bench/yjs_burst.py [--transactions 70000]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import ROOT, SECRET, free_port, start_server
from tripsage_sync.api.transport.auth import JwtAuthority


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=70_000)
    args = parser.parse_args()
    port = free_port()
    token = JwtAuthority(SECRET).mint("alice", now_s=time.time(), ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, Path(tmp) / "burst.db", rate_limit_yjs_frames_per_min="0")
        try:
            created = httpx.post(
                f"{base}/api/trips", json={"tripId": "burst", "fields": {}}, headers=headers
            )
            created.raise_for_status()
            started = time.monotonic()
            peer = subprocess.Popen(
                [
                    "node",
                    str(ROOT / "tests" / "node" / "burst.mjs"),
                    f"ws://127.0.0.1:{port}/ws/yjs",
                    "burst",
                    token,
                    str(args.transactions),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert peer.stdin is not None
            assert peer.stdout is not None
            sent = json.loads(peer.stdout.readline())
            sent_s = time.monotonic() - started
            version = 0
            while version < args.transactions + 1 and time.monotonic() - started < 900:
                version = httpx.get(f"{base}/api/trips/burst", headers=headers).json()["version"]
                time.sleep(0.5)  # polling a bench's progress, not a test
            peer.stdin.write("exit\n")
            peer.stdin.flush()
            report = json.loads(peer.stdout.readline())
            peer.wait(30)
            print(
                f"{args.transactions} transactions sent in {sent_s:.1f} s "
                f"(peer: {sent['seconds']} s), "
                f"version {version} after {time.monotonic() - started:.1f} s; "
                f"closes seen by the peer: {report['closes'] or 'none'}"
            )
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
