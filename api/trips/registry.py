"""The trip rooms loaded in this process: looked up, loaded from storage, evicted."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tripsage_sync.api.restore import restore_document
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.rooms import TripRoom
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.document import SPANS, AppendTimes, TripDocument
from tripsage_sync.sync.errors import NotFound, PermissionDenied
from tripsage_sync.sync.presence import Presence

__all__ = ["RoomRegistry"]

logger = logging.getLogger(__name__)


class RoomRegistry:
    """The loaded rooms of this process."""

    def __init__(
        self,
        services: Services,
        *,
        on_evict: Callable[[TripRoom], None],
        on_adopt: Callable[[TripRoom], None] = lambda room: None,
    ) -> None:
        self.services = services
        self.rooms: dict[str, TripRoom] = {}
        self._on_evict = on_evict
        self._on_adopt = on_adopt
        services.metrics.trips_loaded = lambda: len(self.rooms)

    def get(self, trip_id: str) -> TripRoom:
        room = self.rooms.get(trip_id)
        if room is not None and not room.broken:
            room.used_ms = self.services.clock.now_ms()
            return room
        if room is not None:
            self.evict(room)
        return self.load(trip_id)

    def room_for(self, principal: Principal, trip_id: str) -> tuple[TripRoom, str]:
        """The room and the user's permission; unknown trips look like forbidden ones."""
        try:
            room = self.get(trip_id)
        except NotFound:
            raise PermissionDenied(
                "Not a collaborator of this trip", details={"tripId": trip_id}
            ) from None
        permission = room.permission(principal.user_id)
        if permission is None and principal.role == "admin":
            permission = "viewer"
        if permission is None:
            raise PermissionDenied("Not a collaborator of this trip", details={"tripId": trip_id})
        return room, permission

    def load(self, trip_id: str) -> TripRoom:
        store = self.services.store
        trip = store.get_trip(trip_id)
        if trip is None:
            raise NotFound("Trip not found", details={"tripId": trip_id})
        settings = self.services.settings
        doc = restore_document(
            store,
            trip,
            auto_resolve_after_ms=settings.conflict_auto_resolve_ms,
            keep_entries=settings.history_window_updates,
        )
        room = self.adopt(trip_id, doc, trip.owner_id, store.collaborators(trip_id))
        now = self.services.clock.now_ms()
        # Loaded history counts as appended now: it is kept the whole retention period.
        room.appended.add_range(doc.base_version + 1, doc.version, now)
        logger.info("trip %s loaded at version %d", trip_id, doc.version)
        return room

    def adopt(
        self, trip_id: str, doc: TripDocument, owner_id: str, permissions: dict[str, str]
    ) -> TripRoom:
        """Make ``doc`` the loaded room of ``trip_id``."""
        settings = self.services.settings
        room = TripRoom(
            trip_id=trip_id,
            doc=doc,
            owner_id=owner_id,
            permissions=permissions,
            clock=self.services.clock,
            presence=Presence(
                trip_id,
                idle_after_ms=int(settings.presence_idle_s * 1000),
                lock_ttl_ms=int(settings.field_lock_ttl_s * 1000),
            ),
            used_ms=self.services.clock.now_ms(),
            appended=AppendTimes(int(settings.history_retention_days * 86_400_000 / SPANS)),
        )
        self.rooms[trip_id] = room
        self._on_adopt(room)
        return room

    def evict(self, room: TripRoom) -> None:
        if self.rooms.get(room.trip_id) is room:
            del self.rooms[room.trip_id]
        if room.timer is not None:
            room.timer.cancel()
        self._on_evict(room)
