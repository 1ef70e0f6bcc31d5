"""Typing indicators (``websocket-api.md`` "Typing Events").

:class:`TypingTable` maps ``(sessionId, userId)`` to the time the indicator
ends by itself: a ``chat_typing_start`` (re)arms it, a stop or the deadline
ends it. Only changes are reported, so repeated starts are not re-broadcast.
"""

from __future__ import annotations

__all__ = ["TypingTable"]


class TypingTable:
    """Who is typing where, until when; see the module docstring."""

    def __init__(self, *, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.deadlines: dict[tuple[str, str], int] = {}

    def start(self, session_id: str, user_id: str, now_ms: int) -> bool:
        """Arm the indicator; ``True`` when the user was not typing (announce it)."""
        key = (session_id, user_id)
        new = key not in self.deadlines
        self.deadlines[key] = now_ms + self.timeout_ms
        return new

    def stop(self, session_id: str, user_id: str) -> bool:
        """``True`` when the user was typing (announce the stop)."""
        return self.deadlines.pop((session_id, user_id), None) is not None

    def is_typing(self, session_id: str, user_id: str) -> bool:
        return (session_id, user_id) in self.deadlines

    def typing_in(self, session_id: str) -> list[str]:
        return sorted(user for (session, user) in self.deadlines if session == session_id)

    def expire(self, now_ms: int) -> list[tuple[str, str]]:
        """Indicators whose deadline passed, removed; announce a stop for each."""
        ended = sorted(key for key, deadline in self.deadlines.items() if deadline <= now_ms)
        for key in ended:
            del self.deadlines[key]
        return ended

    def next_deadline_ms(self) -> int | None:
        return min(self.deadlines.values(), default=None)
