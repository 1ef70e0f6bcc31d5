"""The deque-free stand-ins for asyncio.Event and asyncio.Queue (api/transport/waits.py)."""

from __future__ import annotations

import asyncio

import pytest

from tripsage_sync.api.transport.waits import Flag, Inbox

pytestmark = pytest.mark.anyio


async def test_a_flag_wakes_every_waiter_and_stays_set_until_cleared() -> None:
    flag = Flag()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set()
    assert await flag.wait()
    flag.clear()
    assert not flag.is_set()


async def test_a_cancelled_flag_waiter_is_forgotten() -> None:
    flag = Flag()
    waiter = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    flag.set()  # nothing left to wake
    assert flag.is_set()


async def test_an_inbox_is_fifo_across_many_items() -> None:
    inbox: Inbox[int] = Inbox()
    for i in range(1000):
        inbox.put_nowait(i)
    assert inbox.qsize() == 1000
    assert [await inbox.get() for _ in range(1000)] == list(range(1000))
    assert inbox.empty()
    with pytest.raises(asyncio.QueueEmpty):
        inbox.get_nowait()


async def test_an_inbox_reader_waits_and_a_cancelled_one_takes_nothing() -> None:
    inbox: Inbox[str] = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("first")
    assert await reader == "first"
    cancelled = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    inbox.put_nowait("second")  # arrives as the reader is cancelled: it stays queued
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await inbox.get() == "second"


async def test_an_inbox_has_one_reader_at_a_time() -> None:
    inbox: Inbox[str] = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    inbox.put_nowait("x")
    assert await first == "x"
