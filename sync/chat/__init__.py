"""Chat replies streamed by agents, typing indicators, and where agent events go.

``websocket-api.md`` "Chat Events", "Typing Events", "Tool Events" and
"Agent Status Events". Sans-I/O: every method takes ``now_ms``; the shell in
:mod:`api.chat` persists, publishes (``relay``, ``indicator``) and runs the timers
(``timer``). One module a concept:

* :mod:`.stream`: :class:`StreamTable`, the replies being streamed and the
  rules that deliver each chunk index at most once, in order;
* :mod:`.reply`: one :class:`ReplyStream` and its chunks;
* :mod:`.pacer`: :class:`ChunkPacer`, when released chunks are published
  (gathered per session, so that one frame carries several);
* :mod:`.indicator`: :class:`TypingTable`, who is typing where, until when;
* :mod:`.event`: the hub channels of agent events, the chat event payloads.

Callers import from here: ``from sync.chat import StreamTable, ...``.
"""

from __future__ import annotations

from tripsage_sync.sync.chat.event import (
    CHAT_STREAM_EVENTS,
    STATUS_EVENTS,
    ChatChunkEventPayload,
    ChatCompleteEventPayload,
    ChatMessageEventPayload,
    ChatResumedPayload,
    ChatTypingStartPayload,
    ChatTypingStopPayload,
    agent_event_channels,
    stored_message_payload,
)
from tripsage_sync.sync.chat.indicator import TypingTable
from tripsage_sync.sync.chat.pacer import (
    DEFAULT_CHUNK_WINDOW_MS,
    MAX_HELD_CHUNKS,
    ChunkPacer,
    Publication,
)
from tripsage_sync.sync.chat.reply import Chunk, ChunkResult, ReplyStream
from tripsage_sync.sync.chat.stream import (
    DEFAULT_REORDER_WINDOW_MS,
    FIRST_CHUNK_INDEXES,
    MAX_PENDING_CHUNKS,
    MAX_REPLY_CHARS,
    StreamTable,
)

__all__ = [
    "CHAT_STREAM_EVENTS",
    "DEFAULT_CHUNK_WINDOW_MS",
    "DEFAULT_REORDER_WINDOW_MS",
    "FIRST_CHUNK_INDEXES",
    "MAX_HELD_CHUNKS",
    "MAX_PENDING_CHUNKS",
    "MAX_REPLY_CHARS",
    "STATUS_EVENTS",
    "ChatChunkEventPayload",
    "ChatCompleteEventPayload",
    "ChatMessageEventPayload",
    "ChatResumedPayload",
    "ChatTypingStartPayload",
    "ChatTypingStopPayload",
    "Chunk",
    "ChunkPacer",
    "ChunkResult",
    "Publication",
    "ReplyStream",
    "StreamTable",
    "TypingTable",
    "agent_event_channels",
    "stored_message_payload",
]
