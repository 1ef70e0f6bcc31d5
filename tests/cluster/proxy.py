"""A small TCP proxy for the cluster tests: a load balancer, and a network cut on demand.

:meth:`Proxy.start` listens on a free loopback port (:attr:`Proxy.port`) inside the
test's own event loop. Each connection it accepts goes to the next backend in
round-robin order, skipping the backends that are cut off (a balancer with no
stickiness: a client that reconnects lands wherever the turn is), and bytes are
piped both ways unchanged until either side closes; then both sockets are closed,
after what was already read is written on.

:meth:`Proxy.cut` aborts every open connection to a backend, both sockets at once and
with no closing handshake of any protocol, as a balancer that drops a node or a network
partition would look to both ends: the client sees its socket drop, the server its
peer vanish. No new connection goes to that backend until :meth:`Proxy.restore`; the
backend itself keeps running (and talking to Redis and PostgreSQL).

With ``delay_s`` every chunk is held that long before it is written on, both ways: a
slow link (say, between one node and Redis). :func:`threaded` runs a proxy on an event
loop of its own, for links that must work while the test blocks (a server starting).

The proxy keeps the books tests need to say where a client is: :meth:`Proxy.backend_of`
(by the client's own socket address), :attr:`Proxy.landed` (every backend chosen, in
order) and :meth:`Proxy.open_to` (the connections open to a backend now).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Proxy", "threaded"]

HOST: Final = "127.0.0.1"
CHUNK_BYTES: Final = 65536


@dataclass(eq=False)
class _Link:
    """One client connection and the backend connection it is piped to."""

    backend: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter

    def abort(self) -> None:
        self.client.transport.abort()
        self.server.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    with contextlib.suppress(OSError):  # an aborted socket ends the pipe like EOF
        while data := await reader.read(CHUNK_BYTES):
            if delay_s:
                await asyncio.sleep(delay_s)  # the link's latency, not a wait for an event
            writer.write(data)
            await writer.drain()


class Proxy:
    """Round-robin TCP forwarding from :attr:`port` to the backend ports ``backends``."""

    def __init__(self, backends: Sequence[int], *, delay_s: float = 0.0) -> None:
        self.backends = list(backends)
        self.delay_s = delay_s
        self.port = 0  # known once started
        self.cut_off: set[int] = set()
        #: The backend of every connection accepted, in order.
        self.landed: list[int] = []
        self._by_client: dict[tuple[str, int], int] = {}
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._closed = False

    @classmethod
    async def start(cls, backends: Sequence[int], *, delay_s: float = 0.0) -> Proxy:
        proxy = cls(backends, delay_s=delay_s)
        proxy._server = await asyncio.start_server(proxy._serve, HOST, 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    def cut(self, backend: int) -> None:
        """Drop every connection to ``backend`` abruptly and send it no new ones."""
        self.cut_off.add(backend)
        for link in [link for link in self._links if link.backend == backend]:
            self._links.discard(link)  # gone now, whenever its handler gets to see it
            link.abort()

    def restore(self, backend: int) -> None:
        """Give ``backend`` its turns again (the connections cut stay gone)."""
        self.cut_off.discard(backend)

    def open_to(self, backend: int) -> int:
        """How many connections are piped to ``backend`` now."""
        return sum(link.backend == backend for link in self._links)

    def backend_of(self, client_address: tuple[str, int]) -> int:
        """The backend the connection from ``client_address`` (its sockname) was sent to."""
        return self._by_client[client_address]

    async def close(self) -> None:
        # Not by cancelling the handlers: asyncio's callback for a client_connected_cb task
        # reports a cancelled one as an error. Aborted links end them, and one still
        # connecting to its backend sees _closed when it gets there.
        self._closed = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _pick(self) -> int | None:
        for _ in self.backends:
            backend = self.backends[next(self._turn) % len(self.backends)]
            if backend not in self.cut_off:
                return backend
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self._pick()
        if backend is None or self._closed:  # every backend is cut off: nobody answers
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, backend)
        except OSError:  # the backend is down: the client's socket drops at once
            writer.transport.abort()
            return
        link = _Link(backend, writer, up_writer)
        if backend in self.cut_off or self._closed:  # while this one was being made
            link.abort()
            return
        self._links.add(link)
        self.landed.append(backend)
        self._by_client[writer.get_extra_info("peername")] = backend
        pipes = {
            asyncio.create_task(_pipe(reader, up_writer, self.delay_s)),
            asyncio.create_task(_pipe(up_reader, writer, self.delay_s)),
        }
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:  # one side closed (or the link was cut): close the other too
            self._links.discard(link)
            writer.close()  # flushes what was written, then closes
            up_writer.close()
            await asyncio.gather(*pipes, return_exceptions=True)


@contextlib.contextmanager
def threaded(backends: Sequence[int], *, delay_s: float = 0.0) -> Iterator[Proxy]:
    """A :class:`Proxy` served by a thread of its own, closed on leaving."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="proxy", daemon=True)
    thread.start()
    try:
        proxy = asyncio.run_coroutine_threadsafe(
            Proxy.start(backends, delay_s=delay_s), loop
        ).result()
        try:
            yield proxy
        finally:
            asyncio.run_coroutine_threadsafe(proxy.close(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
