"""The outbound half of a JSON WebSocket connection: queue, framing, close, timer.

- the *writer* drains one bounded outbound queue to the socket
  (:class:`api.transport.outbox.Outbox`). Queues never block the producer: when one is
  full the connection is a slow consumer and is closed (code 1001, "slow
  consumer") rather than buffered without bound; droppable events (presence)
  are dropped first. A send that stalls longer than ``send_timeout_s`` aborts
  the transport, and every close we start is followed by an abort after
  :data:`api.transport.outbox.CLOSE_RELEASE_S`, so a peer that never reads again
  cannot hold a socket;
- the *timer* (one loop timer handle, no task: :meth:`Link.start_timer`) carries out
  what :meth:`sync.session.Session.tick` decides at each deadline: the
  authentication timeout, heartbeats, the close of connections
  silent for two heartbeat intervals, and the token's lifetime
  (:class:`sync.session.TokenLifetime`): ``auth_expiring`` before ``exp``,
  ``connection_error`` ``TOKEN_EXPIRED`` and close 3000 at it unless
  ``auth_refresh`` (:meth:`Link._refresh`, verified like the first frame) moved it.

:class:`Link` owns the one bounded outbound queue (:class:`api.transport.outbox.Outbox`)
and the per-connection :class:`sync.session.Session`; it sends events and errors,
starts closes (with ``connection_error`` / ``connection_close`` first) and aborts,
and carries out the session's intents that need nothing awaited (:meth:`Link.carry_out`).
:class:`api.transport.connection.Connection` builds the reader on it.
Consecutive events go out in one ``batch`` envelope when the client asked for
``message_batching`` (:class:`Frames`); a :class:`Solo` frame (the authentication
response, ``connection_established``) never does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, assert_never

from starlette.websockets import WebSocket

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import JwtAuthority
from tripsage_sync.api.transport.facts import session_policy
from tripsage_sync.api.transport.metrics import Metrics
from tripsage_sync.api.transport.outbox import Close as CloseMarker
from tripsage_sync.api.transport.outbox import Outbox
from tripsage_sync.api.transport.waits import Flag
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import SyncError
from tripsage_sync.sync.events import connection_close, error_event
from tripsage_sync.sync.health import RoundTrips
from tripsage_sync.sync.session import (
    Close,
    CloseExpired,
    Immediate,
    Received,
    RefuseAuth,
    Send,
    SendError,
    SendHeartbeat,
    SendOutcome,
    Session,
    SetDeadline,
    State,
    WarnExpiring,
    error_close_frames,
)
from tripsage_sync.sync.wire import (
    AuthResponse,
    InvalidUpdate,
    ServerEvent,
    encode,
    iso_ms,
    make_event,
    new_id,
)

__all__ = ["MAX_OUTGOING_BATCH", "ConnectionLog", "Frames", "Link", "Solo"]

MAX_OUTGOING_BATCH: Final = 64


@dataclass(frozen=True, slots=True)
class Solo:
    """A frame the writer sends on its own, never inside an outgoing batch."""

    text: str


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes ``[conn user=...]`` and sets ``conn``/``user`` (and a call's own
    ``extra``, e.g. ``trip``, ``code``) as record attributes: the JSON log
    format (``api.cli.JsonFormatter``) writes them as keys."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{extra.get('conn')} user={extra.get('user', '-')}] {msg}", kwargs


class Frames:
    """The writer's framing (:class:`api.transport.outbox.Framing`) for one JSON connection.

    A ``Solo`` frame goes alone; with ``message_batching``, consecutive event
    frames (up to :data:`MAX_OUTGOING_BATCH`) go in one ``batch`` envelope.
    Every frame is counted in the session and per event type in the metrics,
    the envelope's own bytes as ``batch``.
    """

    def __init__(self, conn: Link, metrics: Metrics) -> None:
        self.conn = conn
        self.metrics = metrics
        self._events: list[str] = []
        self._envelope = 0  # bytes of a batch envelope around the events

    def frame(self, item: str | Solo, queue: deque[str | Solo | CloseMarker]) -> str:
        self._envelope = 0
        if isinstance(item, Solo):
            self._events = [item.text]
            return item.text
        if not (self.conn.session.batching and queue and isinstance(queue[0], str)):
            self._events = [item]
            return item
        batch = [item]
        while queue and isinstance(queue[0], str) and len(batch) < MAX_OUTGOING_BATCH:
            batch.append(queue.popleft())  # type: ignore[arg-type]
        text = (
            f'{{"id":"{new_id("batch")}","type":"batch","timestamp":'
            f'"{iso_ms(self.conn.clock.now_ms())}","payload":{{"messages":[{",".join(batch)}]}}}}'
        )
        self._events = batch
        self._envelope = len(text) - sum(len(inner) for inner in batch)
        return text

    def sent(self, frame: str | bytes) -> None:
        self.conn.session.frame_sent(len(frame))
        for event in self._events:
            self.metrics.sent_text(event)
        if self._envelope:
            self.metrics.sent("batch", self._envelope)


class Link:
    """One JSON connection's outbound side (what the hub's ``Subscriber`` needs)."""

    def __init__(
        self,
        websocket: WebSocket,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        authority: JwtAuthority,
        logger: logging.Logger,
        *,
        endpoint: str,
        path_session_id: str,
        client_ip: str,
    ) -> None:
        self.websocket = websocket
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.authority = authority
        self.id = new_id("conn")
        self.client_ip = client_ip
        self.session = Session(
            connection_id=self.id,
            endpoint=endpoint,
            path_session_id=path_session_id,
            now_ms=self.clock.now_ms(),
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            auth_timeout_s=self.settings.auth_timeout_s,
            policy=session_policy(self.settings),
        )
        self.closed = Flag()
        self._timer: asyncio.Handle | None = None  # the next tick, while the timer runs
        self._timer_on = False
        self.log = ConnectionLog(logger, {"conn": self.id})
        self.outbox: Outbox[str | Solo] = Outbox(
            websocket,
            size=self.settings.outbound_queue_size,
            send_timeout_s=self.settings.send_timeout_s,
            metrics=metrics,
            log=self.log,
            may_close=self.session.close,
        )
        self._round_trips: RoundTrips | None = None  # made at the first heartbeat
        # Presence and similar state that later features attach to a connection.
        self.attachments: dict[str, Any] = {}

    @property
    def round_trips(self) -> RoundTrips:
        """Heartbeat round trips (sync/health.py), kept from the first heartbeat on."""
        if self._round_trips is None:
            self._round_trips = RoundTrips()
        return self._round_trips

    @property
    def principal(self) -> Principal:
        assert self.session.principal is not None, "principal read before authentication"
        return self.session.principal

    # -- outbound -----------------------------------------------------------------

    def enqueue(self, text: str, *, droppable: bool = False) -> bool:
        """Queue a frame for the writer; never blocks. ``False`` if not queued."""
        if self.session.state is not State.OPEN:
            return False
        return self.outbox.put(text, droppable=droppable)

    def send_heartbeat(self, now: int) -> None:
        """A ``connection_heartbeat``, remembered for its round trip (sync/health.py)."""
        event = self.session.heartbeat(now)
        if self.send(event):
            self.round_trips.heartbeat_sent(event.payload.serverTime, now)

    @property
    def queued(self) -> int:
        """Frames waiting in the outbound queue."""
        return len(self.outbox)

    def send(self, event: ServerEvent | AuthResponse) -> bool:
        return self.enqueue(encode(event))

    def send_error(self, exc: SyncError, *, in_reply_to: str | None = None) -> None:
        now = self.clock.now_ms()
        session_id = self.session.path_session_id
        self.send(error_event(exc, now_ms=now, session_id=session_id, in_reply_to=in_reply_to))
        if isinstance(exc, InvalidUpdate):  # "Optimistic Updates": its one outcome as well
            self.metrics.count(self.metrics.outcomes, "optimistic_update_rejected")
            self.send(make_event(exc.rejection(), now_ms=now, session_id=session_id))

    def _start_close(self, code: int, reason: str, *frames: str) -> None:
        # ``frames`` are allowed while closing (the error / connection_close before it).
        self.outbox.close(code, reason, *frames)

    def close(self, code: int, reason: str, *, error: SyncError | None = None) -> None:
        """Close after the queued events.

        With ``error``: the ``error`` event of the message that caused it, then
        ``connection_error`` (the connection-level problem), then the close.
        """
        frames: tuple[ServerEvent, ...] = ()
        if error is not None:
            now = self.clock.now_ms()
            session_id = self.session.path_session_id
            frames = error_close_frames(error, code, now_ms=now, session_id=session_id)
        self._start_close(code, reason, *(encode(frame) for frame in frames))

    def announce_close(
        self, reason: str, code: int, *, grace_s: float, reconnect_after_s: float
    ) -> None:
        """``connection_close`` then the close frame once the queue has drained."""
        if self.session.state is State.OPEN:
            event = connection_close(
                reason,
                code,
                grace_period_s=grace_s,
                reconnect_after_s=reconnect_after_s,
                now_ms=self.clock.now_ms(),
            )
            self._start_close(code, reason, encode(event))
        else:
            self._start_close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection now (unsent data is discarded)."""
        self.outbox.abort()

    # -- timers ---------------------------------------------------------------------

    def start_timer(self) -> None:
        """Carry out the session's deadlines from now on: a tick at the end of this loop
        iteration, then one at each deadline it names (or sooner, when a state change moves
        it: :meth:`_tick_soon`)."""
        self._timer_on = True
        self._tick_soon()

    def stop_timer(self) -> None:
        self._timer_on = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick_soon(self) -> None:
        """The next deadline may have moved: tick again at the end of this iteration."""
        if self._timer_on:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not (self._timer_on and self.session.accepting):
            return
        now = self.clock.now_ms()
        deadline: int | None = None
        try:
            for intent in self.session.tick(now):
                if isinstance(intent, SetDeadline):
                    deadline = intent.at_ms
                else:
                    self.carry_out(intent, now)
        except Exception:
            self.log.exception("timer failed")
            self._timer_on = False
            return
        if deadline is None or not self._timer_on:  # a close was decided: the timer is done
            return
        if self._timer is not None:  # a state change while ticking asked for a tick
            self._timer.cancel()
        delay_s = max(0.0, (deadline - self.clock.now_ms()) / 1000) + 0.005
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._tick)

    def carry_out(self, intent: Immediate, now: int) -> None:
        """Carry out one of the session's intents that need nothing awaited."""
        match intent:
            case Received(kind=kind, nbytes=nbytes):
                self.metrics.received(kind, nbytes)
                if kind == "too_large":
                    limit = self.settings.max_message_size
                    self.log.info("message of %d bytes over the %d limit", nbytes, limit)
            case Send(event=event):
                self.send(event)
            case SendOutcome(event=event):
                self.metrics.count(self.metrics.outcomes, event.type)
                self.send(event)
            case SendError(error=error, in_reply_to=in_reply_to):
                self.send_error(error, in_reply_to=in_reply_to)
            case SendHeartbeat():
                self.send_heartbeat(now)
            case SetDeadline():
                self._tick_soon()  # the timer takes the new deadline
            case WarnExpiring() as warning:
                self.log.info("token expires in %d ms", warning.expires_at_ms - now)
                self.send(warning.event(now))
            case Close(code=code, reason=reason, frames=frames):
                self._start_close(code, reason, *(encode(frame) for frame in frames))
            case RefuseAuth() as refusal:
                # One lifecycle line per failure; the message is the generic one the peer gets.
                exc = refusal.error
                self.log.info(
                    "authentication failed: %s (%s)",
                    exc.code,
                    exc.message,
                    extra={"code": exc.code},
                )
                self.metrics.count(self.metrics.auth_failures, exc.code)
                self._start_close(refusal.code, refusal.reason, encode(refusal.response))
            case CloseExpired() as expired:
                self.log.info("token expired; closing")
                self.metrics.count(self.metrics.auth_failures, "TOKEN_EXPIRED")
                self._start_close(expired.code, expired.reason, encode(expired.event(now)))
            case _:
                assert_never(intent)

    def displace(self) -> None:
        """Closed unauthenticated to make room for a newer socket (3001: retry later)."""
        now = self.clock.now_ms()
        for intent in self.session.displaced():
            self.carry_out(intent, now)

    def _refresh(self, token: str, message_id: str | None) -> None:
        """``auth_refresh``: verified like the first frame; refused ones change nothing."""
        try:
            verified = self.authority.verify_token(token)
            answer = self.session.refreshed(
                verified.principal, expires_at_ms=verified.expires_at_ms, now_ms=self.clock.now_ms()
            )
        except SyncError as refused:
            self.log.info("token refresh refused: %s", refused.code, extra={"code": refused.code})
            self.metrics.count(self.metrics.auth_failures, refused.code)
            # Reported, never closing: the current token is still good until its exp.
            self.send_error(refused, in_reply_to=message_id)
            return
        self.log.info("token refreshed")
        self.send(answer)
        self._tick_soon()  # the timer's next deadline moved
