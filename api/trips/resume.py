"""Resume after offline: ``sync_request`` for JSON clients.

Theory of operation (an extension of ``websocket-api.md`` "Real-time
Collaboration"; README "Resume protocol")
------------------------------------------------------------------------
A client that was offline sends ``sync_request {tripId, sinceVersion}`` with
the last version it applied. The answer, on that connection only, is either

- every change after ``sinceVersion`` as a ``trip_update_broadcast`` (the
  payload that was broadcast live, recomputed from the retained history by
  :meth:`sync.document.TripDocument.changes_since`, plus ``replayed: true``),
  in version order; or
- one ``trip_snapshot {tripId, version, fields, reason}`` when those changes
  are gone (the history was compacted past ``sinceVersion``), when
  ``sinceVersion`` is ahead of the server, or when the replay would be longer
  than :func:`replay_limit` (a replay must not overflow the connection's
  outbound queue and get it closed as a slow consumer);

then the marker ``sync_complete {tripId, version, fromVersion, changes,
snapshot}``: the client is now at ``version``.

Ordering with live broadcasts. The request waits its turn in the room's
commit pipeline (:meth:`api.trips.rooms.TripRoom.durable` with no writes), so every
change up to the version read when it arrived is durable and was broadcast
before the answer is sent, and no change that could still fail to commit is
ever replayed. Changes applied later are broadcast after the marker. A client
that joined the trip first may see a change both live and replayed: versions
identify changes, so it applies each version once.

Permission: collaborators (any level) and admins, as for joining. An unknown
trip and a trip of someone else are both ``PERMISSION_DENIED``, so the
answer does not tell whether the trip exists.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from starlette.routing import BaseRoute

from tripsage_sync.api.trips.events import change_payload
from tripsage_sync.api.trips.rooms import RoomBroken, TripRoom
from tripsage_sync.sync.collaboration import (
    SyncCompletePayload,
    TripSnapshotPayload,
    TripUpdateBroadcastPayload,
)
from tripsage_sync.sync.document import Change
from tripsage_sync.sync.errors import NotFound, PermissionDenied, ServerError
from tripsage_sync.sync.wire import ServerEvent, SyncRequestMessage, make_event

if TYPE_CHECKING:
    from tripsage_sync.api.transport.connection import Connection
    from tripsage_sync.api.transport.services import Services
    from tripsage_sync.api.trips.feature import TripFeature

__all__ = ["MAX_REPLAY_CHANGES", "ResumeFeature", "replay_limit", "resume_events"]

logger = logging.getLogger(__name__)

# At most this many replayed changes (and half the outbound queue); beyond: a snapshot.
MAX_REPLAY_CHANGES: Final = 256


# The events of the answer to ``sync_request``.
ResumePayload = TripUpdateBroadcastPayload | TripSnapshotPayload | SyncCompletePayload


def replay_limit(outbound_queue_size: int) -> int:
    """The longest replay sent as changes; a longer one becomes a snapshot."""
    return max(1, min(MAX_REPLAY_CHANGES, outbound_queue_size // 2))


def resume_events(
    room: TripRoom,
    since_version: int,
    until_version: int,
    *,
    limit: int,
    now: int,
    session_id: str | None,
    request_id: str | None,
) -> list[ServerEvent[ResumePayload]]:
    """The answer to ``sync_request``: changes or one snapshot, then the marker."""
    doc, trip_id = room.doc, room.trip_id
    reason: str | None = None
    if since_version > until_version:
        reason = "unknown_version"
    elif since_version < doc.base_version:
        reason = "history_compacted"
    changes: list[Change] = []
    if reason is None and until_version - since_version > limit:
        # One change per version: known too long without replaying (or reading) it.
        reason = "too_many_changes"
    elif reason is None:
        changes = [c for c in doc.changes_since(since_version) if c.version <= until_version]
    events: list[ServerEvent[ResumePayload]] = [
        make_event(
            change_payload(trip_id, c, now=now, replayed=True), now_ms=now, session_id=session_id
        )
        for c in changes
    ]
    version = until_version
    if reason is not None:
        # Compaction may have moved the base past the version read on arrival.
        version = max(until_version, doc.base_version)
        snapshot = TripSnapshotPayload(
            tripId=trip_id, version=version, fields=doc.values_at(version), reason=reason
        )
        events.append(make_event(snapshot, now_ms=now, session_id=session_id))
    marker = SyncCompletePayload(
        tripId=trip_id,
        version=version,
        fromVersion=since_version,
        changes=len(changes),
        snapshot=reason is not None,
    )
    if request_id is not None:
        marker = marker.model_copy(update={"requestId": request_id})
    events.append(make_event(marker, now_ms=now, session_id=session_id))
    return events


class ResumeFeature:
    """Answers ``sync_request`` from the trips' rooms."""

    def __init__(self, trips: TripFeature) -> None:
        self.trips = trips

    def routes(self) -> list[BaseRoute]:
        return []

    async def start(self, services: Services) -> None:
        self.services = services

    async def stop(self) -> None:
        return None

    def _room_for(self, conn: Connection, trip_id: str) -> TripRoom:
        denied = PermissionDenied("Not a collaborator of this trip", details={"tripId": trip_id})
        try:
            room = self.trips.registry.get(trip_id)
        except NotFound:
            raise denied from None
        principal = conn.principal
        if room.permission(principal.user_id) is None and principal.role != "admin":
            raise denied
        return room

    async def on_sync_request(self, conn: Connection, message: SyncRequestMessage) -> None:
        payload = message.payload
        room = self._room_for(conn, payload.tripId)
        until = room.doc.version
        try:
            # Behind every change applied before this point: durable and broadcast.
            async with room.durable(self.services, []):
                if room.broken:
                    raise RoomBroken(room.trip_id)
                events = resume_events(
                    room,
                    payload.sinceVersion,
                    until,
                    limit=replay_limit(self.services.settings.outbound_queue_size),
                    now=self.trips.clock.now_ms(),
                    session_id=conn.session.path_session_id,
                    request_id=message.id,
                )
                for event in events:
                    conn.send(event)
                    if isinstance(event.payload, SyncCompletePayload):
                        self.trips.saw_trip(conn, room.trip_id, event.payload.version)
        except RoomBroken:
            self.trips.registry.evict(room)
            raise ServerError("The trip could not be read; retry") from None
        conn.log.info(
            "sync_request trip %s since %d: %d event(s) up to version %d",
            room.trip_id,
            payload.sinceVersion,
            len(events),
            until,
        )
