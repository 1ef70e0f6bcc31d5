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
threshold. Longer messages go through websockets' own serializer, so they
are compressed when the peer negotiated it.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import OPEN

from tripsage_sync.api.transport.waits import Flag, Inbox

__all__ = ["COMPRESS_MIN_BYTES", "SCOPE_KEY", "DirectWriter", "frame_header"]

# Where the protocol puts itself in the ASGI scope's extensions, for the app's writers.
SCOPE_KEY: Final = "tripsage.direct_writer"
# Messages this long or longer are compressed (when negotiated); shorter ones are not.
COMPRESS_MIN_BYTES: Final = 1024
_TEXT: Final = 0x81  # FIN + text (RFC 6455 5.2, 5.6)
_BINARY: Final = 0x82  # FIN + binary


def frame_header(first: int, length: int) -> bytes:
    """The header of an unmasked frame: ``first`` (FIN, opcode), the payload length."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


class DirectWriter(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, able to write messages without an await.

    Its receive queue and ``writable`` event are the deque-free stand-ins of
    :mod:`api.transport.waits`, and the handshake's request and response (their
    headers) are dropped once the response is sent: an idle socket keeps less.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: it finds us in its scope.
        scope = self.__dict__.get("scope")
        if scope is not None:
            scope["extensions"][SCOPE_KEY] = self

    def start_keepalive(self) -> None:
        # uvicorn calls this right after it wrote the handshake response: nothing reads the
        # handshake's request or response any more (the app has its ASGI scope).
        self.request = self.response = None  # type: ignore[assignment]
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
        text = isinstance(message, str)
        data = message.encode() if isinstance(message, str) else message
        if len(data) < COMPRESS_MIN_BYTES or not self.conn.extensions:
            return frame_header(_TEXT if text else _BINARY, len(data)) + data
        if text:
            self.conn.send_text(data)
        else:
            self.conn.send_binary(data)
        return b"".join(self.conn.data_to_send())

    def write_now(self, data: bytes) -> None:
        """Write bytes made by :meth:`message_bytes`, in order; only after :meth:`can_write`."""
        self.transport.write(data)
