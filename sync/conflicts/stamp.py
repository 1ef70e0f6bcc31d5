"""Stamps: the last_write_wins order of scalar writes.

Every write of a scalar field carries a :class:`Stamp`
ordered by ``(ts_ms, own_ts_ms, user_id, update_id)``: ``ts_ms`` is the
client's ``clientTimestamp`` clamped to the server's receive time
(``min(client, received)``); ties go to the later ``own_ts_ms`` (the
writer's own, unclamped ``clientTimestamp``), then to the greater user
id, then to the greater update id. A write also *saw* a stamp: the
field's stamp at the write's base version. :meth:`Stamp.after` bumps a
write that would sort at or below what it saw to ``seen.ts_ms + 1`` (the
hybrid-logical-clock rule), so a causally later edit always beats the
edit it overwrote, even from a client whose clock runs slow; writers the
bump lifted to one time are still ordered by their own clocks. Server-made
writes (creation, Yjs peers, resolutions) have ``own_ts_ms == ts_ms``.
Both inputs are fixed when the update is made, so every write's stamp is
independent of arrival order, and "apply iff the stamp beats the field's
current stamp" leaves the write with the greatest stamp in place
whatever the order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

from tripsage_sync.sync.conflicts.value import JSON
from tripsage_sync.sync.errors import InvalidState

__all__ = ["PackedStamp", "Stamp", "pack_stamp", "unpack_stamp"]

#: A stamp as a plain tuple, ``(ts_ms, user_id, update_id, own_ts_ms)``: what a trip's
#: field histories hold. The cycle collector stops tracking a tuple of ints and strs
#: (a :class:`Stamp` it walks for as long as it lives), and histories hold a pair for
#: every retained write of every loaded trip.
PackedStamp = tuple[int, str, str, int | None]


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Stamp:
    """When and by whom a scalar field was last written; :attr:`key` is the LWW order.

    ``ts_ms`` is the clamped (and causally bumped) time, ``own_ts_ms`` the
    writer's own ``clientTimestamp`` (None: the same as ``ts_ms``, as for
    server-made writes), which orders writes the clamp lifted to one time.
    """

    ts_ms: int
    user_id: str
    update_id: str
    own_ts_ms: int | None = None

    @property
    def key(self) -> tuple[int, int, str, str]:
        own = self.ts_ms if self.own_ts_ms is None else self.own_ts_ms
        return (self.ts_ms, own, self.user_id, self.update_id)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Stamp):
            return NotImplemented
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stamp):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def after(self, seen: Stamp | None) -> Stamp:
        """This write's stamp given the stamp it overwrote (see the module docstring)."""
        if seen is None or self > seen:
            return self
        return replace(self, ts_ms=seen.ts_ms + 1, own_ts_ms=self.key[1])

    def to_json(self) -> list[JSON]:
        base: list[JSON] = [self.ts_ms, self.user_id, self.update_id]
        own = self.key[1]
        return base if own == self.ts_ms else [*base, own]

    @classmethod
    def from_json(cls, data: Any) -> Stamp:
        """``[ts, user, update]`` or ``[ts, user, update, own_ts]``."""
        if not (isinstance(data, list) and len(data) in (3, 4)):
            raise InvalidState(f"malformed stamp: {data!r}")
        ts, user, update, *rest = data
        own = rest[0] if rest else None
        for number in (ts, own):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise InvalidState(f"malformed stamp: {data!r}")
        if not (isinstance(user, str) and isinstance(update, str)):
            raise InvalidState(f"malformed stamp: {data!r}")
        return cls(ts, user, update, own)


def pack_stamp(stamp: Stamp | None) -> PackedStamp | None:
    """``stamp`` as a :data:`PackedStamp` (``None`` stays ``None``)."""
    return None if stamp is None else (stamp.ts_ms, stamp.user_id, stamp.update_id, stamp.own_ts_ms)


def unpack_stamp(packed: PackedStamp | None) -> Stamp | None:
    """The :class:`Stamp` :func:`pack_stamp` packed."""
    return None if packed is None else Stamp(*packed)
