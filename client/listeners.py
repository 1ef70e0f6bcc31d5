"""The application's callbacks: server events (raw, as received) and update outcomes.

A callback that raises is logged and never reaches the client's reading loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tripsage_sync.client.queue import PendingUpdate

__all__ = ["Listener", "Listeners"]

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class Listeners:
    def __init__(self) -> None:
        self._by_type: dict[str, list[Listener]] = {}
        self._outcomes: list[Callable[[PendingUpdate], None]] = []
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []

    def on(self, type_: str, callback: Listener) -> None:
        self._by_type.setdefault(type_, []).append(callback)

    def on_outcome(self, callback: Callable[[PendingUpdate], None]) -> None:
        self._outcomes.append(callback)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def event(self, raw: dict[str, Any]) -> None:
        """A server event, to the listeners of its type, of ``"*"``, and to subscribers."""
        type_ = raw.get("type")
        for callback in self._by_type.get(str(type_), []) + self._by_type.get("*", []):
            try:
                callback(raw)
            except Exception:
                logger.exception("listener for %s failed", type_)
        for queue in self._subscribers:
            queue.put_nowait(raw)

    def outcome(self, update: PendingUpdate) -> None:
        for callback in self._outcomes:
            try:
                callback(update)
            except Exception:
                logger.exception("outcome listener failed")
