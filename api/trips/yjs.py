"""Yjs peers: ``WS /ws/yjs/{tripId}?token=<JWT>`` speaks the y-websocket protocol.

Theory of operation
-------------------
A stock ``y-websocket`` ``WebsocketProvider(url, tripId, doc, {params: {token}})``
(url ``ws://host:port/ws/yjs``; the provider appends ``/{roomname}``) syncs
the trip's own document (root Y.Map ``trip``, see :mod:`sync.document`). The
frames are :mod:`sync.ysync`'s; the room and its commit pipeline are the
trip's (:class:`api.trips.feature.TripFeature`), so the two kinds of client meet in
one document:

- a Yjs peer's update is applied by ``TripDocument.apply_remote_update``,
  committed like every change (persist, then broadcast), sent to JSON clients
  as ``trip_update_broadcast`` (plus the manual-conflict events) and to the
  other Yjs peers in one update frame encoded once (the changes committed
  together are merged into one frame: see :meth:`YjsFeature._flush`);
- a JSON client's change reaches Yjs peers through the trip's change hook
  as the same kind of frame, in version order;
- presence: a Yjs connection is a presence member with the token's identity;
  JSON clients appear to Yjs peers as awareness states the server makes
  (``{user: {id, name}, currentField}``), Yjs awareness is relayed with
  ``user.id``/``user.name`` re-stamped from the token, and an awareness
  ``currentField`` is the peer's focus in ``trip_collaborator_presence``.

Handshake: sync step 1 from the server (editors only: a viewer has nothing
to give), the peer's step 1 answered with step 2, then every awareness state
at once. One bounded outbound queue and writer task per connection
(:class:`api.transport.outbox.Outbox`, as for the JSON endpoints): awareness frames are
dropped when it is full, document frames never are: the peer is closed as a
slow consumer and resyncs. On shutdown the hub's drain closes every peer with
1001 before uvicorn closes the sockets itself (:meth:`YjsFeature.start`
registers them with :attr:`api.transport.hub.Hub.peer_sources`).

Refusals and close codes (y-websocket 3 reconnects on every close code except
4400-4499, which stop it and emit ``closed``; see its ``defaultShouldReconnect``)

========================================  =================================================
bad, missing or expired token             auth "permission denied", close 4401
token expires while connected             auth "permission denied", close 4401 at its exp
not a collaborator, unknown trip          auth "permission denied", close 4403 -- before
                                          any document byte
viewer's update                           auth "permission denied", not applied, stays open
malformed frame or update                 close 4400 (resending cannot fix it)
update outside the trip schema            auth "permission denied", close 4422
update storage cannot take (disk full)   auth "permission denied" (once), not applied,
                                          stays open; asked for again with a sync step 1
                                          when the storage backoff allows a retry
frame over TRIPSAGE_MAX_MESSAGE_SIZE      close 4413
over TRIPSAGE_RATE_LIMIT_YJS_FRAMES_PER_MIN  close 3001 (transient: it reconnects, resyncs)
server full, per-user cap                 close 1013 (transient)
slow consumer, shutdown                   close 1001 (transient)
========================================  =================================================

A connection lives until its token's ``exp`` (the keepalive loop is its one
timer; :class:`sync.session.TokenLifetime` decides): y-websocket then emits
``closed`` and stops, and the app reconnects with a fresh token by updating
``provider.params.token`` and calling ``provider.connect()`` (README "Yjs peers").

Tokens travel in the URL (browsers cannot set WebSocket headers);
``api.cli.TokenMask`` masks ``token=`` in every log line, and this module
never logs one. An ``Authorization: Bearer`` header is accepted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final, assert_never

from pycrdt import merge_updates
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.endpoints import admit_upgrade
from tripsage_sync.api.transport.link import ConnectionLog
from tripsage_sync.api.transport.outbox import CLOSE_RELEASE_S, Close, Outbox, cancel_and_wait
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.feature import EDITORS, TripFeature
from tripsage_sync.api.trips.rooms import RoomBroken, TripRoom
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.conflicts import FIELD_PATH_PREFIX, is_field_name
from tripsage_sync.sync.document import Change, MalformedRemoteUpdate, RemoteUpdateRefused
from tripsage_sync.sync.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVER_ERROR,
    SyncError,
)
from tripsage_sync.sync.presence import Member
from tripsage_sync.sync.ratelimit import KeyedLimiter
from tripsage_sync.sync.session import CloseExpired, TokenLifetime
from tripsage_sync.sync.wire import new_id
from tripsage_sync.sync.ysync import (
    EMPTY_UPDATE,
    AuthFrame,
    AwarenessEntry,
    AwarenessFrame,
    AwarenessTable,
    MalformedFrame,
    QueryAwarenessFrame,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    auth_denied_frame,
    awareness_frame,
    parse_frame,
    server_client_id,
    sync_step1_frame,
    sync_step2_frame,
    sync_update_frame,
)

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_MALFORMED",
    "CLOSE_TOO_LARGE",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNPROCESSABLE",
    "YjsFeature",
]

logger = logging.getLogger(__name__)

# 4400-4499: permanent for y-websocket (it stops reconnecting), mirroring HTTP 4xx.
CLOSE_MALFORMED: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_TOO_LARGE: Final = 4413
CLOSE_UNPROCESSABLE: Final = 4422
CLOSE_TRY_AGAIN_LATER: Final = 1013  # RFC 6455 7.4.1 (IANA registry): transient
TRIP_ID: Final = re.compile(r"^[A-Za-z0-9_.@+=-]{1,128}$")
KEEPALIVE_FRAME: Final = awareness_frame([])  # y-websocket drops a peer silent for 30 s
SERVER_OWNER: Final = "server"
MAX_UPDATES_PER_FRAME: Final = 256  # a longer burst is flushed in several frames


@dataclass(eq=False)
class _YRoom:
    """The Yjs side of one trip room: its peers and awareness."""

    trip_id: str
    peers: dict[str, YjsConnection] = field(default_factory=dict)
    awareness: AwarenessTable = field(default_factory=AwarenessTable)
    json_client_ids: dict[str, int] = field(default_factory=dict)  # JSON connection -> id
    pending: list[tuple[bytes, object | None]] = field(default_factory=list)  # (update, origin)
    flush_scheduled: bool = False
    # Peers whose update storage could not take, asked for it again by ``resync``.
    held: dict[str, YjsConnection] = field(default_factory=dict)
    told: set[str] = field(default_factory=set)  # held peers told so, until an update lands
    resync: asyncio.TimerHandle | None = None

    def send_all(self, frame: bytes, *, exclude: object = None, droppable: bool = False) -> None:
        for peer in tuple(self.peers.values()):
            if peer is not exclude:
                peer.enqueue(frame, droppable=droppable)


class _Frames:
    """The writer's framing (:class:`api.transport.outbox.Framing`): frames go as they are."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.last_sent_s = clock.monotonic()  # the keepalive's clock

    def frame(self, item: bytes, queue: deque[bytes | Close]) -> bytes:
        return item

    def sent(self, frame: str | bytes) -> None:
        self.last_sent_s = self.clock.monotonic()


