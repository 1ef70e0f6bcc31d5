"""What a connection's :class:`sync.session.Session` asks of the process.

The session decides the handshake and the message path (``sync/session/``);
the facts its rules need come from here (:class:`ShellFacts`, the shell's side
of the :class:`sync.session.Facts` port): the hub's rate limiters and
connection counts, the JWT authority, and who owns a chat session in storage.
:func:`session_policy` turns the settings into the session's limits.
"""

from __future__ import annotations

from typing import Any, Final

from tripsage_sync.api import __version__
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import VerifiedToken
from tripsage_sync.api.transport.host import Host
from tripsage_sync.sync.errors import RateLimited
from tripsage_sync.sync.session import Ownership, Policy

__all__ = ["SERVER_VERSION", "ShellFacts", "session_policy"]

SERVER_VERSION: Final = __version__


def session_policy(settings: Settings) -> Policy:
    """The limits a session enforces and advertises in ``connection_established``."""
    s = settings
    return Policy(
        server_version=SERVER_VERSION,
        max_message_bytes=s.max_message_size,
        max_connections=s.max_connections,
        max_connections_per_user=s.max_connections_per_user,
        reconnect_after_s=s.reconnect_after_s,
        messages_per_min=s.rate_limit_messages_per_min,
        auth_attempts_per_min=s.rate_limit_auth_per_min,
        connections_per_min=s.rate_limit_connections_per_min,
        subscriptions_per_min=s.rate_limit_subscriptions_per_min,
    )


class ShellFacts:
    """One connection's answers to its session (:class:`sync.session.Facts`)."""

    def __init__(self, services: Host[Any], client_ip: str) -> None:
        self.services = services
        self.hub = services.hub
        self.client_ip = client_ip

    def spend_auth_attempt(self) -> RateLimited | None:
        hub = self.hub
        limited = hub.check(hub.auth_limiter, self.client_ip, "authentication attempts per IP")
        if limited is not None:
            self.services.count_rate_limited("auth")
        return limited

    def verify(self, token: str) -> VerifiedToken:
        return self.services.authority.verify_token(token)

    def authenticated_count(self) -> int:
        return self.hub.authenticated_count()

    def connections_of(self, user_id: str) -> int:
        return self.hub.user_connection_count(user_id)

    def ownership(self, session_id: str) -> Ownership:
        return self.services.session_ownership(session_id)

    def spend_message(self, user_id: str) -> RateLimited | None:
        hub = self.hub
        limited = hub.check(hub.message_limiter, user_id, "messages per user")
        if limited is not None:
            self.services.count_rate_limited("messages")
        return limited
