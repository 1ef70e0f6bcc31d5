"""The chat feature's one timer task: typing timeouts, held chunks, stalled streams.

One task for the feature sleeps until the earliest deadline of its tables
(:class:`sync.chat.TypingTable` indicators, :class:`sync.chat.StreamTable`
chunks held in the reorder window of ``chat_chunk_reorder_window_s``,
:class:`sync.chat.ChunkPacer` chunks gathered for one publication) or the
stalled-stream sweep every :data:`STREAM_SWEEP_INTERVAL_S`; a new deadline
earlier than the one it sleeps towards (:meth:`ChatTimer.arm`) wakes it. No
timer per chunk or per stream. The tables decide what is due; the callbacks
given to :meth:`ChatTimer.start` announce it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.sync.chat import Chunk, ChunkPacer, StreamTable, TypingTable

__all__ = ["STREAM_SWEEP_INTERVAL_S", "ChatTimer"]

logger = logging.getLogger(__name__)

STREAM_SWEEP_INTERVAL_S: Final = 5.0


class ChatTimer:
    """Wakes for the deadlines of ``typing``, ``streams`` and ``pacer``."""

    def __init__(
        self, clock: Clock, typing: TypingTable, streams: StreamTable, pacer: ChunkPacer
    ) -> None:
        self.clock = clock
        self.typing = typing
        self.streams = streams
        self.pacer = pacer
        self._wake = asyncio.Event()
        # When the timer task wakes next by itself (wall clock, ms).
        self._wake_at_ms = 0
        self._task: asyncio.Task[None] | None = None

    def start(
        self,
        *,
        typing_ended: Callable[[str, str], None],
        chunks_due: Callable[[str, list[Chunk]], object],
        chunks_gathered: Callable[[str, list[Chunk]], object],
    ) -> None:
        """Run the task: ``typing_ended(session, user)``, ``chunks_due(session, chunks)``
        (released by the reorder window), ``chunks_gathered(session, chunks)`` (to publish)."""
        self._task = asyncio.create_task(
            self._run(typing_ended, chunks_due, chunks_gathered), name="chat-timers"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def arm(self, deadline_ms: int) -> None:
        """A table asks to be woken at ``deadline_ms``: wake the timer if it sleeps longer."""
        if deadline_ms < self._wake_at_ms:
            self._wake.set()

    async def _run(
        self,
        typing_ended: Callable[[str, str], None],
        chunks_due: Callable[[str, list[Chunk]], object],
        chunks_gathered: Callable[[str, list[Chunk]], object],
    ) -> None:
        """End typing indicators, release held chunks, publish gathered ones, forget
        stalled streams."""
        next_sweep = self.clock.monotonic() + STREAM_SWEEP_INTERVAL_S
        while True:
            now = self.clock.now_ms()
            for session_id, user_id in self.typing.expire(now):
                typing_ended(session_id, user_id)
            for stream, chunks in self.streams.release_due(now):
                chunks_due(stream.session_id, chunks)
            for session_id, chunks in self.pacer.due(now):
                chunks_gathered(session_id, chunks)
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
            for deadline in (
                self.typing.next_deadline_ms(),
                self.streams.next_deadline_ms(),
                self.pacer.next_deadline_ms(),
            ):
                if deadline is not None:
                    wake_at = min(wake_at, deadline)
            self._wake_at_ms = wake_at
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), max(0.0, (wake_at - self.clock.now_ms()) / 1000) + 0.005
                )
