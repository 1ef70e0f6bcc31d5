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
  together are merged into one frame: see :meth:`api.trips.yroom.YRooms.flush`);
- a JSON client's change reaches Yjs peers through the trip's change hook
  as the same kind of frame, in version order;
- presence: a Yjs connection is a presence member with the token's identity;
  JSON clients appear to Yjs peers as awareness states the server makes
  (``{user: {id, name}, currentField}``), Yjs awareness is relayed with
  ``user.id``/``user.name`` re-stamped from the token, and an awareness
  ``currentField`` is the peer's focus in ``trip_collaborator_presence``.

Handshake: sync step 1 from the server (editors only: a viewer has nothing
to give), the peer's step 1 answered with step 2, then every awareness state
at once. One bounded outbound queue per connection, written at the end of each
loop iteration and by a writer task only while a backlog waits
(:class:`api.transport.outbox.Outbox`, as for the JSON endpoints): awareness frames are
dropped when it is full, document frames never are: the peer is closed as a
slow consumer and resyncs. On shutdown the hub's drain closes every peer with
1001 before uvicorn closes the sockets itself (:meth:`YjsFeature.start`
registers them with :attr:`api.transport.hub.Hub.peer_sources`).

One module a part: :mod:`api.trips.ypeer` drives one peer (reader, writer,
keepalive), :mod:`api.trips.yroom` is the room bridge (peers, awareness, the
change and presence hooks), :mod:`api.trips.yedit` takes a peer's update
(permission, storage backoff, vetting by the core, commit); this module admits
the connections and hands each part what it needs.

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
from collections import Counter
from typing import Final

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from tripsage_sync.api.transport.endpoints import admit_upgrade
from tripsage_sync.api.transport.hooks import AuthContext, ConnectionContext
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.feature import TripFeature
from tripsage_sync.api.trips.yedit import YjsEdits
from tripsage_sync.api.trips.ypeer import YjsConnection
from tripsage_sync.api.trips.yroom import YRooms
from tripsage_sync.sync.errors import CLOSE_GOING_AWAY, CLOSE_RATE_LIMITED, SyncError
from tripsage_sync.sync.ratelimit import KeyedLimiter
from tripsage_sync.sync.ysync import (
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    AwarenessEntry,
    auth_denied_frame,
)

__all__ = ["YjsFeature"]

logger = logging.getLogger(__name__)

TRIP_ID: Final = re.compile(r"^[A-Za-z0-9_.@+=-]{1,128}$")


class YjsFeature:
    """The ``/ws/yjs/{tripId}`` endpoint, host of its peers (:class:`api.trips.ypeer.PeerHost`)."""

    def __init__(self, trips: TripFeature) -> None:
        self.clock = trips.clock
        self.trips = trips
        self.settings = trips.settings
        self.yrooms = YRooms(trips)
        self.connections: dict[str, YjsConnection] = {}
        self.per_user: Counter[str] = Counter()  # connections of each user
        self.limiter = KeyedLimiter(self.settings.rate_limit_yjs_frames_per_min)

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/ws/yjs/{trip_id}", self.endpoint)]

    async def start(self, services: Services) -> None:
        self.services = services
        self.edits = YjsEdits(services, self.clock, self.trips, self.yrooms)
        services.hub.peer_sources.append(self.connections.values)  # drained on shutdown
        services.hub.peer_counts.append(lambda: self.per_user)  # in the per-user cap
        rooms = self.yrooms.rooms
        services.metrics.yjs_peers = lambda: sum(len(room.peers) for room in rooms.values())
        self.trips.change_hooks.append(self.yrooms.on_change)
        self.trips.presence_hooks.append(self.yrooms.on_presence)
        self.trips.awareness_hooks.append(self.yrooms.on_remote_awareness)
        self.trips.peer_counts.append(self.yrooms.peer_count)
        self.trips.unload_hooks.append(self.yrooms.on_unload)

    async def stop(self) -> None:
        self.yrooms.stop()
        peers = list(self.connections.values())
        for peer in peers:
            peer.close(CLOSE_GOING_AWAY, "server shutting down")
        if peers:
            await asyncio.wait(
                [asyncio.ensure_future(p.closed.wait()) for p in peers],
                timeout=self.settings.shutdown_grace_s,
            )

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
        hooks = services.hooks
        context = AuthContext(principal.user_id, principal.name, principal.role, "yjs", trip_id, ip)
        if hooks.active and await hooks.authenticate(context) is not None:
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
        if hub.user_connection_count(principal.user_id) >= settings.max_connections_per_user:
            await self._refuse(websocket, CLOSE_TRY_AGAIN_LATER, "too many connections")
            return
        await websocket.accept()
        conn = YjsConnection(websocket, self, principal, room, permission, verified.expires_at_ms)
        self.connections[conn.id] = conn
        self.per_user[principal.user_id] += 1
        opened = ConnectionContext(conn.id, principal.user_id, "yjs", trip_id, ip)
        hooks.notify("on_connect", opened)
        try:
            await conn.run()
        finally:
            self.connections.pop(conn.id, None)
            self.per_user[principal.user_id] -= 1
            if not self.per_user[principal.user_id]:
                del self.per_user[principal.user_id]
            hooks.notify("on_disconnect", opened)

    @staticmethod
    async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
        """Accept, say why in a y-protocols auth message, close: no document byte is sent."""
        await websocket.accept()
        with contextlib.suppress(Exception):
            await websocket.send_bytes(auth_denied_frame(reason))
            await websocket.close(code, reason)

    # -- what a peer asks of its host (api.trips.ypeer.PeerHost) ------------------------

    def allow(self, user_id: str) -> bool:
        return self.limiter.take(user_id, self.clock.monotonic()).allowed

    def join(self, conn: YjsConnection) -> None:
        self.yrooms.join(conn)

    def leave(self, conn: YjsConnection) -> None:
        self.yrooms.leave(conn)

    async def receive_update(self, conn: YjsConnection, update: bytes) -> None:
        await self.edits.receive_update(conn, update)

    def receive_awareness(self, conn: YjsConnection, entries: tuple[AwarenessEntry, ...]) -> None:
        self.yrooms.receive_awareness(conn, entries)

    def awareness(self, conn: YjsConnection) -> list[AwarenessEntry]:
        """Every awareness state of ``conn``'s room (a query-awareness answer)."""
        return self.yrooms.room_of(conn).awareness.current()