class YjsConnection:
    """One y-websocket peer: a reader (``run``), a writer task and a keepalive timer."""

    def __init__(
        self,
        websocket: WebSocket,
        feature: YjsFeature,
        principal: Principal,
        room: TripRoom,
        permission: str,
        expires_at_ms: int,
    ) -> None:
        self.websocket = websocket
        self.feature = feature
        self.settings = feature.settings
        self.clock = feature.clock
        self.principal = principal
        self.room = room
        self.permission = permission
        self.id = new_id("yjs")
        self.closed = asyncio.Event()
        self.log = ConnectionLog(logger, {"conn": self.id, "user": principal.user_id})
        self.outbox: Outbox[bytes] = Outbox(
            websocket,
            size=self.settings.outbound_queue_size,
            send_timeout_s=self.settings.send_timeout_s,
            metrics=feature.services.metrics,
            log=self.log,
        )
        self._frames = _Frames(self.clock)
        self.token = TokenLifetime(expires_at_ms, warning_s=0)  # no warning event in y-protocols

    @property
    def open(self) -> bool:
        """Until a close starts, the transport is lost or the peer leaves."""
        return self.outbox.open

    @property
    def identity(self) -> dict[str, Any]:
        return {"id": self.principal.user_id, "name": self.principal.name or self.principal.user_id}

    # -- outbound ---------------------------------------------------------------------

    def enqueue(self, frame: bytes, *, droppable: bool = False) -> bool:
        """Queue a frame; never blocks. A full queue closes the peer unless droppable."""
        return self.outbox.put(frame, droppable=droppable)

    def close(self, code: int, reason: str, *frames: bytes) -> None:
        """Send ``frames``, then close with ``code`` once the queue has drained."""
        self.outbox.close(code, reason, *frames)

    def abort(self) -> None:
        """Drop the TCP connection now (unsent data is discarded)."""
        self.outbox.abort()

    def _expire(self) -> None:
        self.log.info("token expired; closing")
        metrics = self.feature.services.metrics
        metrics.count(metrics.auth_failures, "TOKEN_EXPIRED")
        self.close(CLOSE_UNAUTHORIZED, "token expired", auth_denied_frame("token expired"))

    async def _keepalive(self) -> None:
        interval_s = self.settings.heartbeat_interval_s
        while self.open:
            if isinstance(self.token.due(self.clock.now_ms()), CloseExpired):
                self._expire()
                return
            idle_s = self.clock.monotonic() - self._frames.last_sent_s
            if idle_s >= interval_s:
                self.enqueue(KEEPALIVE_FRAME, droppable=True)
                self._frames.last_sent_s = self.clock.monotonic()
                idle_s = 0.0
            expires_in_s = (self.token.deadline_ms - self.clock.now_ms()) / 1000 + 0.005
            await asyncio.sleep(min(interval_s - idle_s, max(0.0, expires_in_s)))

    # -- the connection -----------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self.outbox.run(self._frames), name=f"writer-{self.id}")
        keepalive = asyncio.create_task(self._keepalive(), name=f"keepalive-{self.id}")
        self.log.info("y-websocket peer joined trip %s as %s", self.room.trip_id, self.permission)
        try:
            self.feature.join(self)
            await self._read_loop()
        except Exception:
            self.log.exception("y-websocket connection failed")
            self.close(CLOSE_SERVER_ERROR, "server error")
        finally:
            keepalive.cancel()
            self.feature.leave(self)
            if not self.open:  # we started the close: let the writer flush up to it
                try:
                    await asyncio.wait_for(asyncio.shield(writer), CLOSE_RELEASE_S)
                except (TimeoutError, asyncio.CancelledError):
                    self.abort()
            self.outbox.open = False
            self.closed.set()
            self.log.info("closed")
            await cancel_and_wait(writer, keepalive)

    async def _read_loop(self) -> None:
        limit = self.settings.max_message_size
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if not self.open:
                continue
            if self.token.expired(self.clock.now_ms()):  # before the keepalive noticed: not applied
                self._expire()
                continue
            data = message.get("bytes")
            if data is None:
                self.close(CLOSE_MALFORMED, "text frame", auth_denied_frame("binary frames only"))
                continue
            self.feature.services.metrics_messages_in += 1
            if len(data) > limit:
                self.log.info("frame of %d bytes over the %d limit", len(data), limit)
                self.close(CLOSE_TOO_LARGE, "message too large")
                continue
            if not self.feature.allow(self.principal.user_id):
                self.log.info("rate limited")
                self.feature.services.count_rate_limited("yjs frames")
                self.close(CLOSE_RATE_LIMITED, "rate limited", auth_denied_frame("rate limited"))
                continue
            try:
                frame = parse_frame(data)
            except MalformedFrame as exc:
                self.log.info("malformed frame (%d bytes): %s", len(data), exc.message)
                self.close(CLOSE_MALFORMED, "malformed frame")
                continue
            await self._dispatch(frame)

    async def _dispatch(
        self,
        frame: SyncStep1
        | SyncStep2
        | SyncUpdate
        | AwarenessFrame
        | QueryAwarenessFrame
        | AuthFrame,
    ) -> None:
        match frame:
            case SyncStep1():
                try:
                    update = self.room.doc.doc.get_update(frame.state_vector)
                except BaseException as exc:  # pycrdt panics are BaseException
                    if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                        raise
                    self.log.info("malformed state vector (%d bytes)", len(frame.state_vector))
                    self.close(CLOSE_MALFORMED, "malformed state vector")
                    return
                self.enqueue(sync_step2_frame(update))
            case SyncStep2() | SyncUpdate():
                await self.feature.receive_update(self, frame.update)
            case AwarenessFrame():
                self.feature.receive_awareness(self, frame.entries)
            case QueryAwarenessFrame():
                self.enqueue(awareness_frame(self.feature.room_of(self).awareness.current()))
            case AuthFrame():
                pass
            case _:
                assert_never(frame)


