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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.services import Services
from tripsage_sync.storage.errors import DuplicateId, UnknownRow
from tripsage_sync.storage.queries import ChatMessage
from tripsage_sync.sync import wire
from tripsage_sync.sync.channels import Channel, Principal
from tripsage_sync.sync.chat import (
    CHAT_STREAM_EVENTS,
    Chunk,
    StreamTable,
    TypingTable,
    agent_event_channels,
    stored_message_payload,
)
from tripsage_sync.sync.errors import (
    CLOSE_POLICY_VIOLATION,
    InvalidMessage,
    NotFound,
    PermissionDenied,
)
from tripsage_sync.sync.wire import (
    ChatMessageChunkPayload,
    ChatMessageCompletePayload,
    ChatMessagePayload,
    ServerEvent,
    make_event,
    new_id,
)

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from tripsage_sync.api.transport.connection import Connection

__all__ = ["AGENTS_CHANNEL", "ChatFeature"]

logger = logging.getLogger(__name__)

# Internal hub channel of every agent connection (not subscribable by clients).
AGENTS_CHANNEL: Final = "agents"
STREAM_SWEEP_INTERVAL_S: Final = 5.0
MAX_REMEMBERED_STATUSES: Final = 10_000
_NO_SEQ: Final = 2**62


def _stored_extra(payload: ChatMessagePayload) -> dict[str, Any]:
    """What a stored chat message keeps besides its content."""
    return {
        "attachments": [a.model_dump(mode="json") for a in payload.attachments],
        "toolCalls": [t.model_dump(mode="json") for t in payload.toolCalls],
    }


