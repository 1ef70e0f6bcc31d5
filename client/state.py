"""The client's state and the one signal every wait of the client watches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["ClientState"]

logger = logging.getLogger(__name__)


class ClientState:
    """``state`` (idle, connecting, resuming, open, waiting, closed, failed), ``error``
    (what ended the client), and a tick set after every event, send or change of state.
    """

    def __init__(self) -> None:
        self.state = "idle"
        self.error: BaseException | None = None
        self._tick = asyncio.Event()

    def set(self, state: str) -> None:
        if state != self.state:
            logger.debug("state %s -> %s", self.state, state)
            self.state = state
            self.notify()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.set("failed")

    def notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every tick."""
        while not predicate():
            await self._tick.wait()
