"""The :class:`SyncClient` itself: the public face, and the dispatch of server events.

It composes one object a concern, each in its module: the connection loop
(:class:`~tripsage_sync.client.connection.Connector`), the ordered queue and its
writer (:class:`~tripsage_sync.client.outbox.Outbox`), the trip views with their
joins and requests (:class:`~tripsage_sync.client.views.TripViews`), the live token
(:class:`~tripsage_sync.client.token.TokenSource`), the heartbeat and the meter
(:class:`~tripsage_sync.client.heartbeat.Heartbeat`,
:class:`~tripsage_sync.client.metrics.Meter`), sharing one
:class:`~tripsage_sync.client.state.ClientState`. Each frame is parsed once into a
typed event (:mod:`tripsage_sync.client.events`), routed by ``match`` to the
concern it belongs to; listeners still receive the raw event dict.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, assert_never

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tripsage_sync.client.base import (
    MAX_RECONNECT_ATTEMPTS,
    MAX_RECONNECT_DELAY_S,
    OPEN_TIMEOUT_S,
    RECONNECT_DELAY_S,
    iso_ms,
)
from tripsage_sync.client.connection import Connector
from tripsage_sync.client.events import (
    AuthExpiring,
    AuthRefreshed,
    ConnectionClose,
    ConnectionErrorEvent,
    ConnectionEstablished,
    ConnectionEvent,
    ConnectionEventBase,
    ConnectionHeartbeat,
    ErrorDetails,
    ErrorEvent,
    OutcomeEvent,
    OutcomeEventBase,
    TripEventBase,
    UnknownEvent,
    decode_frame,
    parse_event,
)
from tripsage_sync.client.heartbeat import Heartbeat
from tripsage_sync.client.listeners import Listener, Listeners
from tripsage_sync.client.metrics import ClientMetrics, Meter
from tripsage_sync.client.outbox import Outbox
from tripsage_sync.client.queue import PendingUpdate, QueuedMessage
from tripsage_sync.client.state import ClientState
from tripsage_sync.client.token import TokenSource
from tripsage_sync.client.views import TripView, TripViews

__all__ = ["Listener", "SyncClient"]

logger = logging.getLogger(__name__)


class SyncClient:
    """A TripSage Sync connection that survives going offline. See the package doc.

    Use it as ``async with SyncClient(url, token) as client:`` (connects, and
    closes on exit) or call :meth:`start` / :meth:`connect` and :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        session_id: str | None = None,
        endpoint: str = "chat",
        channels: Sequence[str] = (),
        queue_path: str | Path | None = None,
        max_reconnect_attempts: int | None = MAX_RECONNECT_ATTEMPTS,
        fail_unreached: bool = False,
        reconnect_delay_s: float = RECONNECT_DELAY_S,
        max_reconnect_delay_s: float = MAX_RECONNECT_DELAY_S,
        heartbeat_interval_s: float | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        token_provider: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.session_id = session_id or f"client-{uuid.uuid4().hex[:12]}"
        self.ws_url = f"{url.rstrip('/')}/ws/{endpoint}/{self.session_id}"
        self.channels = list(channels)
        self.max_reconnect_attempts = max_reconnect_attempts
        self.fail_unreached = fail_unreached
        self.reconnect_delay_s = reconnect_delay_s
        self.max_reconnect_delay_s = max_reconnect_delay_s
        self.open_timeout_s = open_timeout_s
        self._ids = itertools.count(1)
        self._state = ClientState()
        self._meter = Meter()
        self._token = TokenSource(token, token_provider)
        self._views = TripViews(self._next_id)
        self._outbox = Outbox(self._state, self._views, queue_path)
        self._heartbeat = Heartbeat(
            self._state, self._meter, self._outbox.enqueue, self._next_id, heartbeat_interval_s
        )
        self._connector = Connector(
            self,
            state=self._state,
            token=self._token,
            meter=self._meter,
            serve=self._serve,
            fail=self._fail,
            disconnected=self._on_disconnected,
            sleep=sleep,
        )
        self._task: asyncio.Task[None] | None = None
        self._listeners = Listeners()

    @property
    def state(self) -> str:
        """idle, connecting, resuming, open, waiting (to reconnect), closed or failed."""
        return self._state.state

    @property
    def error(self) -> BaseException | None:
        """What ended the client (``state == "failed"``)."""
        return self._state.error

    @property
    def user_id(self) -> str | None:
        return self._connector.user_id

    @property
    def connection_id(self) -> str | None:
        return self._connector.connection_id

    @property
    def updates(self) -> dict[str, PendingUpdate]:
        """Every optimistic update of this client (and of its queue file), by id."""
        return self._outbox.updates

    @property
    def _latencies(self) -> deque[float]:  # the latency samples, read by tests
        return self._meter.latencies

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once (offline-first)."""
        if self._task is None:
            run = self._connector.run()
            self._task = asyncio.create_task(run, name=f"sync-client-{self.session_id}")

    async def connect(self) -> None:
        """:meth:`start` and wait until connected; raises what ended the client.

        Like every wait of this class it has no timeout of its own: bound it
        with ``asyncio.timeout`` (the backoff can retry for a long time).
        """
        await self.start()
        await self.wait_until(lambda: self.state == "open" or self.error is not None)
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Close politely (1000); pending updates stay in the queue file."""
        await self._connector.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._outbox.compact()
        self._state.set("closed")

    async def __aenter__(self) -> SyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def abort(self) -> None:
        """Cut the TCP connection without a close handshake (the client reconnects)."""
        self._connector.abort()

    # -- sending -------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message (``{type, payload, ...}``); kept in the queue file while offline."""
        self._outbox.send(message, persist=self.state != "open")

    def update_field(
        self,
        trip_id: str,
        field_name: str,
        value: Any,
        *,
        previous_value: Any = ...,
        expected_version: int | None = None,
        client_timestamp: str | int | None = None,
        update_id: str | None = None,
    ) -> PendingUpdate:
        """Start an optimistic update; its outcome arrives on the returned object.

        ``expected_version`` defaults to the version this client knows of the
        trip (chained after an earlier pending update of the same field);
        ``client_timestamp`` to now (an ISO string or Unix milliseconds).
        """
        view = self.trip(trip_id)
        key = field_name.removeprefix("trip.")
        chained = any(u.field_key == key for u in self._outbox.pending_of(trip_id))
        if expected_version is None and not chained:
            expected_version = view.version
        stamp = client_timestamp if client_timestamp is not None else int(time.time() * 1000)
        update = PendingUpdate(
            update_id=update_id or f"u-{uuid.uuid4().hex}",
            trip_id=trip_id,
            field_name=field_name,
            value=value,
            client_timestamp=stamp if isinstance(stamp, str) else iso_ms(stamp),
            expected_version=expected_version,
            previous_value=None if previous_value is ... else previous_value,
            has_previous_value=previous_value is not ...,
        )
        self._outbox.add(update)
        self._state.notify()
        return update

    async def join(self, trip_id: str) -> TripView:
        """Join the trip's collaboration session (again after every reconnect)."""
        self.trip(trip_id).joined = True
        waiter = self._views.wait_joined(trip_id)
        if self.state in ("resuming", "open"):  # otherwise the next resume joins
            self._outbox.enqueue(QueuedMessage(self._views.join_message(trip_id)))
        return await waiter

    def leave(self, trip_id: str) -> None:
        view = self.trip(trip_id)
        if view.joined:
            view.joined = False
            self.send({"type": "trip_collaboration_leave", "payload": {"tripId": trip_id}})

    async def sync(self, trip_id: str, since_version: int | None = None) -> dict[str, Any]:
        """``sync_request`` now; the ``sync_complete`` payload once the view caught up."""
        since = self.trip(trip_id).version if since_version is None else since_version
        message = self._views.sync_message(trip_id, since)
        waiter = self._views.wait_answer(message["id"])
        self._outbox.enqueue(QueuedMessage(message))
        return await waiter

    async def ping(self) -> float:
        """Round trip of a ``connection_heartbeat`` in milliseconds."""
        return await self._heartbeat.ping()

    # -- reading -------------------------------------------------------------------

    def trip(self, trip_id: str) -> TripView:
        return self._views.trip(trip_id)

    def optimistic_fields(self, trip_id: str) -> dict[str, Any]:
        """The trip as the user sees it: server values with pending updates on top."""
        fields = dict(self.trip(trip_id).fields)
        for update in self._outbox.pending_of(trip_id):
            fields[update.field_key] = update.value
        return fields

    def pending_updates(self) -> list[PendingUpdate]:
        return self._outbox.pending()

    def metrics(self) -> ClientMetrics:
        return self._meter.metrics(queued_messages=len(self._outbox))

    def on(self, type_: str, callback: Listener) -> None:
        """Call ``callback(event)`` for each server event of ``type_`` (``"*"``: all)."""
        self._listeners.on(type_, callback)

    def on_outcome(self, callback: Callable[[PendingUpdate], None]) -> None:
        """Call ``callback(update)`` once per update, when its outcome arrives."""
        self._listeners.on_outcome(callback)

    def events(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every server event from now on."""
        return self._listeners.subscribe()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every event or send."""
        await self._state.wait_until(predicate)

    # -- one connection (the Connector's serve) ----------------------------------------

    async def _serve(self, ws: ClientConnection) -> None:
        """Resume, then read until the connection ends, with its writer and heartbeat."""
        pending_trips = {u.trip_id for u in self._outbox.pending()}
        self._outbox.resume(self._views.resume_messages(pending_trips))
        send_text = functools.partial(self._connector.send, ws)
        writer = asyncio.create_task(self._outbox.drain(send_text), name="sync-client-writer")
        beats = asyncio.create_task(
            self._heartbeat.run(self.open_timeout_s), name="sync-client-heartbeat"
        )
        try:
            async for raw in ws:
                self._receive(raw)
        finally:
            for task in (writer, beats):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await task

    def _receive(self, raw: str | bytes) -> None:
        self._meter.count_received(raw)
        events = decode_frame(raw)
        if events is None:
            self._meter.errors += 1
            logger.warning("undecodable frame of %d bytes", len(raw))
            return
        for event in events:
            self._dispatch(event)
        self._state.notify()

    def _dispatch(self, raw: dict[str, Any]) -> None:
        """Parse once, act by type, then hand the raw event to listeners and subscribers."""
        event = parse_event(raw)
        payload = raw.get("payload") or {}
        match event:
            case ConnectionEventBase():
                self._on_connection_event(event)
            case TripEventBase():
                self._views.receive(event, payload)
            case OutcomeEventBase():
                self._on_outcome(event, payload)
            case ErrorEvent():
                self._meter.errors += 1
                self._views.refused(event.payload.details or ErrorDetails(), payload)
            case UnknownEvent():
                pass  # a newer server's event, or one the client cannot use: listeners only
            case _:
                assert_never(event)
        self._listeners.event(raw)

    def _on_connection_event(self, event: ConnectionEvent) -> None:
        match event:
            case ConnectionEstablished():
                limits = event.payload.limits
                self._heartbeat.learn_interval(limits.heartbeat_interval if limits else None)
            case ConnectionHeartbeat():
                self._heartbeat.answered()
            case AuthExpiring():
                ws = self._connector.ws
                if ws is not None:
                    send_text = functools.partial(self._connector.send, ws)
                    self._token.refresh_soon(send_text, self._next_id)
            case AuthRefreshed():
                logger.info("token refreshed until %s", event.payload.expires_at)
            case ConnectionErrorEvent():
                if event.payload.error_code == "TOKEN_EXPIRED":
                    self._token.expired = True
            case ConnectionClose():
                self._connector.reconnect_after_s = event.payload.reconnect_after or 0.0
            case _:
                assert_never(event)

    def _on_outcome(self, event: OutcomeEvent, payload: dict[str, Any]) -> None:
        update = self._outbox.settle(event, payload)
        if update is None:
            return
        self._views.outcome(update)
        self._listeners.outcome(update)

    def _on_disconnected(self) -> None:
        self._heartbeat.lost()
        self._views.disconnected()
        self._state.set("waiting")

    def _fail(self, exc: BaseException) -> None:
        self._state.fail(exc)
        self._views.fail(exc)

    def _next_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"
