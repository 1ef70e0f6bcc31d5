"""What a :class:`sync.session.Session` asks its shell to do: intents.

The session decides; the shell (``api/transport/connection.py``) carries the
intents out, in the order they come, and knows nothing of the rules behind
them (python-websockets' ``data_to_send()``, h11's events, as commands).
Two kinds:

- :data:`Immediate` intents need nothing awaited: count a frame, queue an
  event or an error, start a close, send a heartbeat, set the timer;
- the others wait on the process's services: claim the chat session, bind
  the user and join channels, put the welcome first on the wire, dispatch a
  message to its handler.

Rules the shell keeps:

- A :class:`Received` opens the intents of each frame and of each item of a
  ``batch``. Once the session no longer accepts (a dispatch or the transport
  closed it) the shell stops at the next :class:`Received`: the rest of the
  batch is not handled (``websocket-api.md`` "Message Batching").
- A close intent (:class:`Close`, :class:`RefuseAuth`,
  :class:`~sync.session.token.CloseExpired`) takes effect when the shell starts
  it: the outbound queue asks :meth:`sync.session.Session.close`, which moves to
  CLOSING, so a close the transport began already is not started twice.
- :class:`Subscribe` refusals are answered with ``error`` events right after
  the :class:`Welcome`, whose ``availableChannels`` lists only what was granted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import (
    CLOSE_AUTH_FAILED,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVER_ERROR,
    RateLimited,
    SyncError,
)
from tripsage_sync.sync.events import ConnectionErrorPayload, error_event
from tripsage_sync.sync.session.token import CloseExpired, WarnExpiring
from tripsage_sync.sync.wire import AuthResponse, ClientMessage, ServerEvent, make_event

__all__ = [
    "BindUser",
    "ClaimSession",
    "Close",
    "DispatchMessage",
    "Immediate",
    "Intent",
    "Received",
    "RefuseAuth",
    "Send",
    "SendError",
    "SendHeartbeat",
    "SendOutcome",
    "SetDeadline",
    "Subscribe",
    "SubscribeImplicit",
    "Welcome",
    "error_close_frames",
]


@dataclass(frozen=True, slots=True)
class Received:
    """Count a frame (``nbytes``), or an item of a batch (0), under ``kind`` in the
    metrics: its message type, or ``auth``, ``batch``, ``invalid``, ``binary``,
    ``too_large``, ``ignored``."""

    kind: str
    nbytes: int


@dataclass(frozen=True, slots=True)
class Send:
    """Queue ``event`` for the client."""

    event: ServerEvent


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """Queue an optimistic update's one outcome (counted with the outcomes)."""

    event: ServerEvent


@dataclass(frozen=True, slots=True)
class SendError:
    """Queue the ``error`` event of ``error``, naming the message it answers."""

    error: SyncError
    in_reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    """Queue a ``connection_heartbeat`` (and remember it for its round trip)."""


@dataclass(frozen=True, slots=True)
class SetDeadline:
    """The session's next deadline: the shell calls :meth:`~sync.session.Session.tick`
    at ``at_ms`` (or sooner); outside the timer it wakes the timer to take it."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Close:
    """Send ``frames`` after what is queued, then close with ``code`` and ``reason``."""

    code: int
    reason: str
    frames: tuple[ServerEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class RefuseAuth:
    """The handshake failed: the "Authentication Response" with ``success: false``,
    then close with :attr:`code` (3000; 3001 when rate limited; the error's own)."""

    error: SyncError

    @property
    def code(self) -> int:
        if isinstance(self.error, RateLimited):
            return CLOSE_RATE_LIMITED
        return self.error.close_code or CLOSE_AUTH_FAILED

    @property
    def reason(self) -> str:
        return self.error.message[:100]

    @property
    def response(self) -> AuthResponse:
        exc = self.error
        return AuthResponse(
            success=False, error=exc.message, code=exc.code, retryAfter=exc.retry_after
        )


@dataclass(frozen=True, slots=True)
class ClaimSession:
    """Claim the chat session ``session_id`` for ``user_id`` (the first user owns it),
    then hand the store's answer to :meth:`~sync.session.Session.claimed`."""

    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class BindUser:
    """The connection is authenticated as ``principal``: route the user's events to it."""

    principal: Principal


@dataclass(frozen=True, slots=True)
class SubscribeImplicit:
    """Join the channels every connection of this endpoint has (all granted)."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Join the channels the authentication request named, each one authorized."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Welcome:
    """First on the wire, ahead of anything queued meanwhile and never batched:
    :meth:`response` (the "Authentication Response"), then ``connection_established``."""

    connection_id: str
    user_id: str
    session_id: str
    established: ServerEvent

    def response(self, granted: list[str]) -> AuthResponse:
        return AuthResponse(
            success=True,
            connectionId=self.connection_id,
            userId=self.user_id,
            sessionId=self.session_id,
            availableChannels=sorted(set(granted)),
        )


@dataclass(frozen=True, slots=True)
class DispatchMessage:
    """Hand ``message`` to its handler; a :class:`SyncError` it raises goes to
    :meth:`~sync.session.Session.handler_failed`."""

    message: ClientMessage


Immediate: TypeAlias = (
    Received
    | Send
    | SendOutcome
    | SendError
    | SendHeartbeat
    | SetDeadline
    | WarnExpiring
    | Close
    | RefuseAuth
    | CloseExpired
)
Intent: TypeAlias = (
    Immediate | ClaimSession | BindUser | SubscribeImplicit | Subscribe | Welcome | DispatchMessage
)


def error_close_frames(
    error: SyncError, code: int, *, now_ms: int, session_id: str
) -> tuple[ServerEvent, ServerEvent]:
    """Before a close caused by ``error``: its ``error`` event, then ``connection_error``
    (the connection-level problem; ``critical`` for 1011, ``warning`` when rate limited)."""
    severity: Literal["warning", "error", "critical"] = (
        "critical"
        if code == CLOSE_SERVER_ERROR
        else "warning"
        if isinstance(error, RateLimited)
        else "error"
    )
    problem = ConnectionErrorPayload(
        errorCode=error.code,
        message=error.message,
        retryAfter=error.retry_after,
        severity=severity,
    )
    return (
        error_event(error, now_ms=now_ms, session_id=session_id),
        make_event(problem, now_ms=now_ms),
    )
