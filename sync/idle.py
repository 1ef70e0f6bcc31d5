"""Idle trip rooms: which loaded rooms to unload, since when, and when to look again.

Theory of operation
-------------------
A loaded trip room costs memory (its document, recent history, presence) for as
long as the process runs. :class:`IdleRooms` decides, without a clock of its own,
when a room that nobody uses may go: the shell (:mod:`api.trips.sweep`) gathers
the :class:`RoomActivity` of every loaded room at one periodic sweep and calls
:meth:`IdleRooms.sweep` with the time; the :class:`Sweep` it gets back says which
rooms to unload, which unloaded trips to load again (a manual conflict's deadline
came), and when to sweep next. One sweep serves every room: no timer per room.

Rule 1
    A room is *busy* while anything holds it: a presence member (a JSON
    connection that joined it, a Yjs peer), a Yjs peer not yet in presence, a
    subscriber of its channel, an in-flight update, a write or compaction not yet
    finished (``holds``), or a manual-conflict deadline already passed (its
    default is being applied, or waits for storage to work again).
Rule 2
    A room's idle time starts at the first sweep that finds it not busy, or at
    its last use (``used_ms``: the shell's last lookup of it), whichever is later.
    A sweep that finds it busy forgets when it went idle.
Rule 3
    A room idle for ``idle_after_ms`` is unloaded. Everything it confirmed is in
    storage already (persist, then confirm); the next lookup loads it from there
    as on first open. Its earliest pending manual-conflict deadline, if any, goes
    into the deadline index.
Rule 4
    An unloaded trip whose indexed deadline has come is loaded again (the shell
    arms the room's timer, which applies the conflict's default). A trip found
    loaded at a sweep leaves the index: its own timer keeps its deadlines.
Rule 5
    The next sweep is due at the earliest of: an idle room's unload time, an
    indexed deadline, and -- while some room is busy, since it may go idle at any
    moment -- ``look_every_ms`` from now. With no room loaded and no deadline
    indexed there is nothing to look at (``next_ms`` is None) until a room loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["LOOK_FRACTION", "IdleRooms", "RoomActivity", "Sweep"]

# A busy room is looked at every idle_after / LOOK_FRACTION: it is unloaded at most
# that long after its idle time has passed.
LOOK_FRACTION: Final = 4


@dataclass(frozen=True)
class RoomActivity:
    """What holds one loaded room, as the shell sees it at a sweep."""

    members: int = 0  # presence members: JSON connections that joined, Yjs peers
    peers: int = 0  # Yjs peers of the room (joined or joining)
    subscribers: int = 0  # connections subscribed to the room's channel
    inflight: int = 0  # optimistic updates whose commit and follow-ups run
    holds: int = 0  # commits, compactions and other writes not yet finished
    used_ms: int = 0  # the room's last lookup
    next_deadline_ms: int | None = None  # its earliest pending manual-conflict deadline

    def busy(self, now_ms: int) -> bool:
        """Rule 1."""
        due = self.next_deadline_ms is not None and self.next_deadline_ms <= now_ms
        return due or any((self.members, self.peers, self.subscribers, self.inflight, self.holds))


@dataclass(frozen=True)
class Sweep:
    """What one sweep decided."""

    unload: tuple[str, ...] = ()  # loaded rooms to unload now
    load: tuple[str, ...] = ()  # unloaded trips whose conflict deadline has come
    next_ms: int | None = None  # when to sweep again; None: when a room is loaded


@dataclass
class IdleRooms:
    """The idle clocks of the loaded rooms and the deadlines of unloaded trips."""

    idle_after_ms: int
    idle_since: dict[str, int] = field(default_factory=dict)  # trip id -> idle since (rule 2)
    deadlines: dict[str, int] = field(default_factory=dict)  # unloaded trip id -> deadline

    def __post_init__(self) -> None:
        if self.idle_after_ms < 1:
            raise ValueError("idle_after_ms must be at least 1")

    @property
    def look_every_ms(self) -> int:
        return max(1, self.idle_after_ms // LOOK_FRACTION)

    def defer(self, trip_id: str, at_ms: int) -> None:
        """Look at unloaded ``trip_id`` again at ``at_ms`` (loading it failed)."""
        self.deadlines[trip_id] = at_ms

    def sweep(self, rooms: Mapping[str, RoomActivity], now_ms: int) -> Sweep:
        """Rules 1-5 for the loaded ``rooms`` (trip id -> activity) at ``now_ms``."""
        unload: list[str] = []
        next_ms: int | None = None
        busy = False
        for trip_id in [t for t in self.idle_since if t not in rooms]:
            del self.idle_since[trip_id]  # unloaded (or evicted) by someone else
        for trip_id, activity in rooms.items():
            self.deadlines.pop(trip_id, None)  # rule 4: loaded, its timer has it
            if activity.busy(now_ms):
                self.idle_since.pop(trip_id, None)
                busy = True
                continue
            since = max(self.idle_since.get(trip_id, now_ms), activity.used_ms)
            self.idle_since[trip_id] = since
            unload_at = since + self.idle_after_ms
            if unload_at <= now_ms:
                unload.append(trip_id)
                del self.idle_since[trip_id]
                if activity.next_deadline_ms is not None:
                    self.deadlines[trip_id] = activity.next_deadline_ms
            else:
                next_ms = _earliest(next_ms, unload_at)
        load = tuple(sorted(t for t, at in self.deadlines.items() if at <= now_ms))
        for trip_id in load:
            del self.deadlines[trip_id]
        for at in self.deadlines.values():
            next_ms = _earliest(next_ms, at)
        if busy:
            next_ms = _earliest(next_ms, now_ms + self.look_every_ms)
        return Sweep(tuple(unload), load, next_ms)


def _earliest(current: int | None, candidate: int) -> int:
    return candidate if current is None else min(current, candidate)
