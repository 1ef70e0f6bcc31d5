"""Advisory field locks (``websocket-api.md`` "Field Editing"): ``trip_field_editing_start``
and ``_stop`` of a joined trip; the locks live in the room's presence and expire on
the trip feature's timer.
"""

from __future__ import annotations

import logging

from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.trips.part import TripPart
from tripsage_sync.api.trips.rooms import EDITORS, TripRoom
from tripsage_sync.sync.collaboration import (
    TripFieldEditingStartPayload,
    TripFieldEditingStopPayload,
)
from tripsage_sync.sync.errors import InvalidMessage, PermissionDenied
from tripsage_sync.sync.wire import (
    TripFieldEditingStartMessage,
    TripFieldEditingStopMessage,
    iso_ms,
    new_id,
)

__all__ = ["FieldLocks"]

logger = logging.getLogger(__name__)


class FieldLocks(TripPart):
    """A part of the trip feature (:mod:`tripsage_sync.api.trips.part`)."""

    def _joined(self, conn: Connection, trip_id: str) -> TripRoom:
        room = self.trips.registry.rooms.get(trip_id)
        if room is None or conn.id not in room.presence.members:
            raise InvalidMessage(
                "Join the trip first (collaboration_session_start)",
                details={
                    "field": "payload.tripId",
                    "expected": "a joined trip",
                    "received": trip_id,
                },
            )
        return room

    async def on_editing_start(
        self, conn: Connection, message: TripFieldEditingStartMessage
    ) -> None:
        payload = message.payload
        room = self._joined(conn, payload.tripId)
        if room.permission(conn.principal.user_id) not in EDITORS:
            raise PermissionDenied(
                "Viewers cannot edit this trip", details={"tripId": room.trip_id}
            )
        lock = room.presence.lock(conn.id, payload.fieldName, new_id("lock"), self.clock.now_ms())
        event_payload = TripFieldEditingStartPayload(
            tripId=room.trip_id,
            fieldName=lock.field_name,
            fieldPath=payload.fieldPath or f"trip.{lock.field_name}",
            userId=lock.user_id,
            userName=lock.user_name,
            lockId=lock.lock_id,
            expiresAt=iso_ms(lock.expires_ms),
            otherEditors=[
                h.user_id
                for h in room.presence.holders(lock.field_name, self.clock.now_ms())
                if h.user_id != lock.user_id
            ],
        )
        self.trips.publish(room, event_payload)
        self.trips.publish_presence(room)
        self.trips.schedule(room)

    async def on_editing_stop(self, conn: Connection, message: TripFieldEditingStopMessage) -> None:
        payload = message.payload
        room = self._joined(conn, payload.tripId)
        lock = room.presence.unlock(conn.id, payload.fieldName, self.clock.now_ms())
        self.trips.publish(
            room,
            TripFieldEditingStopPayload(
                tripId=room.trip_id,
                fieldName=payload.fieldName,
                userId=conn.principal.user_id,
                lockId=lock.lock_id if lock else payload.lockId,
            ),
        )
        self.trips.publish_presence(room)
