"""Our uvicorn protocols: request-head deadline, handshake refusals, liveness, oversize.

Theory of operation
-------------------
uvicorn parses HTTP with h11 (:class:`HttpProtocol`) and hands an upgrade to
its websockets-sansio protocol (:class:`WebSocketProtocol`). Both are
subclassed here, each override small and local, because the stock ones leave
four holes a peer can use:

- **No deadline for the request head.** h11 waits forever for the first
  request (and a keep-alive connection's next one is only timed until its
  first byte). :class:`HttpProtocol` runs a *header timer* exactly while h11
  waits for a request head (``their_state is IDLE``); it is not restarted by
  data, so dripping one byte at a time does not help, and when it fires the
  connection is closed (``408`` first if part of a head came). No socket
  reaches the app's own authentication deadline without passing this one.
  The same deadline bounds the draining of a body the app refused unread
  (413, :mod:`api.transport.http_body`).
- **Handshake refusals never sent.** websockets refuses a request line over
  8 KiB with 414 and header lines over 8 KiB with 431 (or any unreadable
  head with nothing), but queues that answer for ``data_to_send`` during
  ``receive_data``, which uvicorn only flushes after an *event*: the socket
  was held open, unanswered. :meth:`WebSocketProtocol.data_received` flushes
  it (or answers 400) and closes. Heads over h11's 16 KiB buffer already get
  400 from uvicorn.
- **Liveness.** uvicorn's keepalive pings every 20 s and closes with 1011 when
  the pong is 20 s late, even when the pong is only queued behind the peer's
  own frames (a fast writer) or behind frames *we* have not read yet. Here any
  byte received proves the peer alive: a socket silent for
  ``ping_interval_s`` gets a ping, one silent for ``peer_timeout_s`` while we
  were reading is dead and closed with 1011 (then aborted, since a stalled
  link never acknowledges). While reading is paused for the app's backlog the
  silence is ours, not the peer's, and does not count. All sockets share one
  :class:`LivenessWheel` (one timer for the whole process, 1 s slots, checked
  lazily: a received frame costs one attribute store, no timer operation).
- **Oversize without the documented event.** A frame (or fragmented message)
  over the transport's ``ws_max_size`` is failed by websockets with 1009
  before the app sees a byte. :meth:`WebSocketProtocol.handle_parser_exception`
  sends what the app sends for a message over the limit first: on the JSON
  endpoints the ``error`` MESSAGE_TOO_LARGE and ``connection_error`` events
  before the 1009 close, on ``/ws/yjs`` the documented 4413 close. The rest
  of what the peer sends is then read and dropped for ``OVERSIZE_DRAIN_S``
  before the socket is closed: closing with unread input would reset the
  connection and could destroy that reply before the peer reads it.

And one cost: uvicorn pauses reading after every received message and resumes
when the app has taken it (two ``epoll_ctl`` system calls a message). Here
reading pauses only at a small backlog
(:meth:`WebSocketProtocol.send_receive_event_to_app`).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, ClassVar, Final, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import Close, Frame, Opcode

from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.direct import DirectWriter
from tripsage_sync.sync.errors import CLOSE_MESSAGE_TOO_BIG, CLOSE_SERVER_ERROR, MessageTooLarge
from tripsage_sync.sync.events import ConnectionErrorPayload, error_event
from tripsage_sync.sync.wire import encode, make_event

__all__ = [
    "Checked",
    "HttpProtocol",
    "LivenessWheel",
    "WebSocketProtocol",
    "oversize_reply",
    "protocols",
]

LIVENESS_TICK_S: Final = 1.0
YJS_PATH_PREFIX: Final = "/ws/yjs/"
CLOSE_YJS_TOO_LARGE: Final = 4413  # api.trips.yjs.CLOSE_TOO_LARGE
# After our close frame to a dead peer, the transport is aborted this much later.
DEAD_PEER_RELEASE_S: Final = 1.0
OVERSIZE_DRAIN_S: Final = 1.0
# Reading pauses once this many received messages wait for the app (or one over
# READ_BACKLOG_LARGE_BYTES does), and resumes when the app has taken them all.
READ_BACKLOG_MESSAGES: Final = 16
READ_BACKLOG_LARGE_BYTES: Final = 16_384
# An unmasked ping with no payload (RFC 6455 5.5.2), built once: every idle socket gets
# one per ping interval, and the pong only has to arrive (any frame counts).
PING_FRAME: Final = Frame(Opcode.PING, b"").serialize(mask=False)
_REQUEST_TIMEOUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)
_BAD_REQUEST: Final = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\nconnection: close\r\n\r\nInvalid HTTP request"
)


def oversize_reply(path: str, size: int, limit: int) -> tuple[list[str], int, str]:
    """What a peer gets for a message over the limit: text frames, close code, reason.

    The same as the endpoints' own check (api.transport.connection, api.trips.yjs) answers.
    """
    if path.startswith(YJS_PATH_PREFIX):
        return [], CLOSE_YJS_TOO_LARGE, "message too large"
    now = int(time.time() * 1000)
    error = MessageTooLarge(
        f"Message exceeds {limit} bytes", details={"size": size, "limit": limit}
    )
    session_id = path.rstrip("/").rsplit("/", 1)[-1] or None
    problem = ConnectionErrorPayload(errorCode=error.code, message=error.message)
    frames = [
        encode(error_event(error, now_ms=now, session_id=session_id)),
        encode(make_event(problem, now_ms=now)),
    ]
    return frames, CLOSE_MESSAGE_TOO_BIG, "message too large"


class HttpProtocol(H11Protocol):
    """h11 with a deadline for every request head (see the module docstring)."""

    header_timeout_s: ClassVar[float] = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _phase: str | None = None  # what the timer is timing: "head" or "drain"
    _head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._sync_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._head_bytes += len(data)
        super().data_received(data)
        self._sync_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _sync_header_timer(self) -> None:
        """Run the timer while h11 waits for a request head, or discards the rest of a body
        already answered (a 413: uvicorn reads and drops it, so the client gets the answer
        rather than a reset); data does not restart it, a new phase does."""
        conn = self.conn
        phase = None
        if self.transport.is_closing():
            pass
        elif conn.their_state is h11.IDLE:
            phase = "head"
        elif conn.our_state is h11.DONE and conn.their_state is h11.SEND_BODY:
            phase = "drain"
        if phase != self._phase:
            self._cancel_header_timer()
            self._phase = phase
            self._head_bytes = 0
            if phase is not None:
                self._header_timer = self.loop.call_later(
                    self.header_timeout_s, self._header_timeout
                )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._phase == "head" and self._head_bytes:
            self.logger.info("request head incomplete after %.0f s; closing", self.header_timeout_s)
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


class Checked(Protocol):
    """What the wheel checks: a liveness rule (:meth:`WebSocketProtocol.check_liveness`)."""

    def check_liveness(self, now: float) -> float | None: ...


class LivenessWheel:
    """One timer for every socket's liveness check: 1 s slots, each socket in one slot.

    A socket is checked when its slot comes due (:meth:`WebSocketProtocol.check_liveness`),
    which answers when to check it next; a frame received meanwhile only moves the
    socket's ``last_heard``, never a timer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float = LIVENESS_TICK_S) -> None:
        self.loop = loop
        self.tick_s = tick_s
        self.slots: dict[int, list[Checked]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf

    def __len__(self) -> int:
        return sum(len(slot) for slot in self.slots.values())

    def add(self, peer: Checked, at: float) -> None:
        slot = math.ceil(at / self.tick_s)
        self.slots.setdefault(slot, []).append(peer)
        self._arm(slot)

    def _arm(self, slot: int) -> None:
        if slot * self.tick_s < self._due:
            if self._timer is not None:
                self._timer.cancel()
            self._due = slot * self.tick_s
            self._timer = self.loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        self._timer, self._due = None, math.inf
        now = self.loop.time()
        for slot in sorted(s for s in self.slots if s * self.tick_s <= now):
            for peer in self.slots.pop(slot):
                at = peer.check_liveness(now)
                if at is not None:
                    self.add(peer, at)
        if self.slots:
            self._arm(min(self.slots))


class WebSocketProtocol(DirectWriter):
    """uvicorn's websockets-sansio protocol with the fixes of the module docstring, and
    direct writes for the connections' writers (:class:`api.transport.direct.DirectWriter`).

    :func:`protocols` makes a subclass bound to the settings.
    """

    ping_interval_s: ClassVar[float] = 8.0
    peer_timeout_s: ClassVar[float] = 13.0
    message_limit: ClassVar[int] = 1_048_576
    wheels: ClassVar[dict[asyncio.AbstractEventLoop, LivenessWheel]] = {}
    __slots__ = ("_draining", "_last_ping", "last_heard")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_heard = self.loop.time()
        self._last_ping = -math.inf
        self._draining = False

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()  # any byte proves the peer alive
        if self._draining:
            return  # the rest of an oversize message: dropped unread
        self.conn.receive_data(data)
        if self.conn.parser_exc is not None:
            self.handle_parser_exception()
            return
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._refuse_handshake()
            return
        self.handle_events()

    def send_receive_event_to_app(self) -> None:
        """Queue a received message for the app; pause reading only at a backlog.

        uvicorn pauses reading after every message (and resumes when the app has
        taken it): two ``epoll_ctl`` calls per message. The backlog is bounded all
        the same: :data:`READ_BACKLOG_MESSAGES` small messages, or one large one.
        """
        paused = self.read_paused
        large = sum(len(part) for part in self.frames) > READ_BACKLOG_LARGE_BYTES
        self.read_paused = True  # uvicorn's own pause is skipped; ours follows
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if paused or self.close_sent:
            return
        if large or self.queue.qsize() >= READ_BACKLOG_MESSAGES:
            self.read_paused = True
            self.transport.pause_reading()

    def _refuse_handshake(self) -> None:
        """websockets refused the request head: send its 414/431 (or a 400), then close."""
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        output = b"".join(self.conn.data_to_send())
        self.logger.info("WebSocket request refused: %s", self.conn.handshake_exc)
        self.transport.write(output if output.startswith(b"HTTP/") else _BAD_REQUEST)
        self.transport.close()

    def handle_parser_exception(self) -> None:
        exc = self.conn.parser_exc
        if not isinstance(exc, PayloadTooBig) or not self.handshake_complete:
            super().handle_parser_exception()
            return
        # A compressed frame fails while inflating, before its size is known: report the
        # lower bound then (over the transport's own limit).
        size = max((exc.size or 0) + (exc.current_size or 0), exc.max_size + 1)
        self.conn.data_to_send()  # websockets' own 1009 close: replaced by the documented reply
        texts, code, reason = oversize_reply(self.scope["path"], size, self.message_limit)
        self.logger.info("message of at least %d bytes over the transport limit; closing", size)
        frames = [Frame(Opcode.TEXT, text.encode()).serialize(mask=False) for text in texts]
        close = Frame(Opcode.CLOSE, Close(code, reason).serialize()).serialize(mask=False)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join([*frames, close]))
        self.close_sent = True
        # Read and drop the rest for a moment, then close: closing with unread input
        # would send a reset, which can destroy the reply before the peer reads it.
        self._draining = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # uvicorn closes at once when the app returns unless a close timer is set.
        self.close_timer = self.loop.call_later(OVERSIZE_DRAIN_S, self.transport.close)

    # -- liveness -----------------------------------------------------------------------

    def start_keepalive(self) -> None:
        super().start_keepalive()
        loop = self.loop
        wheel = self.wheels.get(loop)
        if wheel is None:
            wheel = self.wheels[loop] = LivenessWheel(loop)
        self.last_heard = loop.time()
        wheel.add(self, self.last_heard + self.ping_interval_s)

    def check_liveness(self, now: float) -> float | None:
        """Ping a quiet peer, close a dead one; when to check again (``None``: never)."""
        if self.disconnected or self.close_sent or self.transport.is_closing():
            return None
        if self.read_paused:  # the app's backlog, not the peer's silence
            self.last_heard = now
        silent_s = now - self.last_heard
        if silent_s >= self.peer_timeout_s:
            self._peer_dead(silent_s)
            return None
        if silent_s >= self.ping_interval_s and now - self._last_ping >= self.ping_interval_s:
            self._last_ping = now
            self.transport.write(PING_FRAME)
            return min(self.last_heard + self.peer_timeout_s, now + self.ping_interval_s)
        return min(self.last_heard + self.peer_timeout_s, self.last_heard + self.ping_interval_s)

    def _peer_dead(self, silent_s: float) -> None:
        self.logger.info("WebSocket peer silent for %.1f s; closing as dead", silent_s)
        self.conn.fail(CLOSE_SERVER_ERROR, "keepalive timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": CLOSE_SERVER_ERROR, "reason": "keepalive"}
        )
        self.transport.close()
        self.loop.call_later(DEAD_PEER_RELEASE_S, self.transport.abort)

    def stop_keepalive(self) -> None:
        super().stop_keepalive()  # the wheel drops a closed socket at its next check


def protocols(settings: Settings) -> tuple[type[HttpProtocol], type[WebSocketProtocol]]:
    """The protocol classes for ``uvicorn.Config(http=..., ws=...)``, bound to ``settings``."""
    http = type(
        "TripSageHttpProtocol", (HttpProtocol,), {"header_timeout_s": settings.header_timeout_s}
    )
    ws = type(
        "TripSageWebSocketProtocol",
        (WebSocketProtocol,),
        {
            "ping_interval_s": settings.ping_interval_s,
            "peer_timeout_s": settings.peer_timeout_s,
            "message_limit": settings.max_message_size,
            "wheels": {},
        },
    )
    return http, ws
