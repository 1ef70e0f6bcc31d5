"""Collaboration sessions: joining and leaving a trip, and presence.

``websocket-api.md`` "Real-time Collaboration":

- ``collaboration_session_start`` / ``trip_collaboration_join``: check the
  user's permission, subscribe the connection to ``trip:{tripId}``, add it
  to presence, answer ``collaboration_session_started`` with the current
  ``fields`` and ``version``, broadcast ``trip_collaboration_join`` (a user's
  first connection only) and ``trip_collaborator_presence``; pending manual
  conflicts are sent to a joining editor.
- ``trip_collaboration_leave``, or the connection going away (close, heartbeat
  timeout, abort: ``services.on_disconnect``): the connection leaves presence,
  its advisory locks are released (``trip_field_editing_stop``, reason
  ``left``), and a user's last connection leaving broadcasts
  ``trip_collaboration_leave``.

Connections of other transports (Yjs peers, :mod:`api.trips.yjs`) join, touch
and leave presence through the same methods, with their own session ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.api.trips.broadcast import TripBroadcast, channel
from tripsage_sync.api.trips.events import resolution_required_payload
from tripsage_sync.api.trips.registry import RoomRegistry
from tripsage_sync.api.trips.rooms import EDITORS, TripRoom
from tripsage_sync.sync.collaboration import (
    CollaborationSessionStartedPayload,
    Permissions,
    TripCollaborationJoinPayload,
    TripCollaborationLeavePayload,
)
from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.presence import Member
from tripsage_sync.sync.wire import (
    TripCollaborationLeaveMessage,
    TripJoinMessage,
    iso_ms,
    make_event,
)

__all__ = ["SUPPORTED_FEATURES", "Collaboration"]

logger = logging.getLogger(__name__)

SUPPORTED_FEATURES: Final = ("real_time_editing", "typing_indicators", "live_cursors")


class Collaboration:
    """Who is in which trip room; ``schedule`` rearms a room's timer (presence deadlines)."""

    def __init__(
        self,
        hub: Hub[Connection],
        clock: Clock,
        registry: RoomRegistry,
        broadcast: TripBroadcast,
        schedule: Callable[[TripRoom], None],
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.registry = registry
        self.broadcast = broadcast
        self.schedule = schedule

    # -- collaboration sessions ------------------------------------------------------

    async def on_session_start(self, conn: Connection, message: TripJoinMessage) -> None:
        payload = message.payload
        room, permission = self.registry.room_for(conn.principal, payload.tripId)
        if room.holds:  # answered from durable state
            await room.settle(self.registry.services)
            room, permission = self.registry.room_for(conn.principal, payload.tripId)
        if room.hearing is not None and not room.hearing.done():
            await room.hear()  # then it hears what other nodes send after the answer
            room, permission = self.registry.room_for(conn.principal, payload.tripId)
        now = self.clock.now_ms()
        principal = conn.principal
        self.hub.subscribe(conn, channel(room.trip_id))
        new_user = room.presence.join(
            Member(
                conn.id,
                principal.user_id,
                principal.name or principal.user_id,
                principal.avatar_url,
                permission,
                now,
            )
        )
        requested = getattr(payload, "features", []) or list(SUPPORTED_FEATURES)
        conn.send(
            make_event(
                CollaborationSessionStartedPayload(
                    sessionId=f"collab-{conn.id}-{room.trip_id}",
                    tripId=room.trip_id,
                    activeCollaborators=len({m.user_id for m in room.presence.members.values()}),
                    yourPermissions=Permissions(
                        canEdit=permission in EDITORS,
                        canInvite=permission == "owner",
                        canDelete=permission == "owner",
                    ),
                    permissionLevel=permission,
                    features=[f for f in requested if f in SUPPORTED_FEATURES],
                    serverVersion=room.doc.version,
                    version=room.doc.version,
                    fields=room.doc.fields(),
                    manualResolutionFields=sorted(room.doc.manual_fields),
                    collaborators=room.presence.active_collaborators(now, iso_ms),
                ),
                now_ms=now,
                session_id=conn.session.path_session_id,
            )
        )
        self.broadcast.saw_trip(conn, room.trip_id, room.doc.version)
        if new_user:
            self.broadcast.publish(
                room,
                TripCollaborationJoinPayload(
                    tripId=room.trip_id,
                    userId=principal.user_id,
                    userName=principal.name or principal.user_id,
                    avatarUrl=principal.avatar_url,
                    permissionLevel=permission,
                    sessionId=conn.session.path_session_id,
                ),
                exclude=conn,
            )
        self.broadcast.publish_presence(room)
        if permission in EDITORS:
            for conflict in room.doc.pending_conflicts():
                conn.send(
                    make_event(
                        resolution_required_payload(conflict),
                        now_ms=now,
                    )
                )
        self.schedule(room)
        conn.log.info("joined trip %s as %s", room.trip_id, permission)

    async def on_leave(self, conn: Connection, message: TripCollaborationLeaveMessage) -> None:
        room = self.registry.rooms.get(message.payload.tripId)
        if room is None or conn.id not in room.presence.members:
            raise InvalidMessage(
                "Not in this trip's collaboration session",
                details={
                    "field": "payload.tripId",
                    "expected": "a joined trip",
                    "received": message.payload.tripId,
                },
            )
        self.hub.unsubscribe(conn, channel(room.trip_id))
        self.leave(room, conn)

    def on_disconnect(self, conn: Connection) -> None:
        for room in list(self.registry.rooms.values()):
            if conn.id in room.presence.members:
                self.leave(room, conn)

    def leave(self, room: TripRoom, conn: Connection) -> None:
        self.leave_presence(room, conn.id, conn.session.path_session_id)

    # -- presence, for every transport -------------------------------------------------

    def join_presence(self, room: TripRoom, member: Member, session_id: str) -> None:
        """A connection of another transport joins the room's presence."""
        if room.presence.join(member):
            self.broadcast.publish(
                room,
                TripCollaborationJoinPayload(
                    tripId=room.trip_id,
                    userId=member.user_id,
                    userName=member.user_name,
                    avatarUrl=member.avatar_url,
                    permissionLevel=member.permission,
                    sessionId=session_id,
                ),
            )
        self.broadcast.publish_presence(room)
        self.schedule(room)

    def touch_presence(
        self, room: TripRoom, connection_id: str, *, current_field: str | None, focus: bool
    ) -> None:
        if room.presence.touch(
            connection_id, self.clock.now_ms(), current_field=current_field, focus=focus
        ):
            self.broadcast.publish_presence(room)

    def leave_presence(self, room: TripRoom, connection_id: str, session_id: str) -> None:
        """A connection leaves: its locks are released, its user maybe leaves the trip."""
        member, released, user_left = room.presence.leave(connection_id)
        if member is None:
            return
        for lock in released:
            self.broadcast.publish_lock_stop(room, lock, reason="left")
        if user_left:
            self.broadcast.publish(
                room,
                TripCollaborationLeavePayload(
                    tripId=room.trip_id, userId=member.user_id, sessionId=session_id
                ),
            )
        self.broadcast.publish_presence(room)
