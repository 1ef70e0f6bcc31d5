"""One connection's outbound side: a bounded queue and the writer that drains it.

Theory of operation
-------------------
Every WebSocket connection (:class:`api.transport.connection.Connection`, the JSON
endpoints; :class:`api.trips.ypeer.YjsConnection`, y-websocket peers) owns one
:class:`Outbox`, started with its :class:`Framing` (:meth:`Outbox.start`) and
stopped when the connection ends (:meth:`Outbox.stop`):

- :meth:`Outbox.put` never blocks the producer. When the queue already holds
  ``size`` items the connection is a slow consumer: a droppable item
  (presence, awareness) is dropped; any other empties the queue and closes the
  connection with 1001 "slow consumer" (RFC 6455 7.4.1 "going away"), and the
  peer resyncs when it reconnects. Nothing is buffered without bound and
  nothing that matters is dropped silently.
- :meth:`Outbox.close` queues the final frames (an error, ``connection_close``)
  and a close marker after what is already queued, and schedules an abort of
  the transport :data:`CLOSE_RELEASE_S` (+1 s) later: a peer that never reads
  again cannot hold a socket. :meth:`Outbox.finish` waits for the close frame.
- A :class:`Framing` turns the head of the queue into one wire frame (the JSON
  endpoints merge consecutive events into a ``batch``; Yjs frames go as they
  are) and accounts for it once sent.
- The fast path: what is queued during one event-loop iteration is written at
  the end of it (one ``call_soon`` per iteration for all connections,
  :class:`api.transport.direct.Flushes`; no task switch), all frames in one ``transport.write``
  (:class:`api.transport.direct.DirectWriter`), when the socket can take it
  at once.
- Otherwise a *writer task* sends one frame at a time through ASGI, and ends
  when the queue is empty: before the connection is set up, while the
  transport is paused (the peer reads slowly), and for the close. An idle
  connection has no writer task (a task and its coroutines are a few
  kilobytes a socket). A send that stalls longer than ``send_timeout_s``
  aborts the transport; the close marker ends the writing with the close
  frame. A writer that fails for any other reason (a frame it cannot encode)
  closes with 1011 and aborts the transport: never a reader without a writer.

The owner's state machine has a say in every close through ``may_close``
(:meth:`sync.session.Session.close` for the JSON endpoints): a close it refuses
is not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect

from tripsage_sync.api.transport.direct import SCOPE_KEY, DirectWriter, flushes
from tripsage_sync.api.transport.metrics import Metrics
from tripsage_sync.sync.errors import CLOSE_GOING_AWAY, CLOSE_SERVER_ERROR

__all__ = [
    "CLOSE_RELEASE_S",
    "Close",
    "Framing",
    "Outbox",
    "cancel_and_wait",
    "find_protocol",
    "find_transport",
    "receiver",
]

logger = logging.getLogger(__name__)

# After we start a close, the peer has this long to answer before the socket is aborted.
CLOSE_RELEASE_S: Final = 5.0

ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class Close:
    """The queue's last item: send the close frame and stop the writer."""

    code: int
    reason: str


class Framing(Protocol[ItemT]):
    """How a writer turns queued items into wire frames (the writer's strategy)."""

    def frame(self, item: ItemT, queue: deque[ItemT | Close]) -> str | bytes:
        """The wire frame for ``item``; it may take more items off the head of ``queue``."""
        ...

    def sent(self, frame: str | bytes) -> None:
        """``frame`` went out: account for it."""
        ...


def find_protocol(websocket: WebSocket) -> DirectWriter | None:
    """Our uvicorn protocol behind ``websocket`` (it puts itself in the scope's extensions,
    :data:`api.transport.direct.SCOPE_KEY`); ``None`` for any other server."""
    extensions = websocket.scope.get("extensions") or {}
    owner = extensions.get(SCOPE_KEY)
    return owner if isinstance(owner, DirectWriter) else None


def receiver(websocket: WebSocket) -> Callable[[], Awaitable[Mapping[str, Any]]]:
    """How to read ``websocket``'s next ASGI message: our protocol's own ``receive``
    (uvicorn's queue, :func:`find_protocol`) when it is there, skipping Starlette's
    wrapper and its state checks (one coroutine and a few checks a frame); else
    Starlette's. The caller reads until ``websocket.disconnect`` and then stops."""
    direct = find_protocol(websocket)
    if direct is not None:
        return direct.receive
    return websocket.receive


