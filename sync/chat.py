"""Chat replies streamed by agents, typing indicators, and where agent events go.

``websocket-api.md`` "Chat Events", "Typing Events", "Tool Events" and
"Agent Status Events". Sans-I/O: every method takes ``now_ms``; the shell in
:mod:`api.chat` persists, publishes and runs the timers.

Theory of operation
-------------------
:class:`StreamTable` holds one :class:`ReplyStream` per ``messageId`` of an
assistant reply an agent is streaming. Agents number chunks from 0 or from 1
(the spec's example starts at ``chunkIndex`` 1); concurrency in the agent or
a retried HTTP request can reorder or repeat them.
:meth:`StreamTable.receive_chunk` returns the chunks that are deliverable now,
in index order, so subscribers see every index at most once, in order:

- Rule 1 (start): the first chunk numbered 0 or 1 to arrive starts the
  stream at its index (:data:`FIRST_CHUNK_INDEXES`). Chunks numbered higher
  that arrive before it are held.
- Rule 2 (late): an index below ``next_index``, one already held, or any
  chunk of a reply already completed is a duplicate or too late: dropped,
  nothing released.
- Rule 3 (in order): ``index == next_index`` releases that chunk and the run
  of held chunks that follows it.
- Rule 4 (gap): ``next_index < index <= next_index + MAX_PENDING_CHUNKS`` is
  held until the gap before it fills, but no chunk is held longer than the
  reorder window: once the oldest held chunk has waited ``reorder_window_ms``,
  the missing indexes before it are skipped (a stream that never got its
  0 or 1 starts at its lowest held chunk) and delivery goes on in order.
  A skipped chunk arriving afterwards is late (Rule 2).
- Rule 5 (refused): further ahead, past the chunk marked ``isComplete``, a
  second, different last chunk, or a reply longer than ``MAX_REPLY_CHARS``
  is :class:`~sync.errors.InvalidMessage`; the stream is left unchanged.

Timers are intents: a :class:`ChunkResult` whose stream holds chunks carries
``deadline_ms``, the time by which the shell must call
:meth:`StreamTable.release_due` (which releases what the window let go and
hands back later deadlines through :meth:`StreamTable.next_deadline_ms`).
One timer for the whole table is enough; every method takes ``now_ms``.

:meth:`StreamTable.complete` marks the reply completed (late chunks become
duplicates) and hands back the stream; its held chunks are never released:
``finalContent`` supersedes them. The shell stores the reply, publishes
``chat_message_complete`` and then calls :meth:`StreamTable.discard`.
Until then :meth:`StreamTable.in_progress` still lists the reply, so a
connection joining meanwhile gets the content so far and then the completion.
Completed ids are remembered (bounded, oldest forgotten first).

:class:`TypingTable` maps ``(sessionId, userId)`` to the time the indicator
ends by itself: a ``chat_typing_start`` (re)arms it, a stop or the deadline
ends it. Only changes are reported, so repeated starts are not re-broadcast.

:func:`agent_event_channels` names the hub channels an agent event goes to.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from tripsage_sync.sync.errors import InvalidMessage, ServerError
from tripsage_sync.sync.wire import AGENT_EVENT_TYPES, iso_ms

__all__ = [
    "CHAT_STREAM_EVENTS",
    "DEFAULT_REORDER_WINDOW_MS",
    "FIRST_CHUNK_INDEXES",
    "MAX_PENDING_CHUNKS",
    "MAX_REPLY_CHARS",
    "STATUS_EVENTS",
    "Chunk",
    "ChunkResult",
    "ReplyStream",
    "StreamTable",
    "TypingTable",
    "agent_event_channels",
    "stored_message_payload",
]

logger = logging.getLogger(__name__)

# Agents number a reply's chunks from 0 or (as the spec's example) from 1.
FIRST_CHUNK_INDEXES: Final = (0, 1)
# How long a chunk may be held waiting for the gap before it to fill.
DEFAULT_REORDER_WINDOW_MS: Final = 2000
# Chunks buffered ahead of a gap, per reply.
MAX_PENDING_CHUNKS: Final = 1024
# The longest reply (same bound as ``finalContent`` in sync/wire.py).
MAX_REPLY_CHARS: Final = 1_000_000
MAX_STREAMS: Final = 10_000
MAX_REMEMBERED_COMPLETIONS: Final = 10_000

# Events that belong to a chat session's history and stream: ``chat:{sessionId}``.
CHAT_STREAM_EVENTS: Final = frozenset(
    {"chat_message", "chat_message_chunk", "chat_message_complete"}
)
# Tool and agent-status events: both endpoints of the session and the owner's agent channel.
STATUS_EVENTS: Final = AGENT_EVENT_TYPES - CHAT_STREAM_EVENTS


@dataclass(frozen=True, slots=True)
class Chunk:
    message_id: str
    index: int
    content: str
    is_complete: bool
    received_ms: int = 0


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What :meth:`StreamTable.receive_chunk` decided: chunks to publish, in order.

    ``deadline_ms`` (an intent): the stream holds chunks; call
    :meth:`StreamTable.release_due` at that time at the latest.
    """

    released: tuple[Chunk, ...] = ()
    duplicate: bool = False
    deadline_ms: int | None = None

    @property
    def buffered(self) -> bool:
        return not self.released and not self.duplicate


