"""The room bridge: the Yjs side of each trip room, and how it meets the JSON side.

A :class:`YRoom` holds a trip's y-websocket peers and its awareness table
(:class:`sync.ysync.AwarenessTable`). :class:`YRooms` keeps them and bridges
them to the trip feature (:class:`api.trips.feature.TripFeature`):

- a peer joining is a presence member with its token's identity; editors get
  a sync step 1 at once, everyone every awareness state;
- a change committed by anyone (the trip's change hook) is queued and sent to
  the room's peers in version order, the changes of one burst merged into one
  update frame encoded once (:meth:`YRooms.flush`); a room of N peers sends at
  most one such frame every N / ``yjs_peer_frames_per_s`` seconds (the first
  after a pause at once);
- JSON clients appear to peers as awareness states the server makes
  (``{user: {id, name}, currentField}``, owner ``server``); a peer's awareness
  is relayed with ``user.id``/``user.name`` re-stamped from the token, and its
  ``currentField`` is its focus in ``trip_collaborator_presence``;
- peers whose update storage could not take (:mod:`api.trips.yedit`) are
  asked for it again with a sync step 1 (:meth:`YRooms.resync`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from pycrdt import merge_updates

from tripsage_sync.api.trips.feature import TripFeature
from tripsage_sync.api.trips.rooms import EDITORS, TripRoom
from tripsage_sync.api.trips.ypeer import YjsConnection
from tripsage_sync.sync.conflicts import FIELD_PATH_PREFIX, is_field_name
from tripsage_sync.sync.document import Change
from tripsage_sync.sync.presence import Member
from tripsage_sync.sync.ysync import (
    CLOSE_FORBIDDEN,
    AwarenessEntry,
    AwarenessFrame,
    AwarenessTable,
    auth_denied_frame,
    awareness_frame,
    parse_frame,
    server_client_id,
    sync_step1_frame,
    sync_update_frame,
)

__all__ = ["MAX_UPDATES_PER_FRAME", "YRoom", "YRooms"]

SERVER_OWNER: Final = "server"
MAX_UPDATES_PER_FRAME: Final = 256  # a longer burst is flushed in several frames


@dataclass(eq=False)
class YRoom:
    """The Yjs side of one trip room: its peers and awareness."""

    trip_id: str
    peers: dict[str, YjsConnection] = field(default_factory=dict)
    awareness: AwarenessTable = field(default_factory=AwarenessTable)
    json_client_ids: dict[str, int] = field(default_factory=dict)  # JSON connection -> id
    pending: list[tuple[bytes, object | None]] = field(default_factory=list)  # (update, origin)
    flush_scheduled: bool = False
    flush_timer: asyncio.TimerHandle | None = None
    flushed_at: float = float("-inf")  # loop time of the last frame sent
    # Peers whose update storage could not take, asked for it again by ``resync``.
    held: dict[str, YjsConnection] = field(default_factory=dict)
    told: set[str] = field(default_factory=set)  # held peers told so, until an update lands
    resync: asyncio.TimerHandle | None = None

    def cancel_timers(self) -> None:
        """Cancel the pending resync and flush (the room stops or goes)."""
        for timer in (self.resync, self.flush_timer):
            if timer is not None:
                timer.cancel()

    def send_all(self, frame: bytes, *, exclude: object = None, droppable: bool = False) -> None:
        for peer in tuple(self.peers.values()):
            if peer is not exclude:
                peer.enqueue(frame, droppable=droppable)


class YRooms:
    """The Yjs side of the loaded trip rooms, by trip id."""

    def __init__(self, trips: TripFeature) -> None:
        self.trips = trips
        self.clock = trips.clock
        self.frames_per_s = trips.settings.yjs_peer_frames_per_s
        self.rooms: dict[str, YRoom] = {}

    def room_of(self, conn: YjsConnection) -> YRoom:
        return self.rooms.setdefault(conn.room.trip_id, YRoom(conn.room.trip_id))

    def stop(self) -> None:
        """Cancel the pending resyncs and flushes."""
        for yroom in self.rooms.values():
            yroom.cancel_timers()

    # -- joining and leaving ----------------------------------------------------------

    def join(self, conn: YjsConnection) -> None:
        registry = self.trips.registry
        if registry.rooms.get(conn.room.trip_id) is not conn.room:
            conn.room = registry.get(conn.room.trip_id)  # unloaded while the peer was admitted
        yroom = self.room_of(conn)
        yroom.peers[conn.id] = conn
        principal = conn.principal
        member = Member(
            conn.id,
            principal.user_id,
            principal.name or principal.user_id,
            principal.avatar_url,
            conn.permission,
            self.clock.now_ms(),
        )
        self.trips.join_presence(conn.room, member, conn.id)  # runs on_presence
        if conn.permission in EDITORS:
            conn.enqueue(sync_step1_frame(conn.room.doc.doc.get_state()))
        current = yroom.awareness.current_frame()
        if current is not None:
            conn.enqueue(current, droppable=True)

    def leave(self, conn: YjsConnection) -> None:
        yroom = self.rooms.get(conn.room.trip_id)
        if yroom is None or yroom.peers.pop(conn.id, None) is None:
            return
        yroom.held.pop(conn.id, None)
        yroom.told.discard(conn.id)
        removed = yroom.awareness.remove_owner(conn.id)
        if removed:
            yroom.send_all(awareness_frame(removed), droppable=True)
        self.trips.leave_presence(conn.room, conn.id, conn.id)
        # The room's awareness stays while the trip room does: peers remember the clocks of
        # the states the server made, so restarting them at 1 would hide those states.

    def peer_count(self, trip_id: str) -> int:
        """Peers of ``trip_id``'s room (the trip room is not unloaded while there are any)."""
        yroom = self.rooms.get(trip_id)
        return 0 if yroom is None else len(yroom.peers)

    def on_unload(self, room: TripRoom) -> None:
        """The idle trip room was unloaded: its Yjs side goes too.

        Its peers are gone, and the states the server made stand for JSON
        connections that left; a connection that joins later has an id of its own,
        so its state's clock may start at 1 again (:func:`sync.ysync.server_client_id`).
        """
        yroom = self.rooms.get(room.trip_id)
        if yroom is None or yroom.peers:
            return
        yroom.cancel_timers()
        del self.rooms[room.trip_id]

    # -- document updates ---------------------------------------------------------------

    def resync(self, yroom: YRoom) -> None:
        """Ask every held peer for what the server lacks (sync step 1, y-protocols)."""
        if yroom.resync is not None:
            yroom.resync.cancel()
            yroom.resync = None
        held, yroom.held = yroom.held, {}
        for conn in held.values():
            if yroom.peers.get(conn.id) is conn and conn.open:
                conn.enqueue(sync_step1_frame(conn.room.doc.doc.get_state()))

    def on_change(self, room: TripRoom, change: Change, origin: object | None) -> None:
        """A committed change of ``room``: queued for the room's next flush, in order."""
        yroom = self.rooms.get(room.trip_id)
        if yroom is None or not yroom.peers:
            return
        if yroom.held:  # a change was stored: storage works, ask the held peers again
            self.resync(yroom)
        yroom.pending.append((change.update, origin))
        if len(yroom.pending) >= MAX_UPDATES_PER_FRAME:
            self.flush(yroom)
        elif not yroom.flush_scheduled:
            yroom.flush_scheduled = True
            loop = asyncio.get_running_loop()
            wait_s = yroom.flushed_at + self.interval_s(yroom) - loop.time()
            if wait_s > 0:  # a frame went out lately: gather for the rest of the interval
                yroom.flush_timer = loop.call_later(wait_s, self.flush, yroom)
            else:  # after a pause: with what commits in this loop iteration
                loop.call_soon(self.flush, yroom)

    def interval_s(self, yroom: YRoom) -> float:
        """The shortest time between two update frames of ``yroom`` (see ``flush``)."""
        if not self.frames_per_s:
            return 0.0
        return len(yroom.peers) / self.frames_per_s

    def flush(self, yroom: YRoom) -> None:
        """Send the changes committed since the last flush as one update, encoded once.

        Commits share fsyncs, so their broadcasts come in bursts; merging a burst
        (Y.mergeUpdates) sends each peer one frame instead of one per change. A
        frame costs the server once for every peer, so under a steady stream of
        commits a room of N peers sends one frame every N / ``yjs_peer_frames_per_s``
        seconds (100 peers: 10 ms by default; 10 peers: 1 ms), whatever the rate. A
        peer gets its own changes back only inside a merge of several origins
        (harmless: applying an update twice is a no-op, and y-websocket-server
        echoes every update).
        """
        yroom.flush_scheduled = False
        if yroom.flush_timer is not None:
            yroom.flush_timer.cancel()
            yroom.flush_timer = None
        pending, yroom.pending = yroom.pending, []
        if not pending:
            return
        yroom.flushed_at = asyncio.get_running_loop().time()
        updates = [update for update, _ in pending]
        merged = updates[0] if len(updates) == 1 else merge_updates(*updates)
        origins = {origin for _, origin in pending}
        yroom.send_all(
            sync_update_frame(merged), exclude=origins.pop() if len(origins) == 1 else None
        )

    # -- presence and awareness -----------------------------------------------------------

    def receive_awareness(self, conn: YjsConnection, entries: tuple[AwarenessEntry, ...]) -> None:
        yroom = self.room_of(conn)
        accepted = yroom.awareness.receive(conn.id, entries, conn.identity)
        if not accepted:
            return
        frame = awareness_frame(accepted)
        yroom.send_all(frame, droppable=True)  # the sender too, like y-ws
        self.trips.relay_awareness(conn.room, frame)  # and other nodes' peers (a cluster)
        focus = [e.state["currentField"] for e in accepted if e.state and "currentField" in e.state]
        if focus:
            self.trips.touch_presence(
                conn.room, conn.id, current_field=_field_name(focus[-1]), focus=True
            )
        else:
            self.trips.touch_presence(conn.room, conn.id, current_field=None, focus=False)

    def on_remote_awareness(self, room: TripRoom, frame: bytes, node: str) -> None:
        """Awareness states of another node's peers (cluster mode), to the peers here."""
        yroom = self.rooms.get(room.trip_id)
        parsed = parse_frame(frame)
        if yroom is None or not isinstance(parsed, AwarenessFrame):
            return
        owner = f"node:{node}"
        entries = [
            entry
            for remote in parsed.entries
            if (entry := yroom.awareness.set_server_state(remote.client_id, owner, remote.state))
            is not None
        ]
        if entries:
            yroom.send_all(awareness_frame(entries), droppable=True)

    def on_presence(self, room: TripRoom) -> None:
        """Presence of ``room`` changed: mirror JSON clients into awareness, drop outsiders."""
        yroom = self.rooms.get(room.trip_id)
        if yroom is None:
            return
        for peer in list(yroom.peers.values()):
            if room.permission(peer.principal.user_id) is None and peer.principal.role != "admin":
                peer.close(CLOSE_FORBIDDEN, "forbidden", auth_denied_frame("access revoked"))
        entries = []
        members = {cid: m for cid, m in room.presence.members.items() if cid not in yroom.peers}
        for cid in [cid for cid in yroom.json_client_ids if cid not in members]:
            client_id = yroom.json_client_ids.pop(cid)
            entry = yroom.awareness.set_server_state(client_id, SERVER_OWNER, None)
            if entry is not None:
                entries.append(entry)
        for cid, member in members.items():
            if cid not in yroom.json_client_ids:
                yroom.json_client_ids[cid] = server_client_id(cid, set(yroom.awareness.slots))
            client_id = yroom.json_client_ids[cid]
            state = {
                "user": {"id": member.user_id, "name": member.user_name},
                "currentField": member.current_field,
            }
            entry = yroom.awareness.set_server_state(client_id, SERVER_OWNER, state)
            if entry is not None:
                entries.append(entry)
        if entries:
            yroom.send_all(awareness_frame(entries), droppable=True)


def _field_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.removeprefix(FIELD_PATH_PREFIX)
    return name if is_field_name(name) else None
