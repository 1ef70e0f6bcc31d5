"""One y-websocket peer: its reader, its writer and its keepalive timer.

A :class:`YjsConnection` reads the peer's frames (:mod:`sync.ysync`), refuses
what it cannot take (text frames, frames over ``TRIPSAGE_MAX_MESSAGE_SIZE``, a
peer over its frame rate, malformed frames: each its close code, see the table
in :mod:`api.trips.yjs`), answers a sync step 1 with step 2 from the room's
document (once what it holds is durable) and hands updates and awareness to its
host, the Yjs feature (:class:`PeerHost`). Frames out go through one bounded
:class:`api.transport.outbox.Outbox`; the keepalive sends an empty awareness
frame when the peer has heard nothing for ``heartbeat_interval_s`` (y-websocket
drops a peer silent for 30 s) and closes with 4401 when the token expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Final, Protocol, assert_never

from starlette.websockets import WebSocket

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.link import ConnectionLog
from tripsage_sync.api.transport.outbox import CLOSE_RELEASE_S, Close, Outbox, receiver
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.transport.waits import Flag
from tripsage_sync.api.trips.rooms import RACE_RETRIES, TripRoom
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import CLOSE_RATE_LIMITED, CLOSE_SERVER_ERROR
from tripsage_sync.sync.session import CloseExpired, TokenLifetime
from tripsage_sync.sync.wire import new_id
from tripsage_sync.sync.ysync import (
    CLOSE_MALFORMED,
    CLOSE_TOO_LARGE,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    AuthFrame,
    AwarenessEntry,
    AwarenessFrame,
    MalformedFrame,
    QueryAwarenessFrame,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    auth_denied_frame,
    awareness_frame,
    parse_frame,
    sync_step2_frame,
)

__all__ = ["PeerHost", "YjsConnection"]

logger = logging.getLogger(__name__)

KEEPALIVE_FRAME: Final = awareness_frame([])  # y-websocket drops a peer silent for 30 s


class PeerHost(Protocol):
    """What a peer asks of the Yjs feature (:class:`api.trips.yjs.YjsFeature`)."""

    settings: Settings
    clock: Clock
    services: Services

    def allow(self, user_id: str) -> bool: ...

    def join(self, conn: YjsConnection) -> None: ...

    def leave(self, conn: YjsConnection) -> None: ...

    async def receive_update(self, conn: YjsConnection, update: bytes) -> None: ...

    def receive_awareness(
        self, conn: YjsConnection, entries: tuple[AwarenessEntry, ...]
    ) -> None: ...

    def awareness(self, conn: YjsConnection) -> list[AwarenessEntry]:
        """Every awareness state of ``conn``'s room (a query-awareness answer)."""
        ...


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
    """One y-websocket peer: a reader (``run``), an outbox and a keepalive timer."""

    def __init__(
        self,
        websocket: WebSocket,
        feature: PeerHost,
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
        self.closed = Flag()
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
        self._keepalive_timer: asyncio.Handle | None = None

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

    def _keepalive(self) -> None:
        """The keepalive timer (a loop timer handle, no task): an empty awareness frame when
        the peer heard nothing for ``heartbeat_interval_s``, the close at the token's expiry."""
        self._keepalive_timer = None
        if not self.open:
            return
        interval_s = self.settings.heartbeat_interval_s
        if isinstance(self.token.due(self.clock.now_ms()), CloseExpired):
            self._expire()
            return
        idle_s = self.clock.monotonic() - self._frames.last_sent_s
        if idle_s >= interval_s:
            self.enqueue(KEEPALIVE_FRAME, droppable=True)
            self._frames.last_sent_s = self.clock.monotonic()
            idle_s = 0.0
        expires_in_s = (self.token.deadline_ms - self.clock.now_ms()) / 1000 + 0.005
        delay_s = min(interval_s - idle_s, max(0.0, expires_in_s))
        self._keepalive_timer = asyncio.get_running_loop().call_later(delay_s, self._keepalive)

    # -- the connection -----------------------------------------------------------------

    async def run(self) -> None:
        self.outbox.start(self._frames)
        self._keepalive_timer = asyncio.get_running_loop().call_soon(self._keepalive)
        self.log.info("y-websocket peer joined trip %s as %s", self.room.trip_id, self.permission)
        try:
            self.feature.join(self)
            await self._read_loop()
        except Exception:
            self.log.exception("y-websocket connection failed")
            self.close(CLOSE_SERVER_ERROR, "server error")
        finally:
            if self._keepalive_timer is not None:
                self._keepalive_timer.cancel()
                self._keepalive_timer = None
            self.feature.leave(self)
            if not self.open:  # we started the close: let the writer flush up to it
                try:
                    flushed = await self.outbox.finish(CLOSE_RELEASE_S)
                except asyncio.CancelledError:
                    flushed = False
                if not flushed:
                    self.abort()
            self.outbox.open = False
            self.closed.set()
            self.log.info("closed")
            await self.outbox.stop()

    async def _read_loop(self) -> None:
        limit = self.settings.max_message_size
        receive = receiver(self.websocket)
        while True:
            message = await receive()
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

    async def _answer_step1(self, state_vector: bytes) -> None:
        """Sync step 2: what the peer lacks, of durable changes only.

        The room's document may hold changes whose commit is in flight. When one fails
        (storage, or another node of a cluster took that version) the room goes back to
        what is stored, and the change stored in its place may carry the same Yjs ids
        (JSON edits are written under one client id, each at its next clock): a peer
        sent the failed change would keep it and ignore the stored one for good (Yjs
        takes an id once). So the answer waits its turn in the commit pipeline, goes
        out if every change applied before it was read is durable, and is read again
        from the reloaded document if one of them failed.
        """
        room = self.room
        for _ in range(RACE_RETRIES + 1):
            generation = room.doc
            try:
                update = generation.doc.get_update(state_vector)
            except BaseException as exc:  # pycrdt panics are BaseException
                if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                    raise
                self.log.info("malformed state vector (%d bytes)", len(state_vector))
                self.close(CLOSE_MALFORMED, "malformed state vector")
                return
            async with room.durable(self.feature.services, []):  # after every earlier one
                if room.broken:  # not even reloaded: the peer resyncs with the trip anew
                    self.close(CLOSE_SERVER_ERROR, "room reloading")
                    return
                if room.doc is generation:  # none failed: all it holds is durable
                    self.enqueue(sync_step2_frame(update))
                    return
        self.log.info("sync step 1 unanswered: the room kept going back to what is stored")
        self.close(CLOSE_TRY_AGAIN_LATER, "try again later")

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
                await self._answer_step1(frame.state_vector)
            case SyncStep2() | SyncUpdate():
                await self.feature.receive_update(self, frame.update)
            case AwarenessFrame():
                self.feature.receive_awareness(self, frame.entries)
            case QueryAwarenessFrame():
                self.enqueue(awareness_frame(self.feature.awareness(self)))
            case AuthFrame():
                pass
            case _:
                assert_never(frame)