@dataclass(slots=True)
class ReplyStream:
    message_id: str
    session_id: str
    started_ms: int
    updated_ms: int
    # Until the first chunk numbered 0 or 1 arrives (Rule 1), nothing is released.
    started: bool = False
    next_index: int = 0
    last_index: int | None = None
    completed: bool = False
    released_chars: int = 0
    skipped: int = 0
    parts: list[str] = field(default_factory=list)
    pending: dict[int, Chunk] = field(default_factory=dict)
    pending_chars: int = 0
    # The arrival of the oldest held chunk (``None``: nothing is held).
    held_since_ms: int | None = None

    @property
    def content(self) -> str:
        """Everything released so far, in order (what a late joiner gets)."""
        return "".join(self.parts)

    @property
    def last_released_index(self) -> int:
        return self.next_index - 1

    @property
    def finished(self) -> bool:
        """The chunk marked ``isComplete`` and every one before it were released."""
        return self.last_index is not None and self.next_index > self.last_index

    def deadline_ms(self, window_ms: int) -> int | None:
        """When the oldest held chunk has waited the reorder window (Rule 4)."""
        if self.held_since_ms is None or self.completed:
            return None
        return self.held_since_ms + window_ms

    def hold(self, chunk: Chunk) -> None:
        self.pending[chunk.index] = chunk
        self.pending_chars += len(chunk.content)
        if self.held_since_ms is None or chunk.received_ms < self.held_since_ms:
            self.held_since_ms = chunk.received_ms

    def drop_held(self) -> None:
        self.pending.clear()
        self.pending_chars = 0
        self.held_since_ms = None

    def release(self, now_ms: int, window_ms: int) -> list[Chunk]:
        """Rules 3 and 4: the chunks deliverable at ``now_ms``, in order."""
        released: list[Chunk] = []
        while self.pending:
            if self.started and self.next_index in self.pending:
                chunk = self.pending.pop(self.next_index)
                self.pending_chars -= len(chunk.content)
                released.append(chunk)
                self.next_index += 1
                continue
            if released or self.held_since_ms is None:  # the oldest may have gone out
                self.held_since_ms = min(c.received_ms for c in self.pending.values())
            if self.held_since_ms + window_ms > now_ms:
                break
            # Skip the gap: every held chunk up to the expired ones goes out in order.
            lowest = min(self.pending)
            if self.started:
                self.skipped += lowest - self.next_index
                logger.info(
                    "reply %s: chunk(s) %d..%d skipped after the reorder window",
                    self.message_id,
                    self.next_index,
                    lowest - 1,
                )
            else:
                logger.info("reply %s: no chunk 0 or 1; starts at %d", self.message_id, lowest)
            self.started = True
            self.next_index = lowest
        if not self.pending:
            self.held_since_ms = None
        for chunk in released:
            self.parts.append(chunk.content)
            self.released_chars += len(chunk.content)
        return released


