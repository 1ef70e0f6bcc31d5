"""Helpers for the storage tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Final

from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.writer import BatchWriter

__all__ = ["REPO_ROOT", "WriterGate", "run_python"]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
WAIT_S: Final = 10.0


class WriterGate:
    """Holds the writer thread inside a batch so that later submits pile up in its queue."""

    def __init__(self, writer: BatchWriter) -> None:
        self._entered = threading.Event()
        self._release = threading.Event()
        self.future: Future[None] = writer.submit(self._hold)
        if not self._entered.wait(WAIT_S):
            raise TimeoutError("writer never ran the gate")

    def _hold(self, db: Connection) -> None:
        self._entered.set()
        if not self._release.wait(WAIT_S):
            raise TimeoutError("gate never released")

    def release(self) -> None:
        self._release.set()
        self.future.result(WAIT_S)


def run_python(
    script: str, *args: str, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that imports this repository."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=timeout_s,
        check=False,
    )
