"""The client's one ordered send queue, its writer, and the optimistic updates in it
(``websocket-api.md`` "Optimistic Updates"; README "Python client").

Everything sent goes through the queue, drained by one writer task per
connection, so it works the same online and offline. An update is queued by
reference (:class:`UpdateRef`) and sent with the expected version known when
it is first sent if it was *chained* (queued while an earlier update of the same
field was pending: it waits for that outcome). On every connection the queue is
replanned (:meth:`Outbox.resume`): the resume messages, then every pending update
again with its original ``updateId`` (the server is idempotent by it), then the
other queued messages, in order. With a queue file, every record is appended and
fsync'd before the call returns (see :class:`QueueFile`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from tripsage_sync.client.events import OutcomeEvent
from tripsage_sync.client.queue import (
    STATUS_BY_OUTCOME,
    PendingUpdate,
    QueuedMessage,
    QueueFile,
    UpdateRef,
    UpdateStatus,
    settled,
)
from tripsage_sync.client.state import ClientState
from tripsage_sync.client.views import TripViews

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]


class Outbox:
    def __init__(self, state: ClientState, views: TripViews, queue_path: str | Path | None) -> None:
        self._state = state
        self._views = views
        self.updates: dict[str, PendingUpdate] = {}
        self._queue: deque[QueuedMessage | UpdateRef] = deque()
        self._file = QueueFile(queue_path) if queue_path is not None else None
        self._seq = 0
        self._wake = asyncio.Event()
        if self._file is not None:
            self._load(self._file)

    def __len__(self) -> int:
        return len(self._queue)

    # -- queueing ----------------------------------------------------------------------

    def send(self, message: dict[str, Any], *, persist: bool) -> None:
        """Queue a message; with ``persist`` (offline) it is kept in the queue file too."""
        seq = None
        if persist and self._file is not None:
            self._seq += 1
            seq = self._seq
            self._file.append({"k": "message", "seq": seq, "message": message})
        self.enqueue(QueuedMessage(message, seq))

    def add(self, update: PendingUpdate) -> None:
        """Record an optimistic update (in the queue file first) and queue it."""
        if self._file is not None:
            self._file.append({"k": "update", "update": update.to_json()})
        self.updates[update.update_id] = update
        self.enqueue(UpdateRef(update.update_id))

    def enqueue(self, item: QueuedMessage | UpdateRef) -> None:
        self._queue.append(item)
        self._wake.set()

    def pending(self) -> list[PendingUpdate]:
        return [u for u in self.updates.values() if u.status is UpdateStatus.PENDING]

    def pending_of(self, trip_id: str) -> Iterable[PendingUpdate]:
        return (u for u in self.pending() if u.trip_id == trip_id)

    def resume(self, first: list[dict[str, Any]]) -> None:
        """Replan for a new connection: ``first``, then pending updates, then the rest."""
        queue: list[QueuedMessage | UpdateRef] = [QueuedMessage(m) for m in first]
        queue += [UpdateRef(u.update_id) for u in self.pending()]
        queue += [item for item in self._queue if isinstance(item, QueuedMessage)]
        self._queue = deque(queue)
        self._wake.set()

    def settle(self, event: OutcomeEvent, payload: dict[str, Any]) -> PendingUpdate | None:
        """An outcome (``payload``: its raw payload) for a pending update; ``None`` if none."""
        update = self.updates.get(event.payload.update_id)
        if update is None or update.status is not UpdateStatus.PENDING:
            logger.debug("outcome for an unknown or settled update ignored")
            return None
        update.status = STATUS_BY_OUTCOME[event.type]
        update.outcome = payload
        update.server_value = event.payload.server_value
        update.server_version = event.payload.version
        if self._file is not None:
            self._file.append({"k": "outcome", "updateId": update.update_id})
        return update

    def compact(self) -> None:
        """Rewrite the queue file with what is still live (on close)."""
        if self._file is not None:
            self._file.rewrite(self.pending(), self._unsent_messages())

    # -- the writer --------------------------------------------------------------------

    async def drain(self, send_text: SendText) -> None:
        """The one writer of a connection: drains the queue in order, until cancelled."""
        while True:
            await self._wait_for_work()
            item = self._queue[0]
            if isinstance(item, UpdateRef):
                update = self.updates.get(item.update_id)
                if update is None or settled(update):
                    self._queue.popleft()
                    continue
                before = self._predecessor(update)
                if before is not None:  # chained: wait for the earlier outcome
                    await self._state.wait_until(functools.partial(settled, before))
                    continue
                await self._send_update(update, send_text)
            else:
                await self._send_message(item, send_text)
            self._queue.popleft()
            self._state.notify()

    async def _wait_for_work(self) -> None:
        while not self._queue:
            if self._state.state == "resuming":  # everything of the resume is sent
                self._state.set("open")
            self._wake.clear()
            await self._wake.wait()

    async def _send_update(self, update: PendingUpdate, send_text: SendText) -> None:
        if update.expected_version is None:  # chained: the version known now
            update.expected_version = self._views.trip(update.trip_id).version
            if self._file is not None:
                self._file.append(
                    {
                        "k": "assign",
                        "updateId": update.update_id,
                        "expectedVersion": update.expected_version,
                    }
                )
        await send_text(json.dumps(update.message()))
        update.sends += 1

    async def _send_message(self, item: QueuedMessage, send_text: SendText) -> None:
        await send_text(json.dumps(item.message))
        if item.on_sent is not None:
            item.on_sent()
        if item.seq is not None and self._file is not None:
            self._file.append({"k": "sent", "seq": item.seq})

    def _predecessor(self, update: PendingUpdate) -> PendingUpdate | None:
        for other in self.pending():
            if other is update:
                return None
            if other.trip_id == update.trip_id and other.field_key == update.field_key:
                return other
        return None

    # -- the queue file ----------------------------------------------------------------

    def _unsent_messages(self) -> list[tuple[int, dict[str, Any]]]:
        return [
            (item.seq, item.message)
            for item in self._queue
            if isinstance(item, QueuedMessage) and item.seq is not None
        ]

    def _load(self, queue_file: QueueFile) -> None:
        updates, messages = queue_file.load()
        for update in updates:
            self.updates[update.update_id] = update
            self._views.trip(update.trip_id)  # resumed (from version 0) on connecting
            self._queue.append(UpdateRef(update.update_id))
        for seq, message in messages:
            self._queue.append(QueuedMessage(message, seq))
        self._seq = max((seq for seq, _ in messages), default=0)
        queue_file.rewrite(updates, messages)
        if updates or messages:
            logger.info("queue file: %d update(s), %d message(s)", len(updates), len(messages))
