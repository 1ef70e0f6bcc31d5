"""The agent relay: agents' events to the sessions, users and agents they are for.

``websocket-api.md`` "Chat Events", "Tool Events", "Agent Status Events". An
agent (a ``role: agent`` token; admins too) publishes over its WebSocket or
``POST /api/sessions/{sessionId}/events``; the envelope ``sessionId`` names the
session (default: the session of its connection path, if there is one).
:func:`sync.chat.agent_event_channels` decides where each event goes:

- ``chat_message_chunk`` goes through :class:`sync.chat.StreamTable`
  (reordered, deduplicated) and :class:`sync.chat.ChunkPacer` (gathered per
  session for a few milliseconds, so that one ``batch`` frame carries several
  chunks) to ``chat:{sessionId}``; a chunk held for a missing earlier one, or
  gathered, is published by the feature's timer (:mod:`api.chat.timer`) when
  the table's deadline comes. Anything else published to the session waits
  for its gathered chunks to go first (:meth:`AgentRelay.flush`), so the order
  subscribers see is the order of release;
- ``chat_message_complete`` stores ``finalContent`` and ``metadata`` as the
  assistant message, then publishes the completion (with ``seq``); an
  agent's ``chat_message`` is stored and published as an assistant (or
  system) message;
- tool and status events go to ``chat:{sessionId}``,
  ``agent-status:{sessionId}`` and ``agent:{ownerId}`` (and ``agent:{userId}``
  of the envelope), each connection once. The latest ``agent_status_update``
  of each session is kept for agent-status connections that join later.

Every agent connection is subscribed to the internal channel ``agents``
(:data:`AGENTS_CHANNEL`), where every user's ``chat_message`` goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

from tripsage_sync.api.chat.history import ChatHistory, stored_extra
from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.services import Services
from tripsage_sync.sync import wire
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.chat import (
    ChatChunkEventPayload,
    ChatCompleteEventPayload,
    Chunk,
    ChunkPacer,
    StreamTable,
    agent_event_channels,
)
from tripsage_sync.sync.errors import NotFound, PermissionDenied
from tripsage_sync.sync.wire import (
    ChatMessageChunkPayload,
    ChatMessageCompletePayload,
    ChatMessagePayload,
    ServerEvent,
    make_event,
    new_id,
)

__all__ = ["AGENTS_CHANNEL", "AgentRelay"]

logger = logging.getLogger(__name__)

# Internal hub channel of every agent connection (not subscribable by clients).
AGENTS_CHANNEL: Final = "agents"
MAX_REMEMBERED_STATUSES: Final = 10_000


class AgentRelay:
    """Routes agent events; ``arm`` asks the feature's timer to wake at a deadline."""

    def __init__(
        self,
        services: Services,
        clock: Clock,
        history: ChatHistory,
        streams: StreamTable,
        pacer: ChunkPacer,
        arm: Callable[[int], None],
    ) -> None:
        self.hub = services.hub
        self.store = services.store
        self.clock = clock
        self.history = history
        self.streams = streams
        self.pacer = pacer
        self.arm = arm
        self.last_status: OrderedDict[str, ServerEvent] = OrderedDict()

    def deliver(self, channels: Iterable[str], event: ServerEvent) -> int:
        """Send ``event`` once to each connection subscribed to any of ``channels``."""
        return self.hub.send_to_channels(channels, event)

    def agent_channels(self, conn: Connection) -> list[str]:
        return [AGENTS_CHANNEL] if conn.principal.role == "agent" else []

    def agent_session(self, conn: Connection) -> str | None:
        """The session of an agent's connection path, if it is a chat session."""
        session_id = conn.session.path_session_id
        return session_id if self.store.chat_session_owner(session_id) is not None else None

    async def on_agent_event(self, conn: Connection, message: wire.AgentEventMessage) -> None:
        # The connection's session is the default only: no lookup when the envelope names one.
        named = message.sessionId is not None
        default = self.agent_session(conn) if conn.principal.is_privileged and not named else None
        await self.publish_agent_event(conn.principal, message, default)

    async def publish_agent_event(
        self, principal: Principal, message: wire.AgentPublishedMessage, default_session: str | None
    ) -> int:
        """Validate and route one agent event (WebSocket or HTTP); connections reached."""
        if not principal.is_privileged:
            raise PermissionDenied(
                f"Only agents publish '{message.type}'", details={"type": message.type}
            )
        session_id = message.sessionId or default_session
        owner: str | None = None
        if session_id is not None:
            owner = self.store.chat_session_owner(session_id)
            if owner is None:
                raise NotFound("No such chat session", details={"sessionId": session_id})
        channels = agent_event_channels(
            message.type, session_id=session_id, owner_id=owner, user_id=message.userId
        )
        if session_id is not None and message.type != "chat_message_chunk":
            self.flush(session_id)  # what the session's subscribers got so far goes first
        match message:
            case wire.ChatMessageChunkMessage():
                assert session_id is not None  # agent_event_channels refused it otherwise
                delivered = self._chunk(session_id, message.payload)
                # Fairness, not full backpressure: the subscribers' writers get a
                # turn between two frames of a fast agent. (Pausing the agent until
                # their queues drain needs the queue depth from api.transport.connection.)
                await asyncio.sleep(0)
                return delivered
            case wire.ChatMessageCompleteMessage():
                assert session_id is not None
                return await self._complete(principal, session_id, message.payload)
            case wire.ChatMessage():
                assert session_id is not None
                return await self._assistant_message(principal, session_id, message.payload)
        # Tool and status events are sent on as they came (their payload model dumped).
        event = make_event(
            message.payload,
            now_ms=self.clock.now_ms(),
            session_id=session_id,
            user_id=message.userId,
        )
        if message.type == "agent_status_update" and session_id is not None:
            self.last_status[session_id] = event
            self.last_status.move_to_end(session_id)
            while len(self.last_status) > MAX_REMEMBERED_STATUSES:
                self.last_status.popitem(last=False)
        return self.deliver(channels, event)

    # -- replies: streamed, completed, or whole ----------------------------------------

    def _chunk(self, session_id: str, payload: ChatMessageChunkPayload) -> int:
        result = self.streams.receive_chunk(
            session_id,
            payload.messageId,
            payload.chunkIndex,
            payload.content,
            payload.isComplete,
            self.clock.now_ms(),
        )
        if result.duplicate:
            logger.debug(
                "late or duplicate chunk %d of %s dropped", payload.chunkIndex, payload.messageId
            )
        if result.deadline_ms is not None:
            self.arm(result.deadline_ms)
        return self.publish_chunks(session_id, list(result.released))

    def publish_chunks(self, session_id: str, chunks: list[Chunk]) -> int:
        """Chunks the stream table released, through the pacer; connections reached now."""
        publication = self.pacer.publish(session_id, chunks, self.clock.now_ms())
        if publication.deadline_ms is not None:
            self.arm(publication.deadline_ms)
        return self.send_chunks(session_id, publication.chunks)

    def flush(self, session_id: str) -> int:
        """Publish the session's gathered chunks now: what comes next must follow them."""
        return self.send_chunks(session_id, self.pacer.take(session_id))

    def flush_all(self) -> None:
        """Publish every session's gathered chunks now (the server is about to drain)."""
        for session_id in self.pacer.sessions_holding():
            self.flush(session_id)

    def send_chunks(self, session_id: str, chunks: Iterable[Chunk]) -> int:
        """Publish each chunk (encoded once) to ``chat:{sessionId}``, in order."""
        delivered = 0
        for chunk in chunks:
            event = make_event(
                ChatChunkEventPayload(
                    messageId=chunk.message_id,
                    content=chunk.content,
                    isComplete=chunk.is_complete,
                    chunkIndex=chunk.index,
                ),
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
            delivered += self.hub.publish(f"chat:{session_id}", event)
        return delivered

    async def _complete(
        self, principal: Principal, session_id: str, payload: ChatMessageCompletePayload
    ) -> int:
        message_id = payload.messageId
        stream = self.streams.complete(session_id, message_id, self.clock.now_ms())
        if stream is None:
            logger.debug("duplicate completion of %s dropped", message_id)
            return 0
        try:
            async with self.history.storing(
                session_id,
                message_id,
                "assistant",
                principal.user_id,
                payload.finalContent,
                {"metadata": payload.metadata},
            ) as row:
                self.flush(session_id)
                event = make_event(
                    ChatCompleteEventPayload(
                        messageId=message_id,
                        finalContent=payload.finalContent,
                        metadata=payload.metadata,
                        seq=row.seq,
                    ),
                    now_ms=self.clock.now_ms(),
                    session_id=session_id,
                )
                return self.hub.publish(f"chat:{session_id}", event)
        finally:
            self.streams.discard(message_id)

    async def _assistant_message(
        self, principal: Principal, session_id: str, payload: ChatMessagePayload
    ) -> int:
        role = "system" if payload.role == "system" else "assistant"
        message_id = payload.messageId or new_id("msg")
        extra = stored_extra(payload)
        async with self.history.storing(
            session_id, message_id, role, principal.user_id, payload.content, extra
        ) as row:
            self.flush(session_id)
            return self.hub.publish(f"chat:{session_id}", self.history.message_event(row))

    # -- a connection that just joined ---------------------------------------------------

    def send_status(self, conn: Connection, session_id: str) -> None:
        """The session's latest ``agent_status_update``, to an agent-status connection."""
        status = self.last_status.get(session_id)
        if status is not None:
            conn.send(status)

    def catch_up(self, conn: Connection, session_id: str) -> None:
        """One ``catchUp`` chunk with the whole content so far per reply being streamed.

        Called before ``conn`` subscribes: the chunks gathered for the session
        go to the others first, so ``conn`` gets the content so far once.
        """
        self.flush(session_id)
        for stream in self.streams.in_progress(session_id):
            conn.send(
                make_event(
                    ChatChunkEventPayload(
                        messageId=stream.message_id,
                        content=stream.content,
                        isComplete=stream.finished,
                        chunkIndex=stream.last_released_index,
                        catchUp=True,
                    ),
                    now_ms=self.clock.now_ms(),
                    session_id=session_id,
                )
            )
