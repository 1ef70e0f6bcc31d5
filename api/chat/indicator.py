"""Typing indicators: who is typing in which chat session.

``websocket-api.md`` "Typing Events". Starts and stops (``user_typing``, the
spec's batch example, is a start) are relayed to the session's other users with
the identity of the token; :class:`sync.chat.TypingTable` ends an indicator
after ``typing_timeout_s`` (the feature's timer, :mod:`api.chat.timer`, wakes
for it), and so do a user's message, their removal from the session and their
last chat connection to the session closing. A connection joining a session
is told who is typing there now.
"""

from __future__ import annotations

from collections.abc import Callable

from tripsage_sync.api.chat.history import user_session
from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.services import Services
from tripsage_sync.sync.chat import ChatTypingStartPayload, ChatTypingStopPayload, TypingTable
from tripsage_sync.sync.errors import NotFound
from tripsage_sync.sync.wire import ServerEvent, TypingMessage, make_event

__all__ = ["TypingIndicators"]


class TypingIndicators:
    """Relays typing; ``arm`` asks the feature's timer to wake at a deadline."""

    def __init__(
        self,
        services: Services,
        clock: Clock,
        typing: TypingTable,
        arm: Callable[[int], None],
    ) -> None:
        self.hub = services.hub
        self.store = services.store
        self.clock = clock
        self.typing = typing
        self.arm = arm
        self._typing_names: dict[tuple[str, str], str] = {}

    async def on_typing(self, conn: Connection, message: TypingMessage) -> None:
        principal = conn.principal
        if principal.is_privileged and message.sessionId is not None:
            session_id = message.sessionId
            if self.store.chat_session_owner(session_id) is None:
                raise NotFound("No such chat session", details={"sessionId": session_id})
        else:
            session_id = user_session(conn, message)
        name = principal.name or principal.user_id
        if message.type == "chat_typing_stop":
            self.stop(session_id, principal.user_id)
            return
        self._typing_names[(session_id, principal.user_id)] = name
        now = self.clock.now_ms()
        if self.typing.start(session_id, principal.user_id, now):
            self._announce(session_id, principal.user_id, name, started=True)
        self.arm(now + self.typing.timeout_ms)

    def stop(self, session_id: str, user_id: str) -> None:
        """``user_id`` stopped typing in ``session_id`` (if they were)."""
        if self.typing.stop(session_id, user_id):
            self._announce(session_id, user_id, None, started=False)

    def ended(self, session_id: str, user_id: str) -> None:
        """The table ended ``user_id``'s indicator (its timeout passed)."""
        self._announce(session_id, user_id, None, started=False)

    def _announce(self, session_id: str, user_id: str, name: str | None, *, started: bool) -> None:
        if started:
            event: ServerEvent = make_event(
                ChatTypingStartPayload(userId=user_id, username=name),
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
        else:
            self._typing_names.pop((session_id, user_id), None)
            event = make_event(
                ChatTypingStopPayload(userId=user_id),
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
        others = (
            c
            for c in self.hub.subscribers(f"chat:{session_id}")
            if c.session.principal is not None and c.session.principal.user_id != user_id
        )
        self.hub.send_many(others, event)

    # -- connections joining and leaving ----------------------------------------------

    def catch_up(self, conn: Connection, session_id: str) -> None:
        """Who is typing in ``session_id``, to a connection that just joined it."""
        for user_id in self.typing.typing_in(session_id):
            if user_id != conn.principal.user_id:
                name = self._typing_names.get((session_id, user_id), user_id)
                conn.send(
                    make_event(
                        ChatTypingStartPayload(userId=user_id, username=name),
                        now_ms=self.clock.now_ms(),
                        session_id=session_id,
                    )
                )

    def on_disconnect(self, conn: Connection) -> None:
        """A user's last chat connection to a session closing ends their indicator."""
        principal = conn.session.principal
        if principal is None or conn.session.endpoint != "chat":
            return
        session_id = conn.session.path_session_id
        if not self.typing.is_typing(session_id, principal.user_id):
            return
        for other in self.hub.by_user.get(principal.user_id, ()):
            if other.session.endpoint == "chat" and other.session.path_session_id == session_id:
                return  # another device of the user is still in the session
        self.stop(session_id, principal.user_id)