class StreamTable:
    """Replies being streamed, keyed by ``messageId``; see the module docstring."""

    def __init__(
        self, *, idle_timeout_ms: int, reorder_window_ms: int = DEFAULT_REORDER_WINDOW_MS
    ) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self.reorder_window_ms = reorder_window_ms
        self.streams: dict[str, ReplyStream] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()
        # (deadline, messageId) of streams holding chunks; stale entries are skipped.
        self._deadlines: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.streams)

    def was_completed(self, message_id: str) -> bool:
        return message_id in self._completed

    def _stream(self, session_id: str, message_id: str, now_ms: int) -> ReplyStream:
        stream = self.streams.get(message_id)
        if stream is None:
            if len(self.streams) >= MAX_STREAMS:
                raise ServerError("Too many replies are streaming; try again later")
            stream = ReplyStream(message_id, session_id, started_ms=now_ms, updated_ms=now_ms)
            self.streams[message_id] = stream
            logger.debug("reply %s started in session %s", message_id, session_id)
        elif stream.session_id != session_id:
            raise InvalidMessage(
                "messageId belongs to another session",
                details={"field": "payload.messageId", "expected": "a new id", "received": "id"},
            )
        return stream

    def receive_chunk(
        self,
        session_id: str,
        message_id: str,
        index: int,
        content: str,
        is_complete: bool,
        now_ms: int,
    ) -> ChunkResult:
        if message_id in self._completed:
            return ChunkResult(duplicate=True)  # Rule 2
        existing = self.streams.get(message_id)
        if existing is not None and existing.completed:
            return ChunkResult(duplicate=True)  # Rule 2
        if existing is None:
            # Validate before creating, so a refused chunk leaves no empty stream behind.
            _check_window(0, index)
        stream = self._stream(session_id, message_id, now_ms)
        if index < stream.next_index or index in stream.pending:
            return ChunkResult(duplicate=True)  # Rule 2
        _check_window(stream.next_index, index)  # Rule 5
        if stream.last_index is not None and index > stream.last_index:
            raise _invalid_index("chunkIndex is after the last chunk", index)
        if is_complete:
            if stream.last_index is not None and stream.last_index != index:
                raise _invalid_index("a different chunk was already marked isComplete", index)
            if any(buffered > index for buffered in stream.pending):
                raise _invalid_index("chunks after the one marked isComplete", index)
        if stream.released_chars + stream.pending_chars + len(content) > MAX_REPLY_CHARS:
            raise InvalidMessage(
                f"Reply longer than {MAX_REPLY_CHARS} characters",
                details={"field": "payload.content", "limit": MAX_REPLY_CHARS},
            )
        stream.updated_ms = now_ms
        if is_complete:
            stream.last_index = index
        if not stream.started and index in FIRST_CHUNK_INDEXES:
            stream.started = True  # Rule 1
            stream.next_index = index
        before = stream.deadline_ms(self.reorder_window_ms)
        stream.hold(Chunk(message_id, index, content, is_complete, now_ms))
        released = stream.release(now_ms, self.reorder_window_ms)
        return ChunkResult(released=tuple(released), deadline_ms=self._rearm(stream, before))

    def _rearm(self, stream: ReplyStream, before: int | None) -> int | None:
        deadline = stream.deadline_ms(self.reorder_window_ms)
        if deadline is not None and deadline != before:
            heapq.heappush(self._deadlines, (deadline, stream.message_id))
        return deadline

    def release_due(self, now_ms: int) -> list[tuple[ReplyStream, list[Chunk]]]:
        """Chunks whose reorder window ran out by ``now_ms``, per stream, in order."""
        out: list[tuple[ReplyStream, list[Chunk]]] = []
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline, message_id = heapq.heappop(self._deadlines)
            stream = self.streams.get(message_id)
            if stream is None or stream.deadline_ms(self.reorder_window_ms) != deadline:
                continue  # stale: released, completed or expired meanwhile
            released = stream.release(now_ms, self.reorder_window_ms)
            self._rearm(stream, None)
            if released:
                out.append((stream, released))
        return out

    def next_deadline_ms(self) -> int | None:
        """When :meth:`release_due` has work next (``None``: nothing is held)."""
        while self._deadlines:
            deadline, message_id = self._deadlines[0]
            stream = self.streams.get(message_id)
            if stream is not None and stream.deadline_ms(self.reorder_window_ms) == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def complete(self, session_id: str, message_id: str, now_ms: int) -> ReplyStream | None:
        """Mark the reply completed; ``None`` when it already was (a duplicate).

        A reply that was never streamed (only ``chat_message_complete``) gets an
        empty stream, so it is handled the same way.
        """
        if message_id in self._completed:
            return None
        existing = self.streams.get(message_id)
        if existing is not None and existing.completed:
            return None
        stream = self._stream(session_id, message_id, now_ms)
        stream.completed = True
        stream.updated_ms = now_ms
        if stream.pending:
            logger.info(
                "reply %s completed with %d chunk(s) held back", message_id, len(stream.pending)
            )
        stream.drop_held()
        self._completed[message_id] = None
        while len(self._completed) > MAX_REMEMBERED_COMPLETIONS:
            self._completed.popitem(last=False)
        return stream

    def discard(self, message_id: str) -> None:
        """Forget a reply once its completion was stored and published."""
        self.streams.pop(message_id, None)

    def in_progress(self, session_id: str) -> list[ReplyStream]:
        """Replies of the session with content released so far, oldest first."""
        return sorted(
            (s for s in self.streams.values() if s.session_id == session_id and s.parts),
            key=lambda s: (s.started_ms, s.message_id),
        )

    def expire(self, now_ms: int) -> list[ReplyStream]:
        """Forget replies idle for longer than the timeout (the agent went away)."""
        dead = [
            s
            for s in self.streams.values()
            if not s.completed and now_ms - s.updated_ms >= self.idle_timeout_ms
        ]
        for stream in dead:
            del self.streams[stream.message_id]
        return dead


