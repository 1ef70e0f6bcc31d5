"""The :class:`SyncClient` itself: connection, resume, queue drain, dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tripsage_sync.client.base import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    HIGH_FREQUENCY_PER_S,
    LATENCY_SAMPLES,
    MAX_RECONNECT_ATTEMPTS,
    MAX_RECONNECT_DELAY_S,
    NO_RECONNECT_CLOSE_CODES,
    OPEN_TIMEOUT_S,
    RECONNECT_DELAY_S,
    AuthenticationFailed,
    RequestRefused,
    iso_ms,
)
from tripsage_sync.client.metrics import ClientMetrics
from tripsage_sync.client.queue import (
    SERVER_VALUE_KEY,
    STATUS_BY_OUTCOME,
    PendingUpdate,
    QueuedMessage,
    QueueFile,
    UpdateRef,
    UpdateStatus,
    settled,
)
from tripsage_sync.client.views import TripView

__all__ = ["Listener", "SyncClient"]

logger = logging.getLogger(__name__)


Listener = Callable[[dict[str, Any]], None]


class SyncClient:
    """A TripSage Sync connection that survives going offline. See the module doc.

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
        reconnect_delay_s: float = RECONNECT_DELAY_S,
        max_reconnect_delay_s: float = MAX_RECONNECT_DELAY_S,
        heartbeat_interval_s: float | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        token_provider: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.session_id = session_id or f"client-{uuid.uuid4().hex[:12]}"
        self.ws_url = f"{url.rstrip('/')}/ws/{endpoint}/{self.session_id}"
        self._token = token
        self._token_provider = token_provider
        self._refresher: asyncio.Task[None] | None = None
        self._token_expired = False  # the server said TOKEN_EXPIRED on this connection
        self.channels = list(channels)
        self.max_reconnect_attempts = max_reconnect_attempts
        self.reconnect_delay_s = reconnect_delay_s
        self.max_reconnect_delay_s = max_reconnect_delay_s
        self.open_timeout_s = open_timeout_s
        self._sleep = sleep  # the backoff's (a seam for tests)
        self._heartbeat_s = heartbeat_interval_s
        self.state = "idle"  # idle, connecting, resuming, open, closed, failed
        self.error: BaseException | None = None
        self.user_id: str | None = None
        self.connection_id: str | None = None
        self.updates: dict[str, PendingUpdate] = {}
        self._trips: dict[str, TripView] = {}
        self._queue: deque[QueuedMessage | UpdateRef] = deque()
        self._queue_file = QueueFile(queue_path) if queue_path is not None else None
        self._seq = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._tick = asyncio.Event()
        self._listeners: dict[str, list[Listener]] = {}
        self._outcome_listeners: list[Callable[[PendingUpdate], None]] = []
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        self._joins: dict[str, list[asyncio.Future[TripView]]] = {}
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ping: tuple[float, asyncio.Future[float]] | None = None
        self._reconnect_after_s = 0.0
        self._closing = False
        self._counter = 0
        # Metrics.
        self._sent = self._received = self._bytes_sent = self._bytes_received = 0
        self._connected_total_s = 0.0
        self._connected_since: float | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._reconnections = 0
        self._errors = 0
        if self._queue_file is not None:
            self._load_queue(self._queue_file)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once (offline-first)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sync-client-{self.session_id}")

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
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue_file is not None:
            self._queue_file.rewrite(self.pending_updates(), self._unsent_messages())
        self._set_state("closed")

    async def __aenter__(self) -> SyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def abort(self) -> None:
        """Cut the TCP connection without a close handshake (the client reconnects)."""
        if self._ws is not None:
            self._ws.transport.abort()

    # -- sending -------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message (``{type, payload, ...}``); kept in the queue file while offline."""
        seq = None
        if self.state != "open" and self._queue_file is not None:
            self._seq += 1
            seq = self._seq
            self._queue_file.append({"k": "message", "seq": seq, "message": message})
        self._enqueue(QueuedMessage(message, seq))

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
        chained = any(u.field_key == key for u in self._pending_of(trip_id))
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
        if self._queue_file is not None:
            self._queue_file.append({"k": "update", "update": update.to_json()})
        self.updates[update.update_id] = update
        self._enqueue(UpdateRef(update.update_id))
        self._notify()
        return update

    async def join(self, trip_id: str) -> TripView:
        """Join the trip's collaboration session (again after every reconnect)."""
        view = self.trip(trip_id)
        view.joined = True
        waiter: asyncio.Future[TripView] = asyncio.get_running_loop().create_future()
        self._joins.setdefault(trip_id, []).append(waiter)
        if self.state in ("resuming", "open"):  # otherwise the next resume joins
            self._enqueue(QueuedMessage(self._join_message(trip_id)))
        return await waiter

    def leave(self, trip_id: str) -> None:
        view = self.trip(trip_id)
        if view.joined:
            view.joined = False
            self.send({"type": "trip_collaboration_leave", "payload": {"tripId": trip_id}})

    async def sync(self, trip_id: str, since_version: int | None = None) -> dict[str, Any]:
        """``sync_request`` now; the ``sync_complete`` payload once the view caught up."""
        since = self.trip(trip_id).version if since_version is None else since_version
        message = self._sync_message(trip_id, since)
        waiter = self._request_future(message["id"])
        self._enqueue(QueuedMessage(message))
        return await waiter

    async def ping(self) -> float:
        """Round trip of a ``connection_heartbeat`` in milliseconds."""
        if self._ping is None:
            waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._ping = (0.0, waiter)
            heartbeat = {"type": "connection_heartbeat", "id": self._next_id("hb")}
            self._enqueue(QueuedMessage(heartbeat, on_sent=self._ping_sent))
        return await asyncio.shield(self._ping[1])

    # -- reading -------------------------------------------------------------------

    def trip(self, trip_id: str) -> TripView:
        view = self._trips.get(trip_id)
        if view is None:
            view = self._trips[trip_id] = TripView(trip_id)
        return view

    def optimistic_fields(self, trip_id: str) -> dict[str, Any]:
        """The trip as the user sees it: server values with pending updates on top."""
        fields = dict(self.trip(trip_id).fields)
        for update in self._pending_of(trip_id):
            fields[update.field_key] = update.value
        return fields

    def pending_updates(self) -> list[PendingUpdate]:
        return [u for u in self.updates.values() if u.status is UpdateStatus.PENDING]

    def metrics(self) -> ClientMetrics:
        now = time.monotonic()
        connected_s = self._connected_total_s
        if self._connected_since is not None:
            connected_s += now - self._connected_since
        rate = (self._sent + self._received) / connected_s if connected_s > 0 else 0.0
        latencies = list(self._latencies)
        return ClientMetrics(
            messages_sent=self._sent,
            messages_received=self._received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            connection_duration_ms=int(connected_s * 1000),
            messages_per_second=rate,
            average_message_size=self._bytes_sent / self._sent if self._sent else 0.0,
            queued_messages=len(self._queue),
            is_high_frequency=rate > HIGH_FREQUENCY_PER_S,
            latency_ms=latencies[-1] if latencies else None,
            average_latency_ms=sum(latencies) / len(latencies) if latencies else None,
            reconnections=self._reconnections,
            errors=self._errors,
        )

    def on(self, type_: str, callback: Listener) -> None:
        """Call ``callback(event)`` for each server event of ``type_`` (``"*"``: all)."""
        self._listeners.setdefault(type_, []).append(callback)

    def on_outcome(self, callback: Callable[[PendingUpdate], None]) -> None:
        """Call ``callback(update)`` once per update, when its outcome arrives."""
        self._outcome_listeners.append(callback)

    def events(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every server event from now on."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every event or send."""
        while not predicate():
            await self._tick.wait()

    # -- the connection loop ---------------------------------------------------------

    async def _run(self) -> None:
        # The spec's reconnectAttempts: 0 connecting afresh, n before the n-th retry.
        attempt = 0
        expired_retry = False
        while not self._closing:
            if attempt > 0 and not await self._backoff(attempt):
                return
            self._set_state("connecting")
            try:
                ws = await connect(
                    self.ws_url, open_timeout=self.open_timeout_s, max_size=None, compression=None
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                attempt += 1
                logger.info("connect failed (attempt %d): %s", attempt, type(exc).__name__)
                continue
            attempt = 0
            try:
                code = await self._session(ws)
            except AuthenticationFailed as exc:
                logger.warning("authentication refused: %s", exc.code)
                if exc.code == "TOKEN_EXPIRED" and not expired_retry:
                    expired_retry = True  # once: a provider of stale tokens must not spin
                    if await self._fresh_token() is not None:
                        continue
                self._fail(exc)
                return
            expired_retry = False
            if self._closing:
                return
            if code == 3000 and self._token_expired and await self._fresh_token() is not None:
                logger.info("token expired; reconnecting with a fresh one")
                self._reconnections += 1
                continue
            if code in NO_RECONNECT_CLOSE_CODES:
                logger.info("closed by the server with %s; not reconnecting", code)
                self._fail(ConnectionError(f"closed by the server ({code})"))
                return
            self._reconnections += 1
            attempt = 1

    async def _backoff(self, attempt: int) -> bool:
        """Sleep before attempt ``attempt``; ``False`` once attempts are exhausted."""
        limit = self.max_reconnect_attempts
        if limit is not None and attempt > limit:
            self._fail(ConnectionError(f"gave up after {limit} reconnection attempts"))
            return False
        delay = min(self.reconnect_delay_s * 2 ** (attempt - 1), self.max_reconnect_delay_s)
        delay = max(delay, min(self._reconnect_after_s, self.max_reconnect_delay_s))
        self._reconnect_after_s = 0.0
        self._set_state("waiting")
        await self._sleep(delay)  # the backoff itself, not a wait for an event
        return True

    async def _session(self, ws: ClientConnection) -> int | None:
        """Authenticate, resume, then read until the connection ends; its close code."""
        self._ws = ws
        writer: asyncio.Task[None] | None = None
        beats: asyncio.Task[None] | None = None
        self._token_expired = False
        try:
            auth = {"token": self._token, "sessionId": self.session_id, "channels": self.channels}
            await self._send_text(ws, json.dumps(auth))
            response = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout_s))
            self._count_received(response)
            if response.get("success") is not True:
                raise AuthenticationFailed(
                    str(response.get("code")), str(response.get("error", "refused"))
                )
            self.user_id = response.get("userId")
            self.connection_id = response.get("connectionId")
            self._connected_since = time.monotonic()
            self._set_state("resuming")
            self._plan_resume()
            writer = asyncio.create_task(self._writer(ws), name="sync-client-writer")
            beats = asyncio.create_task(self._heartbeats(), name="sync-client-heartbeat")
            async for raw in ws:
                self._receive(raw)
        except (ConnectionClosed, TimeoutError, OSError):
            pass
        finally:
            for task in (writer, beats, self._refresher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                        await task
            self._ws = None
            self._refresher = None
            if self._connected_since is not None:
                self._connected_total_s += time.monotonic() - self._connected_since
                self._connected_since = None
            self._on_disconnected()
        code = ws.close_code
        logger.info("disconnected (close code %s)", code)
        return code

    def _plan_resume(self) -> None:
        """Resume messages, then pending updates, then the rest of the queue."""
        first: list[QueuedMessage | UpdateRef] = []
        for view in self._trips.values():
            has_pending = any(True for _ in self._pending_of(view.trip_id))
            # A view never filled (a restart with pending updates) syncs from 0.
            if (view.version > 0 and view.joined) or has_pending:
                first.append(QueuedMessage(self._sync_message(view.trip_id, view.version)))
            if view.joined:
                first.append(QueuedMessage(self._join_message(view.trip_id)))
        first += [UpdateRef(u.update_id) for u in self.pending_updates()]
        first += [item for item in self._queue if isinstance(item, QueuedMessage)]
        self._queue = deque(first)
        self._wake.set()

    async def _writer(self, ws: ClientConnection) -> None:
        """The one writer of a connection: drains the queue in order."""
        while True:
            while not self._queue:
                if self.state == "resuming":
                    self._set_state("open")
                self._wake.clear()
                await self._wake.wait()
            item = self._queue[0]
            if isinstance(item, UpdateRef):
                update = self.updates.get(item.update_id)
                if update is None or update.status is not UpdateStatus.PENDING:
                    self._queue.popleft()
                    continue
                before = self._predecessor(update)
                if before is not None:  # chained: wait for the earlier outcome
                    await self.wait_until(functools.partial(settled, before))
                    continue
                if update.expected_version is None:
                    update.expected_version = self.trip(update.trip_id).version
                    if self._queue_file is not None:
                        self._queue_file.append(
                            {
                                "k": "assign",
                                "updateId": update.update_id,
                                "expectedVersion": update.expected_version,
                            }
                        )
                await self._send_text(ws, json.dumps(update.message()))
                update.sends += 1
            else:
                await self._send_text(ws, json.dumps(item.message))
                if item.on_sent is not None:
                    item.on_sent()
                if item.seq is not None and self._queue_file is not None:
                    self._queue_file.append({"k": "sent", "seq": item.seq})
            self._queue.popleft()
            self._notify()

    async def _heartbeats(self) -> None:
        if self._heartbeat_s is None:
            # The server's interval comes in connection_established, right after the auth
            # reply: a first ping after the 25 s default would be late for a shorter one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.open_timeout_s):
                    await self.wait_until(lambda: self._heartbeat_s is not None)
        while True:
            interval = self._heartbeat_s or DEFAULT_HEARTBEAT_INTERVAL_S
            await asyncio.sleep(interval)  # a period, not a wait for an event
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.ping()

    def _start_refresh(self) -> None:
        """On ``auth_expiring``: one refresh at a time, owned by the connection."""
        ws = self._ws
        if self._token_provider is None or ws is None:
            return
        if self._refresher is not None and not self._refresher.done():
            return
        self._refresher = asyncio.create_task(self._refresh(ws), name="sync-client-refresh")

    async def _refresh(self, ws: ClientConnection) -> None:
        token = await self._fresh_token()
        if token is None:
            return  # the server closes at exp; the reconnect asks the provider again
        payload = {"token": token}
        message = {"id": self._next_id("refresh"), "type": "auth_refresh", "payload": payload}
        await self._send_text(ws, json.dumps(message))  # ahead of the queue: exp will not wait

    async def _fresh_token(self) -> str | None:
        """A new token from ``token_provider`` (kept for reconnects); ``None`` if none."""
        if self._token_provider is None:
            return None
        try:
            token = await self._token_provider()
        except Exception:  # the app's callback: report, never crash the client
            logger.warning("token provider failed", exc_info=True)
            return None
        if not isinstance(token, str) or not token:
            logger.warning("token provider returned no token")
            return None
        self._token = token
        return token

    async def _send_text(self, ws: ClientConnection, text: str) -> None:
        await ws.send(text)
        self._sent += 1
        self._bytes_sent += len(text.encode())

    # -- receiving -------------------------------------------------------------------

    def _count_received(self, raw: Any) -> None:
        self._received += 1
        text = raw if isinstance(raw, str | bytes) else json.dumps(raw)
        self._bytes_received += len(text.encode() if isinstance(text, str) else text)

    def _receive(self, raw: str | bytes) -> None:
        self._count_received(raw)
        try:
            message = json.loads(raw)
        except ValueError:
            self._errors += 1
            logger.warning("undecodable frame of %d bytes", len(raw))
            return
        if message.get("type") == "batch":
            for inner in message.get("payload", {}).get("messages", []):
                self._dispatch(inner)
        else:
            self._dispatch(message)
        self._notify()

    def _dispatch(self, event: dict[str, Any]) -> None:
        type_ = event.get("type")
        payload = event.get("payload") or {}
        view = self._trips.get(payload.get("tripId", "")) if isinstance(payload, dict) else None
        match type_:
            case "connection_established":
                interval = payload.get("limits", {}).get("heartbeatInterval")
                if self._heartbeat_s is None and isinstance(interval, int | float) and interval > 0:
                    self._heartbeat_s = float(interval)
            case "connection_heartbeat":
                if self._ping is not None and self._ping[0] > 0:
                    sent_at, waiter = self._ping
                    rtt_ms = (time.monotonic() - sent_at) * 1000
                    self._latencies.append(rtt_ms)
                    self._ping = None
                    if not waiter.done():
                        waiter.set_result(rtt_ms)
            case "auth_expiring":
                self._start_refresh()
            case "auth_refreshed":
                logger.info("token refreshed until %s", payload.get("expiresAt"))
            case "connection_error" if payload.get("errorCode") == "TOKEN_EXPIRED":
                self._token_expired = True
            case "connection_close":
                after = payload.get("reconnectAfter")
                self._reconnect_after_s = float(after) if isinstance(after, int | float) else 0.0
            case "collaboration_session_started" if view is not None:
                view.fields = dict(payload.get("fields", {}))
                view.version = int(payload.get("version", payload.get("serverVersion", 0)))
                view.permission_level = payload.get("permissionLevel")
                for joined in self._joins.pop(view.trip_id, []):
                    if not joined.done():
                        joined.set_result(view)
            case "trip_update_broadcast" if view is not None:
                if payload["version"] > view.version:
                    for name, change in payload.get("changes", {}).items():
                        view.fields[name] = change.get("newValue")
                    view.version = payload["version"]
            case "trip_snapshot" if view is not None:
                if payload["version"] >= view.version:
                    view.fields = dict(payload["fields"])
                    view.version = payload["version"]
            case "sync_complete" if view is not None:
                view.version = max(view.version, payload["version"])
                request = self._requests.pop(payload.get("requestId", ""), None)
                if request is not None and not request.done():
                    request.set_result(payload)
            case "trip_collaborator_presence" if view is not None:
                view.collaborators = list(payload.get("activeCollaborators", []))
            case "optimistic_update_confirmed" | "optimistic_update_rejected":
                self._on_outcome(type_, payload)
            case "optimistic_update_rollback":
                self._on_outcome(type_, payload)
            case "error":
                self._errors += 1
                self._on_error(payload)
            case _:
                pass
        for callback in self._listeners.get(str(type_), []) + self._listeners.get("*", []):
            try:
                callback(event)
            except Exception:
                logger.exception("listener for %s failed", type_)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _on_outcome(self, type_: str, payload: dict[str, Any]) -> None:
        update = self.updates.get(payload.get("updateId", ""))
        if update is None or update.status is not UpdateStatus.PENDING:
            logger.debug("outcome for an unknown or settled update ignored")
            return
        update.status = STATUS_BY_OUTCOME[type_]
        update.outcome = payload
        update.server_value = payload.get(SERVER_VALUE_KEY[type_])
        version = payload.get("serverVersion", payload.get("currentServerVersion"))
        update.server_version = version if isinstance(version, int) else None
        view = self.trip(update.trip_id)
        if update.status is not UpdateStatus.ROLLED_BACK and isinstance(version, int):
            if version > view.version:  # our own change is not broadcast back to us
                view.fields[update.field_key] = update.server_value
                view.version = version
        if self._queue_file is not None:
            self._queue_file.append({"k": "outcome", "updateId": update.update_id})
        for callback in self._outcome_listeners:
            try:
                callback(update)
            except Exception:
                logger.exception("outcome listener failed")

    def _on_error(self, payload: dict[str, Any]) -> None:
        details = payload.get("details") or {}
        request = self._requests.pop(str(details.get("messageId")), None)
        if request is not None and not request.done():
            request.set_exception(RequestRefused(payload))
        trip_id = details.get("tripId")
        if isinstance(trip_id, str) and str(details.get("messageId", "")).startswith("join-"):
            self.trip(trip_id).joined = False
            for waiter in self._joins.pop(trip_id, []):
                if not waiter.done():
                    waiter.set_exception(RequestRefused(payload))

    def _on_disconnected(self) -> None:
        if self._ping is not None and self._ping[0] > 0:
            self._ping = None  # its answer is lost with the connection
        for view in self._trips.values():
            view.collaborators = []
        self._set_state("waiting")

    # -- helpers -----------------------------------------------------------------------

    def _enqueue(self, item: QueuedMessage | UpdateRef) -> None:
        self._queue.append(item)
        self._wake.set()

    def _pending_of(self, trip_id: str) -> Iterable[PendingUpdate]:
        return (u for u in self.pending_updates() if u.trip_id == trip_id)

    def _predecessor(self, update: PendingUpdate) -> PendingUpdate | None:
        for other in self.pending_updates():
            if other is update:
                return None
            if other.trip_id == update.trip_id and other.field_key == update.field_key:
                return other
        return None

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}-{self._counter}"

    def _join_message(self, trip_id: str) -> dict[str, Any]:
        return {
            "id": f"join-{self._next_id(trip_id)}",
            "type": "collaboration_session_start",
            "payload": {"tripId": trip_id},
        }

    def _sync_message(self, trip_id: str, since: int) -> dict[str, Any]:
        return {
            "id": self._next_id("sync"),
            "type": "sync_request",
            "payload": {"tripId": trip_id, "sinceVersion": since},
        }

    def _request_future(self, message_id: str) -> asyncio.Future[dict[str, Any]]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[message_id] = waiter
        return waiter

    def _ping_sent(self) -> None:
        if self._ping is not None:
            self._ping = (time.monotonic(), self._ping[1])

    def _unsent_messages(self) -> list[tuple[int, dict[str, Any]]]:
        return [
            (item.seq, item.message)
            for item in self._queue
            if isinstance(item, QueuedMessage) and item.seq is not None
        ]

    def _load_queue(self, queue_file: QueueFile) -> None:
        updates, messages = queue_file.load()
        for update in updates:
            self.updates[update.update_id] = update
            self.trip(update.trip_id)  # resumed (from version 0) on connecting
            self._queue.append(UpdateRef(update.update_id))
        for seq, message in messages:
            self._queue.append(QueuedMessage(message, seq))
        self._seq = max((seq for seq, _ in messages), default=0)
        queue_file.rewrite(updates, messages)
        if updates or messages:
            logger.info("queue file: %d update(s), %d message(s)", len(updates), len(messages))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            logger.debug("state %s -> %s", self.state, state)
            self.state = state
            self._notify()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self._set_state("failed")
        for futures in self._joins.values():
            for waiter in futures:
                if not waiter.done():
                    waiter.set_exception(exc)
        self._joins.clear()
        for request in self._requests.values():
            if not request.done():
                request.set_exception(exc)
        self._requests.clear()

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()
