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
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Final

from sync.channels import Principal
from sync.errors import InvalidState
from sync.events import HeartbeatMetrics, HeartbeatPayload
from sync.wire import ServerEvent, iso_ms, make_event

__all__ = ["ABUSIVE_REFUSALS", "Session", "State"]

logger = logging.getLogger(__name__)

# Refusals in a row (rate limits) after which a connection is closed with 3001.
ABUSIVE_REFUSALS: Final = 10
IDLE_INTERVALS: Final = 2


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

    def authenticated(self, principal: Principal) -> None:
        self.transition("authenticated")
        self.principal = principal

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

    @property
    def auth_deadline_ms(self) -> int:
        return self.connected_at_ms + int(self.auth_timeout_s * 1000)

    @property
    def idle_deadline_ms(self) -> int:
        return self.last_received_ms + int(IDLE_INTERVALS * self.heartbeat_interval_s * 1000)

    def heartbeat(self, now_ms: int) -> ServerEvent:
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
        return make_event("connection_heartbeat", payload, now_ms=now_ms)
