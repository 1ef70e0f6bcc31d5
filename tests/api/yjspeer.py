"""Drive stock Yjs peers (``tests/node/peer.mjs``: yjs + y-websocket + ws) from async tests.

Each :class:`NodePeer` is one ``node`` process holding one ``Y.Doc`` and one
``WebsocketProvider``; commands go in on stdin, events come out on stdout
(see the script's header). Every wait is on an event with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ROOT, ServerProcess

NODE_DIR = ROOT / "tests" / "node"
TIMEOUT_S = 15.0

Event = dict[str, Any]


def require_node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "y-websocket").is_dir():
        pytest.skip("needs node and `npm ci` in tests/node")
    return node


class NodePeer:
    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, server: ServerProcess, trip_id: str, user: str, *, token: str | None = None
    ) -> NodePeer:
        process = await asyncio.create_subprocess_exec(
            require_node(),
            str(NODE_DIR / "peer.mjs"),
            f"{server.ws}/ws/yjs",
            trip_id,
            token or server.token(user),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=NODE_DIR,
        )
        return cls(process, user)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event: Event = json.loads(line)
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def mark(self) -> int:
        """A position in the event list: :meth:`wait` can look only after it."""
        return len(self.events)

    async def wait(
        self, predicate: Callable[[Event], bool], *, after: int = 0, timeout: float = TIMEOUT_S
    ) -> Event:
        """The first event after ``after`` that satisfies ``predicate``."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                after = len(self.events)
                await self._changed.wait()

    async def wait_event(self, name: str, *, after: int = 0, **fields: Any) -> Event:
        return await self.wait(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items()),
            after=after,
        )

    async def synced(self) -> Any:
        await self.wait_event("sync", synced=True)
        return await self.trip()

    async def trip(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> Any:
        """The peer's ``trip`` map as JSON, once it satisfies ``predicate``."""
        mark = self.mark()
        await self.send({"cmd": "state"})
        event = await self.wait(
            lambda e: e["event"] == "doc" and (predicate is None or predicate(e["trip"])),
            after=mark,
        )
        return event["trip"]

    async def awareness(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> Any:
        """The awareness states the peer sees (its own excluded), once ``predicate`` holds."""
        event = await self.wait(
            lambda e: (
                e["event"] == "awareness"
                and predicate([s for s in e["states"].values() if s is not None])
            )
        )
        return event["states"]

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.send({"cmd": "exit"})
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()
