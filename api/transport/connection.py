"""The connection driver: runs one JSON WebSocket (chat or agent-status).

Theory of operation
-------------------
Three tasks per connection, all owned by :meth:`Connection.run`:

- the *reader* (the ``run`` task itself) receives frames, enforces the size
  limit, authenticates the first frame, validates the rest through
  :mod:`sync.wire` and dispatches them in order;
- the *writer* drains one bounded outbound queue to the socket; the *timer*
  keeps the deadlines (authentication, heartbeats, idle, the token's lifetime).
  Both are the outbound half, :class:`api.transport.link.Link`, whose module
  docstring tells how they work. A message read after ``exp`` closes the way
  the timer does, instead of being handled.

The per-connection state lives in :class:`sync.session.Session` (sans-I/O).
Authentication replies use the spec's "Authentication Response" objects; on
failure the error object is sent and the socket closed with 3000 (3001 when
rate limited).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from tripsage_sync.api.transport.handshake import (
    SERVER_VERSION,
    check_capacity,
    established_event,
    rate_limited_rollback,
)
from tripsage_sync.api.transport.host import Host
from tripsage_sync.api.transport.inbound import RefusedItem, unwrap_batch
from tripsage_sync.api.transport.link import Frames, Link, Solo
from tripsage_sync.api.transport.outbox import CLOSE_RELEASE_S, cancel_and_wait
from tripsage_sync.sync.channels import Channel
from tripsage_sync.sync.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVER_ERROR,
    AuthError,
    InvalidMessage,
    MessageTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    SyncError,
)
from tripsage_sync.sync.events import (
    SubscriptionUpdatePayload,
)
from tripsage_sync.sync.session import CloseExpired, State
from tripsage_sync.sync.wire import (
    AuthRefreshMessage,
    AuthResponse,
    BatchMessage,
    ClientMessage,
    ConnectionHeartbeatMessage,
    OptimisticUpdateStartMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    encode,
    make_event,
    parse_auth_request,
    parse_client_message,
)

__all__ = ["CLOSE_RELEASE_S", "SERVER_VERSION", "Connection", "Dispatch"]

logger = logging.getLogger(__name__)

# The server's one dispatch of client messages (api/router.py), given to every connection.
Dispatch = Callable[["Connection", ClientMessage], Awaitable[None]]


class Connection(Link):
    """A JSON connection: the outbound half of :class:`Link`, and the reader and timer
    that authenticate it, keep it alive and dispatch what it receives."""

    def __init__(
        self,
        websocket: WebSocket,
        services: Host[Connection],
        *,
        endpoint: str,
        path_session_id: str,
        client_ip: str,
    ) -> None:
        super().__init__(
            websocket,
            services.settings,
            services.clock,
            services.hub.metrics,
            services.authority,
            logger,
            endpoint=endpoint,
            path_session_id=path_session_id,
            client_ip=client_ip,
        )
        self.services = services
        self.hub = services.hub

    # -- inbound ----------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(
            self.outbox.run(Frames(self, self.hub.metrics)), name=f"writer-{self.id}"
        )
        timer = asyncio.create_task(self._timer(), name=f"timer-{self.id}")
        self.hub.admit(self)
        self.log.info(
            "connected from %s to %s",
            self.client_ip,
            self.session.endpoint,
            extra={"endpoint": self.session.endpoint, "session": self.session.path_session_id},
        )
        try:
            await self._read_loop()
        except Exception:
            self.log.exception("connection failed")
            self.close(
                CLOSE_SERVER_ERROR, "server error", error=ServerError("Internal server error")
            )
        finally:
            timer.cancel()
            if self.session.state is State.CLOSING:
                # We started the close: let the writer flush up to the close frame.
                try:
                    await asyncio.wait_for(asyncio.shield(writer), CLOSE_RELEASE_S)
                except (TimeoutError, asyncio.CancelledError):
                    self.abort()
            else:  # the peer closed or vanished: nothing more can be sent
                self.session.close(CLOSE_GOING_AWAY)
            if self.hub.remove(self):
                for callback in self.services.on_disconnect:
                    try:
                        callback(self)
                    except Exception:
                        self.log.exception("disconnect callback failed")
            self.session.closed()
            self.closed.set()
            self.log.info(
                "closed (code=%s)", self.session.close_code, extra={"code": self.session.close_code}
            )
            await cancel_and_wait(writer, timer)

    async def _read_loop(self) -> None:
        ws = self.websocket
        metrics = self.hub.metrics
        limit = self.settings.max_message_size
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            size = len(data.encode() if isinstance(data, str) else data)
            self.session.frame_received(size, self.clock.now_ms())
            if self.session.state not in (State.AWAITING_AUTH, State.OPEN):
                metrics.received("ignored", size)
                continue
            if size > limit:
                metrics.received("too_large", size)
                self.log.info("message of %d bytes over the %d limit", size, limit)
                too_large = MessageTooLarge(
                    f"Message exceeds {limit} bytes", details={"size": size, "limit": limit}
                )
                self.close(CLOSE_MESSAGE_TOO_BIG, "message too large", error=too_large)
                continue
            if self.session.state is State.AWAITING_AUTH:
                metrics.received("auth", size)
                await self._authenticate(data)
            elif isinstance(data, bytes):
                metrics.received("binary", size)
                self.send_error(
                    InvalidMessage(
                        "Binary frames are not accepted on this endpoint",
                        details={"field": "", "expected": "text frame", "received": "binary"},
                    )
                )
            else:
                await self._receive_text(data, size)

    async def _authenticate(self, data: str | bytes) -> None:
        hub = self.hub
        limited = hub.check(hub.auth_limiter, self.client_ip, "authentication attempts per IP")
        if limited is not None:
            self.services.count_rate_limited("auth")
            self._fail_auth(limited)
            return
        try:
            request = parse_auth_request(data)
            verified = self.services.authority.verify_token(request.token)
            principal = verified.principal
            session_id = self.session.path_session_id
            if request.sessionId is not None and request.sessionId != session_id:
                raise AuthError("sessionId does not match the endpoint", code="AUTH_FAILED")
            check_capacity(
                self.settings,
                authenticated=hub.authenticated_count(),
                of_user=hub.user_connection_count(principal.user_id),
            )
            await self.services.authorize_session(principal, session_id, self.session.endpoint)
        except InvalidMessage as exc:
            self.log.debug("authentication request invalid")
            self._fail_auth(AuthError("Invalid authentication request", details=exc.details))
            return
        except PermissionDenied as exc:
            self.log.debug("session %s refused", self.session.path_session_id)
            self._fail_auth(
                AuthError(exc.message, code=exc.code, close_code=CLOSE_POLICY_VIOLATION)
            )
            return
        except SyncError as refused:
            self._fail_auth(refused)
            return
        if self.session.state is not State.AWAITING_AUTH:  # timed out meanwhile
            return
        self.session.authenticated(principal, expires_at_ms=verified.expires_at_ms)
        self._wake.set()
        self.log.extra = {"conn": self.id, "user": principal.user_id}
        self.log.info("authenticated (role=%s)", principal.role, extra={"role": principal.role})
        hub.bind_user(self, principal.user_id)
        self.batching = "message_batching" in request.features
        granted, denied = [], []
        for name in self.services.implicit_channels(self):
            hub.subscribe(self, name)
            granted.append(name)
        for name in request.channels:
            try:
                granted.append(await self._subscribe_one(name))
            except SyncError as exc:
                denied.append((name, exc))
        response = AuthResponse(
            success=True,
            connectionId=self.id,
            userId=principal.user_id,
            sessionId=self.session.path_session_id,
            availableChannels=sorted(set(granted)),
        )
        established = established_event(
            self.settings,
            connection_id=self.id,
            user_id=principal.user_id,
            session_id=self.session.path_session_id,
            now_ms=self.clock.now_ms(),
        )
        # First on the wire, ahead of anything published meanwhile, never batched.
        self.outbox.put_first(Solo(encode(response)), Solo(encode(established)))
        for name, refusal in denied:
            self.send_error(refusal)
            self.log.info("channel %s refused: %s", name, refusal.code)

    async def _receive_text(self, text: str, size: int) -> None:
        metrics = self.hub.metrics
        try:
            message = parse_client_message(text)
        except InvalidMessage as exc:
            metrics.received("invalid", size)
            self.send_error(exc)
            return
        # Bytes by the frame's type; a batch's events are counted once more each.
        metrics.received(message.type, size)
        if not isinstance(message, BatchMessage):
            await self._handle(message)
            return
        for inner in unwrap_batch(message.payload.messages):
            if not self.session.is_open:
                return
            if isinstance(inner, RefusedItem):
                metrics.received("invalid", 0)
                self.send_error(inner.error, in_reply_to=inner.message_id)
                continue
            metrics.received(inner.type, 0)
            await self._handle(inner)

    async def _handle(self, message: ClientMessage) -> None:
        now = self.clock.now_ms()
        if self.session.token_expired(now):  # before the timer noticed: never handled
            self._expire(CloseExpired(), now)
            return
        # Heartbeats keep a limited client alive; agents and admins are trusted
        # publishers (a streamed reply is dozens of events) and are not limited.
        if message.type != "connection_heartbeat" and not self.principal.is_privileged:
            limited = self.hub.check(
                self.hub.message_limiter, self.principal.user_id, "messages per user"
            )
            if limited is not None:
                self.services.count_rate_limited("messages")
                if self.session.refused():
                    self.close(CLOSE_RATE_LIMITED, "rate limited", error=limited)
                else:
                    self.send_error(limited, in_reply_to=message.id)
                    if isinstance(message, OptimisticUpdateStartMessage):  # its one outcome
                        self._rate_limited_update(message, limited)
                return
            self.session.allowed()
        try:
            await self.services.dispatch(self, message)  # api/router.py
        except SyncError as exc:
            self.send_error(exc, in_reply_to=message.id)
            if exc.close_code is not None:
                self.close(exc.close_code, exc.code.lower())

    def _rate_limited_update(
        self, message: OptimisticUpdateStartMessage, limited: RateLimited
    ) -> None:
        self.services.count_outcome("optimistic_update_rollback")
        self.send(
            make_event(
                rate_limited_rollback(message.payload, limited),
                now_ms=self.clock.now_ms(),
                session_id=self.session.path_session_id,
            )
        )

    # -- the connection's own messages (the router, api/router.py, hands them back) -----

    def on_heartbeat(self, message: ConnectionHeartbeatMessage) -> None:
        now = self.clock.now_ms()
        echo = message.payload.serverTime
        rtt = self.round_trips.heartbeat_received(now, echo)
        if rtt is not None:
            self.log.debug("heartbeat round trip %d ms", rtt)
        if echo is None:  # an echo answers our heartbeat: it gets no reply
            self.send_heartbeat(now)

    async def on_subscribe(self, message: SubscribeMessage) -> None:
        await self._subscribe(message.payload.channels, message.payload.unsubscribeChannels)

    async def on_unsubscribe(self, message: UnsubscribeMessage) -> None:
        await self._subscribe([], message.payload.channels)

    def on_auth_refresh(self, message: AuthRefreshMessage) -> None:
        self._refresh(message.payload.token, message.id)

    async def _subscribe_one(self, name: str) -> str:
        """Subscribe to ``name`` (an alias is resolved); the channel's name."""
        channel = Channel.resolve(name, self.principal)
        if channel.name in self.session.subscriptions:
            return channel.name
        limited = self.hub.check(
            self.hub.subscription_limiter, self.principal.user_id, "channel subscriptions per user"
        )
        if limited is not None:
            self.services.count_rate_limited("subscriptions")
            raise limited
        await self.services.authorize_channel(self.principal, channel)
        self.hub.subscribe(self, channel.name)
        trip = {"trip": channel.key} if channel.namespace == "trip" else {}
        self.log.info("subscribed to %s", channel.name, extra={"channel": channel.name, **trip})
        return channel.name

    async def _subscribe(self, names: list[str], unsubscribe: list[str]) -> None:
        subscribed: list[str] = []
        denied: list[dict[str, str]] = []
        errors: list[SyncError] = []
        for name in names:
            try:
                subscribed.append(await self._subscribe_one(name))
            except SyncError as exc:
                denied.append({"channel": name, "code": exc.code})
                errors.append(exc)
        removed, absent = [], []
        for name in unsubscribe:
            target = Channel.resolve_name(name, self.principal)
            if target in self.session.subscriptions:
                self.hub.unsubscribe(self, target)
                removed.append(target)
            else:  # reported, not silently ignored ("old-channel" in the spec)
                absent.append(name)
        payload = SubscriptionUpdatePayload(
            subscribedChannels=sorted(self.session.subscriptions),
            unsubscribedChannels=removed,
            deniedChannels=denied,
            notSubscribedChannels=absent,
            success=not denied,
        )
        self.send(
            make_event(
                payload,
                now_ms=self.clock.now_ms(),
                session_id=self.session.path_session_id,
            )
        )
        for refusal in errors:
            self.send_error(refusal)
            if isinstance(refusal, RateLimited) and self.session.refused():
                self.close(CLOSE_RATE_LIMITED, "rate limited", error=refusal)
