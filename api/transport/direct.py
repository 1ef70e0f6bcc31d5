"""Writing WebSocket messages straight to the transport, without an await.

Theory of operation
-------------------
An ASGI ``send`` of one message passes Starlette's wrappers, uvicorn's
protocol (which awaits its ``writable`` event), websockets' frame
serializer and the per-message deflate compressor: tens of microseconds,
and one ``transport.write`` (a system call) per message. A broadcast to 50
sockets pays it 50 times. :class:`DirectWriter`, a base of our uvicorn
protocol (:class:`api.transport.protocol.WebSocketProtocol`), lets the
connection's writer (:class:`api.transport.outbox.Outbox`) instead turn every
message queued during one event-loop iteration into bytes and write them in
one call, when the socket may be written at once (:meth:`DirectWriter.can_write`:
open, handshake done, the transport not paused). Otherwise the writer takes
the ordinary ASGI path, with its stall timeout.

A message shorter than :data:`COMPRESS_MIN_BYTES` is framed here (RFC 6455
5.2: FIN, the opcode, the length; a server never masks) and sent
uncompressed, which permessage-deflate allows for any message (RFC 7692 6:
a message is compressed only when its RSV1 bit is set) and leaves the
compression context untouched; Node's ``ws`` server has the same 1 KiB
threshold; the same message to many sockets is framed once
(:func:`plain_frame`). Longer messages go through websockets' own serializer,
so they are compressed when the peer negotiated it.

Dispatch, too, is direct: an upgrade whose path a function ``WebSocketRoute`` of
the (unwrapped, middleware-free) Starlette app matches is handed to that route's
endpoint at once (:meth:`DirectWriter.run_asgi`), as Starlette's router would,
with ``path_params``, ``endpoint``, ``app`` and ``router`` in the scope. Skipped
are the layers that do nothing for a WebSocket but hold coroutines, closures and
a second ``WebSocket`` for the connection's lifetime (``ServerErrorMiddleware``,
``ExceptionMiddleware``, the router, ``websocket_session``; about 5 KB a socket).
The app's exception handlers answer HTTP requests only: an exception a WebSocket
endpoint lets out is logged and answered by uvicorn's own rules (a 500 before the
handshake), as it is through Starlette. Any other app or route takes the
ordinary ASGI path.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from starlette.applications import Starlette
from starlette.routing import Match, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import OPEN

from tripsage_sync.api.transport.waits import Flag, Inbox

__all__ = [
    "COMPRESS_MIN_BYTES",
    "SCOPE_KEY",
    "DirectWriter",
    "direct_endpoint",
    "frame_header",
    "plain_frame",
]

# Where the protocol puts itself in the ASGI scope's extensions, for the app's writers.
SCOPE_KEY: Final = "tripsage.direct_writer"
# Messages this long or longer are compressed (when negotiated); shorter ones are not.
COMPRESS_MIN_BYTES: Final = 1024
_TEXT: Final = 0x81  # FIN + text (RFC 6455 5.2, 5.6)
_BINARY: Final = 0x82  # FIN + binary


Endpoint = Callable[[WebSocket], Awaitable[None]]


def direct_endpoint(app: object, scope: dict[str, Any]) -> Endpoint | None:
    """The function endpoint Starlette's router would run for the WebSocket ``scope``
    (the scope completed as the router completes it), or ``None``: the ordinary path."""
    if not isinstance(app, Starlette) or app.user_middleware:
        return None
    for route in app.router.routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        plain = getattr(getattr(route, "app", None), "__qualname__", "").startswith(
            "websocket_session."
        )  # a function endpoint without route middleware
        if match is not Match.FULL or not isinstance(route, WebSocketRoute) or not plain:
            return None
        scope.update(child)
        scope["app"] = app
        scope.setdefault("router", app.router)
        endpoint: Endpoint = route.endpoint
        return endpoint
    return None


def frame_header(first: int, length: int) -> bytes:
    """The header of an unmasked frame: ``first`` (FIN, opcode), the payload length."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


class Flushable(Protocol):
    """A writer with a fast-path flush (:class:`api.transport.outbox.Outbox`)."""

    log: logging.LoggerAdapter[logging.Logger]

    def flush(self) -> None: ...


