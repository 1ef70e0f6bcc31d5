"""The idle sweep: one timer for every trip room, unloading the rooms nobody uses.

Theory of operation
-------------------
The decisions are :class:`sync.idle.IdleRooms`' (read its rules there); this
shell gathers each loaded room's :class:`sync.idle.RoomActivity` -- presence
members, the Yjs peers the transports count (``peer_counts``), the subscribers
of its hub channel, its in-flight updates, its unfinished writes
(``TripRoom.holds``), its last lookup and its next manual-conflict deadline --
and carries out the :class:`sync.idle.Sweep` it gets back:

- *unload*: the room is evicted from the registry (its timer cancelled), the
  unload hooks run (the Yjs side drops its part, :meth:`api.trips.yroom.YRooms.on_unload`),
  ``tripsage_trips_unloaded_total`` counts it. Nothing is written: an idle room has no
  write in flight, and every change it confirmed was committed first; the next lookup
  loads it from storage as on first open. Nothing else holds the room, so it is
  garbage collected.
- *load*: an unloaded trip whose manual-conflict deadline came is loaded and its room's
  timer armed (:meth:`api.trips.timer.RoomTimer.schedule`), which applies the default
  as for any loaded room; it is unloaded again once idle.

One ``call_later`` handle for the whole registry, armed for the sweep's ``next_ms``;
with nothing loaded it sleeps until a room is adopted (:meth:`IdleSweep.wake`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.api.transport.memory import give_back
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.broadcast import channel
from tripsage_sync.api.trips.registry import RoomRegistry
from tripsage_sync.api.trips.rooms import TripRoom
from tripsage_sync.sync.errors import NotFound
from tripsage_sync.sync.idle import IdleRooms, RoomActivity

__all__ = ["GIVE_BACK_AFTER", "IdleSweep", "PeerCount", "UnloadHook"]

logger = logging.getLogger(__name__)

PeerCount = Callable[[str], int]  # trip id -> peers of another transport in its room
UnloadHook = Callable[[TripRoom], None]

# A sweep that unloaded this many rooms (or the last one) gives memory back
# (:func:`api.transport.memory.give_back`).
GIVE_BACK_AFTER: Final = 64


class IdleSweep:
    """Unloads idle rooms of ``registry`` and loads trips whose conflict deadline came."""

    def __init__(
        self,
        services: Services,
        clock: Clock,
        registry: RoomRegistry,
        hub: Hub[Connection],
        *,
        peer_counts: Sequence[PeerCount],
        unload_hooks: Sequence[UnloadHook],
        schedule: Callable[[TripRoom], None],
    ) -> None:
        self.services = services
        self.clock = clock
        self.registry = registry
        self.hub = hub
        self.peer_counts = peer_counts
        self.unload_hooks = unload_hooks
        self.schedule = schedule
        self.idle = IdleRooms(max(1, round(services.settings.room_idle_unload_s * 1000)))
        self._handle: asyncio.TimerHandle | None = None
        self._due_ms: int | None = None
        self._stopped = False

    def wake(self) -> None:
        """A room was loaded: a sweep is due within ``look_every_ms`` (rule 5)."""
        if self._handle is None:
            self._arm(self.clock.now_ms() + self.idle.look_every_ms)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, at_ms: int) -> None:
        if self._stopped:
            return
        if self._handle is not None:
            if self._due_ms is not None and self._due_ms <= at_ms:
                return  # an earlier sweep is due anyway
            self._handle.cancel()
        delay_s = max(0.0, (at_ms - self.clock.now_ms()) / 1000)
        self._due_ms = at_ms
        self._handle = asyncio.get_running_loop().call_later(delay_s, self._run)

    def _activity(self, room: TripRoom) -> RoomActivity:
        trip_id = room.trip_id
        return RoomActivity(
            members=len(room.presence.members),
            peers=sum(count(trip_id) for count in self.peer_counts),
            subscribers=len(tuple(self.hub.subscribers(channel(trip_id)))),
            inflight=len(room.inflight),
            holds=room.holds,
            used_ms=room.used_ms,
            next_deadline_ms=room.doc.next_conflict_deadline_ms(),
        )

    def _run(self) -> None:
        self._handle = self._due_ms = None
        now = self.clock.now_ms()
        try:
            rooms = {trip_id: self._activity(room) for trip_id, room in self.registry.rooms.items()}
            sweep = self.idle.sweep(rooms, now)
            for trip_id in sweep.unload:
                room = self.registry.rooms.get(trip_id)
                if room is not None:
                    self.unload(room)
            if len(sweep.unload) >= GIVE_BACK_AFTER or (sweep.unload and not self.registry.rooms):
                give_back(self.services.store.shrink_memory)
            for trip_id in sweep.load:
                self._load(trip_id, now)
        except Exception:
            logger.exception("idle sweep failed; trying again")
            self._arm(now + self.idle.look_every_ms)
            return
        if sweep.next_ms is not None:
            self._arm(sweep.next_ms)

    def unload(self, room: TripRoom) -> None:
        """Drop the idle ``room``: the next lookup loads it from storage."""
        self.registry.evict(room)
        for hook in self.unload_hooks:
            hook(room)
        self.services.metrics.trips_unloaded += 1
        logger.info("trip %s unloaded (idle) at version %d", room.trip_id, room.doc.version)

    def _load(self, trip_id: str, now: int) -> None:
        """A conflict deadline of unloaded ``trip_id`` came: load it, arm its timer."""
        try:
            room = self.registry.get(trip_id)
        except NotFound:
            logger.warning("trip %s is gone: its conflict deadline is dropped", trip_id)
            return
        except Exception:
            logger.exception("trip %s: load for a conflict deadline failed; retrying", trip_id)
            self.idle.defer(trip_id, now + self.idle.look_every_ms)
            return
        logger.info("trip %s loaded for a manual-conflict deadline", trip_id)
        self.schedule(room)
