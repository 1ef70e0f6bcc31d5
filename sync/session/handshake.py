"""The authentication handshake's rules (``websocket-api.md`` "Authentication").

The first frame of a JSON connection is the "Authentication Request". It is
admitted by :func:`admit`, which applies the rules in this order, each
refusal a :class:`~sync.errors.SyncError` that
:class:`~sync.session.intent.RefuseAuth` answers and closes with:

1. the peer's address has authentication attempts left (else 3001);
2. the frame is a valid request (else ``AUTH_FAILED``, 3000, with the field);
3. the token verifies (``INVALID_TOKEN`` / ``TOKEN_EXPIRED``, 3000);
4. a ``sessionId`` in the request is the endpoint's (``AUTH_FAILED``, 3000);
5. one more connection fits: server-wide (``CONNECTION_LIMIT_EXCEEDED``, 3001)
   and for the user (``CONNECTION_LIMIT_EXCEEDED``, 1008);
6. the chat session is the user's or shared with them (``PERMISSION_DENIED``,
   1008); an unclaimed one is claimed by the user. Agents and admins serve
   every session and never claim one.

:class:`Policy` holds the limits the shell's settings set, and
:func:`established_event` the ``connection_established`` that follows a
successful "Authentication Response".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tripsage_sync.sync.errors import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_RATE_LIMITED,
    AuthError,
    ConnectionLimitExceeded,
    InvalidMessage,
)
from tripsage_sync.sync.events import ConnectionEstablishedPayload, Limits
from tripsage_sync.sync.session.facts import Facts, Verified
from tripsage_sync.sync.wire import AuthRequest, ServerEvent, make_event, parse_auth_request

__all__ = ["FEATURES", "Admission", "Policy", "admit", "established_event", "refused_session"]

# Optional features a client may ask for in its request; all are advertised.
FEATURES: Final = ("message_batching", "heartbeat", "channels", "optimistic_updates")


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits a session enforces and ``connection_established`` advertises."""

    server_version: str
    max_message_bytes: int
    max_connections: int
    max_connections_per_user: int
    reconnect_after_s: float
    messages_per_min: int
    auth_attempts_per_min: int
    connections_per_min: int
    subscriptions_per_min: int


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: its token's identity and expiry, and whether to claim."""

    request: AuthRequest
    token: Verified
    claim: bool


def admit(data: str | bytes, facts: Facts, *, session_id: str, policy: Policy) -> Admission:
    """Rules 2-6 for the first frame of ``/ws/{endpoint}/{session_id}``; raises the refusal."""
    try:
        request = parse_auth_request(data)
    except InvalidMessage as exc:
        raise AuthError("Invalid authentication request", details=exc.details) from None
    token = facts.verify(request.token)
    principal = token.principal
    if request.sessionId is not None and request.sessionId != session_id:
        raise AuthError("sessionId does not match the endpoint", code="AUTH_FAILED")
    if facts.authenticated_count() >= policy.max_connections:
        raise AuthError(
            "Server connection limit reached",
            code="CONNECTION_LIMIT_EXCEEDED",
            retry_after=policy.reconnect_after_s,
            close_code=CLOSE_RATE_LIMITED,
        )
    if facts.connections_of(principal.user_id) >= policy.max_connections_per_user:
        raise ConnectionLimitExceeded(
            "Too many connections for this user",
            details={"limit": policy.max_connections_per_user},
        )
    if principal.is_privileged:
        return Admission(request, token, claim=False)
    ownership = facts.ownership(session_id)
    if ownership.owner is not None and not ownership.admits(principal.user_id):
        raise refused_session()
    return Admission(request, token, claim=ownership.owner is None)


def refused_session() -> AuthError:
    """Rule 6's refusal: the session belongs to another user."""
    return AuthError(
        "This chat session belongs to another user",
        code="PERMISSION_DENIED",
        close_code=CLOSE_POLICY_VIOLATION,
    )


def established_event(
    policy: Policy,
    *,
    connection_id: str,
    user_id: str,
    session_id: str,
    heartbeat_interval_s: float,
    auth_timeout_s: float,
    now_ms: int,
) -> ServerEvent[ConnectionEstablishedPayload]:
    """``connection_established``: the server's version, features and limits."""
    p = policy
    limits = Limits(
        maxMessageSize=p.max_message_bytes,
        maxConnections=p.max_connections,
        maxConnectionsPerUser=p.max_connections_per_user,
        rateLimitPerMinute=p.messages_per_min,
        authAttemptsPerMinute=p.auth_attempts_per_min,
        connectionsPerMinute=p.connections_per_min,
        subscriptionsPerMinute=p.subscriptions_per_min,
        heartbeatInterval=heartbeat_interval_s,
        authTimeout=auth_timeout_s,
    )
    payload = ConnectionEstablishedPayload(
        connectionId=connection_id,
        serverVersion=p.server_version,
        features=list(FEATURES),
        limits=limits,
        userId=user_id,
        sessionId=session_id,
    )
    return make_event(payload, now_ms=now_ms, session_id=session_id)
