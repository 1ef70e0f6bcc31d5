"""Persist, then broadcast, then compact: the end of a trip change's path.

A Yjs peer's change (``commit_remote``) and a settled manual conflict
(``commit_resolution``, an editor's choice or the deadline's default) are
committed through :meth:`api.trips.rooms.TripRoom.durable`; only inside its body,
after the commit and in the room's version order, are they broadcast
(:class:`api.trips.broadcast.TripBroadcast`). A failed commit raises
:class:`api.trips.rooms.RoomBroken` and broadcasts nothing.

Compaction: every ``compact_every_updates`` changes of a room, a snapshot at the
newest version older than ``history_retention_days`` (never below the history's
base) replaces the log up to it, in one storage transaction. A failed snapshot is
logged; the log still has everything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.broadcast import TripBroadcast
from tripsage_sync.api.trips.events import (
    change_payload,
    conflict_detected_payload,
    resolution_required_payload,
)
from tripsage_sync.api.trips.rooms import TripRoom
from tripsage_sync.sync.collaboration import ConflictResolvedPayload
from tripsage_sync.sync.document import ApplyResult, RemoteResult

__all__ = ["TripCommits"]

logger = logging.getLogger(__name__)


class TripCommits:
    """Commits of the trip rooms that are not a JSON client's own update.

    ``schedule`` rearms a room's timer (:meth:`api.trips.timer.RoomTimer.schedule`)
    once a commit raised manual conflicts with deadlines.
    """

    def __init__(
        self,
        services: Services,
        settings: Settings,
        clock: Clock,
        broadcast: TripBroadcast,
        schedule: Callable[[TripRoom], None],
    ) -> None:
        self.services = services
        self.settings = settings
        self.clock = clock
        self.broadcast = broadcast
        self.schedule = schedule

    async def commit_remote(self, room: TripRoom, result: RemoteResult, origin: object) -> None:
        """Persist, then broadcast a Yjs peer's change (``trip_update_broadcast`` et al.).

        Raises :class:`RoomBroken` (the room went back to what storage holds) when
        the commit fails.
        """
        broadcast = self.broadcast
        change = result.change
        writes = room.writes_for(change)
        for conflict, _ in result.conflicts:
            writes.extend(room.writes_for(None, conflict=conflict))
        movable = change if not result.conflicts else None  # see TripRoom._rebase
        async with room.durable(self.services, writes, change=movable) as committed:
            change = committed or change  # its version may have moved
            if change is not None:
                if broadcast.has_audience(room, None):  # else nothing to build (peers only)
                    payload = change_payload(room.trip_id, change, now=self.clock.now_ms())
                    broadcast.publish(room, payload)
                broadcast.run_change_hooks(room, change, origin)
            for conflict, detected in result.conflicts:
                if detected is not None:
                    broadcast.publish(room, conflict_detected_payload(room.trip_id, detected))
                broadcast.send_to_editors(room, resolution_required_payload(conflict))
        if change is not None:
            await self.maybe_compact(room)
        if result.conflicts:
            self.schedule(room)

    async def commit_resolution(
        self, room: TripRoom, result: ApplyResult, *, resolved_by: str
    ) -> None:
        resolved = result.conflict_resolved or result.outcome.update_id
        writes = room.writes_for(result.change, resolved=resolved)
        async with room.durable(self.services, writes):  # RoomBroken: not applied
            self.broadcast.broadcast_result(room, result, exclude=None)
            outcome = result.outcome
            value = getattr(outcome, "confirmed_value", None)
            self.broadcast.publish(
                room,
                ConflictResolvedPayload(
                    tripId=room.trip_id,
                    conflictId=resolved,
                    fieldName=outcome.field_name,
                    resolvedValue=value,
                    resolvedBy=resolved_by,
                    version=room.doc.version,
                ),
            )

    # -- compaction -----------------------------------------------------------------------

    async def maybe_compact(self, room: TripRoom) -> None:
        settings = self.settings
        room.since_snapshot += 1
        if room.since_snapshot < settings.compact_every_updates:
            return
        room.since_snapshot = 0
        horizon = self.clock.now_ms() - int(settings.history_retention_days * 86_400_000)
        first_recent = room.appended.first_at_or_after(horizon)
        keep = first_recent - 1 if first_recent is not None else room.doc.version
        keep = max(keep, room.doc.base_version)
        if keep <= room.doc.base_version:
            return
        snapshot = room.doc.compact(keep)
        room.appended.prune(snapshot.version)
        try:
            with room.held():  # not unloaded before its snapshot is stored
                pruned = await self.services.write(
                    self.services.store.save_snapshot(
                        room.trip_id,
                        snapshot.version,
                        snapshot.state,
                        json.dumps(snapshot.meta),
                        self.clock.now_ms(),
                        prune_log_up_to_version=snapshot.version,
                    )
                )
            logger.info(
                "trip %s: snapshot at version %d, %d updates pruned",
                room.trip_id,
                snapshot.version,
                pruned,
            )
        except Exception:
            logger.exception(
                "trip %s: snapshot failed (the log still has everything)", room.trip_id
            )
