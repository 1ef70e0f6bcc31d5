"""Manual conflict resolution (``websocket-api.md`` "Conflict Resolution"):
``conflict_resolution_submit`` by an editor; the trip feature commits it (and the
automatic resolution at the deadline).
"""

from __future__ import annotations

import contextlib
import logging

from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.trips.part import TripPart
from tripsage_sync.api.trips.rooms import EDITORS, RoomBroken
from tripsage_sync.sync.errors import InvalidMessage, NotFound, PermissionDenied, ServerError
from tripsage_sync.sync.wire import ConflictResolutionSubmitMessage

__all__ = ["ConflictResolution"]

logger = logging.getLogger(__name__)


class ConflictResolution(TripPart):
    """A part of the trip feature (:mod:`tripsage_sync.api.trips.part`)."""

    async def on_resolution_submit(
        self, conn: Connection, message: ConflictResolutionSubmitMessage
    ) -> None:
        p = message.payload
        room = next(
            (
                r
                for r in self.trips.registry.rooms.values()
                if any(c.conflict_id == p.conflictId for c in r.doc.pending_conflicts())
            ),
            None,
        )
        if room is None:  # maybe a trip unloaded while idle (api/trips/sweep.py)
            stored = self.trips.services.store.pending_conflicts()
            trip_id = next((c.trip_id for c in stored if c.conflict_id == p.conflictId), None)
            with contextlib.suppress(NotFound):
                room = None if trip_id is None else self.trips.registry.get(trip_id)
        if room is None or not any(
            c.conflict_id == p.conflictId for c in room.doc.pending_conflicts()
        ):
            raise NotFound("No pending conflict with this id", details={"conflictId": p.conflictId})
        if room.permission(conn.principal.user_id) not in EDITORS:
            raise PermissionDenied(
                "Only editors and owners resolve conflicts", details={"conflictId": p.conflictId}
            )
        if p.chosenOptionId is None and "customValue" not in p.model_fields_set:
            raise InvalidMessage(
                "chosenOptionId or customValue is required",
                details={
                    "field": "payload.chosenOptionId",
                    "expected": "string",
                    "received": "undefined",
                },
            )
        refused_ms = self.trips.services.storage_backoff.admit(self.clock.now_ms())
        if refused_ms is not None:
            raise ServerError(
                "The choice could not be saved (storage unavailable); retry",
                details={"conflictId": p.conflictId},
                retry_after=refused_ms / 1000,
            )
        result = room.doc.resolve_conflict(
            p.conflictId,
            user_id=conn.principal.user_id,
            chosen_option_id=p.chosenOptionId,
            custom_value=p.customValue,
            now_ms=self.clock.now_ms(),
        )
        try:
            await self.trips.commit_resolution(room, result, resolved_by=conn.principal.user_id)
        except RoomBroken as broken:
            raise ServerError(
                "The choice could not be saved (storage unavailable); retry",
                details={"conflictId": p.conflictId},
                retry_after=broken.retry_after_ms / 1000,
            ) from None
