"""A Yjs peer's document update: who may send it, what happens when storage cannot take it.

A peer's update (sync step 2 or update, y-protocols) is applied only for an
editor of the trip, and only while the storage backoff (:mod:`sync.backoff`)
admits edits. The core vets and translates it
(``TripDocument.apply_remote_update``, :mod:`sync.document.remote`: applied on
a shadow document first, schema and field-name rule enforced), and the trip
feature commits it like every change (persist, then broadcast to JSON clients
and the other peers). What a peer gets when it is refused:

- not a collaborator (any more): close 4403;
- a viewer: a y-protocols auth message, not applied, the peer stays;
- malformed: close 4400; outside the trip schema: close 4422;
- storage failing, or the commit failed: the update is *held* (see
  :meth:`YjsEdits.hold`), or if the room could not even be reloaded, every
  peer of the room is closed with 1011 and resyncs with the trip loaded anew.
"""

from __future__ import annotations

import asyncio

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.feature import TripFeature
from tripsage_sync.api.trips.rooms import EDITORS, RACE_RETRIES, RoomBroken
from tripsage_sync.api.trips.ypeer import YjsConnection
from tripsage_sync.api.trips.yroom import YRooms
from tripsage_sync.sync.document import MalformedRemoteUpdate, RemoteUpdateRefused
from tripsage_sync.sync.errors import CLOSE_SERVER_ERROR
from tripsage_sync.sync.wire import new_id
from tripsage_sync.sync.ysync import (
    CLOSE_FORBIDDEN,
    CLOSE_MALFORMED,
    CLOSE_UNPROCESSABLE,
    EMPTY_UPDATE,
    auth_denied_frame,
)

__all__ = ["YjsEdits"]


class YjsEdits:
    """Receives the peers' updates of the rooms in ``yrooms``."""

    def __init__(
        self, services: Services, clock: Clock, trips: TripFeature, yrooms: YRooms
    ) -> None:
        self.services = services
        self.clock = clock
        self.trips = trips
        self.yrooms = yrooms

    async def receive_update(self, conn: YjsConnection, update: bytes) -> None:
        room = conn.room
        if update == EMPTY_UPDATE:
            return
        permission = room.permission(conn.principal.user_id)
        if permission is None and conn.principal.role != "admin":
            conn.close(CLOSE_FORBIDDEN, "forbidden", auth_denied_frame("not a collaborator"))
            return
        if permission not in EDITORS:
            conn.log.info("viewer update of %d bytes refused", len(update))
            conn.enqueue(auth_denied_frame("read-only: update not applied"))
            return
        refused_ms = self.services.storage_backoff.admit(self.clock.now_ms())
        if refused_ms is not None:  # storage is failing: not applied, asked for again later
            self.hold(conn, refused_ms)
            return
        raced = False
        for attempt in range(RACE_RETRIES + 1):
            try:
                result = room.doc.apply_remote_update(
                    update,
                    user_id=conn.principal.user_id,
                    update_id=new_id("yjs"),
                    now_ms=self.clock.now_ms(),
                )
            except MalformedRemoteUpdate:
                conn.log.info("malformed update of %d bytes", len(update))
                conn.close(CLOSE_MALFORMED, "malformed update")
                return
            except RemoteUpdateRefused as exc:
                conn.log.info("update of %d bytes refused: %s", len(update), exc.message)
                conn.close(CLOSE_UNPROCESSABLE, "update refused", auth_denied_frame(exc.message))
                return
            if result.change is None and not result.conflicts:
                return
            self.trips.touch_presence(room, conn.id, current_field=None, focus=False)
            try:
                await self.trips.commit_remote(room, result, conn)
            except RoomBroken as broken:
                if broken.raced and not room.broken and attempt < RACE_RETRIES:
                    raced = True
                    continue  # another node committed first: the same update on what it holds
                if room.broken:  # not even reloaded: the peers resync with the trip loaded anew
                    yroom = self.yrooms.rooms.get(room.trip_id)
                    for peer in list(yroom.peers.values()) if yroom else []:
                        peer.close(CLOSE_SERVER_ERROR, "room reloading")
                    return
                self.hold(conn, broken.retry_after_ms)  # the room went back to what is stored
                return
            break
        yroom = self.yrooms.room_of(conn)
        yroom.told.discard(conn.id)
        if raced:  # its later updates may have been refused meanwhile (they depend on this
            # one): the peer is asked for everything the server lacks (sync step 1)
            yroom.held[conn.id] = conn
            self.yrooms.resync(yroom)

    def hold(self, conn: YjsConnection, retry_after_ms: int) -> None:
        """Storage could not take ``conn``'s update: keep the peer, ask again later.

        A CRDT peer cannot be told "rejected": the update stays in its replica,
        so nothing is lost while the peer keeps its document. The peer stays
        connected and up to date (read-only in effect), is told once in a
        y-protocols auth message (y-websocket logs it), and when the backoff
        allows a retry (or a change commits: storage works again) the server
        sends it a sync step 1, which y-websocket answers with a step 2 holding
        everything the server lacks. A peer that reconnects meanwhile sends it
        in its handshake anyway.
        """
        yroom = self.yrooms.room_of(conn)
        yroom.held[conn.id] = conn
        if conn.id not in yroom.told:
            yroom.told.add(conn.id)
            conn.log.warning(
                "storage unavailable: update held, asked for again in %d ms", retry_after_ms
            )
            conn.enqueue(
                auth_denied_frame(
                    "storage unavailable: change not saved yet, asked for again in"
                    f" {retry_after_ms / 1000:g} s"
                )
            )
        if yroom.resync is None:
            yroom.resync = asyncio.get_running_loop().call_later(
                retry_after_ms / 1000, self.yrooms.resync, yroom
            )
