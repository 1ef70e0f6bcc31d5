"""What a trip room sends its JSON clients, and what each connection has seen.

Every event of a room goes to the hub channel ``trip:{tripId}``
(``websocket-api.md`` "Real-time Collaboration"): changes as
``trip_update_broadcast``, conflicts as ``trip_conflict_detected`` (everyone) and
``conflict_resolution_required`` (editors only), presence as
``trip_collaborator_presence`` (droppable: a newer one replaces it). A committed
change also runs the room's change hooks, in broadcast order, so other transports
(:mod:`api.trips.yjs`) send it on in the same order; presence runs the presence
hooks.

The latest version each connection was sent the whole trip at ("expectedVersion")
is kept here too, because every ``trip_update_broadcast`` advances it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.hooks import HookRunner, TripChange, TripStored
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.api.trips.events import (
    change_payload,
    conflict_detected_payload,
    resolution_required_payload,
)
from tripsage_sync.api.trips.rooms import EDITORS, Relayed, TripRoom
from tripsage_sync.sync.collaboration import (
    ConflictResolutionRequiredPayload,
    ConflictResolvedPayload,
    TripCollaborationJoinPayload,
    TripCollaborationLeavePayload,
    TripCollaboratorPresencePayload,
    TripConflictDetectedPayload,
    TripFieldEditingStartPayload,
    TripFieldEditingStopPayload,
    TripUpdateBroadcastPayload,
)
from tripsage_sync.sync.document import ApplyResult, Change
from tripsage_sync.sync.presence import FieldLock
from tripsage_sync.sync.wire import ServerEvent, encode, iso_ms, make_event

__all__ = [
    "ALL",
    "CHANGE",
    "EDITORS_ONLY",
    "ChangeHook",
    "PresenceHook",
    "TripBroadcast",
    "TripRoomPayload",
    "channel",
]

# The events published to a trip's channel.
TripRoomPayload = (
    TripCollaborationJoinPayload
    | TripCollaborationLeavePayload
    | TripFieldEditingStartPayload
    | TripFieldEditingStopPayload
    | TripUpdateBroadcastPayload
    | TripConflictDetectedPayload
    | ConflictResolvedPayload
)

logger = logging.getLogger(__name__)

ChangeHook = Callable[[TripRoom, Change, object | None], None]
PresenceHook = Callable[[TripRoom], None]


#: Who a relayed event is for (``Relayed``): every subscriber of the trip, or its editors.
ALL: Final = "all"
EDITORS_ONLY: Final = "editors"
#: ``trip_update_broadcast``: for everyone, and left out where the version was announced.
CHANGE: Final = "change"


def channel(trip_id: str) -> str:
    return f"trip:{trip_id}"


class TripBroadcast:
    """The trip rooms' events to their subscribers, and the hooks of other transports.

    ``change_hooks`` run for every committed change, inside the room's broadcast
    order, with the change's origin (None for JSON clients; a transport passes
    its own connection to skip it); ``presence_hooks`` run whenever presence
    is published. Both lists are the trip feature's, filled as features start.
    """

    def __init__(
        self,
        hub: Hub[Connection],
        clock: Clock,
        change_hooks: list[ChangeHook],
        presence_hooks: list[PresenceHook],
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.change_hooks = change_hooks
        # The application's hooks (api/transport/hooks.py), once the services exist.
        self.app_hooks: HookRunner | None = None
        self.presence_hooks = presence_hooks
        #: Cluster mode: tells other nodes of an event sent outside a commit (replica.py).
        self.relay_now: Callable[[TripRoom, Relayed], None] | None = None
        #: Cluster mode: tells other nodes of this node's members of a room (replica.py).
        self.presence_out: Callable[[TripRoom], None] | None = None

    def publish(
        self,
        room: TripRoom,
        payload: TripRoomPayload,
        *,
        exclude: Connection | None = None,
    ) -> None:
        made = make_event(payload, now_ms=self.clock.now_ms())
        event: ServerEvent | str = made
        if self.relaying(room):
            event = encode(made)  # once, for the subscribers here and the other nodes
            audience = CHANGE if isinstance(payload, TripUpdateBroadcastPayload) else ALL
            self._relay(room, (audience, event, False))
        self.hub.publish(channel(room.trip_id), event, exclude=exclude, relay=False)
        if isinstance(payload, TripUpdateBroadcastPayload):
            self.advance_seen(room, payload.version, exclude)

    def advance_seen(self, room: TripRoom, version: int, exclude: Connection | None) -> None:
        """Subscribers other than ``exclude`` were sent the trip up to ``version``."""
        for conn in self.hub.subscribers(channel(room.trip_id)):
            versions = conn.attachments.get("trip_versions")
            if conn is not exclude and versions and room.trip_id in versions:
                versions[room.trip_id] = max(versions[room.trip_id], version)

    def relaying(self, room: TripRoom) -> bool:
        """Whether the room's events now go to other nodes too (cluster mode): a commit's
        while another node has the room loaded (``elsewhere``), any other event always
        (rare: a node that loads the room while it is sent still hears it)."""
        if room.relay is not None:
            return True
        return self.relay_now is not None and not room.committing

    def _relay(self, room: TripRoom, relayed: Relayed) -> None:
        if room.relay is not None:  # inside a commit: goes out with it, in version order
            room.relay.append(relayed)
        elif self.relay_now is not None and not room.committing:
            self.relay_now(room, relayed)

    def encode(self, payload: TripRoomPayload) -> str:
        return encode(make_event(payload, now_ms=self.clock.now_ms()))

    def deliver(self, room: TripRoom, relayed: Relayed) -> None:
        """An event another node broadcast to the room: to the subscribers here."""
        audience, text, droppable = relayed
        members = self.hub.subscribers(channel(room.trip_id))
        if audience == EDITORS_ONLY:
            members = [c for c in members if room.permission(c.principal.user_id) in EDITORS]
        self.hub.send_many(members, text, droppable=droppable)

    def publish_presence(self, room: TripRoom, *, relay: bool = True) -> None:
        """``trip_collaborator_presence`` to the room's subscribers here (every node's
        members in it), and, in cluster mode, this node's members to the others."""
        if relay and self.presence_out is not None:
            self.presence_out(room)
        members = self.hub.subscribers(channel(room.trip_id))
        if members:  # else nothing to build (a room of Yjs peers only)
            now = self.clock.now_ms()
            payload = TripCollaboratorPresencePayload(
                tripId=room.trip_id,
                activeCollaborators=room.presence.active_collaborators(now, iso_ms),
            )
            self.hub.send_many(members, make_event(payload, now_ms=now), droppable=True)
        for hook in self.presence_hooks:
            hook(room)

    def send_to_editors(self, room: TripRoom, payload: ConflictResolutionRequiredPayload) -> None:
        made = make_event(payload, now_ms=self.clock.now_ms())
        event: ServerEvent | str = made
        if self.relaying(room):
            event = encode(made)
            self._relay(room, (EDITORS_ONLY, event, False))
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
            if self.has_audience(room, exclude):  # else nothing to build (a trip of one)
                self.publish(
                    room,
                    change_payload(room.trip_id, result.change, now=self.clock.now_ms()),
                    exclude=exclude,
                )
            self.run_change_hooks(room, result.change, None)
        if result.conflict_detected is not None:
            self.publish(
                room,
                conflict_detected_payload(room.trip_id, result.conflict_detected),
            )
        if result.conflict_raised is not None:
            self.send_to_editors(
                room,
                resolution_required_payload(result.conflict_raised),
            )

    def has_audience(self, room: TripRoom, exclude: Connection | None) -> bool:
        """Whether a subscriber of the trip other than ``exclude`` would get its events
        (in cluster mode, other nodes' subscribers may: whenever another has the room)."""
        if room.relay is not None or (self.relay_now is not None and room.elsewhere):
            return True
        return any(conn is not exclude for conn in self.hub.channels.get(channel(room.trip_id), ()))

    def run_change_hooks(
        self, room: TripRoom, change: Change, origin: object | None, *, here: bool = True
    ) -> None:
        """Tell the change hooks of a committed change; ``here``: this node committed it
        (else it came from another node), and the application's hooks hear of it too."""
        for hook in self.change_hooks:
            try:
                hook(room, change, origin)
            except Exception:
                logger.exception("trip %s: change hook failed", room.trip_id)
        if here and self.app_hooks is not None and self.app_hooks.active:
            now = self.clock.now_ms()
            hooks = self.app_hooks
            hooks.notify(
                "on_store",
                TripStored(room.trip_id, change.version, change.update, change.updated_by, now),
            )
            changes = {
                name: {"oldValue": c.old_value, "newValue": c.new_value}
                for name, c in change.changes.items()
            }
            kind = "json" if origin is None else "yjs"
            hooks.notify(
                "on_change",
                TripChange(room.trip_id, change.version, change.updated_by, changes, kind, now),
            )

    def publish_lock_stop(self, room: TripRoom, lock: FieldLock, *, reason: str) -> None:
        """``trip_field_editing_stop`` for a lock the server released (left, timeout)."""
        payload = TripFieldEditingStopPayload(
            tripId=room.trip_id,
            fieldName=lock.field_name,
            userId=lock.user_id,
            lockId=lock.lock_id,
            reason=reason,
        )
        self.publish(room, payload)

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
