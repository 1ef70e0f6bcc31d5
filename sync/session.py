"""The per-connection state machine of the JSON endpoints.

States and the rules that move between them (one transition function,
:meth:`Session.transition`, raises on an illegal move and leaves the state
unchanged)::

    AWAITING_AUTH --authenticated--> OPEN --close--> CLOSING --closed--> CLOSED
          |                                              ^
          +-------------------close----------------------+

- Rule 1: the first client frame is the authentication request; only
  AWAITING_AUTH accepts it, and nothing else is read before it succeeds.
- Rule 2: only OPEN processes client messages and sends events.
- Rule 3: CLOSING sends nothing but ``connection_close``/``error`` and the
  close frame; CLOSED is terminal. Any state may jump to CLOSED when the
  transport is lost.

Besides the state the session keeps the counters the heartbeat reports and
the deadlines the shell's timers enforce: authentication must arrive within
``auth_timeout_s``, and a connection silent for two heartbeat intervals is
dead. Time comes in as ``now_ms``.

Live tokens (README "Authentication", "Token refresh"): a token is valid only
until its ``exp``. :class:`TokenLifetime` decides, given ``now_ms``, what is
due and when it next looks (:attr:`TokenLifetime.deadline_ms`, one deadline
for the shell's one timer): :data:`TOKEN_WARNING_S` before ``exp`` the intent
:class:`WarnExpiring` (the ``auth_expiring`` event, at once for a token that
has less left at connect), at ``exp`` :class:`CloseExpired` (JSON:
``connection_error`` ``TOKEN_EXPIRED`` and close 3000; Yjs: close 4401).
``auth_refresh`` moves ``exp`` to the new token's (:meth:`Session.refreshed`)
when it names the same user with the same role; anything else is refused and
the old ``exp`` keeps running.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Final

from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import InvalidState, PermissionDenied
from tripsage_sync.sync.events import (
    AuthExpiringPayload,
    AuthRefreshedPayload,
    ConnectionErrorPayload,
    HeartbeatMetrics,
    HeartbeatPayload,
)
from tripsage_sync.sync.wire import ServerEvent, iso_ms, make_event

__all__ = [
    "ABUSIVE_REFUSALS",
    "REFRESH_MARGIN_S",
    "TOKEN_WARNING_S",
    "CloseExpired",
    "Session",
    "State",
    "TokenLifetime",
    "WarnExpiring",
]

logger = logging.getLogger(__name__)

# Refusals in a row (rate limits) after which a connection is closed with 3001.
ABUSIVE_REFUSALS: Final = 10
IDLE_INTERVALS: Final = 2
# ``auth_expiring`` goes out this long before the token's exp (Centrifugo's model).
TOKEN_WARNING_S: Final = 60.0
# ``refreshBefore`` leaves this much of the token's life for the round trip.
REFRESH_MARGIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class WarnExpiring:
    """Intent: tell the client its token expires soon (``auth_expiring``)."""

    expires_at_ms: int
    refresh_before_ms: int

    def event(self, now_ms: int) -> ServerEvent[AuthExpiringPayload]:
        payload = AuthExpiringPayload(
            expiresAt=iso_ms(self.expires_at_ms),
            refreshBefore=iso_ms(self.refresh_before_ms),
            expiresIn=round(max(0, self.expires_at_ms - now_ms) / 1000, 3),
        )
        return make_event(payload, now_ms=now_ms)


@dataclass(frozen=True, slots=True)
class CloseExpired:
    """Intent: the token has expired; close the connection (JSON 3000, Yjs 4401)."""

    def event(self, now_ms: int) -> ServerEvent[ConnectionErrorPayload]:
        """The JSON endpoints' ``connection_error`` sent before the close frame."""
        payload = ConnectionErrorPayload(
            errorCode="TOKEN_EXPIRED", message="Token expired", severity="error"
        )
        return make_event(payload, now_ms=now_ms)


@dataclass(slots=True)
class TokenLifetime:
    """When the connection's token expires and whether the client was warned.

    Rule: :meth:`due` returns :class:`CloseExpired` from ``exp`` on, else one
    :class:`WarnExpiring` per token from ``exp - warning_s`` on, else ``None``;
    :attr:`deadline_ms` is when it next returns something.
    """

    expires_at_ms: int
    warning_s: float = TOKEN_WARNING_S
    warned: bool = False

    @property
    def deadline_ms(self) -> int:
        if self.warned:
            return self.expires_at_ms
        return self.expires_at_ms - int(self.warning_s * 1000)

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms

    def due(self, now_ms: int) -> WarnExpiring | CloseExpired | None:
        if self.expired(now_ms):
            return CloseExpired()
        if now_ms < self.deadline_ms:
            return None
        self.warned = True
        refresh_before = max(now_ms, self.expires_at_ms - int(REFRESH_MARGIN_S * 1000))
        return WarnExpiring(self.expires_at_ms, refresh_before)

    def renewed(self, expires_at_ms: int) -> None:
        """A fresh token: its own exp, and a warning of its own before it."""
        self.expires_at_ms = expires_at_ms
        self.warned = False


class State(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (State.AWAITING_AUTH, "authenticated"): State.OPEN,
    (State.AWAITING_AUTH, "close"): State.CLOSING,
    (State.OPEN, "close"): State.CLOSING,
    (State.AWAITING_AUTH, "closed"): State.CLOSED,
    (State.OPEN, "closed"): State.CLOSED,
    (State.CLOSING, "closed"): State.CLOSED,
}


@dataclass(slots=True)
class Session:
    connection_id: str
    endpoint: str
    path_session_id: str
    now_ms: int
    heartbeat_interval_s: float
    auth_timeout_s: float
    state: State = State.AWAITING_AUTH
    principal: Principal | None = None
    token: TokenLifetime | None = None
    subscriptions: set[str] = field(default_factory=set)
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    consecutive_refusals: int = 0
    close_code: int | None = None
    connected_at_ms: int = field(init=False)
    last_received_ms: int = field(init=False)
    last_heartbeat_ms: int | None = None

    def __post_init__(self) -> None:
        self.connected_at_ms = self.last_received_ms = self.now_ms

    # -- transitions ---------------------------------------------------------

    def transition(self, trigger: str) -> None:
        new = _TRANSITIONS.get((self.state, trigger))
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
        """``auth_refresh`` with a verified token: the ``auth_refreshed`` answer.

        The token must name the connection's user with the connection's role
        (what was authorized at connect, channels included, was decided for
        that role): otherwise :class:`PermissionDenied`, and the old expiry
        keeps running. Name and avatar stay as authenticated until reconnect.
        """
        if self.principal is None or self.token is None or not self.is_open:
            raise InvalidState("refresh before authentication")
        if principal.user_id != self.principal.user_id:
            raise PermissionDenied(
                "Token belongs to another user", details={"reason": "different user"}
            )
        if principal.role != self.principal.role:
            raise PermissionDenied(
                "Token has another role; reconnect with it",
                details={"reason": "role changed", "role": self.principal.role},
            )
        self.token.renewed(expires_at_ms)
        payload = AuthRefreshedPayload(expiresAt=iso_ms(expires_at_ms))
        return make_event(payload, now_ms=now_ms)

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
    def user_id(self) -> str:
        if self.principal is None:
            raise InvalidState("no principal before authentication")
        return self.principal.user_id

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