def _invalid_index(message: str, index: int) -> InvalidMessage:
    return InvalidMessage(
        message,
        details={"field": "payload.chunkIndex", "expected": "a valid index", "received": index},
    )


def _check_window(next_index: int, index: int) -> None:
    if index > next_index + MAX_PENDING_CHUNKS:
        raise InvalidMessage(
            f"chunkIndex more than {MAX_PENDING_CHUNKS} ahead of the next expected one",
            details={
                "field": "payload.chunkIndex",
                "expected": f"at most {next_index + MAX_PENDING_CHUNKS}",
                "received": index,
            },
        )


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


def agent_event_channels(
    event_type: str, *, session_id: str | None, owner_id: str | None, user_id: str | None
) -> list[str]:
    """Hub channels an agent-published event is delivered to.

    Chat events go to ``chat:{sessionId}``. Tool and status events go to both
    endpoints of the session (``chat:{sessionId}``, the internal
    ``agent-status:{sessionId}``) and to ``agent:{ownerId}``; an envelope
    ``userId`` also addresses ``agent:{userId}`` directly (alone, when there is
    no session).
    """
    if event_type in CHAT_STREAM_EVENTS:
        if session_id is None:
            raise InvalidMessage(
                f"'{event_type}' needs a sessionId",
                details={"field": "sessionId", "expected": "string", "received": "undefined"},
            )
        return [f"chat:{session_id}"]
    if event_type not in STATUS_EVENTS:
        raise ValueError(f"not an agent event: {event_type!r}")
    names: list[str] = []
    if session_id is not None:
        names += [f"chat:{session_id}", f"agent-status:{session_id}"]
        if owner_id is not None:
            names.append(f"agent:{owner_id}")
    if user_id is not None and f"agent:{user_id}" not in names:
        names.append(f"agent:{user_id}")
    if not names:
        raise InvalidMessage(
            f"'{event_type}' needs a sessionId or a userId",
            details={"field": "sessionId", "expected": "string", "received": "undefined"},
        )
    return names


def stored_message_payload(
    *,
    message_id: str,
    role: str,
    user_id: str | None,
    content: str,
    payload_json: str,
    seq: int,
    created_ms: int,
) -> dict[str, Any]:
    """The ``chat_message`` payload of a stored message (history, replay, echo).

    ``payload_json`` holds what the message carried besides its content
    (``attachments``, ``toolCalls``, ``metadata``, ``clientMessageId``).
    """
    extra = json.loads(payload_json) if payload_json else {}
    payload: dict[str, Any] = {
        "messageId": message_id,
        "content": content,
        "role": role,
        "userId": user_id,
        "attachments": extra.get("attachments", []),
        "toolCalls": extra.get("toolCalls", []),
    }
    if "metadata" in extra:
        payload["metadata"] = extra["metadata"]
    payload["seq"] = seq
    payload["createdAt"] = iso_ms(created_ms)
    return payload