class Flushes:
    """The fast-path flushes due in one loop iteration: one ``call_soon`` for all of
    them (a broadcast to 1,000 sockets schedules one callback, not 1,000)."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[Flushable] = []

    def add(self, writer: Flushable) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.run)
        self.pending.append(writer)

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for writer in pending:
            try:
                writer.flush()
            except Exception:  # one connection's failure must not keep the others' frames
                writer.log.exception("flush failed")


_FLUSHES: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flushes]] = (
    weakref.WeakKeyDictionary()
)


def flushes(loop: asyncio.AbstractEventLoop) -> Flushes:
    """The loop's one :class:`Flushes`."""
    found = _FLUSHES.get(loop)
    if found is None:
        found = _FLUSHES[loop] = Flushes()
    return found


class _LastFrame:
    """The last message framed uncompressed, and its frame (:func:`plain_frame`)."""

    __slots__ = ("framed", "message")

    def __init__(self) -> None:
        self.message: str | bytes | None = None
        self.framed = b""


_LAST_FRAME: Final = _LastFrame()


def plain_frame(message: str | bytes) -> bytes:
    """One uncompressed frame holding ``message`` (text for a str, else binary).

    A broadcast hands the same object to every subscriber's queue and the fast path
    writes them one after the other, so the last frame made is kept: the message is
    encoded and framed once, not once a socket. (A str that cannot be encoded raises
    ``ValueError``, and nothing is kept.)
    """
    last = _LAST_FRAME
    if message is last.message:
        return last.framed
    if isinstance(message, str):
        data, first = message.encode(), _TEXT
    else:
        data, first = message, _BINARY
    framed = frame_header(first, len(data)) + data
    last.message, last.framed = message, framed
    return framed


class DirectWriter(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, able to write messages without an await.

    Its receive queue and ``writable`` event are the deque-free stand-ins of
    :mod:`api.transport.waits`, and the handshake's request and response and the
    scope's request headers are dropped once the response is sent: an idle socket
    keeps less.
    """

    # uvicorn's own attributes, in slots: its protocol sets about forty, too many for a
    # key-sharing instance dict (a 1.6 KB dict a socket); slots are 8 bytes each.
    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: it finds us in its scope.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SCOPE_KEY] = self

    async def run_asgi(self) -> None:
        """The app for this upgrade: a route's endpoint directly (the module docstring),
        else the whole app as uvicorn runs it; the same outcomes as uvicorn's."""
        endpoint = direct_endpoint(self.app, self.scope)  # type: ignore[arg-type]
        if endpoint is None:
            await super().run_asgi()
            return
        try:
            await endpoint(WebSocket(self.scope, self.receive, self.send))  # type: ignore[arg-type]
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
        if self.close_timer is None:
            self.transport.close()

    def start_keepalive(self) -> None:
        # uvicorn calls this right after it wrote the handshake response: nothing reads the
        # handshake's request or response any more, nor the request headers in the scope
        # (our endpoints read Origin, Host, Authorization and X-Forwarded-For before they
        # accept). websockets' parser keeps the request alive: its headers are emptied.
        self.request.headers.clear()
        self.request = self.response = None  # type: ignore[assignment]
        headers = self.scope["headers"]
        if isinstance(headers, list):
            headers.clear()
        super().start_keepalive()

    def can_write(self) -> bool:
        """Messages may be written now: the socket is open and its buffer below the mark."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.writable.is_set()
            and self.conn.state is OPEN
            and not self.transport.is_closing()
        )

    def message_bytes(self, message: str | bytes) -> bytes:
        """The wire bytes of one whole message (see the module docstring)."""
        if not self.conn.extensions:
            return plain_frame(message)
        text = isinstance(message, str)
        data = message.encode() if isinstance(message, str) else message
        if len(data) < COMPRESS_MIN_BYTES:
            return plain_frame(message)
        if text:
            self.conn.send_text(data)
        else:
            self.conn.send_binary(data)
        return b"".join(self.conn.data_to_send())

    def write_now(self, data: bytes) -> None:
        """Write bytes made by :meth:`message_bytes`, in order; only after :meth:`can_write`."""
        self.transport.write(data)
