"""One timer per trip room: manual-conflict deadlines, lock expiry, idle presence.

The room's timer (``TripRoom.timer``) is armed for the earliest of the document's
next conflict deadline and presence's next deadline (a lock's TTL, a member going
idle), plus 10 ms. When it fires, one task expires what is due: released locks
get ``trip_field_editing_stop`` (reason ``timeout``) and presence is published
again; conflicts past their deadline get their default option, committed like
every resolution (``resolvedBy: system``). While storage fails
(:mod:`sync.backoff`) the defaults wait: the timer fires again when the backoff
allows a retry. A timer of a room that was evicted meanwhile is not rearmed.
"""

from __future__ import annotations

import asyncio
import logging

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.broadcast import TripBroadcast
from tripsage_sync.api.trips.commit import TripCommits
from tripsage_sync.api.trips.registry import RoomRegistry
from tripsage_sync.api.trips.rooms import RoomBroken, TripRoom

__all__ = ["RoomTimer"]

logger = logging.getLogger(__name__)


class RoomTimer:
    """Arms and runs the timers of the rooms in ``registry``."""

    def __init__(
        self,
        services: Services,
        clock: Clock,
        registry: RoomRegistry,
        broadcast: TripBroadcast,
        commits: TripCommits,
    ) -> None:
        self.services = services
        self.clock = clock
        self.registry = registry
        self.broadcast = broadcast
        self.commits = commits
        self._tasks: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Cancel every room's timer and the expiries running now."""
        for room in list(self.registry.rooms.values()):
            if room.timer is not None:
                room.timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    def schedule(self, room: TripRoom) -> None:
        deadlines = [
            d
            for d in (room.doc.next_conflict_deadline_ms(), room.presence.next_deadline_ms())
            if d is not None
        ]
        if room.timer is not None:
            room.timer.cancel()
            room.timer = None
        if not deadlines:
            return
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, (min(deadlines) - self.clock.now_ms()) / 1000) + 0.01
        room.timer = loop.call_later(delay_s, self._fire, room)

    def _fire(self, room: TripRoom) -> None:
        room.timer = None
        task = asyncio.get_running_loop().create_task(self._on_timer(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_timer(self, room: TripRoom) -> None:
        now = self.clock.now_ms()
        expired, idle_changed = room.presence.expire(now)
        for lock in expired:
            self.broadcast.publish_lock_stop(room, lock, reason="timeout")
        if expired or idle_changed:
            self.broadcast.publish_presence(room)
        due = room.doc.next_conflict_deadline_ms()
        refused_ms = None
        if due is not None and due <= now:
            refused_ms = self.services.storage_backoff.admit(now)
        try:
            if refused_ms is None:
                for result in room.doc.expire_conflicts(now):
                    await self.commits.commit_resolution(room, result, resolved_by="system")
        except RoomBroken as broken:
            refused_ms = broken.retry_after_ms
        except Exception:
            logger.exception("trip %s: timer failed", room.trip_id)
        if self.registry.rooms.get(room.trip_id) is not room:
            return
        if refused_ms is not None:  # storage is failing: the defaults apply when it is back
            if room.timer is not None:
                room.timer.cancel()
            room.timer = asyncio.get_running_loop().call_later(refused_ms / 1000, self._fire, room)
            return
        self.schedule(room)
