"""Load generator processes in Node (``tests/node/*.mjs``), for the benchmarks.

A :class:`NodeLoad` runs one script, hands it its plan (one JSON line on stdin) and
then answers to the same steps as a Python worker's pipe (``recv()`` "ready",
``send("go")``, ``recv()`` its report, ``send("close")``), so the benchmarks drive
both alike. :class:`NodeEditors` (``json_editors.mjs``) drives JSON editors as a worker
of ``bench/trip_updates.py`` does (the same messages, the next update after the
previous outcome); ``yjs_fanout.mjs`` is the Yjs fan-out of ``bench/cluster.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tripsage_sync.api.transport.auth import JwtAuthority

__all__ = ["NodeEditors", "NodeLoad", "node_available"]

SCRIPTS = Path(__file__).resolve().parent.parent / "tests" / "node"


def node_available() -> bool:
    return shutil.which("node") is not None and (SCRIPTS / "node_modules" / "ws").is_dir()


class NodeLoad:
    """One Node process running ``script`` (in tests/node) with ``plan``."""

    def __init__(self, script: str, plan: dict[str, Any], *args: str) -> None:
        if not node_available():
            raise SystemExit("needs node and `npm ci` in tests/node")
        self.process = subprocess.Popen(
            ["node", str(SCRIPTS / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.send(json.dumps(plan))

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def recv(self) -> Any:
        """``"ready"``, or the run's report (a dict)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line:
            raise SystemExit(f"a Node load generator stopped (exit {self.process.wait()})")
        return line if line == "ready" else json.loads(line)

    def join(self, timeout: float) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class NodeEditors(NodeLoad):
    """JSON editors (``(user, trip)`` pairs) on the server at ``port``; its report is a
    Python worker's: (start s, end s, latencies in ms)."""

    def __init__(
        self,
        port: int,
        layout: list[tuple[str, str]],
        updates: int,
        authority: JwtAuthority,
        features: list[str],
    ) -> None:
        editors = [[user, trip, authority.mint(user, now_s=time.time())] for user, trip in layout]
        plan = {"editors": editors, "updates": updates, "features": features}
        super().__init__("json_editors.mjs", plan, str(port))

    def recv(self) -> Any:
        report = super().recv()
        if report == "ready":
            return report
        return report["start"] / 1000, report["end"] / 1000, report["latencies"]
