"""The per-connection protocol of the JSON endpoints, sans I/O.

The states and the rules that move between them are in :mod:`sync.session.state`.

Theory of operation (python-websockets' ``ServerProtocol``, h11's
``Connection``): the shell feeds the session what happened and carries out
the intents (:mod:`sync.session.intent`) it returns, in order:

- :meth:`Session.receive_frame`: a frame's text or bytes, ``now_ms`` and the
  shell's :class:`~sync.session.facts.Facts`. The size limit (1009), the
  handshake of the first frame (:mod:`sync.session.handshake`: one call, the
  welcome or the refusal), then for an open connection binary refusal, parsing,
  batch unwrapping (:mod:`sync.session.inbound`), the expired token and the rate
  limit: the messages to dispatch, in order, and the refusals to send. After
  :data:`ABUSIVE_REFUSALS` rate-limit refusals in a row the connection closes
  with 3001.
- :meth:`Session.tick`: what the deadlines ask at ``now_ms``: authentication
  must arrive within ``auth_timeout_s``; heartbeats every interval; a
  connection silent for :data:`IDLE_INTERVALS` intervals is closed (1001); the
  token's lifetime (:mod:`sync.session.token`). It ends with the next deadline.
- The outcomes of intents that waited: :meth:`Session.claimed` (the store's
  answer to ``ClaimSession``), :meth:`Session.vetoed` (the shell's hooks refused
  the user), :meth:`Session.handler_failed`.

Besides the state the session keeps the counters the heartbeat reports. Time
comes in as ``now_ms``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_RATE_LIMITED,
    AuthError,
    InvalidState,
    SyncError,
)
from tripsage_sync.sync.events import (
    AuthRefreshedPayload,
    HeartbeatMetrics,
    HeartbeatPayload,
    connection_close,
)
from tripsage_sync.sync.session.facts import Facts, Ownership
from tripsage_sync.sync.session.handshake import Policy, admit, established_event, refused_session
from tripsage_sync.sync.session.inbound import (
    RefusedItem,
    binary_refusal,
    rate_limited_rollback,
    read_text,
    too_large,
)
from tripsage_sync.sync.session.intent import (
    BindUser,
    ClaimSession,
    Close,
    DispatchMessage,
    Immediate,
    Intent,
    Received,
    RefuseAuth,
    SendError,
    SendHeartbeat,
    SendOutcome,
    SetDeadline,
    Subscribe,
    SubscribeImplicit,
    Welcome,
    error_close_frames,
)
from tripsage_sync.sync.session.state import TRANSITIONS, State
from tripsage_sync.sync.session.token import CloseExpired, TokenLifetime, WarnExpiring, refresh
from tripsage_sync.sync.wire import (
    ClientMessage,
    OptimisticUpdateStartMessage,
    ServerEvent,
    iso_ms,
    make_event,
)

__all__ = ["ABUSIVE_REFUSALS", "IDLE_INTERVALS", "Session"]

logger = logging.getLogger(__name__)

# Refusals in a row (rate limits) after which a connection is closed with 3001.
ABUSIVE_REFUSALS: Final = 10
IDLE_INTERVALS: Final = 2


@dataclass(slots=True)
class Session:
    connection_id: str
    endpoint: str
    path_session_id: str
    now_ms: int
    heartbeat_interval_s: float
    auth_timeout_s: float
    # The limits of receive_frame (the state alone needs none).
    policy: Policy | None = None
    state: State = State.AWAITING_AUTH
    principal: Principal | None = None
    token: TokenLifetime | None = None
    subscriptions: set[str] = field(default_factory=set)
    # The client asked for ``message_batching``: consecutive events go in one batch.
    batching: bool = False
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    consecutive_refusals: int = 0
    close_code: int | None = None
    connected_at_ms: int = field(init=False)
    last_received_ms: int = field(init=False)
    last_heartbeat_ms: int | None = None
    next_heartbeat_ms: int = field(init=False)

    def __post_init__(self) -> None:
        self.connected_at_ms = self.last_received_ms = self.now_ms
        self.next_heartbeat_ms = self.now_ms + self._interval_ms

    # -- transitions ---------------------------------------------------------

    def transition(self, trigger: str) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise InvalidState(f"cannot {trigger!r} in state {self.state.value}")
        logger.debug("connection %s: %s -> %s", self.connection_id, self.state.value, new.value)
        self.state = new

    def authenticated(self, principal: Principal, *, expires_at_ms: int) -> None:
        self.transition("authenticated")
        self.principal = principal
        self.token = TokenLifetime(expires_at_ms)

    def refreshed(
        self, principal: Principal, *, expires_at_ms: int, now_ms: int
    ) -> ServerEvent[AuthRefreshedPayload]:
        """``auth_refresh`` with a verified token: the ``auth_refreshed`` answer, or
        :class:`PermissionDenied` (:func:`sync.session.token.refresh`)."""
        if self.principal is None or self.token is None or not self.is_open:
            raise InvalidState("refresh before authentication")
        return refresh(self.token, self.principal, principal, expires_at_ms, now_ms)

    def close(self, code: int) -> bool:
        """Start closing; ``False`` when already closing or closed."""
        if self.state in (State.CLOSING, State.CLOSED):
            return False
        self.transition("close")
        self.close_code = code
        return True

    def closed(self) -> None:
        if self.state is not State.CLOSED:
            self.transition("closed")

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    @property
    def accepting(self) -> bool:
        """Still reading client frames: awaiting authentication or open."""
        return self.state in (State.AWAITING_AUTH, State.OPEN)

    @property
    def user_id(self) -> str:
        if self.principal is None:
            raise InvalidState("no principal before authentication")
        return self.principal.user_id

    # -- input: frames ---------------------------------------------------------

    def receive_frame(self, data: str | bytes, now_ms: int, facts: Facts) -> list[Intent]:
        """One client frame: what to count, refuse, send, close, dispatch (in order)."""
        # str.isascii() is O(1) in CPython: encode only texts with other characters.
        size = len(data) if not isinstance(data, str) or data.isascii() else len(data.encode())
        self.frame_received(size, now_ms)
        if not self.accepting:
            return [Received("ignored", size)]
        limit = self._policy.max_message_bytes
        if size > limit:
            error = too_large(size, limit)
            frames = error_close_frames(
                error, CLOSE_MESSAGE_TOO_BIG, now_ms=now_ms, session_id=self.path_session_id
            )
            return [
                Received("too_large", size),
                Close(CLOSE_MESSAGE_TOO_BIG, "message too large", frames),
            ]
        if self.state is State.AWAITING_AUTH:
            return [Received("auth", size), *self._authenticate(data, now_ms, facts)]
        if isinstance(data, bytes):
            return [Received("binary", size), SendError(binary_refusal())]
        intents: list[Intent] = []
        for item in read_text(data, size):
            if isinstance(item, Received):
                intents.append(item)
            elif isinstance(item, RefusedItem):
                intents.append(SendError(item.error, item.message_id))
            else:
                admitted = self._admit(item, now_ms, facts)
                intents += admitted
                if isinstance(admitted[-1], Close | CloseExpired):
                    break
        return intents

    def _authenticate(self, data: str | bytes, now_ms: int, facts: Facts) -> list[Intent]:
        limited = facts.spend_auth_attempt()
        if limited is not None:
            return [RefuseAuth(limited)]
        try:
            admission = admit(data, facts, session_id=self.path_session_id, policy=self._policy)
        except SyncError as refused:
            return [RefuseAuth(refused)]
        principal = admission.token.principal
        self.authenticated(principal, expires_at_ms=admission.token.expires_at_ms)
        self.batching = "message_batching" in admission.request.features
        intents: list[Intent] = []
        if admission.claim:
            intents.append(ClaimSession(self.path_session_id, principal.user_id))
        established = established_event(
            self._policy,
            connection_id=self.connection_id,
            user_id=principal.user_id,
            session_id=self.path_session_id,
            heartbeat_interval_s=self.heartbeat_interval_s,
            auth_timeout_s=self.auth_timeout_s,
            now_ms=now_ms,
        )
        intents += [
            BindUser(principal),
            SetDeadline(self._open_deadline_ms()),
            SubscribeImplicit(),
            Subscribe(tuple(admission.request.channels)),
            Welcome(self.connection_id, principal.user_id, self.path_session_id, established),
        ]
        return intents

    def _admit(self, message: ClientMessage, now_ms: int, facts: Facts) -> list[Intent]:
        """One message of an open connection: dispatched, refused, or the close."""
        if self.token_expired(now_ms):  # before the timer noticed: never handled
            return [CloseExpired()]
        # Heartbeats keep a limited client alive; agents and admins are trusted
        # publishers (a streamed reply is dozens of events) and are not limited.
        principal = self.principal
        if principal is None:
            raise InvalidState("a message before authentication")
        if message.type == "connection_heartbeat" or principal.is_privileged:
            return [DispatchMessage(message)]
        limited = facts.spend_message(principal.user_id)
        if limited is None:
            self.allowed()
            return [DispatchMessage(message)]
        if self.refused():
            frames = error_close_frames(
                limited, CLOSE_RATE_LIMITED, now_ms=now_ms, session_id=self.path_session_id
            )
            return [Close(CLOSE_RATE_LIMITED, "rate limited", frames)]
        intents: list[Intent] = [SendError(limited, message.id)]
        if isinstance(message, OptimisticUpdateStartMessage):  # its one outcome too
            rollback = rate_limited_rollback(message.payload, limited)
            event = make_event(rollback, now_ms=now_ms, session_id=self.path_session_id)
            intents.append(SendOutcome(event))
        return intents

    # -- input: outcomes of intents ---------------------------------------------

    def claimed(self, ownership: Ownership) -> list[Immediate]:
        """The store's answer to ``ClaimSession``: nothing more if the user holds the
        session, else the refusal (another user claimed it since it was read)."""
        if ownership.admits(self.user_id):
            return []
        return [RefuseAuth(refused_session())]

    def vetoed(self, error: SyncError) -> list[Immediate]:
        """The shell's authentication hooks refused the verified user (before the
        session was claimed or the user bound): the handshake fails with ``error``."""
        return [RefuseAuth(error)]

    def handler_failed(self, message: ClientMessage, error: SyncError) -> list[Immediate]:
        """A handler refused ``message``: the ``error`` answers it; some errors close."""
        intents: list[Immediate] = [SendError(error, message.id)]
        if error.close_code is not None:
            intents.append(Close(error.close_code, error.code.lower()))
        return intents

    def displaced(self) -> list[Immediate]:
        """Closed unauthenticated to make room for a newer socket (3001: retry later)."""
        if self.state is not State.AWAITING_AUTH:
            return []
        error = AuthError(
            "Too many connections awaiting authentication",
            code="CONNECTION_LIMIT_EXCEEDED",
            retry_after=self._policy.reconnect_after_s,
            close_code=CLOSE_RATE_LIMITED,
        )
        return [RefuseAuth(error)]

    # -- input: time --------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Immediate]:
        """What the deadlines ask at ``now_ms``; the last intent is the next
        :class:`SetDeadline`, absent when a close was decided or the session closes."""
        if self.state is State.AWAITING_AUTH:
            if now_ms >= self.auth_deadline_ms:
                return [RefuseAuth(AuthError("Authentication timeout", code="AUTH_FAILED"))]
            return [SetDeadline(self.auth_deadline_ms)]
        if self.state is not State.OPEN:
            return []
        if now_ms >= self.idle_deadline_ms:
            event = connection_close(
                "idle timeout",
                CLOSE_GOING_AWAY,
                grace_period_s=0,
                reconnect_after_s=0,
                now_ms=now_ms,
            )
            return [Close(CLOSE_GOING_AWAY, "idle timeout", (event,))]
        intents: list[Immediate] = []
        match self.token_due(now_ms):
            case CloseExpired() as expired:
                return [expired]
            case WarnExpiring() as warning:
                intents.append(warning)
            case None:
                pass
        if now_ms >= self.next_heartbeat_ms:
            intents.append(SendHeartbeat())
            self.next_heartbeat_ms = now_ms + self._interval_ms
        intents.append(SetDeadline(self._open_deadline_ms()))
        return intents

    # -- traffic and deadlines ----------------------------------------------

    def frame_received(self, nbytes: int, now_ms: int) -> None:
        self.messages_received += 1
        self.bytes_received += nbytes
        self.last_received_ms = now_ms

    def frame_sent(self, nbytes: int) -> None:
        self.messages_sent += 1
        self.bytes_sent += nbytes

    def refused(self) -> bool:
        """Count a rate-limit refusal; ``True`` when the peer is abusive."""
        self.consecutive_refusals += 1
        return self.consecutive_refusals >= ABUSIVE_REFUSALS

    def allowed(self) -> None:
        self.consecutive_refusals = 0

    def token_due(self, now_ms: int) -> WarnExpiring | CloseExpired | None:
        """What the token's lifetime asks for now (nothing before authentication)."""
        return None if self.token is None else self.token.due(now_ms)

    def token_expired(self, now_ms: int) -> bool:
        return self.token is not None and self.token.expired(now_ms)

    @property
    def auth_deadline_ms(self) -> int:
        return self.connected_at_ms + int(self.auth_timeout_s * 1000)

    @property
    def idle_deadline_ms(self) -> int:
        return self.last_received_ms + int(IDLE_INTERVALS * self.heartbeat_interval_s * 1000)

    def _open_deadline_ms(self) -> int:
        deadline = min(self.next_heartbeat_ms, self.idle_deadline_ms)
        return deadline if self.token is None else min(deadline, self.token.deadline_ms)

    @property
    def _interval_ms(self) -> int:
        return int(self.heartbeat_interval_s * 1000)

    @property
    def _policy(self) -> Policy:
        if self.policy is None:
            raise InvalidState("a session without a policy cannot receive frames")
        return self.policy

    def heartbeat(self, now_ms: int) -> ServerEvent[HeartbeatPayload]:
        """The server's ``connection_heartbeat`` with this connection's metrics."""
        self.last_heartbeat_ms = now_ms
        payload = HeartbeatPayload(
            connectionId=self.connection_id,
            serverTime=iso_ms(now_ms),
            metrics=HeartbeatMetrics(
                uptime=round((now_ms - self.connected_at_ms) / 1000, 3),
                messagesSent=self.messages_sent,
                messagesReceived=self.messages_received,
            ),
        )
        return make_event(payload, now_ms=now_ms)
