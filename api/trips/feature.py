"""Trips: the collaboration, optimistic-update and conflict events of the spec.

Theory of operation (``websocket-api.md`` "Real-time Collaboration",
"Optimistic Updates", "Conflict Resolution")
------------------------------------------------------------------------
Each trip is a :class:`api.trips.rooms.TripRoom` around a
:class:`sync.document.TripDocument`. The trip wing's handlers translate JSON
events into calls on the document and its results back into events:

- ``collaboration_session_start`` / ``trip_collaboration_join``
  (:mod:`api.trips.collaboration`): check the user's permission, subscribe the
  connection to ``trip:{tripId}``, add it to presence, answer
  ``collaboration_session_started`` with the current ``fields`` and
  ``version``, broadcast ``trip_collaboration_join`` and
  ``trip_collaborator_presence``; pending manual conflicts are sent to a
  joining editor.
- ``optimistic_update_start`` (:mod:`api.trips.optimistic`): apply, persist
  (update + outcome + conflict in one transaction), then broadcast
  ``trip_update_broadcast`` / ``trip_conflict_detected`` /
  ``conflict_resolution_required``, then send the sender's single outcome.
  The outcome is stored by ``updateId``: a re-send gets the same outcome back
  and is never applied twice.
- ``conflict_resolution_submit`` (:mod:`api.trips.conflicts`) and the per-room
  timer (:mod:`api.trips.timer`: deadlines of manual conflicts, advisory lock
  expiry, idle presence) apply their results the same way.
- A room nobody uses for ``room_idle_unload_s`` is unloaded by one sweep for all
  rooms (:mod:`api.trips.sweep`, rules in :mod:`sync.idle`) and loaded again from
  storage on next use; a manual-conflict deadline of an unloaded trip loads it.

Presence is per connection; a connection that goes away (close, heartbeat
timeout, abort) leaves every trip at once through ``services.on_disconnect``.

The payloads are built in :mod:`api.trips.events`; the HTTP API is the
:class:`api.trips.http.TripHttp` feature, composed on this one.

:class:`TripFeature` is the facade of the wing: it starts the rooms and forwards
to the modules that do the work, one concern each --
:mod:`api.trips.collaboration` (joining, leaving, presence),
:mod:`api.trips.broadcast` (events to subscribers, change and presence hooks,
the versions each connection has seen), :mod:`api.trips.commit` (commits of Yjs
changes and resolutions, compaction), :mod:`api.trips.timer` (the rooms'
timers) and :mod:`api.trips.sweep` (unloading idle rooms). The parts composed on
it (:mod:`api.trips.part`) and the other transports use only the facade.
"""

from __future__ import annotations

import logging

from starlette.routing import BaseRoute

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.broadcast import (
    ChangeHook,
    PresenceHook,
    TripBroadcast,
    TripRoomPayload,
)
from tripsage_sync.api.trips.collaboration import Collaboration
from tripsage_sync.api.trips.commit import TripCommits
from tripsage_sync.api.trips.registry import RoomRegistry
from tripsage_sync.api.trips.replica import AwarenessHook, TripReplicas
from tripsage_sync.api.trips.rooms import TripRoom
from tripsage_sync.api.trips.sweep import IdleSweep, PeerCount, UnloadHook
from tripsage_sync.api.trips.timer import RoomTimer
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.document import ApplyResult, RemoteResult
from tripsage_sync.sync.presence import Member
from tripsage_sync.sync.wire import TripCollaborationLeaveMessage, TripJoinMessage

__all__ = ["TripFeature"]

logger = logging.getLogger(__name__)


