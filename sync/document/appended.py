"""When a trip's retained versions were appended, in a bounded number of marks.

Compaction (``api/trips/commit.py``) keeps every version appended at or after a
horizon (now minus ``history_retention_days``), so that clients offline for
that long can still catch up change by change. Keeping one time per version
would grow with the trip's history for the whole retention period (millions
of entries for a busy trip), and finding the horizon would cost a scan of
them all at every compaction.

:class:`AppendTimes` keeps *spans* instead: consecutive versions appended
within ``granularity_ms`` of the span's first one share a span, which
remembers its first version and its latest time. :meth:`first_at_or_after`
answers with the first version of the first span that reaches the horizon:
never later than the true first version appended at or after it, so the
answer keeps at most one span (``granularity_ms``) of history more than
asked, never less. With a granularity of 0 every version is its own span and
the answer is exact. The shell uses retention / :data:`SPANS`, so a room
holds about that many spans however busy it is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SPANS", "AppendTimes"]

SPANS: Final = 1024  # spans per retention period (the shell's granularity divisor)


@dataclass(slots=True)
class AppendTimes:
    """Spans of (first version, first time, latest time), oldest first."""

    granularity_ms: int = 0
    firsts: list[int] = field(default_factory=list)  # each span's first version
    started_ms: list[int] = field(default_factory=list)  # each span's first time
    latest_ms: list[int] = field(default_factory=list)  # each span's latest time
    last_version: int = 0

    def add(self, version: int, at_ms: int) -> None:
        """``version`` (newer than every one added) was appended at ``at_ms``."""
        if self.firsts and at_ms - self.started_ms[-1] < self.granularity_ms:
            self.latest_ms[-1] = max(self.latest_ms[-1], at_ms)
        else:
            self.firsts.append(version)
            self.started_ms.append(at_ms)
            self.latest_ms.append(at_ms)
        self.last_version = version

    def add_range(self, first: int, last: int, at_ms: int) -> None:
        """Versions ``first..last`` all count as appended at ``at_ms`` (a loaded room)."""
        if first > last:
            return
        if self.granularity_ms > 0:
            self.add(first, at_ms)
            self.last_version = last  # the same time: the same span
            return
        for version in range(first, last + 1):
            self.add(version, at_ms)

    def first_at_or_after(self, horizon_ms: int) -> int | None:
        """The first version to keep for ``horizon_ms`` (None: none is that recent)."""
        for first, latest in zip(self.firsts, self.latest_ms, strict=True):
            if latest >= horizon_ms:
                return first
        return None

    def prune(self, up_to: int) -> None:
        """Forget versions ``<= up_to`` (compacted into a snapshot)."""
        gone = 0
        while gone < len(self.firsts) and self._last_of(gone) <= up_to:
            gone += 1
        del self.firsts[:gone], self.started_ms[:gone], self.latest_ms[:gone]
        if self.firsts and self.firsts[0] <= up_to:
            self.firsts[0] = up_to + 1  # the span straddled ``up_to``

    def truncate(self, version: int) -> None:
        """Forget versions ``> version`` (the room went back to what is stored)."""
        i = bisect.bisect_right(self.firsts, version)
        del self.firsts[i:], self.started_ms[i:], self.latest_ms[i:]
        self.last_version = min(self.last_version, version)

    def _last_of(self, i: int) -> int:
        return self.firsts[i + 1] - 1 if i + 1 < len(self.firsts) else self.last_version

    def __len__(self) -> int:
        return len(self.firsts)