def find_transport(websocket: WebSocket) -> asyncio.Transport | None:
    """The server's transport behind ``websocket``, if any.

    ASGI has no "abort"; our uvicorn protocol holds the transport
    (:func:`find_protocol`). Elsewhere, if uvicorn's ``send`` is a bound method of
    its protocol, that one's; without either we fall back to a plain close.
    """
    direct = find_protocol(websocket)
    if direct is not None:
        return direct.transport
    send: Any = getattr(websocket, "_send", None)
    for _ in range(5):
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if isinstance(transport, asyncio.BaseTransport):
            return transport  # type: ignore[return-value]
        send = getattr(send, "__wrapped__", None)
        if send is None:
            break
    return None


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until they have finished: the owner's duty for every task
    it starts (a pending task left behind is destroyed with its connection)."""
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())


def _always(code: int) -> bool:
    return True


class Outbox(Generic[ItemT]):
    """A bounded outbound queue with a slow-consumer policy, and its writer."""

    __slots__ = (
        "_carry",
        "_direct",
        "_done",
        "_finished",
        "_flush_due",
        "_flushes",
        "_framing",
        "_may_close",
        "_queue",
        "_task",
        "_transport",
        "log",
        "metrics",
        "open",
        "send_timeout_s",
        "size",
        "websocket",
    )

    def __init__(
        self,
        websocket: WebSocket,
        *,
        size: int,
        send_timeout_s: float,
        metrics: Metrics,
        log: logging.LoggerAdapter[logging.Logger],
        may_close: Callable[[int], bool] = _always,
    ) -> None:
        self.websocket = websocket
        self.size = size
        self.send_timeout_s = send_timeout_s
        self.metrics = metrics
        self.log = log
        self._may_close = may_close
        # False once a close started or the transport was lost: ``put`` refuses.
        self.open = True
        # Made by the first item, dropped when written out (an empty deque is 760 bytes).
        self._queue: deque[ItemT | Close] | None = None
        self._transport = find_transport(websocket)
        self._direct = find_protocol(websocket)
        self._framing: Framing[ItemT] | None = None  # set by ``start``
        self._task: asyncio.Task[None] | None = None  # the writer task, while it runs
        self._done = False  # the writer is over: the close frame went, or it gave up
        self._finished: asyncio.Future[None] | None = None  # ``finish`` waits on it
        self._flush_due = False  # a fast-path flush is scheduled for this iteration
        self._flushes = flushes(asyncio.get_running_loop())
        # A frame the fast path could not encode: the writer sends it (and fails).
        self._carry: str | bytes | None = None

    def __len__(self) -> int:
        return 0 if self._queue is None else len(self._queue)

    def start(self, framing: Framing[ItemT]) -> None:
        """Begin writing, with ``framing``: what was queued before goes first."""
        self._framing = framing
        if self._queue:
            self._wake()

    async def stop(self) -> None:
        """The connection is over: stop the writer task, if one runs, and wait for it."""
        self._over()
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def finish(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the writer to be over (after a close: the close
        frame sent). ``False`` if it was not."""
        if not self._done:
            if self._finished is None:
                self._finished = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self._finished)
        return self._done

    def _over(self) -> None:
        self._done = True
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def put(self, item: ItemT, *, droppable: bool = False) -> bool:
        """Queue ``item``; never blocks. ``False`` if not queued (closed, dropped, full)."""
        if not self.open:
            return False
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self.size:
            if droppable:
                return False
            self.log.warning("slow consumer: %d frames queued; closing", len(queue))
            self.metrics.slow_consumers += 1
            queue.clear()
            self.close(CLOSE_GOING_AWAY, "slow consumer")
            return False
        queue.append(item)
        self._wake()
        return True

    def put_first(self, *items: ItemT) -> None:
        """Queue ``items``, in order, ahead of everything queued (not limited)."""
        if self._queue is None:
            self._queue = deque()
        self._queue.extendleft(reversed(items))
        self._wake()

    def _wake(self) -> None:
        """Have the queue written: by the fast path at the end of this loop iteration when
        it can be, else by the writer task (which takes what is queued while it runs)."""
        if self._framing is None or self._task is not None or self._done:
            return
        if self._direct is None:
            self._start_writer()
        elif not self._flush_due:
            self._flush_due = True
            self._flushes.add(self)

    def _start_writer(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write())

    def flush(self) -> None:
        """The fast path (module docstring): every queued frame, in one write."""
        self._flush_due = False
        if self._task is not None or self._done:
            return  # the writer task takes it
        direct, framing, queue = self._direct, self._framing, self._queue
        if direct is not None and framing is not None and direct.can_write():
            chunks: list[bytes] = []
            try:
                while queue and not isinstance(queue[0], Close):
                    frame = framing.frame(queue.popleft(), queue)  # type: ignore[arg-type]
                    try:
                        chunks.append(direct.message_bytes(frame))
                    except ValueError:  # a text that cannot be encoded (a lone surrogate)
                        self._carry = frame  # the writer sends it, fails and closes with 1011
                        break
                    framing.sent(frame)
            finally:
                if chunks:
                    direct.write_now(b"".join(chunks))
        if queue or self._carry is not None:
            self._start_writer()
        else:
            self._queue = None  # written out

    def close(self, code: int, reason: str, *final: ItemT) -> bool:
        """Send ``final`` after the queued items, then close with ``code``.

        ``False`` if a close had started already or the owner refused it.
        """
        if not self.open or not self._may_close(code):
            return False
        self.open = False
        self.log.info("closing: code=%d reason=%s", code, reason, extra={"code": code})
        if self._queue is None:
            self._queue = deque()
        self._queue.extend(final)
        self._queue.append(Close(code, reason))
        self._wake()
        if self._transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_RELEASE_S + 1, self.abort)
        return True

    def abort(self) -> None:
        """Drop the TCP connection now (unsent data is discarded)."""
        if self._transport is not None and not self._transport.is_closing():
            self.log.info("aborting transport")
        if self._transport is not None:
            self._transport.abort()

    async def _write(self) -> None:
        """The writer task: send frames until the queue is empty, the close marker, a
        stall or a lost peer."""
        over = False
        try:
            over = await self._write_queued()
        finally:
            # Cleared before the task ends, in the same step as the empty queue was seen:
            # whatever is queued after this starts the fast path or a new writer.
            self._task = None
            if not self._queue:
                self._queue = None  # written out
            if over:
                self._over()

    async def _write_queued(self) -> bool:
        """Write until the queue is empty (``False``) or the writer is over (``True``)."""
        if self._queue is None:
            self._queue = deque()
        ws, queue, timeout = self.websocket, self._queue, self.send_timeout_s
        framing = self._framing
        assert framing is not None, "the writer runs only after start()"
        while queue or self._carry is not None:
            frame, self._carry = self._carry, None
            if frame is None:
                item = queue.popleft()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel
                # that arrives as the send completes, and the writer would wait for ever.
                if isinstance(item, Close):
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(timeout):
                            await ws.close(item.code, item.reason)
                    return True
                frame = framing.frame(item, queue)
            try:
                async with asyncio.timeout(timeout):
                    if isinstance(frame, str):
                        await ws.send_text(frame)
                    else:
                        await ws.send_bytes(frame)
            except TimeoutError:
                self.log.warning("send stalled for %.1f s; aborting", timeout)
                self.metrics.slow_consumers += 1
                self.open = False
                self._may_close(CLOSE_GOING_AWAY)
                self.abort()
                return True
            except (OSError, WebSocketDisconnect) as exc:  # the peer went away mid-send
                self.log.debug("send failed: the peer is gone (%s)", type(exc).__name__)
                self.open = False
                self.abort()
                return True
            except Exception:
                # Our bug (e.g. a frame that cannot be encoded): the writer is dead, so the
                # connection must go too, never stay half-open with a reader and no writer.
                self.log.warning("writer failed; closing with 1011", exc_info=True)
                self.open = False
                self._may_close(CLOSE_SERVER_ERROR)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(timeout):
                        await ws.close(CLOSE_SERVER_ERROR, "server error")
                self.abort()
                return True
            framing.sent(frame)
        return False
