"""The outbound half of a JSON WebSocket connection: queue, framing, close, timer.

- the *writer* drains one bounded outbound queue to the socket
  (:class:`api.transport.outbox.Outbox`). Queues never block the producer: when one is
  full the connection is a slow consumer and is closed (code 1001, "slow
  consumer") rather than buffered without bound; droppable events (presence)
  are dropped first. A send that stalls longer than ``send_timeout_s`` aborts
  the transport, and every close we start is followed by an abort after
  :data:`api.transport.outbox.CLOSE_RELEASE_S`, so a peer that never reads again
  cannot hold a socket;
- the *timer* enforces the authentication deadline, sends heartbeats,
  closes connections silent for two heartbeat intervals, and keeps the
  token's lifetime (:class:`sync.session.TokenLifetime`): ``auth_expiring``
  before ``exp``, ``connection_error`` ``TOKEN_EXPIRED`` and close 3000 at it
  unless ``auth_refresh`` (:meth:`Link._refresh`, verified like the first frame)
  moved it.

:class:`Link` owns the one bounded outbound queue (:class:`api.transport.outbox.Outbox`)
and the per-connection :class:`sync.session.Session`; it sends events and errors,
starts closes (with ``connection_error`` / ``connection_close`` first) and aborts;
its *timer* enforces the authentication deadline, sends heartbeats, closes connections
silent for two heartbeat intervals and keeps the token's lifetime.
:class:`api.transport.connection.Connection` builds the reader on it.
Consecutive events go out in one ``batch`` envelope when the client asked for
``message_batching`` (:class:`Frames`); a :class:`Solo` frame (the authentication
response, ``connection_established``) never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.websockets import WebSocket

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import JwtAuthority
from tripsage_sync.api.transport.metrics import Metrics
from tripsage_sync.api.transport.outbox import Close, Outbox
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import (
    CLOSE_AUTH_FAILED,
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVER_ERROR,
    AuthError,
    RateLimited,
    SyncError,
)
from tripsage_sync.sync.events import ConnectionErrorPayload, connection_close, error_event
from tripsage_sync.sync.health import RoundTrips
from tripsage_sync.sync.session import CloseExpired, Session, State, WarnExpiring
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

    def frame(self, item: str | Solo, queue: deque[str | Solo | Close]) -> str:
        self._envelope = 0
        if isinstance(item, Solo):
            self._events = [item.text]
            return item.text
        if not (self.conn.batching and queue and isinstance(queue[0], str)):
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
        )
        self.batching = False
        self.closed = asyncio.Event()
        self._wake = asyncio.Event()
        self.log = ConnectionLog(logger, {"conn": self.id})
        self.outbox: Outbox[str | Solo] = Outbox(
            websocket,
            size=self.settings.outbound_queue_size,
            send_timeout_s=self.settings.send_timeout_s,
            metrics=metrics,
            log=self.log,
            may_close=self.session.close,
        )
        self.round_trips = RoundTrips()
        # Presence and similar state that later features attach to a connection.
        self.attachments: dict[str, Any] = {}

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
        frames = []
        if error is not None:
            now = self.clock.now_ms()
            event = error_event(error, now_ms=now, session_id=self.session.path_session_id)
            frames.append(encode(event))
            severity: Literal["warning", "error", "critical"] = (
                "critical"
                if code == CLOSE_SERVER_ERROR
                else "warning"
                if isinstance(error, RateLimited)
                else "error"
            )
            problem = ConnectionErrorPayload(
                errorCode=error.code,
                message=error.message,
                retryAfter=error.retry_after,
                severity=severity,
            )
            frames.append(encode(make_event(problem, now_ms=now)))
        self._start_close(code, reason, *frames)

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

    async def _timer(self) -> None:
        interval_ms = int(self.settings.heartbeat_interval_s * 1000)
        next_beat = self.clock.now_ms() + interval_ms
        while self.session.state in (State.AWAITING_AUTH, State.OPEN):
            now = self.clock.now_ms()
            if self.session.state is State.AWAITING_AUTH:
                if now >= self.session.auth_deadline_ms:
                    self.log.debug("authentication timeout")
                    self._fail_auth(AuthError("Authentication timeout", code="AUTH_FAILED"))
                    return
                deadline = self.session.auth_deadline_ms
            else:
                if now >= self.session.idle_deadline_ms:
                    self.log.info("idle for two heartbeat intervals; closing")
                    event = connection_close(
                        "idle timeout",
                        CLOSE_GOING_AWAY,
                        grace_period_s=0,
                        reconnect_after_s=0,
                        now_ms=now,
                    )
                    self._start_close(CLOSE_GOING_AWAY, "idle timeout", encode(event))
                    return
                match self.session.token_due(now):
                    case CloseExpired() as expired:
                        self._expire(expired, now)
                        return
                    case WarnExpiring() as warning:
                        self.log.info("token expires in %d ms", warning.expires_at_ms - now)
                        self.send(warning.event(now))
                    case None:
                        pass
                if now >= next_beat:
                    self.send_heartbeat(now)
                    next_beat = now + interval_ms
                deadline = min(next_beat, self.session.idle_deadline_ms)
                if self.session.token is not None:
                    deadline = min(deadline, self.session.token.deadline_ms)
            # Sleep until the next deadline, or until a state change wakes us.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(
                    max(0.0, (deadline - self.clock.now_ms()) / 1000) + 0.005
                ):
                    await self._wake.wait()

    def _expire(self, expired: CloseExpired, now: int) -> None:
        """The token expired: ``connection_error`` ``TOKEN_EXPIRED``, then close 3000."""
        self.log.info("token expired; closing")
        self.metrics.count(self.metrics.auth_failures, "TOKEN_EXPIRED")
        self._start_close(CLOSE_AUTH_FAILED, "token expired", encode(expired.event(now)))

    def displace(self) -> None:
        """Closed unauthenticated to make room for a newer socket (3001: retry later)."""
        if self.session.state is State.AWAITING_AUTH:
            self._fail_auth(
                AuthError(
                    "Too many connections awaiting authentication",
                    code="CONNECTION_LIMIT_EXCEEDED",
                    retry_after=self.settings.reconnect_after_s,
                    close_code=CLOSE_RATE_LIMITED,
                )
            )

    def _fail_auth(self, exc: SyncError) -> None:
        # One lifecycle line per failure; the message is the generic one the peer gets.
        self.log.info(
            "authentication failed: %s (%s)", exc.code, exc.message, extra={"code": exc.code}
        )
        self.metrics.count(self.metrics.auth_failures, exc.code)
        response = AuthResponse(
            success=False, error=exc.message, code=exc.code, retryAfter=exc.retry_after
        )
        # Close 3000 ("Authentication Response"), 3001 when rate limited.
        code = exc.close_code or CLOSE_AUTH_FAILED
        if isinstance(exc, RateLimited):
            code = CLOSE_RATE_LIMITED
        self._start_close(code, exc.message[:100], encode(response))

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
        self._wake.set()  # the timer's next deadline moved
