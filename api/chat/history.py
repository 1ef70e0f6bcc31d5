"""Chat sessions' stored messages: storing, the event of a stored message, replay.

Every message of a session (a user's, an agent's reply, a system message) is
stored with a per-database ``seq`` before it is published (persist, then
publish). ``pending`` holds the ids stored or being stored whose event is not
published yet: a re-send of one is dropped, and a replay leaves them out (they
arrive live).

Replay (``websocket-api.md`` "Chat Events", resuming): a chat connection opened
with ``?lastMessageId=`` gets the stored messages after that one (``replay:
true``), at most ``chat_replay_max_messages`` (the newest; ``chat_resumed``
then reports the ``gap`` to fetch over HTTP), then ``chat_resumed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.services import Services
from tripsage_sync.storage.errors import DuplicateId, UnknownRow
from tripsage_sync.storage.queries import ChatMessage
from tripsage_sync.sync.chat import (
    ChatMessageEventPayload,
    ChatResumedPayload,
    stored_message_payload,
)
from tripsage_sync.sync.errors import InvalidMessage, NotFound, PermissionDenied
from tripsage_sync.sync.wire import ChatMessagePayload, Envelope, ServerEvent, make_event

__all__ = ["ChatHistory", "stored_extra", "user_session"]

logger = logging.getLogger(__name__)

_NO_SEQ: Final = 2**62


def stored_extra(payload: ChatMessagePayload) -> dict[str, Any]:
    """What a stored chat message keeps besides its content."""
    return {
        "attachments": [a.model_dump(mode="json") for a in payload.attachments],
        "toolCalls": [t.model_dump(mode="json") for t in payload.toolCalls],
    }


def user_session(conn: Connection, message: Envelope) -> str:
    """The chat session a user's message is for: its connection's, on a chat endpoint."""
    session_id = conn.session.path_session_id
    if conn.session.endpoint != "chat":
        raise InvalidMessage(
            f"'{message.type}' is sent on /ws/chat/{{sessionId}}",
            details={"field": "type", "expected": "a chat endpoint", "received": message.type},
        )
    if message.sessionId is not None and message.sessionId != session_id:
        raise PermissionDenied(
            "sessionId does not match the connection", details={"sessionId": message.sessionId}
        )
    return session_id


class ChatHistory:
    """The stored messages of every chat session."""

    def __init__(self, services: Services, clock: Clock, replay_max_messages: int) -> None:
        self.services = services
        self.store = services.store
        self.clock = clock
        self.replay_max_messages = replay_max_messages
        # Message ids stored or being stored whose event is not published yet.
        self.pending: set[str] = set()

    def message_event(
        self, message: ChatMessage, *, replay: bool = False
    ) -> ServerEvent[ChatMessageEventPayload]:
        payload = stored_message_payload(
            message_id=message.message_id,
            role=message.role,
            user_id=message.user_id,
            content=message.content,
            payload_json=message.payload_json,
            seq=message.seq,
            created_ms=message.created_ms,
        )
        if replay:
            payload = payload.model_copy(update={"replay": True})
        return make_event(
            payload,
            now_ms=self.clock.now_ms(),
            session_id=message.session_id,
            user_id=message.user_id,
        )

    @contextlib.asynccontextmanager
    async def storing(
        self,
        session_id: str,
        message_id: str,
        role: str,
        user_id: str,
        content: str,
        extra: dict[str, Any],
    ) -> AsyncIterator[ChatMessage]:
        """Store a message (persist, then publish): its id stays in ``pending`` until
        the caller's block, which publishes the stored row, is done."""
        self.pending.add(message_id)
        try:
            yield await self.store_message(
                session_id, message_id, role, user_id, content, extra, self.clock.now_ms()
            )
        finally:
            self.pending.discard(message_id)

    async def store_message(
        self,
        session_id: str,
        message_id: str,
        role: str,
        user_id: str,
        content: str,
        extra: dict[str, Any],
        created_ms: int,
    ) -> ChatMessage:
        payload_json = json.dumps(extra, separators=(",", ":"), ensure_ascii=False)
        future = self.store.append_chat_message(
            session_id, message_id, role, user_id, content, payload_json, created_ms
        )
        try:
            seq = await self.services.write(future)
        except DuplicateId:
            raise InvalidMessage(
                "messageId is already used",
                details={"field": "payload.messageId", "expected": "a new id", "received": "id"},
            ) from None
        except UnknownRow:
            raise NotFound("No such chat session", details={"sessionId": session_id}) from None
        logger.debug("stored message %s in %s as seq %d", message_id, session_id, seq)
        return ChatMessage(
            seq, message_id, session_id, role, user_id, content, payload_json, created_ms
        )

    def replay(
        self, conn: Connection, session_id: str, last_id: str, *, streaming: list[str]
    ) -> None:
        """The messages after ``last_id``, then ``chat_resumed`` (``streaming``: replies)."""
        limit = self.replay_max_messages
        last = self.store.chat_message(last_id)
        found = last is not None and last.session_id == session_id
        after = last.seq if last is not None and found else 0
        missed = self.store.chat_messages(session_id, after_seq=after, limit=limit + 1)
        gap: dict[str, int] | None = None
        if len(missed) > limit:
            missed = self.store.chat_messages_before(session_id, before_seq=_NO_SEQ, limit=limit)
            gap = {"afterSeq": after, "beforeSeq": missed[0].seq}
        replayed = 0
        for message in missed:
            if message.message_id not in self.pending:  # else it is published live
                conn.send(self.message_event(message, replay=True))
                replayed += 1
        conn.log.info("replayed %d message(s) after seq %d", replayed, after)
        conn.send(
            make_event(
                ChatResumedPayload(
                    lastMessageId=last_id,
                    found=found,
                    replayed=replayed,
                    gap=gap,
                    streaming=streaming,
                ),
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
        )
