"""The connection driver: runs one JSON WebSocket (chat or agent-status).

Theory of operation
-------------------
One task per connection (uvicorn's, running :meth:`Connection.run`), and what it owns:

- the *reader* (the ``run`` task itself) receives frames and hands each to
  :meth:`sync.session.Session.receive_frame`, which decides everything about it
  (the size limit, the handshake of the first frame, binary refusal, parsing,
  batch unwrapping, the expired token, the rate limit and the abuse close) and
  returns intents; :meth:`Connection._carry_out` carries them out in order:
  claim the chat session, bind the user, join channels, put the welcome first on
  the wire, dispatch each message to its handler;
- the *writer* drains one bounded outbound queue to the socket (a task only while a
  backlog waits); the *timer* (a loop timer handle, no task)
  carries out what :meth:`sync.session.Session.tick` asks at each deadline
  (authentication, heartbeats, idle, the token's lifetime). Both are the
  outbound half, :class:`api.transport.link.Link`, whose module docstring tells
  how they work.

The facts the session's rules ask for come from :class:`api.transport.facts.ShellFacts`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from tripsage_sync.api.transport.facts import SERVER_VERSION, ShellFacts
from tripsage_sync.api.transport.hooks import AuthContext, ConnectionContext
from tripsage_sync.api.transport.host import Host
from tripsage_sync.api.transport.link import Frames, Link, Solo
from tripsage_sync.api.transport.outbox import CLOSE_RELEASE_S
from tripsage_sync.sync.channels import Channel
from tripsage_sync.sync.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVER_ERROR,
    RateLimited,
    ServerError,
    SyncError,
)
from tripsage_sync.sync.events import (
    SubscriptionUpdatePayload,
)
from tripsage_sync.sync.session import (
    BindUser,
    ClaimSession,
    DispatchMessage,
    Intent,
    Received,
    State,
    Subscribe,
    SubscribeImplicit,
    Welcome,
)
from tripsage_sync.sync.wire import (
    AuthRefreshMessage,
    ClientMessage,
    ConnectionHeartbeatMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    encode,
    make_event,
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
        self.facts = ShellFacts(services, client_ip)
        self._vetting: bool | None = None  # the authentication hooks' answer, once asked
        self._welcomed = False  # told on_connect (then on_disconnect follows)

    # -- inbound ----------------------------------------------------------------------

    async def run(self) -> None:
        self.outbox.start(Frames(self, self.hub.metrics))
        self.start_timer()
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
            self.stop_timer()
            if self.session.state is State.CLOSING:
                # We started the close: let the writer flush up to the close frame.
                try:
                    flushed = await self.outbox.finish(CLOSE_RELEASE_S)
                except asyncio.CancelledError:
                    flushed = False
                if not flushed:
                    self.abort()
            else:  # the peer closed or vanished: nothing more can be sent
                self.session.close(CLOSE_GOING_AWAY)
            if self.hub.remove(self):
                for callback in self.services.on_disconnect:
                    try:
                        callback(self)
                    except Exception:
                        self.log.exception("disconnect callback failed")
                if self._welcomed:
                    self.services.hooks.notify("on_disconnect", self.hook_context())
            self.session.closed()
            self.closed.set()
            self.log.info(
                "closed (code=%s)", self.session.close_code, extra={"code": self.session.close_code}
            )
            await self.outbox.stop()

    async def _read_loop(self) -> None:
        ws = self.websocket
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await self._carry_out(self.session.receive_frame(data, self.clock.now_ms(), self.facts))

    async def _carry_out(self, intents: list[Intent]) -> None:
        """Carry out what the session decided for one frame, in order (sync/session/intent.py)."""
        granted: list[str] = []
        denied: list[tuple[str, SyncError]] = []
        for index, intent in enumerate(intents):
            if index and isinstance(intent, Received) and not self.session.accepting:
                return  # closed meanwhile: the rest of the batch is not handled
            if isinstance(intent, ClaimSession | BindUser) and not await self._vetted():
                return  # refused by an authentication hook (nothing claimed, nothing bound)
            match intent:
                case ClaimSession(session_id=session_id, user_id=user_id):
                    ownership = await self.services.claim_session(session_id, user_id)
                    lost = self.session.claimed(ownership)  # another user was quicker
                    for refused in lost:
                        self.carry_out(refused, self.clock.now_ms())
                    if lost:
                        return
                case BindUser(principal=principal):
                    self.log.extra = {"conn": self.id, "user": principal.user_id}
                    role = principal.role
                    self.log.info("authenticated (role=%s)", role, extra={"role": role})
                    self.hub.bind_user(self, principal.user_id)
                case SubscribeImplicit():
                    for name in self.services.implicit_channels(self):
                        self.hub.subscribe(self, name)
                        granted.append(name)
                case Subscribe(channels=names):
                    for name in names:
                        try:
                            granted.append(await self._subscribe_one(name))
                        except SyncError as exc:
                            denied.append((name, exc))
                case Welcome() as welcome:
                    response = Solo(encode(welcome.response(granted)))
                    self.outbox.put_first(response, Solo(encode(welcome.established)))
                    self.services.hooks.notify("on_connect", self.hook_context())
                    for name, refusal in denied:
                        self.send_error(refusal)
                        self.log.info("channel %s refused: %s", name, refusal.code)
                case DispatchMessage(message=message):
                    try:
                        await self.services.dispatch(self, message)  # api/router.py
                    except SyncError as exc:
                        for failed in self.session.handler_failed(message, exc):
                            self.carry_out(failed, self.clock.now_ms())
                case _:
                    self.carry_out(intent, self.clock.now_ms())

    async def _vetted(self) -> bool:
        """Whether the authentication hooks admit the user just verified (asked once);
        if not, the session refuses the handshake (``AUTH_FAILED``, the hook's message)."""
        if self._vetting is None:
            principal = self.session.principal
            hooks = self.services.hooks
            refusal = None
            if principal is not None and hooks.active:
                context = AuthContext(
                    principal.user_id,
                    principal.name,
                    principal.role,
                    self.session.endpoint,
                    self.session.path_session_id,
                    self.client_ip,
                )
                refusal = await hooks.authenticate(context)
            self._vetting = refusal is None
            if refusal is not None:
                for refused in self.session.vetoed(refusal):
                    self.carry_out(refused, self.clock.now_ms())
        return self._vetting

    def hook_context(self) -> ConnectionContext:
        """This connection as the hooks see it (``on_connect``, ``on_disconnect``)."""
        self._welcomed = True
        principal = self.session.principal
        return ConnectionContext(
            self.id,
            principal.user_id if principal is not None else "",
            self.session.endpoint,
            self.session.path_session_id,
            self.client_ip,
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
