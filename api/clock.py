"""The one clock of the server: wall time in milliseconds and a monotonic clock.

``create_app(settings, clock=...)`` is given one :class:`Clock` and hands it down
to the services, the hub, every connection and every feature; nothing in api/
reads ``time.time()`` for protocol decisions on its own. Tests pass a fake clock
(a feature object or the app factory, no sockets needed). The sans-I/O core takes
the time as an argument (``now_ms``), so this is where it comes from.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """Where the shell reads the time."""

    def now_ms(self) -> int:
        """Wall-clock time: milliseconds since the Unix epoch (stamps, deadlines, tokens)."""
        ...

    def monotonic(self) -> float:
        """Seconds of a clock that never goes back (intervals, sweeps, keepalives)."""
        ...


class SystemClock:
    """The real clock: :func:`time.time` and :func:`time.monotonic`."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Final = SystemClock()