class YjsFeature:
    """The ``/ws/yjs/{tripId}`` endpoint and the bridge to the trip rooms."""

    def __init__(self, trips: TripFeature) -> None:
        self.clock = trips.clock
        self.trips = trips
        self.settings = trips.settings
        self.rooms: dict[str, _YRoom] = {}
        self.connections: dict[str, YjsConnection] = {}
        self.limiter = KeyedLimiter(self.settings.rate_limit_yjs_frames_per_min)

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/ws/yjs/{trip_id}", self.endpoint)]

    async def start(self, services: Services) -> None:
        self.services = services
        services.hub.peer_sources.append(self.connections.values)  # drained on shutdown
        self.trips.change_hooks.append(self.on_change)
        self.trips.presence_hooks.append(self.on_presence)

    async def stop(self) -> None:
        for yroom in self.rooms.values():
            if yroom.resync is not None:
                yroom.resync.cancel()
        peers = list(self.connections.values())
        for peer in peers:
            peer.close(CLOSE_GOING_AWAY, "server shutting down")
        if peers:
            await asyncio.wait(
                [asyncio.ensure_future(p.closed.wait()) for p in peers],
                timeout=self.settings.shutdown_grace_s,
            )

    def allow(self, user_id: str) -> bool:
        return self.limiter.take(user_id, self.clock.monotonic()).allowed

    def room_of(self, conn: YjsConnection) -> _YRoom:
        return self.rooms.setdefault(conn.room.trip_id, _YRoom(conn.room.trip_id))

    # -- admission --------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        services, settings, hub = self.services, self.settings, self.services.hub
        ip = await admit_upgrade(websocket, services)
        if ip is None:
            return
        if hub.check(hub.connection_limiter, ip, "connections per IP") is not None:
            services.count_rate_limited("connections")
            await self._refuse(websocket, CLOSE_RATE_LIMITED, "rate limited")
            return
        if hub.authenticated_count() >= settings.max_connections:  # authenticated by ?token=
            await self._refuse(websocket, CLOSE_TRY_AGAIN_LATER, "server full")
            return
        trip_id = websocket.path_params["trip_id"]
        token = websocket.query_params.get("token")
        scheme, _, bearer = websocket.headers.get("authorization", "").partition(" ")
        if not token and scheme.lower() == "bearer":
            token = bearer.strip()
        if hub.check(hub.auth_limiter, ip, "authentication attempts per IP") is not None:
            services.count_rate_limited("auth")
            await self._refuse(websocket, CLOSE_RATE_LIMITED, "rate limited")
            return
        try:
            if not token:
                raise SyncError("Missing token")
            verified = services.authority.verify_token(token)
            principal = verified.principal
        except SyncError as exc:
            code = getattr(exc, "code", "AUTH_FAILED")
            services.metrics_auth_failures[code] = services.metrics_auth_failures.get(code, 0) + 1
            logger.info("y-websocket peer from %s refused: %s", ip, code)
            await self._refuse(websocket, CLOSE_UNAUTHORIZED, "unauthorized")
            return
        try:
            if not TRIP_ID.match(trip_id):
                raise SyncError("Invalid trip id")
            room, permission = self.trips.room_for(principal, trip_id)
        except SyncError:
            logger.info("y-websocket peer %s refused for a trip", principal.user_id)
            await self._refuse(websocket, CLOSE_FORBIDDEN, "forbidden")
            return
        user_count = hub.user_connection_count(principal.user_id) + sum(
            1 for c in self.connections.values() if c.principal.user_id == principal.user_id
        )
        if user_count >= settings.max_connections_per_user:
            await self._refuse(websocket, CLOSE_TRY_AGAIN_LATER, "too many connections")
            return
        await websocket.accept()
        conn = YjsConnection(websocket, self, principal, room, permission, verified.expires_at_ms)
        self.connections[conn.id] = conn
        try:
            await conn.run()
        finally:
            self.connections.pop(conn.id, None)

    @staticmethod
    async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
        """Accept, say why in a y-protocols auth message, close: no document byte is sent."""
        await websocket.accept()
        with contextlib.suppress(Exception):
            await websocket.send_bytes(auth_denied_frame(reason))
            await websocket.close(code, reason)

    # -- joining and leaving ----------------------------------------------------------

    def join(self, conn: YjsConnection) -> None:
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
        current = yroom.awareness.current()
        if current:
            conn.enqueue(awareness_frame(current), droppable=True)

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
        # The room's awareness stays (as the trip room does): peers remember the clocks of
        # the states the server made, so restarting them at 1 would hide those states.

    # -- document updates ---------------------------------------------------------------

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
            self._hold(conn, refused_ms)
            return
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
            if room.broken:  # not even reloaded: the peers resync with the trip loaded anew
                yroom = self.rooms.get(room.trip_id)
                for peer in list(yroom.peers.values()) if yroom else []:
                    peer.close(CLOSE_SERVER_ERROR, "room reloading")
                return
            self._hold(conn, broken.retry_after_ms)  # the room went back to what is stored
            return
        self.room_of(conn).told.discard(conn.id)

    def _hold(self, conn: YjsConnection, retry_after_ms: int) -> None:
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
        yroom = self.room_of(conn)
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
                retry_after_ms / 1000, self._resync, yroom
            )

    def _resync(self, yroom: _YRoom) -> None:
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
            self._resync(yroom)
        yroom.pending.append((change.update, origin))
        if len(yroom.pending) >= MAX_UPDATES_PER_FRAME:
            self._flush(yroom)
        elif not yroom.flush_scheduled:
            yroom.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, yroom)

    def _flush(self, yroom: _YRoom) -> None:
        """Send the changes committed since the last flush as one update, encoded once.

        Commits share fsyncs, so their broadcasts come in bursts; merging a burst
        (Y.mergeUpdates) sends each peer one frame instead of one per change. A
        peer gets its own changes back only inside a merge of several origins
        (harmless: applying an update twice is a no-op, and y-websocket-server
        echoes every update).
        """
        yroom.flush_scheduled = False
        pending, yroom.pending = yroom.pending, []
        if not pending:
            return
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
        yroom.send_all(awareness_frame(accepted), droppable=True)  # the sender too, like y-ws
        focus = [e.state["currentField"] for e in accepted if e.state and "currentField" in e.state]
        if focus:
            self.trips.touch_presence(
                conn.room, conn.id, current_field=_field_name(focus[-1]), focus=True
            )
        else:
            self.trips.touch_presence(conn.room, conn.id, current_field=None, focus=False)

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
