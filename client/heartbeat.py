"""The client's heartbeat: a ``connection_heartbeat`` every interval, its round trip
measured (``websocket-api.md`` "Client Metrics" latency; README "Python client").

One ping is in flight at a time. It is stamped when the writer sends it (not when it
is queued behind other messages), answered by the server's next heartbeat, and lost
with its connection. The interval is the caller's, else the server's
``limits.heartbeatInterval`` (``connection_established``), else the 25 s default;
the pings also keep the connection from being closed as idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from tripsage_sync.client.base import DEFAULT_HEARTBEAT_INTERVAL_S
from tripsage_sync.client.metrics import Meter
from tripsage_sync.client.queue import QueuedMessage
from tripsage_sync.client.state import ClientState

__all__ = ["Heartbeat"]


class Heartbeat:
    def __init__(
        self,
        state: ClientState,
        meter: Meter,
        enqueue: Callable[[QueuedMessage], None],
        next_id: Callable[[str], str],
        interval_s: float | None,
    ) -> None:
        self._state = state
        self._meter = meter
        self._enqueue = enqueue
        self._next_id = next_id
        self.interval_s = interval_s
        # The ping in flight: when it was sent (0.0: still queued) and its answer.
        self._ping: tuple[float, asyncio.Future[float]] | None = None

    async def ping(self) -> float:
        """Round trip of a ``connection_heartbeat`` in milliseconds."""
        if self._ping is None:
            waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._ping = (0.0, waiter)
            heartbeat = {"type": "connection_heartbeat", "id": self._next_id("hb")}
            self._enqueue(QueuedMessage(heartbeat, on_sent=self._sent))
        return await asyncio.shield(self._ping[1])

    def learn_interval(self, interval_s: float | None) -> None:
        """The server's interval, unless the caller chose one."""
        if self.interval_s is None and interval_s is not None and interval_s > 0:
            self.interval_s = interval_s

    def answered(self) -> None:
        """The server's heartbeat: the round trip of the ping in flight, if one was sent."""
        if self._ping is not None and self._ping[0] > 0:
            sent_at, waiter = self._ping
            rtt_ms = (time.monotonic() - sent_at) * 1000
            self._meter.latencies.append(rtt_ms)
            self._ping = None
            if not waiter.done():
                waiter.set_result(rtt_ms)

    def lost(self) -> None:
        """The connection ended: a sent ping's answer is lost with it."""
        if self._ping is not None and self._ping[0] > 0:
            self._ping = None

    async def run(self, open_timeout_s: float) -> None:
        """Ping every interval while the connection lasts (cancelled when it ends)."""
        if self.interval_s is None:
            # The server's interval comes in connection_established, right after the auth
            # reply: a first ping after the 25 s default would be late for a shorter one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(open_timeout_s):
                    await self._state.wait_until(lambda: self.interval_s is not None)
        while True:
            interval = self.interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
            await asyncio.sleep(interval)  # a period, not a wait for an event
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.ping()

    def _sent(self) -> None:
        if self._ping is not None:
            self._ping = (time.monotonic(), self._ping[1])
