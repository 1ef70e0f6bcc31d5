"""When released chunks are published: at most one publication per session per window.

``websocket-api.md`` "Chat Events" streams a reply chunk by chunk. An agent
sends hundreds of chunks a second; published one by one, every chunk is one
wire frame to every subscriber (200 chunks/s to 100 subscribers: 20,000
frames/s, each costing the server a system call, a compression and a trip
through the ASGI stack). :class:`ChunkPacer` gathers what
:class:`sync.chat.StreamTable` released so that one publication carries
several chunks, and a subscriber that asked for ``message_batching`` gets them
in one ``batch`` frame. Each chunk stays its own ``chat_message_chunk`` event,
in order; nothing is dropped. Sans-I/O: every method takes ``now_ms``.

Rules, per chat session:

- Rule 1 (quiet): chunks released when the session has no open window are
  published at once (the first chunk of a reply is never delayed), and a
  window of ``interval_ms`` opens.
- Rule 2 (window): chunks released while a window is open are held.
- Rule 3 (full): once :attr:`ChunkPacer.max_held` chunks are held (one
  outgoing batch), they are published at once; the window stays.
- Rule 4 (end): when the window ends (:meth:`ChunkPacer.due`), the held
  chunks are published and the next window opens; a window that ends with
  nothing held closes, and the session is quiet again.
- Rule 5 (now): :meth:`ChunkPacer.take` hands back the held chunks of a
  session at once, for whatever must come after them: the completion of a
  reply, or the catch-up of a connection about to join (published before it
  subscribes, so it gets the content so far once).

No chunk waits longer than ``interval_ms`` (plus the timer's lateness). The
shell's one timer (:mod:`api.chat.timer`) calls :meth:`ChunkPacer.due` at
:meth:`ChunkPacer.next_deadline_ms`; :meth:`ChunkPacer.publish` returns that
deadline as an intent when it opens a window. ``interval_ms`` 0 publishes
everything at once.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Final

from tripsage_sync.sync.chat.reply import Chunk

__all__ = ["DEFAULT_CHUNK_WINDOW_MS", "MAX_HELD_CHUNKS", "ChunkPacer", "Publication"]

# How long chunks of one session are gathered after a publication (the shell's
# default, TRIPSAGE_CHAT_CHUNK_GATHER_S, is the same).
DEFAULT_CHUNK_WINDOW_MS: Final = 25
# Held chunks that are published without waiting (the JSON writer's largest batch).
MAX_HELD_CHUNKS: Final = 64


@dataclass(frozen=True, slots=True)
class Publication:
    """What :meth:`ChunkPacer.publish` decided.

    ``chunks``: publish these now, in order. ``deadline_ms`` (an intent): a
    window opened; call :meth:`ChunkPacer.due` at that time at the latest.
    """

    chunks: tuple[Chunk, ...] = ()
    deadline_ms: int | None = None


@dataclass(slots=True)
class _Window:
    ends_ms: int
    held: list[Chunk] = field(default_factory=list)


class ChunkPacer:
    """Publication windows per chat session; see the module docstring."""

    def __init__(
        self, *, interval_ms: int = DEFAULT_CHUNK_WINDOW_MS, max_held: int = MAX_HELD_CHUNKS
    ) -> None:
        self.interval_ms = interval_ms
        self.max_held = max_held
        self.windows: dict[str, _Window] = {}
        # (end, sessionId) of open windows; stale entries are skipped.
        self._deadlines: list[tuple[int, str]] = []

    def held(self, session_id: str) -> int:
        window = self.windows.get(session_id)
        return 0 if window is None else len(window.held)

    def _open(self, session_id: str, now_ms: int) -> int | None:
        if self.interval_ms <= 0:
            return None
        ends_ms = now_ms + self.interval_ms
        self.windows[session_id] = _Window(ends_ms)
        heapq.heappush(self._deadlines, (ends_ms, session_id))
        return ends_ms

    def publish(self, session_id: str, chunks: list[Chunk], now_ms: int) -> Publication:
        """Chunks the stream table released for ``session_id``, in order."""
        if not chunks:
            return Publication()
        window = self.windows.get(session_id)
        if window is not None and window.ends_ms <= now_ms:
            # The timer is late: the window has ended, so it ends now (Rule 4).
            del self.windows[session_id]
            return Publication((*window.held, *chunks), deadline_ms=self._open(session_id, now_ms))
        if window is None:  # Rule 1
            return Publication(tuple(chunks), deadline_ms=self._open(session_id, now_ms))
        window.held.extend(chunks)  # Rule 2
        if len(window.held) >= self.max_held:  # Rule 3
            out, window.held = window.held, []
            return Publication(tuple(out))
        return Publication()

    def due(self, now_ms: int) -> list[tuple[str, list[Chunk]]]:
        """Windows that ended by ``now_ms``: their held chunks, per session (Rule 4)."""
        out: list[tuple[str, list[Chunk]]] = []
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            ends_ms, session_id = heapq.heappop(self._deadlines)
            window = self.windows.get(session_id)
            if window is None or window.ends_ms != ends_ms:
                continue  # stale: that window was replaced
            del self.windows[session_id]
            if window.held:
                out.append((session_id, window.held))
                self._open(session_id, now_ms)
        return out

    def take(self, session_id: str) -> list[Chunk]:
        """The held chunks of ``session_id``, to publish now (Rule 5); the window stays."""
        window = self.windows.get(session_id)
        if window is None or not window.held:
            return []
        out, window.held = window.held, []
        return out

    def sessions_holding(self) -> list[str]:
        """Sessions with held chunks (each to :meth:`take` before the server drains)."""
        return [session_id for session_id, window in self.windows.items() if window.held]

    def next_deadline_ms(self) -> int | None:
        """When :meth:`due` has work next (``None``: no window is open)."""
        while self._deadlines:
            ends_ms, session_id = self._deadlines[0]
            window = self.windows.get(session_id)
            if window is not None and window.ends_ms == ends_ms:
                return ends_ms
            heapq.heappop(self._deadlines)
        return None
