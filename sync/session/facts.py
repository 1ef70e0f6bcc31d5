"""What the session asks its shell: the facts its rules need, as a port.

The rules of the handshake and of the message path depend on things only the
shell knows: the rate limiters' verdicts, whether a token verifies, how many
connections are open, who owns a chat session. The shell gathers them behind
:class:`Facts`, and the session asks only when a rule needs the answer, at most
once a frame or message and in the rules' order, so that a refused frame
spends nothing it need not: an oversized frame no authentication attempt, a
bad token no storage read, an invalid batch item no message of the user's rate.
Answers are plain values; a refusal comes back as the error to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import RateLimited

__all__ = ["Facts", "Ownership", "Verified"]


class Verified(Protocol):
    """A token that verified: who it names and its ``exp`` in ms."""

    @property
    def principal(self) -> Principal: ...

    @property
    def expires_at_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who may open a chat session: its owner (``None`` while unclaimed) and the
    users it is shared with."""

    owner: str | None
    members: frozenset[str] = field(default_factory=frozenset)

    def admits(self, user_id: str) -> bool:
        return user_id == self.owner or user_id in self.members


class Facts(Protocol):
    """The shell's answers (``api/transport/facts.py``; a scripted fake in tests)."""

    def spend_auth_attempt(self) -> RateLimited | None:
        """Spend one authentication attempt of the peer's address; the refusal if over."""
        ...

    def verify(self, token: str) -> Verified:
        """The token's identity and expiry; raises :class:`~sync.errors.AuthError`."""
        ...

    def authenticated_count(self) -> int:
        """Authenticated connections of every endpoint (what ``max_connections`` caps)."""
        ...

    def connections_of(self, user_id: str) -> int:
        """The user's authenticated connections."""
        ...

    def ownership(self, session_id: str) -> Ownership:
        """Who owns the chat session now, and who shares it."""
        ...

    def spend_message(self, user_id: str) -> RateLimited | None:
        """Spend one message of the user's rate; the refusal if over."""
        ...
