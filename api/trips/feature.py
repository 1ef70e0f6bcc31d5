"""Trips: the collaboration, optimistic-update and conflict events of the spec.

Theory of operation (``websocket-api.md`` "Real-time Collaboration",
"Optimistic Updates", "Conflict Resolution")
------------------------------------------------------------------------
Each trip is a :class:`api.trips.rooms.TripRoom` around a
:class:`sync.document.TripDocument`. The handlers here translate JSON events
into calls on the document and its results back into events:

- ``collaboration_session_start`` / ``trip_collaboration_join``: check the
  user's permission, subscribe the connection to ``trip:{tripId}``, add it
  to presence, answer ``collaboration_session_started`` with the current
  ``fields`` and ``version``, broadcast ``trip_collaboration_join`` and
  ``trip_collaborator_presence``; pending manual conflicts are sent to a
  joining editor.
- ``optimistic_update_start``: apply, persist (update + outcome + conflict in
  one transaction), then broadcast ``trip_update_broadcast`` /
  ``trip_conflict_detected`` / ``conflict_resolution_required``, then send the
  sender's single outcome. The outcome is stored by ``updateId``: a re-send
  gets the same outcome back and is never applied twice.
- ``conflict_resolution_submit`` and the per-room timer (deadlines of manual
  conflicts, advisory lock expiry, idle presence) apply their results the
  same way.

Presence is per connection; a connection that goes away (close, heartbeat
timeout, abort) leaves every trip at once through ``services.on_disconnect``.

The payloads are built in :mod:`api.trips.events`; the HTTP API is the
:class:`api.trips.http.TripHttp` feature, composed on this one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Final

from starlette.routing import BaseRoute

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.events import (
    change_payload,
    conflict_detected_payload,
    resolution_required_payload,
)
from tripsage_sync.api.trips.rooms import RoomBroken, RoomRegistry, TripRoom
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.document import (
    ApplyResult,
    Change,
    RemoteResult,
)
from tripsage_sync.sync.errors import InvalidMessage, NotFound, PermissionDenied
from tripsage_sync.sync.presence import FieldLock, Member
from tripsage_sync.sync.wire import (
    TripCollaborationLeaveMessage,
    TripJoinMessage,
    iso_ms,
    make_event,
)

__all__ = ["EDITORS", "PERMISSIONS", "TripFeature"]

logger = logging.getLogger(__name__)

PERMISSIONS: Final = ("viewer", "editor", "owner")
EDITORS: Final = frozenset({"editor", "owner"})
SUPPORTED_FEATURES: Final = ("real_time_editing", "typing_indicators", "live_cursors")


def channel(trip_id: str) -> str:
    return f"trip:{trip_id}"


ChangeHook = Callable[[TripRoom, Change, object | None], None]
PresenceHook = Callable[[TripRoom], None]


class TripFeature:
    """The trip events, and the rooms other transports (:mod:`api.trips.yjs`) share.

    ``change_hooks`` run for every committed change, inside the room's broadcast
    order, with the change's origin (None for JSON clients; a transport passes
    its own connection to skip it); ``presence_hooks`` run whenever presence
    is published.
    """

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.change_hooks: list[ChangeHook] = []
        self.presence_hooks: list[PresenceHook] = []

    # -- lifecycle ------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """None of its own: :class:`api.trips.http.TripHttp` serves the HTTP API."""
        return []

    async def start(self, services: Services) -> None:
        self.services = services
        self.hub = services.hub
        self.registry = RoomRegistry(services, on_evict=lambda room: None)
        self.services.on_disconnect.append(self.on_disconnect)
        self._tasks: set[asyncio.Task[None]] = set()
        # Pending manual conflicts survive restarts: load their trips, rearm timers.
        for trip_id in sorted({c.trip_id for c in services.store.pending_conflicts()}):
            self.schedule(self.registry.get(trip_id))

    async def stop(self) -> None:
        for room in list(self.registry.rooms.values()):
            if room.timer is not None:
                room.timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    # -- helpers ----------------------------------------------------------------------

    def room_for(self, principal: Principal, trip_id: str) -> tuple[TripRoom, str]:
        """The room and the user's permission; unknown trips look like forbidden ones."""
        return self._room_for(principal, trip_id)

    def _room_for(self, principal: Principal, trip_id: str) -> tuple[TripRoom, str]:
        """The room and the user's permission; unknown trips look like forbidden ones."""
        try:
            room = self.registry.get(trip_id)
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

    def publish(
        self,
        room: TripRoom,
        type_: str,
        payload: dict[str, Any],
        *,
        exclude: Connection | None = None,
    ) -> None:
        event = make_event(type_, payload, now_ms=self.clock.now_ms())
        self.hub.publish(channel(room.trip_id), event, exclude=exclude)
        if type_ == "trip_update_broadcast":
            for conn in self.hub.subscribers(channel(room.trip_id)):
                versions = conn.attachments.get("trip_versions")
                if conn is not exclude and versions and room.trip_id in versions:
                    versions[room.trip_id] = max(versions[room.trip_id], payload["version"])

    def publish_presence(self, room: TripRoom) -> None:
        now = self.clock.now_ms()
        payload = {
            "tripId": room.trip_id,
            "activeCollaborators": room.presence.active_collaborators(now, iso_ms),
        }
        event = make_event("trip_collaborator_presence", payload, now_ms=now)
        members = self.hub.subscribers(channel(room.trip_id))
        self.hub.send_many(members, event, droppable=True)
        for hook in self.presence_hooks:
            hook(room)

    def _send_to_editors(self, room: TripRoom, type_: str, payload: dict[str, Any]) -> None:
        event = make_event(type_, payload, now_ms=self.clock.now_ms())
        editors = [
            conn
            for conn in self.hub.subscribers(channel(room.trip_id))
            if room.permission(conn.principal.user_id) in EDITORS
        ]
        self.hub.send_many(editors, event)

    def broadcast_result(
        self, room: TripRoom, result: ApplyResult, exclude: Connection | None
    ) -> None:
        if result.change is not None:
            self.publish(
                room,
                "trip_update_broadcast",
                change_payload(room.trip_id, result.change, now=self.clock.now_ms()),
                exclude=exclude,
            )
            self._run_change_hooks(room, result.change, None)
        if result.conflict_detected is not None:
            self.publish(
                room,
                "trip_conflict_detected",
                conflict_detected_payload(room.trip_id, result.conflict_detected),
            )
        if result.conflict_raised is not None:
            self._send_to_editors(
                room,
                "conflict_resolution_required",
                resolution_required_payload(result.conflict_raised),
            )

    # -- collaboration sessions ------------------------------------------------------

    async def on_session_start(self, conn: Connection, message: TripJoinMessage) -> None:
        payload = message.payload
        room, permission = self._room_for(conn.principal, payload.tripId)
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
                "collaboration_session_started",
                {
                    "sessionId": f"collab-{conn.id}-{room.trip_id}",
                    "tripId": room.trip_id,
                    "activeCollaborators": len({m.user_id for m in room.presence.members.values()}),
                    "yourPermissions": {
                        "canEdit": permission in EDITORS,
                        "canInvite": permission == "owner",
                        "canDelete": permission == "owner",
                    },
                    "permissionLevel": permission,
                    "features": [f for f in requested if f in SUPPORTED_FEATURES],
                    "serverVersion": room.doc.version,
                    "version": room.doc.version,
                    "fields": room.doc.fields(),
                    "manualResolutionFields": sorted(room.doc.manual_fields),
                },
                now_ms=now,
                session_id=conn.session.path_session_id,
            )
        )
        self.saw_trip(conn, room.trip_id, room.doc.version)
        if new_user:
            self.publish(
                room,
                "trip_collaboration_join",
                {
                    "tripId": room.trip_id,
                    "userId": principal.user_id,
                    "userName": principal.name or principal.user_id,
                    "avatarUrl": principal.avatar_url,
                    "permissionLevel": permission,
                    "sessionId": conn.session.path_session_id,
                },
                exclude=conn,
            )
        self.publish_presence(room)
        if permission in EDITORS:
            for conflict in room.doc.pending_conflicts():
                conn.send(
                    make_event(
                        "conflict_resolution_required",
                        resolution_required_payload(conflict),
                        now_ms=now,
                    )
                )
        self.schedule(room)
        conn.log.info("joined trip %s as %s", room.trip_id, permission)

    def _run_change_hooks(self, room: TripRoom, change: Change, origin: object | None) -> None:
        for hook in self.change_hooks:
            try:
                hook(room, change, origin)
            except Exception:
                logger.exception("trip %s: change hook failed", room.trip_id)

    # -- other transports (api/trips/yjs.py) ------------------------------------------------

    def join_presence(self, room: TripRoom, member: Member, session_id: str) -> None:
        """A connection of another transport joins the room's presence."""
        if room.presence.join(member):
            self.publish(
                room,
                "trip_collaboration_join",
                {
                    "tripId": room.trip_id,
                    "userId": member.user_id,
                    "userName": member.user_name,
                    "avatarUrl": member.avatar_url,
                    "permissionLevel": member.permission,
                    "sessionId": session_id,
                },
            )
        self.publish_presence(room)
        self.schedule(room)

    def touch_presence(
        self, room: TripRoom, connection_id: str, *, current_field: str | None, focus: bool
    ) -> None:
        if room.presence.touch(
            connection_id, self.clock.now_ms(), current_field=current_field, focus=focus
        ):
            self.publish_presence(room)

    def leave_presence(self, room: TripRoom, connection_id: str, session_id: str) -> None:
        """A connection of another transport leaves (see :meth:`leave`)."""
        self._leave_presence(room, connection_id, session_id)

    async def commit_remote(self, room: TripRoom, result: RemoteResult, origin: object) -> None:
        """Persist, then broadcast a Yjs peer's change (``trip_update_broadcast`` et al.).

        Raises :class:`RoomBroken` (the room went back to what storage holds) when
        the commit fails.
        """
        change = result.change
        writes = room.writes_for(change)
        for conflict, _ in result.conflicts:
            writes.extend(room.writes_for(None, conflict=conflict))
        async with room.durable(self.services, writes):
            if change is not None:
                payload = change_payload(room.trip_id, change, now=self.clock.now_ms())
                self.publish(room, "trip_update_broadcast", payload)
                self._run_change_hooks(room, change, origin)
            for conflict, detected in result.conflicts:
                if detected is not None:
                    payload = conflict_detected_payload(room.trip_id, detected)
                    self.publish(room, "trip_conflict_detected", payload)
                payload = resolution_required_payload(conflict)
                self._send_to_editors(room, "conflict_resolution_required", payload)
        if change is not None:
            await self.maybe_compact(room)
        if result.conflicts:
            self.schedule(room)

    def leave(self, room: TripRoom, conn: Connection) -> None:
        self._leave_presence(room, conn.id, conn.session.path_session_id)

    def _publish_lock_stop(self, room: TripRoom, lock: FieldLock, *, reason: str) -> None:
        """``trip_field_editing_stop`` for a lock the server released (left, timeout)."""
        payload = {
            "tripId": room.trip_id,
            "fieldName": lock.field_name,
            "userId": lock.user_id,
            "lockId": lock.lock_id,
            "reason": reason,
        }
        self.publish(room, "trip_field_editing_stop", payload)

    def _leave_presence(self, room: TripRoom, connection_id: str, session_id: str) -> None:
        member, released, user_left = room.presence.leave(connection_id)
        if member is None:
            return
        for lock in released:
            self._publish_lock_stop(room, lock, reason="left")
        if user_left:
            self.publish(
                room,
                "trip_collaboration_leave",
                {
                    "tripId": room.trip_id,
                    "userId": member.user_id,
                    "sessionId": session_id,
                },
            )
        self.publish_presence(room)

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

    # -- advisory field locks (api/trips/locks.py), optimistic updates (optimistic.py) -----

    # -- the latest version each connection has seen of a trip ("expectedVersion") --------

    def seen_versions(self, conn: Connection) -> dict[str, int]:
        """Trip id -> the latest version ``conn`` was sent the whole trip at.

        Set by the join answer and ``sync_complete``, then advanced by every
        ``trip_update_broadcast`` sent to it and by its own confirmations while
        it is subscribed (changes reach a subscriber in version order, so it
        has seen every change up to there). An update without
        ``expectedVersion`` is based on it; a trip it never saw whole is 0.
        """
        versions: dict[str, int] = conn.attachments.setdefault("trip_versions", {})
        return versions

    def saw_trip(self, conn: Connection, trip_id: str, version: int) -> None:
        """``conn`` was sent the whole trip at ``version`` (join answer, sync_complete)."""
        versions = self.seen_versions(conn)
        versions[trip_id] = max(versions.get(trip_id, 0), version)

    def saw_own(self, conn: Connection, trip_id: str, version: int) -> None:
        versions = self.seen_versions(conn)
        if trip_id in versions and conn in self.hub.subscribers(channel(trip_id)):
            versions[trip_id] = max(versions[trip_id], version)

    # -- conflicts --------------------------------------------------------------------------

    async def commit_resolution(
        self, room: TripRoom, result: ApplyResult, *, resolved_by: str
    ) -> None:
        resolved = result.conflict_resolved or result.outcome.update_id
        writes = room.writes_for(result.change, resolved=resolved)
        async with room.durable(self.services, writes):  # RoomBroken: not applied
            self.broadcast_result(room, result, exclude=None)
            outcome = result.outcome
            value = getattr(outcome, "confirmed_value", None)
            self.publish(
                room,
                "conflict_resolved",
                {
                    "tripId": room.trip_id,
                    "conflictId": resolved,
                    "fieldName": outcome.field_name,
                    "resolvedValue": value,
                    "resolvedBy": resolved_by,
                    "version": room.doc.version,
                },
            )

    # -- timers: conflict deadlines, lock expiry, idle presence ---------------------------

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
            self._publish_lock_stop(room, lock, reason="timeout")
        if expired or idle_changed:
            self.publish_presence(room)
        due = room.doc.next_conflict_deadline_ms()
        refused_ms = None
        if due is not None and due <= now:
            refused_ms = self.services.storage_backoff.admit(now)
        try:
            if refused_ms is None:
                for result in room.doc.expire_conflicts(now):
                    await self.commit_resolution(room, result, resolved_by="system")
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

    # -- compaction -----------------------------------------------------------------------

    async def maybe_compact(self, room: TripRoom) -> None:
        settings = self.settings
        room.since_snapshot += 1
        if room.since_snapshot < settings.compact_every_updates:
            return
        room.since_snapshot = 0
        horizon = self.clock.now_ms() - int(settings.history_retention_days * 86_400_000)
        recent = [v for v, at in room.appended_ms.items() if at >= horizon]
        keep = min(recent) - 1 if recent else room.doc.version
        keep = max(keep, room.doc.base_version)
        if keep <= room.doc.base_version:
            return
        snapshot = room.doc.compact(keep)
        for version in [v for v in room.appended_ms if v <= snapshot.version]:
            del room.appended_ms[version]
        try:
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
