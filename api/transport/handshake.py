"""The authentication handshake's decisions that need no socket.

``websocket-api.md`` "Authentication": the limits a new connection must fit in
(:func:`check_capacity`), the ``connection_established`` event that follows a
successful "Authentication Response" (:func:`established_event`), and the rollback
a rate-limited ``optimistic_update_start`` gets as its one outcome
(:func:`rate_limited_rollback`). :class:`api.transport.connection.Connection`
carries them out.
"""

from __future__ import annotations

from typing import Final

from tripsage_sync.api import __version__
from tripsage_sync.api.settings import Settings
from tripsage_sync.sync.errors import (
    CLOSE_RATE_LIMITED,
    AuthError,
    ConnectionLimitExceeded,
    RateLimited,
)
from tripsage_sync.sync.events import ConnectionEstablishedPayload, Limits
from tripsage_sync.sync.wire import (
    OptimisticUpdateRollbackPayload,
    OptimisticUpdateStartPayload,
    ServerEvent,
    make_event,
)

__all__ = [
    "FEATURES",
    "SERVER_VERSION",
    "check_capacity",
    "established_event",
    "rate_limited_rollback",
]

SERVER_VERSION: Final = __version__
FEATURES: Final = ("message_batching", "heartbeat", "channels", "optimistic_updates")


def check_capacity(settings: Settings, *, authenticated: int, of_user: int) -> None:
    """Raise if one more authenticated connection does not fit (server-wide, per user)."""
    if authenticated >= settings.max_connections:
        raise AuthError(
            "Server connection limit reached",
            code="CONNECTION_LIMIT_EXCEEDED",
            retry_after=settings.reconnect_after_s,
            close_code=CLOSE_RATE_LIMITED,
        )
    if of_user >= settings.max_connections_per_user:
        raise ConnectionLimitExceeded(
            "Too many connections for this user",
            details={"limit": settings.max_connections_per_user},
        )


def established_event(
    settings: Settings, *, connection_id: str, user_id: str, session_id: str, now_ms: int
) -> ServerEvent[ConnectionEstablishedPayload]:
    """``connection_established``: the server's version, features and limits."""
    s = settings
    limits = Limits(
        maxMessageSize=s.max_message_size,
        maxConnections=s.max_connections,
        maxConnectionsPerUser=s.max_connections_per_user,
        rateLimitPerMinute=s.rate_limit_messages_per_min,
        authAttemptsPerMinute=s.rate_limit_auth_per_min,
        connectionsPerMinute=s.rate_limit_connections_per_min,
        subscriptionsPerMinute=s.rate_limit_subscriptions_per_min,
        heartbeatInterval=s.heartbeat_interval_s,
        authTimeout=s.auth_timeout_s,
    )
    payload = ConnectionEstablishedPayload(
        connectionId=connection_id,
        serverVersion=SERVER_VERSION,
        features=list(FEATURES),
        limits=limits,
        userId=user_id,
        sessionId=session_id,
    )
    return make_event(payload, now_ms=now_ms, session_id=session_id)


def rate_limited_rollback(
    p: OptimisticUpdateStartPayload, limited: RateLimited
) -> OptimisticUpdateRollbackPayload:
    """The ``optimistic_update_rollback`` payload of an update refused as rate limited."""
    return OptimisticUpdateRollbackPayload(
        updateId=p.updateId,
        tripId=p.tripId,
        fieldName=p.fieldName or p.fieldPath,
        rollbackToValue=p.previousValue,
        rollbackReason="rate_limited",
        canRetry=True,
        retryAfter=int((limited.retry_after or 1.0) * 1000),
        message="too many changes were sent at once; try again in a moment.",
    )
