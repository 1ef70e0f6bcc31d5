"""Chat replies streamed by agents: the table of replies and its reorder rules.

``websocket-api.md`` "Chat Events". Sans-I/O: every method takes ``now_ms``;
the shell persists, publishes (:mod:`api.chat.relay`) and runs the timers
(:mod:`api.chat.timer`).

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
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from typing import Final

from tripsage_sync.sync.chat.reply import Chunk, ChunkResult, ReplyStream
from tripsage_sync.sync.errors import InvalidMessage, ServerError

__all__ = [
    "DEFAULT_REORDER_WINDOW_MS",
    "FIRST_CHUNK_INDEXES",
    "MAX_PENDING_CHUNKS",
    "MAX_REMEMBERED_COMPLETIONS",
    "MAX_REPLY_CHARS",
    "MAX_STREAMS",
    "StreamTable",
]

logger = logging.getLogger(__name__)

# Agents number a reply's chunks from 0 or (as the spec's example) from 1.
FIRST_CHUNK_INDEXES: Final = (0, 1)
# How long a chunk may be held waiting for the gap before it to fill.
DEFAULT_REORDER_WINDOW_MS: Final = 2000
# Chunks buffered ahead of a gap, per reply.
MAX_PENDING_CHUNKS: Final = 1024
# The longest reply (same bound as ``finalContent`` in sync/wire/payload.py).
MAX_REPLY_CHARS: Final = 1_000_000
MAX_STREAMS: Final = 10_000
MAX_REMEMBERED_COMPLETIONS: Final = 10_000


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
