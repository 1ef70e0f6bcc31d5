"""One assistant reply being streamed: its chunks, held and released in index order.

A :class:`ReplyStream` keeps ``next_index`` (the next chunk to release), the
chunks held ahead of a gap, and the content released so far (what a late
joiner gets). :meth:`ReplyStream.release` applies Rules 3 and 4 of
:mod:`sync.chat.stream`: the chunk at ``next_index`` and the run of held
chunks after it go out; once the oldest held chunk has waited the reorder
window, the missing indexes before it are skipped (a stream that never got
its 0 or 1 starts at its lowest held chunk) and delivery goes on in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

__all__ = ["Chunk", "ChunkResult", "ReplyStream"]

logger = logging.getLogger(__name__)


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
