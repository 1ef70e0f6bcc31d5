"""Chat and agent streaming: the I/O shell around :mod:`sync.chat`.

``websocket-api.md`` "Chat Events", "Typing Events", "Tool Events", "Agent
Status Events" and "System Events". HTTP routes are in :mod:`api.chat.http`.

Theory of operation
-------------------
*Users.* A ``chat_message`` on ``/ws/chat/{sessionId}`` is validated (role
``user``, the sender a member of the session), stored, and then published
once to every connection subscribed to ``chat:{sessionId}`` (the sender's
devices included: the echo carries the server ``messageId`` and ``seq``) and
to the internal channel ``agents``. A client ``messageId`` is kept as the
server id, so a message re-sent after a reconnect is stored once (the sender
alone gets the stored copy again).

*Agents.* An agent is any process with a ``role: agent`` token. Every agent
connection, on either endpoint and any session id (by convention
``/ws/chat/agent-{agentId}``), joins the internal channel ``agents`` and so
receives every user's ``chat_message`` (envelope ``sessionId`` and
``userId``). It answers over the same WebSocket (or ``POST
/api/sessions/{sessionId}/events``) with agent events whose envelope
``sessionId`` names the session (default: the session of its connection
path). A user token cannot publish them (PERMISSION_DENIED). Agents and
admins never claim a session by connecting to it.

*Streams.* ``chat_message_chunk`` goes through :class:`sync.chat.StreamTable`
(reordered, deduplicated) to ``chat:{sessionId}``. A stream starts at its
first chunk numbered 0 or 1; a chunk held for a missing earlier one waits at
most ``chat_chunk_reorder_window_s``: the table returns that deadline as an
intent and the feature's one timer task (below) releases the chunks then.
Released chunks go through :class:`sync.chat.ChunkPacer`: the first after a
quiet spell at once, later ones gathered per session for at most
``chat_chunk_gather_s`` (or 64 chunks), so that a fast
stream costs one ``batch`` frame per subscriber per window rather than one
frame per chunk. Each chunk is still its own event, in order; anything else
published to the session (a completion, a message, a tool event) and a
joiner's catch-up wait for the gathered chunks to go first, and so does a
drain's ``connection_close`` (``Services.drain_hooks``).
``chat_message_complete`` stores ``finalContent`` and ``metadata`` as the
assistant message, then publishes the completion (with ``seq``). Tool and status events go to
``chat:{sessionId}``, ``agent-status:{sessionId}`` and ``agent:{ownerId}``
(and ``agent:{userId}`` of the envelope), each connection once.

*Joining and resuming.* When a connection authenticates, in the same tick as
its implicit subscriptions (:attr:`api.transport.services.Services.join_hooks`), so
nothing is missed or sent twice: a chat connection opened with
``?lastMessageId=`` first gets the stored messages after that one (``replay:
true``, at most ``chat_replay_max_messages``, the newest; ``chat_resumed``
reports a ``gap`` to fetch over HTTP), then one ``chat_message_chunk`` with
``catchUp: true`` per reply being streamed, carrying the whole content so far
(replace, do not append), then who is typing. Later chunks of that reply have
higher ``chunkIndex``. An agent-status connection gets the session's latest
``agent_status_update``. Messages stored but not yet published when the
client joins are left out of the replay: they arrive live.

*Typing.* Starts and stops (``user_typing``, the spec's batch example, is a
start) are relayed to the session's other users with the identity of the
token; :class:`sync.chat.TypingTable` ends an indicator after
``typing_timeout_s``, and a user's last chat connection to the session
closing ends it too.

*Timers.* One task for the feature sleeps until the earliest deadline of
both tables (typing indicators, held chunks) or the stalled-stream sweep; a
new deadline earlier than the one it sleeps towards wakes it. No timer per
chunk or per stream.

Persist, then publish: nothing stored is announced before its commit.
Message contents are never logged.

One module a part: :mod:`api.chat.history` stores messages and replays them,
:mod:`api.chat.relay` routes agents' events and streams,
:mod:`api.chat.indicator` relays typing, :mod:`api.chat.timer` is the timer
task. This module is the feature: it handles users' messages and admins'
notifications, and hands a joining or revoked connection to the parts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tripsage_sync.api.chat.history import ChatHistory, stored_extra, user_session
from tripsage_sync.api.chat.indicator import TypingIndicators
from tripsage_sync.api.chat.relay import AGENTS_CHANNEL, AgentRelay
from tripsage_sync.api.chat.timer import ChatTimer
from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.services import Services
from tripsage_sync.storage.queries import ChatMessage
from tripsage_sync.sync import wire
from tripsage_sync.sync.channels import Channel, Principal
from tripsage_sync.sync.chat import ChatMessageEventPayload, ChunkPacer, StreamTable, TypingTable
from tripsage_sync.sync.errors import (
    CLOSE_POLICY_VIOLATION,
    InvalidMessage,
    PermissionDenied,
)
from tripsage_sync.sync.wire import ChatMessagePayload, ServerEvent, make_event, new_id

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from tripsage_sync.api.transport.connection import Connection

__all__ = ["AGENTS_CHANNEL", "ChatFeature"]

logger = logging.getLogger(__name__)


class ChatFeature:
    """Chat sessions, agent streaming and typing (the module's theory of operation)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.streams = StreamTable(
            idle_timeout_ms=int(settings.chat_stream_idle_timeout_s * 1000),
            reorder_window_ms=int(settings.chat_chunk_reorder_window_s * 1000),
        )
        self.typing = TypingTable(timeout_ms=int(settings.typing_timeout_s * 1000))
        self.pacer = ChunkPacer(interval_ms=int(settings.chat_chunk_gather_s * 1000))
        self.timer = ChatTimer(clock, self.typing, self.streams, self.pacer)

    # -- plug-in points ---------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """None of its own: :class:`api.chat.http.ChatHttp` serves the HTTP API."""
        return []

    async def start(self, services: Services) -> None:
        self.services = services
        self.hub = services.hub
        self.store = services.store
        self.history = ChatHistory(services, self.clock, self.settings.chat_replay_max_messages)
        self.relay = AgentRelay(
            services, self.clock, self.history, self.streams, self.pacer, self.timer.arm
        )
        self.indicators = TypingIndicators(services, self.clock, self.typing, self.timer.arm)
        services.implicit_channel_providers.append(self.relay.agent_channels)
        services.join_hooks.append(self._on_join)
        services.on_disconnect.append(self.indicators.on_disconnect)
        services.drain_hooks.append(self.relay.flush_all)
        self.timer.start(
            typing_ended=self.indicators.ended,
            chunks_due=self.relay.publish_chunks,
            chunks_gathered=self.relay.send_chunks,
        )

    async def stop(self) -> None:
        await self.timer.stop()

    # -- what the HTTP API uses (api/chat/http.py) ------------------------------------

    def message_event(
        self, message: ChatMessage, *, replay: bool = False
    ) -> ServerEvent[ChatMessageEventPayload]:
        return self.history.message_event(message, replay=replay)

    async def publish_agent_event(
        self, principal: Principal, message: wire.AgentPublishedMessage, default_session: str | None
    ) -> int:
        """Validate and route one agent event (WebSocket or HTTP); connections reached."""
        return await self.relay.publish_agent_event(principal, message, default_session)

    # -- what the router hands the feature (api/router.py) --------------------------------

    async def on_typing(self, conn: Connection, message: wire.TypingMessage) -> None:
        await self.indicators.on_typing(conn, message)

    async def on_agent_event(self, conn: Connection, message: wire.AgentEventMessage) -> None:
        await self.relay.on_agent_event(conn, message)

    # -- user messages ------------------------------------------------------------

    async def on_chat_message(self, conn: Connection, message: wire.ChatMessage) -> None:
        if conn.principal.is_privileged:
            await self.relay.publish_agent_event(
                conn.principal, message, self.relay.agent_session(conn)
            )
            return
        session_id = user_session(conn, message)
        payload: ChatMessagePayload = message.payload
        principal = conn.principal
        if payload.role != "user":
            raise PermissionDenied(
                "Users send messages with role 'user'", details={"role": payload.role}
            )
        members = await self.services.chat_members(session_id)
        if members is None or principal.user_id not in members:
            raise PermissionDenied("Not a member of this chat session")
        message_id = payload.messageId or new_id("msg")
        if message_id in self.history.pending:
            return  # the same message is being stored right now
        stored = self.store.chat_message(message_id)
        if stored is not None:
            if stored.session_id != session_id or stored.user_id != principal.user_id:
                raise InvalidMessage(
                    "messageId is already used",
                    details={"field": "payload.messageId", "expected": "a new id"},
                )
            conn.send(self.history.message_event(stored))  # a re-send: acknowledge it again
            return
        extra = stored_extra(payload)
        async with self.history.storing(
            session_id, message_id, "user", principal.user_id, payload.content, extra
        ) as row:
            event = self.history.message_event(row)
            self.relay.flush(session_id)
            self.relay.deliver([f"chat:{session_id}", AGENTS_CHANNEL], event)
        self.indicators.stop(session_id, principal.user_id)

    # -- notifications and system messages ------------------------------------------

    async def on_system_event(self, conn: Connection, message: wire.SystemEventMessage) -> None:
        session_id = message.sessionId
        channel = f"chat:{session_id}" if session_id is not None else None
        self.broadcast(conn.principal, message, user_id=message.userId, channel=channel)

    def broadcast(
        self,
        principal: Principal,
        message: wire.SystemEventMessage,
        *,
        user_id: str | None,
        channel: str | None,
    ) -> int:
        """An admin's ``notification``/``system_message`` to a user, a channel or everyone."""
        if principal.role != "admin":
            raise PermissionDenied(f"Only admins send '{message.type}'")
        if user_id is not None and channel is not None:
            raise InvalidMessage(
                "Address a user or a channel, not both",
                details={"field": "channel", "expected": "one target", "received": "two"},
            )
        event = make_event(message.payload, now_ms=self.clock.now_ms(), user_id=user_id)
        if user_id is not None:
            sent = self.hub.send_to_user(user_id, event)
        elif channel is not None:
            target = Channel.parse(channel)
            if target.namespace == "chat":
                self.relay.flush(target.key)  # after the chunks gathered so far
            sent = self.hub.publish(target.name, event)
        else:
            sent = self.hub.broadcast_all(event)
        logger.info("%s by %s reached %d connection(s)", message.type, principal.user_id, sent)
        return sent

    # -- connections joining and leaving ----------------------------------------------

    def _on_join(self, conn: Connection) -> None:
        """Replay, catch-up and typing for a connection that just authenticated."""
        session_id = conn.session.path_session_id
        if conn.session.endpoint != "chat":
            self.relay.send_status(conn, session_id)
            return
        last_id = conn.websocket.query_params.get("lastMessageId")
        if last_id is not None:
            streaming = [s.message_id for s in self.streams.in_progress(session_id)]
            self.history.replay(conn, session_id, last_id, streaming=streaming)
        self.relay.catch_up(conn, session_id)
        self.indicators.catch_up(conn, session_id)

    def revoke(self, session_id: str, user_id: str) -> int:
        """Cut a user's live access to a session they were removed from."""
        cut = 0
        for conn in list(self.hub.by_user.get(user_id, ())):
            if conn.session.path_session_id == session_id:
                conn.close(
                    CLOSE_POLICY_VIOLATION,
                    "access revoked",
                    error=PermissionDenied("Access to this chat session was revoked"),
                )
                cut += 1
                continue
            for name in (f"chat:{session_id}", f"agent-status:{session_id}"):
                if name in conn.session.subscriptions:
                    self.hub.unsubscribe(conn, name)
                    conn.send_error(PermissionDenied(f"Access to channel '{name}' was revoked"))
                    cut += 1
        self.indicators.stop(session_id, user_id)
        return cut
