"""Payloads of the server-sent events of the connection layer.

``websocket-api.md`` "Connection Events", "System Events" and "Channel
Subscription". Each builder takes ``now_ms`` and returns a
:class:`~sync.wire.ServerEvent`; nothing here reads a clock.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tripsage_sync.sync.errors import RateLimited, SyncError
from tripsage_sync.sync.wire import EventPayload, ServerEvent, make_event

__all__ = [
    "AuthExpiringPayload",
    "AuthRefreshedPayload",
    "ConnectionClosePayload",
    "ConnectionErrorPayload",
    "ConnectionEstablishedPayload",
    "ErrorPayload",
    "HeartbeatPayload",
    "Limits",
    "SubscriptionUpdatePayload",
    "connection_close",
    "error_event",
]

Severity = Literal["info", "warning", "error", "critical"]


class _Part(BaseModel):
    """A part of a payload."""

    model_config = ConfigDict(frozen=True)


class Limits(_Part):
    maxMessageSize: int
    maxConnections: int
    maxConnectionsPerUser: int
    rateLimitPerMinute: int
    authAttemptsPerMinute: int
    connectionsPerMinute: int
    subscriptionsPerMinute: int
    heartbeatInterval: float
    authTimeout: float


class ConnectionEstablishedPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "connection_established"

    connectionId: str
    serverVersion: str
    features: list[str]
    limits: Limits
    userId: str
    sessionId: str | None = None


class HeartbeatMetrics(_Part):
    uptime: float
    messagesSent: int
    messagesReceived: int


class HeartbeatPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "connection_heartbeat"

    connectionId: str
    serverTime: str
    metrics: HeartbeatMetrics


class ConnectionErrorPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "connection_error"

    errorCode: str
    message: str
    retryAfter: float | None = None
    severity: Severity = "error"


class ConnectionClosePayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "connection_close"

    reason: str
    code: int
    gracePeriod: float
    reconnectAfter: float | None = None


class AuthExpiringPayload(EventPayload):
    """``auth_expiring``: send ``auth_refresh {token}`` before ``refreshBefore``."""

    EVENT_TYPE: ClassVar[str] = "auth_expiring"

    expiresAt: str
    refreshBefore: str
    expiresIn: float  # seconds


class AuthRefreshedPayload(EventPayload):
    """``auth_refreshed``: the answer to ``auth_refresh``, the new token's expiry."""

    EVENT_TYPE: ClassVar[str] = "auth_refreshed"

    expiresAt: str


class ErrorPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "error"

    code: str
    message: str
    details: dict[str, Any] | None = None
    retryAfter: float | None = None
    limits: dict[str, Any] | None = None
    severity: Severity = "error"


class SubscriptionUpdatePayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "subscription_update"

    subscribedChannels: list[str]
    unsubscribedChannels: list[str] = Field(default_factory=list)
    deniedChannels: list[dict[str, str]] = Field(default_factory=list)
    # Names in unsubscribeChannels this connection was not subscribed to.
    notSubscribedChannels: list[str] = Field(default_factory=list)
    success: bool


def error_event(
    exc: SyncError,
    *,
    now_ms: int,
    session_id: str | None = None,
    in_reply_to: str | None = None,
) -> ServerEvent[ErrorPayload]:
    """The spec's ``error`` event for a peer-caused error (generic message only)."""
    details = dict(exc.details or {})
    if in_reply_to is not None:
        details["messageId"] = in_reply_to
    payload = ErrorPayload(
        code=exc.code,
        message=exc.message,
        details=details or None,
        retryAfter=exc.retry_after,
        limits=exc.limits if isinstance(exc, RateLimited) else None,
        severity="warning" if isinstance(exc, RateLimited) else "error",
    )
    return make_event(payload, now_ms=now_ms, session_id=session_id)


def connection_close(
    reason: str, code: int, *, grace_period_s: float, reconnect_after_s: float | None, now_ms: int
) -> ServerEvent[ConnectionClosePayload]:
    payload = ConnectionClosePayload(
        reason=reason, code=code, gracePeriod=grace_period_s, reconnectAfter=reconnect_after_s
    )
    return make_event(payload, now_ms=now_ms)
