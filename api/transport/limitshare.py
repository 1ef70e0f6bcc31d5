"""Cluster mode: rate limits and per-user connection caps that hold across the nodes.

Theory of operation
-------------------
Each node keeps deciding on its own, at once, with its own token buckets and
connection counts (the hot path never waits for Redis). Every :data:`TICK_S`
it publishes on the bus topic ``limits`` what its clients spent since the last
report (tokens per limiter and key) and the connection count of each user that
changed; every :data:`FULL_EVERY` ticks, every user's count. Another node
charges the spent tokens to its own buckets (:meth:`KeyedLimiter.charge`) and
keeps the counts, which expire :data:`REPORT_TTL_S` after the node's last
report (a node that stopped, kill -9, stops counting then). So a user's budget
and connection cap are the cluster's, late by at most a tick: a burst spread
over N nodes within one tick can pass the limit by what N - 1 nodes allowed in
that tick, then it is refused everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any, Final

import orjson

from tripsage_sync.api.transport.bus import Bus
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.sync.ratelimit import KeyedLimiter

__all__ = ["FULL_EVERY", "REPORT_TTL_S", "TICK_S", "LimitShare"]

logger = logging.getLogger(__name__)

TICK_S: Final = 0.5
FULL_EVERY: Final = 10
REPORT_TTL_S: Final = 15.0
TOPIC: Final = "limits"


class LimitShare:
    """This node's side of the shared limits; see the module docstring."""

    def __init__(self, hub: Hub[Any], bus: Bus) -> None:
        self.hub = hub
        self.bus = bus
        self._limiters = {
            "connections": hub.connection_limiter,
            "auth": hub.auth_limiter,
            "messages": hub.message_limiter,
            "subscriptions": hub.subscription_limiter,
        }
        self._names = {id(limiter): name for name, limiter in self._limiters.items()}
        self._spent: dict[str, Counter[str]] = {}
        self._reported: dict[str, int] = {}  # user -> the count last reported
        self._remote: dict[str, tuple[dict[str, int], float]] = {}  # node -> counts, expiry
        self._ticks = 0
        self._task: asyncio.Task[None] | None = None
        hub.on_spend = self.spent
        hub.remote_connections = self.remote_connections
        bus.subscribe(TOPIC, self.heard)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="limit-share")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def spent(self, limiter: KeyedLimiter, key: str) -> None:
        name = self._names.get(id(limiter))
        if name is not None:
            self._spent.setdefault(name, Counter())[key] += 1

    def remote_connections(self, user_id: str) -> int:
        now = time.monotonic()
        return sum(
            counts.get(user_id, 0) for counts, expires in self._remote.values() if expires > now
        )

    def heard(self, data: bytes) -> None:
        report = orjson.loads(data)
        now_s = self.hub.clock.now_ms() / 1000
        for name, spends in report.get("s", {}).items():
            limiter = self._limiters.get(name)
            if limiter is not None:
                for key, cost in spends.items():
                    limiter.charge(key, now_s, cost)
        node = str(report["n"])
        counts, _ = self._remote.get(node, ({}, 0.0))
        if report.get("full"):
            counts = {}
        counts.update(report.get("c", {}))
        live = {user: count for user, count in counts.items() if count > 0}
        self._remote[node] = (live, time.monotonic() + REPORT_TTL_S)

    def report(self) -> None:
        """What this node's clients spent since the last report, and changed counts."""
        self._ticks += 1
        full = self._ticks % FULL_EVERY == 0
        counts = self.hub.local_user_counts()
        changed = {
            user: count for user, count in counts.items() if self._reported.get(user) != count
        }
        changed.update({user: 0 for user in self._reported if user not in counts})
        spent = {name: dict(keys) for name, keys in self._spent.items() if keys}
        self._spent = {}
        self._reported = counts
        now = time.monotonic()
        for node in [n for n, (_, expires) in self._remote.items() if expires <= now]:
            del self._remote[node]
        if not (spent or changed or full):
            return
        record: dict[str, Any] = {"n": self.bus.node, "s": spent, "c": counts if full else changed}
        if full:
            record["full"] = True
        self.bus.publish(TOPIC, orjson.dumps(record))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.report()
            except Exception:
                logger.exception("limit share: a report failed")