class ChatFeature:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.streams = StreamTable(
            idle_timeout_ms=int(settings.chat_stream_idle_timeout_s * 1000),
            reorder_window_ms=int(settings.chat_chunk_reorder_window_s * 1000),
        )
        self.typing = TypingTable(timeout_ms=int(settings.typing_timeout_s * 1000))
        self._typing_names: dict[tuple[str, str], str] = {}
        # Message ids stored or being stored whose event is not published yet.
        self.pending: set[str] = set()
        self.last_status: OrderedDict[str, ServerEvent] = OrderedDict()
        self._wake = asyncio.Event()
        # When the timer task wakes next by itself (wall clock, ms).
        self._wake_at_ms = 0
        self._timer: asyncio.Task[None] | None = None

    # -- plug-in points ---------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """None of its own: :class:`api.chat.http.ChatHttp` serves the HTTP API."""
        return []

    async def start(self, services: Services) -> None:
        self.services = services
        self.hub = services.hub
        self.store = services.store
        services.implicit_channel_providers.append(self._agent_channels)
        services.join_hooks.append(self._on_join)
        services.on_disconnect.append(self._on_disconnect)
        self._timer = asyncio.create_task(self._run_timers(), name="chat-timers")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer

    # -- delivery -----------------------------------------------------------------

    def deliver(self, channels: Iterable[str], event: ServerEvent) -> int:
        """Send ``event`` once to each connection subscribed to any of ``channels``."""
        conns: dict[str, Connection] = {}
        for name in channels:
            for conn in self.hub.subscribers(name):
                conns[conn.id] = conn
        return self.hub.send_many(conns.values(), event)

    def message_event(self, message: ChatMessage, *, replay: bool = False) -> ServerEvent:
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
            payload["replay"] = True
        return make_event(
            "chat_message",
            payload,
            now_ms=self.clock.now_ms(),
            session_id=message.session_id,
            user_id=message.user_id,
        )

    async def _store(
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

    # -- user messages ------------------------------------------------------------

    async def on_chat_message(self, conn: Connection, message: wire.ChatMessage) -> None:
        if conn.principal.is_privileged:
            await self.publish_agent_event(conn.principal, message, self._agent_session(conn))
            return
        session_id = self._user_session(conn, message)
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
        if message_id in self.pending:
            return  # the same message is being stored right now
        stored = self.store.chat_message(message_id)
        if stored is not None:
            if stored.session_id != session_id or stored.user_id != principal.user_id:
                raise InvalidMessage(
                    "messageId is already used",
                    details={"field": "payload.messageId", "expected": "a new id"},
                )
            conn.send(self.message_event(stored))  # a re-send: acknowledge it again
            return
        extra = _stored_extra(payload)
        self.pending.add(message_id)
        try:
            row = await self._store(
                session_id,
                message_id,
                "user",
                principal.user_id,
                payload.content,
                extra,
                self.clock.now_ms(),
            )
            self.deliver([f"chat:{session_id}", AGENTS_CHANNEL], self.message_event(row))
        finally:
            self.pending.discard(message_id)
        if self.typing.stop(session_id, principal.user_id):
            self._announce_typing(session_id, principal.user_id, None, started=False)

    def _user_session(self, conn: Connection, message: wire.Envelope) -> str:
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

    # -- agent events ---------------------------------------------------------------

    def _agent_session(self, conn: Connection) -> str | None:
        session_id = conn.session.path_session_id
        return session_id if self.store.chat_session_owner(session_id) is not None else None

    async def on_agent_event(self, conn: Connection, message: wire.AgentEventMessage) -> None:
        default = self._agent_session(conn) if conn.principal.is_privileged else None
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
        if message.type in CHAT_STREAM_EVENTS:
            assert session_id is not None  # agent_event_channels refused it otherwise
            match message:
                case wire.ChatMessageChunkMessage():
                    delivered = self._chunk(session_id, message.payload)
                    # Fairness, not full backpressure: the subscribers' writers get a
                    # turn between two frames of a fast agent. (Pausing the agent until
                    # their queues drain needs the queue depth from api.transport.connection.)
                    await asyncio.sleep(0)
                    return delivered
                case wire.ChatMessageCompleteMessage():
                    return await self._complete(principal, session_id, message.payload)
                case wire.ChatMessage():
                    return await self._assistant_message(principal, session_id, message.payload)
        event = make_event(
            message.type,
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
            self._arm(result.deadline_ms)
        return self._publish_chunks(session_id, result.released)

    def _publish_chunks(self, session_id: str, chunks: Iterable[Chunk]) -> int:
        delivered = 0
        for chunk in chunks:
            event = make_event(
                "chat_message_chunk",
                {
                    "messageId": chunk.message_id,
                    "content": chunk.content,
                    "isComplete": chunk.is_complete,
                    "chunkIndex": chunk.index,
                },
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
        self.pending.add(message_id)
        try:
            row = await self._store(
                session_id,
                message_id,
                "assistant",
                principal.user_id,
                payload.finalContent,
                {"metadata": payload.metadata},
                self.clock.now_ms(),
            )
            event = make_event(
                "chat_message_complete",
                {
                    "messageId": message_id,
                    "finalContent": payload.finalContent,
                    "metadata": payload.metadata,
                    "seq": row.seq,
                },
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
            return self.hub.publish(f"chat:{session_id}", event)
        finally:
            self.pending.discard(message_id)
            self.streams.discard(message_id)

    async def _assistant_message(
        self, principal: Principal, session_id: str, payload: ChatMessagePayload
    ) -> int:
        role = "system" if payload.role == "system" else "assistant"
        message_id = payload.messageId or new_id("msg")
        extra = _stored_extra(payload)
        self.pending.add(message_id)
        try:
            row = await self._store(
                session_id,
                message_id,
                role,
                principal.user_id,
                payload.content,
                extra,
                self.clock.now_ms(),
            )
            return self.hub.publish(f"chat:{session_id}", self.message_event(row))
        finally:
            self.pending.discard(message_id)

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
        event = make_event(
            message.type, message.payload, now_ms=self.clock.now_ms(), user_id=user_id
        )
        if user_id is not None:
            sent = self.hub.send_to_user(user_id, event)
        elif channel is not None:
            sent = self.hub.publish(Channel.parse(channel).name, event)
        else:
            sent = self.hub.broadcast_all(event)
        logger.info("%s by %s reached %d connection(s)", message.type, principal.user_id, sent)
        return sent

    # -- typing -----------------------------------------------------------------------

    async def on_typing(self, conn: Connection, message: wire.TypingMessage) -> None:
        principal = conn.principal
        if principal.is_privileged and message.sessionId is not None:
            session_id = message.sessionId
            if self.store.chat_session_owner(session_id) is None:
                raise NotFound("No such chat session", details={"sessionId": session_id})
        else:
            session_id = self._user_session(conn, message)
        name = principal.name or principal.user_id
        if message.type == "chat_typing_stop":
            if self.typing.stop(session_id, principal.user_id):
                self._announce_typing(session_id, principal.user_id, None, started=False)
            return
        self._typing_names[(session_id, principal.user_id)] = name
        now = self.clock.now_ms()
        if self.typing.start(session_id, principal.user_id, now):
            self._announce_typing(session_id, principal.user_id, name, started=True)
        self._arm(now + self.typing.timeout_ms)

    def _announce_typing(
        self, session_id: str, user_id: str, name: str | None, *, started: bool
    ) -> None:
        if started:
            event = make_event(
                "chat_typing_start",
                {"userId": user_id, "username": name},
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
        else:
            self._typing_names.pop((session_id, user_id), None)
            event = make_event(
                "chat_typing_stop",
                {"userId": user_id},
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

    def _agent_channels(self, conn: Connection) -> list[str]:
        return [AGENTS_CHANNEL] if conn.principal.role == "agent" else []

    def _on_join(self, conn: Connection) -> None:
        """Replay, catch-up and typing for a connection that just authenticated."""
        session_id = conn.session.path_session_id
        if conn.session.endpoint != "chat":
            status = self.last_status.get(session_id)
            if status is not None:
                conn.send(status)
            return
        last_id = conn.websocket.query_params.get("lastMessageId")
        if last_id is not None:
            self._replay(conn, session_id, last_id)
        for stream in self.streams.in_progress(session_id):
            conn.send(
                make_event(
                    "chat_message_chunk",
                    {
                        "messageId": stream.message_id,
                        "content": stream.content,
                        "isComplete": stream.finished,
                        "chunkIndex": stream.last_released_index,
                        "catchUp": True,
                    },
                    now_ms=self.clock.now_ms(),
                    session_id=session_id,
                )
            )
        for user_id in self.typing.typing_in(session_id):
            if user_id != conn.principal.user_id:
                name = self._typing_names.get((session_id, user_id), user_id)
                conn.send(
                    make_event(
                        "chat_typing_start",
                        {"userId": user_id, "username": name},
                        now_ms=self.clock.now_ms(),
                        session_id=session_id,
                    )
                )

    def _replay(self, conn: Connection, session_id: str, last_id: str) -> None:
        limit = self.settings.chat_replay_max_messages
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
                "chat_resumed",
                {
                    "lastMessageId": last_id,
                    "found": found,
                    "replayed": replayed,
                    "gap": gap,
                    "streaming": [s.message_id for s in self.streams.in_progress(session_id)],
                },
                now_ms=self.clock.now_ms(),
                session_id=session_id,
            )
        )

    def _on_disconnect(self, conn: Connection) -> None:
        principal = conn.session.principal
        if principal is None or conn.session.endpoint != "chat":
            return
        session_id = conn.session.path_session_id
        if not self.typing.is_typing(session_id, principal.user_id):
            return
        for other in self.hub.by_user.get(principal.user_id, ()):
            if other.session.endpoint == "chat" and other.session.path_session_id == session_id:
                return  # another device of the user is still in the session
        self.typing.stop(session_id, principal.user_id)
        self._announce_typing(session_id, principal.user_id, None, started=False)

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
        if self.typing.stop(session_id, user_id):
            self._announce_typing(session_id, user_id, None, started=False)
        return cut

    # -- timers -------------------------------------------------------------------------

    def _arm(self, deadline_ms: int) -> None:
        """A table asks to be woken at ``deadline_ms``: wake the timer if it sleeps longer."""
        if deadline_ms < self._wake_at_ms:
            self._wake.set()

    async def _run_timers(self) -> None:
        """End typing indicators, release held chunks, forget stalled streams."""
        next_sweep = self.clock.monotonic() + STREAM_SWEEP_INTERVAL_S
        while True:
            now = self.clock.now_ms()
            for session_id, user_id in self.typing.expire(now):
                self._announce_typing(session_id, user_id, None, started=False)
            for stream, chunks in self.streams.release_due(now):
                self._publish_chunks(stream.session_id, chunks)
            if self.clock.monotonic() >= next_sweep:
                next_sweep = self.clock.monotonic() + STREAM_SWEEP_INTERVAL_S
                for stream in self.streams.expire(now):
                    logger.warning(
                        "reply %s in %s stalled; dropped after %d chunk(s)",
                        stream.message_id,
                        stream.session_id,
                        stream.next_index,
                    )
            wake_at = now + int(STREAM_SWEEP_INTERVAL_S * 1000)
            for deadline in (self.typing.next_deadline_ms(), self.streams.next_deadline_ms()):
                if deadline is not None:
                    wake_at = min(wake_at, deadline)
            self._wake_at_ms = wake_at
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), max(0.0, (wake_at - self.clock.now_ms()) / 1000) + 0.005
                )
