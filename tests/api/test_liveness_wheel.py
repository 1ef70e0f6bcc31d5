"""The liveness wheel on a real event loop: every socket checked when due, one timer."""

from __future__ import annotations

import asyncio
import random

import pytest

from tripsage_sync.api.transport.protocol import LivenessWheel

pytestmark = pytest.mark.anyio

TICK_S = 0.02


class _Socket:
    """Asks to be checked ``times`` times, ``gap_s`` apart."""

    def __init__(self, loop: asyncio.AbstractEventLoop, times: int, gap_s: float) -> None:
        self.loop, self.left, self.gap_s = loop, times, gap_s
        self.due: list[float] = []
        self.checked: list[float] = []
        self.done = asyncio.Event()

    def check_liveness(self, now: float) -> float | None:
        self.checked.append(now)
        self.left -= 1
        if self.left == 0:
            self.done.set()
            return None
        self.due.append(now + self.gap_s)
        return self.due[-1]


async def test_every_socket_is_checked_when_due_by_one_timer() -> None:
    loop = asyncio.get_running_loop()
    wheel = LivenessWheel(loop, tick_s=TICK_S)
    rng = random.Random(7)
    sockets = [_Socket(loop, rng.randint(1, 4), rng.uniform(0, 0.1)) for _ in range(300)]
    for socket in sockets:
        socket.due.append(loop.time() + rng.uniform(0, 0.1))
        wheel.add(socket, socket.due[-1])
    assert len(wheel) == len(sockets)
    await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in sockets)), 10)
    for socket in sockets:
        assert len(socket.checked) == len(socket.due)
        for due, checked in zip(socket.due, socket.checked, strict=True):
            assert due - TICK_S <= checked <= due + TICK_S + 1.0  # in its slot (+ loop lag)
    assert len(wheel) == 0
    assert wheel.slots == {}