class TripFeature:
    """The trip events, and the rooms other transports (:mod:`api.trips.yjs`) share.

    ``change_hooks`` run for every committed change, inside the room's broadcast
    order, with the change's origin (None for JSON clients; a transport passes
    its own connection to skip it); ``presence_hooks`` run whenever presence
    is published (:class:`api.trips.broadcast.TripBroadcast`). An idle room is
    unloaded (:mod:`api.trips.sweep`) only when every ``peer_counts`` says no peer
    of another transport holds it, and ``unload_hooks`` run when it is.
    """

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.change_hooks: list[ChangeHook] = []
        self.presence_hooks: list[PresenceHook] = []
        self.peer_counts: list[PeerCount] = []
        # Cluster mode: awareness frames of other nodes' Yjs peers (api/trips/yroom.py).
        self.awareness_hooks: list[AwarenessHook] = []
        self.unload_hooks: list[UnloadHook] = []

    # -- lifecycle ------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """None of its own: :class:`api.trips.http.TripHttp` serves the HTTP API."""
        return []

    async def start(self, services: Services) -> None:
        self.services = services
        self.hub = services.hub
        self.registry = RoomRegistry(services, on_evict=self._evicted, on_adopt=self._adopted)
        self.broadcast = TripBroadcast(self.hub, self.clock, self.change_hooks, self.presence_hooks)
        self.broadcast.app_hooks = services.hooks  # on_store, on_change of this node's commits
        # Cluster mode: rooms follow the other nodes' commits (api/trips/replica.py).
        self.replicas = (
            TripReplicas(
                services,
                services.bus,
                self.registry,
                self.broadcast,
                self.clock,
                self.awareness_hooks,
            )
            if self.settings.redis_url
            else None
        )
        self.commits = TripCommits(
            services, self.settings, self.clock, self.broadcast, self.schedule
        )
        self.timer = RoomTimer(services, self.clock, self.registry, self.broadcast, self.commits)
        self.sweep = IdleSweep(
            services,
            self.clock,
            self.registry,
            self.hub,
            peer_counts=self.peer_counts,
            unload_hooks=self.unload_hooks,
            schedule=self.schedule,
        )
        self.collaboration = Collaboration(
            self.hub, self.clock, self.registry, self.broadcast, self.schedule
        )
        self.services.on_disconnect.append(self.collaboration.on_disconnect)
        if self.replicas is not None:
            await self.replicas.start()
        # Pending manual conflicts survive restarts: load their trips, rearm timers.
        for trip_id in sorted({c.trip_id for c in services.store.pending_conflicts()}):
            self.schedule(self.registry.get(trip_id))

    async def stop(self) -> None:
        self.sweep.stop()
        self.timer.stop()
        if self.replicas is not None:
            await self.replicas.stop()

    def _adopted(self, room: TripRoom) -> None:
        if self.replicas is not None:
            self.replicas.watch(room)
        self.sweep.wake()

    def _evicted(self, room: TripRoom) -> None:
        if self.replicas is not None:
            self.replicas.forget(room)

    # -- rooms and permissions ------------------------------------------------------

    def room_for(self, principal: Principal, trip_id: str) -> tuple[TripRoom, str]:
        """The room and the user's permission; unknown trips look like forbidden ones."""
        return self.registry.room_for(principal, trip_id)

    # -- broadcasting (api/trips/broadcast.py) ----------------------------------------

    def publish(
        self,
        room: TripRoom,
        payload: TripRoomPayload,
        *,
        exclude: Connection | None = None,
    ) -> None:
        self.broadcast.publish(room, payload, exclude=exclude)

    def publish_presence(self, room: TripRoom) -> None:
        self.broadcast.publish_presence(room)

    def broadcast_result(
        self, room: TripRoom, result: ApplyResult, exclude: Connection | None
    ) -> None:
        self.broadcast.broadcast_result(room, result, exclude)

    def seen_versions(self, conn: Connection) -> dict[str, int]:
        """Trip id -> the latest version ``conn`` was sent the whole trip at."""
        return self.broadcast.seen_versions(conn)

    def saw_trip(self, conn: Connection, trip_id: str, version: int) -> None:
        """``conn`` was sent the whole trip at ``version`` (join answer, sync_complete)."""
        self.broadcast.saw_trip(conn, trip_id, version)

    def saw_own(self, conn: Connection, trip_id: str, version: int) -> None:
        self.broadcast.saw_own(conn, trip_id, version)

    # -- collaboration sessions (api/trips/collaboration.py; the router calls these) -----

    async def on_session_start(self, conn: Connection, message: TripJoinMessage) -> None:
        await self.collaboration.on_session_start(conn, message)

    async def on_leave(self, conn: Connection, message: TripCollaborationLeaveMessage) -> None:
        await self.collaboration.on_leave(conn, message)

    # -- presence, for other transports too ------------------------------------------------

    def join_presence(self, room: TripRoom, member: Member, session_id: str) -> None:
        """A connection of another transport joins the room's presence."""
        self.collaboration.join_presence(room, member, session_id)

    def touch_presence(
        self, room: TripRoom, connection_id: str, *, current_field: str | None, focus: bool
    ) -> None:
        self.collaboration.touch_presence(
            room, connection_id, current_field=current_field, focus=focus
        )

    def leave_presence(self, room: TripRoom, connection_id: str, session_id: str) -> None:
        """A connection of another transport leaves (see :meth:`leave`)."""
        self.collaboration.leave_presence(room, connection_id, session_id)

    def leave(self, room: TripRoom, conn: Connection) -> None:
        self.collaboration.leave(room, conn)

    # -- commits and compaction (api/trips/commit.py), timers (api/trips/timer.py) --------

    async def commit_remote(self, room: TripRoom, result: RemoteResult, origin: object) -> None:
        """Persist, then broadcast a Yjs peer's change; raises ``RoomBroken`` on failure."""
        await self.commits.commit_remote(room, result, origin)

    async def commit_resolution(
        self, room: TripRoom, result: ApplyResult, *, resolved_by: str
    ) -> None:
        await self.commits.commit_resolution(room, result, resolved_by=resolved_by)

    async def maybe_compact(self, room: TripRoom) -> None:
        await self.commits.maybe_compact(room)

    def relay_awareness(self, room: TripRoom, frame: bytes) -> None:
        """Cluster mode: an awareness frame of this node's Yjs peers, to the other nodes."""
        if self.replicas is not None:
            self.replicas.awareness_out(room, frame)

    def schedule(self, room: TripRoom) -> None:
        """(Re)arm the room's timer for its next deadline."""
        self.timer.schedule(room)
