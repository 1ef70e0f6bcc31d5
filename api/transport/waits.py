"""Per-connection waiting without asyncio's per-object deques.

Every ``asyncio.Event`` keeps a ``collections.deque`` of waiters from birth (about
760 bytes each, empty), and an ``asyncio.Queue`` three deques and an Event: an idle
connection held eleven of them, more than a quarter of its memory. A connection's
flags and its inbound queue have at most one waiter each (the connection's own
task), so these stand-ins allocate a future only while someone waits.

- :class:`Flag` is an ``asyncio.Event`` (``set``, ``clear``, ``is_set``, ``wait``,
  any number of waiters), its waiters kept in a list made on the first wait.
- :class:`Inbox` is the ``asyncio.Queue`` uvicorn's WebSocket protocol fills for
  the app (``put_nowait``, ``get``, ``empty``, ``qsize``): unbounded, one reader at
  a time.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

__all__ = ["Flag", "Inbox"]

ItemT = TypeVar("ItemT")


class Flag:
    """An ``asyncio.Event`` whose waiters' list exists only while someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class Inbox(Generic[ItemT]):
    """An unbounded FIFO with one reader at a time (uvicorn's receive queue)."""

    __slots__ = ("_head", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ItemT | None] = []
        self._head = 0  # items before it were taken (a list popped at the front is O(n))
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def put_nowait(self, item: ItemT) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> ItemT:
        if self._head == len(self._items):
            raise asyncio.QueueEmpty
        item = self._items[self._head]
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        else:
            self._items[self._head - 1] = None
        return item  # type: ignore[return-value]

    async def get(self) -> ItemT:
        while self._head == len(self._items):
            if self._waiter is not None:
                raise RuntimeError("Inbox.get: another reader is waiting already")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()
