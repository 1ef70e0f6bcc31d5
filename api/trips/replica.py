"""Cluster mode: the trip rooms of this node kept in step with every other node's.

Theory of operation (``docs/cluster.md`` has the picture)
----------------------------------------------------------
Every node that has clients of a trip loads its room, as one node does, and
decides its own clients' changes on it. The shared store orders them: a change
is appended only as the very next version (``contiguous``), so when two nodes
decide at once the primary key lets one commit and the other's commit fails
(``RoomBroken(raced=True)``): that room reloads what the store holds and the
change is decided again (``api/trips/optimistic.py``). Every node's room thus
goes through the same versions, each decided on the state before it, as on
one node.

After each commit and its broadcast (``TripRoom.durable``), :meth:`committed`
publishes a record on the bus topic ``trip:{id}``: the appended entries
(version, update, meta) and the events the broadcast sent, each once encoded.
Another node with the room loaded (:meth:`received`) adopts the entries
(:meth:`TripDocument.apply_logged`), runs the change hooks (its Yjs peers get
the update) and hands the events to its own subscribers. Events sent outside
a commit (field locks, joins and leaves) go out at once (``relay_now``).

A record the room cannot adopt at once waits: while the room has a commit in
flight its document may hold a change the store does not (yet), so records
wait until it has none (``on_settled``). A record that does not follow the
room's version (one was missed: the bus is not durable), or that changed
pending conflicts (stored apart from the log), makes the room read the store
instead; so does a presence report (every beat) naming a version the room has
not reached (the record of it was lost: the node that confirmed it was killed
before publishing, or Redis dropped it), and another node's report expiring;
so does the bus coming back after a lost link (``on_resync``), and the topic's
subscription being confirmed (a room reads the store before it
hears its topic: what was committed between the two is read again). The
versions a room learns from the store are announced to its subscribers as
``trip_update_broadcast`` built here.

A commit's record goes only where it is heard: a room knows which other nodes
have it loaded (``TripRoom.elsewhere``), and while there are none it publishes
no record for a commit (none to encode, no event encoded to relay), nor presence
reports every beat. Events outside commits (joins, leaves, locks; rare) go out
always, so a node that has just loaded the room hears them. A node tells who has
the room through its topic: ``hello`` when the subscription is confirmed
(answered by every node that has the room with ``here``), ``here`` whenever it
learns of a node it did not know, ``bye`` when it unloads the room. A room reads
the store on each ``here`` and whenever it learns of a node: when two nodes
learn of each other, the first may have committed before it learned (nothing
published), and the second's ``here``, sent after that, makes it read those
commits from the store.

On one node (no ``TRIPSAGE_REDIS_URL``) nothing of this is wired: rooms have
no hooks and the broadcast encodes nothing extra.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, Final

import orjson

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.transport.bus import Bus
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.broadcast import ALL, CHANGE, TripBroadcast
from tripsage_sync.api.trips.events import change_payload
from tripsage_sync.api.trips.registry import RoomRegistry
from tripsage_sync.api.trips.rooms import Relayed, TripRoom
from tripsage_sync.storage.updatelog import AppendUpdate
from tripsage_sync.storage.writer import WriteOp
from tripsage_sync.sync.document import Change, LogEntry
from tripsage_sync.sync.presence import FieldLock, Member

__all__ = ["AwarenessHook", "TripReplicas", "topic"]

#: Called with a room, an awareness frame another node's peers sent, and that node's id.
AwarenessHook = Callable[[TripRoom, bytes, str], None]

logger = logging.getLogger(__name__)

_CONFLICT_KINDS: Final = frozenset({"conflict_raised", "conflict_resolved"})


#: Every node reports its members of each loaded room this often; a report lasts the TTL,
#: so the members of a node that stopped (kill -9) leave presence within both.
PRESENCE_BEAT_S: Final = 3.0
PRESENCE_TTL_MS: Final = 9_000


def topic(trip_id: str) -> str:
    return f"trip:{trip_id}"


class TripReplicas:
    """This node's side of the trips' replication; see the module docstring."""

    def __init__(
        self,
        services: Services,
        bus: Bus,
        registry: RoomRegistry,
        broadcast: TripBroadcast,
        clock: Clock,
        awareness_hooks: list[AwarenessHook],
    ) -> None:
        self.services = services
        self.awareness_hooks = awareness_hooks
        self.bus = bus
        self.registry = registry
        self.broadcast = broadcast
        self.clock = clock
        self._waiting: dict[str, list[dict[str, Any]]] = {}
        self._stale: set[str] = set()  # rooms to read the store once settled
        broadcast.relay_now = self.relay_now
        broadcast.presence_out = self.presence_out
        bus.on_resync(self.resync)
        self._beat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._beat = asyncio.get_running_loop().create_task(self._beats(), name="presence-beat")

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat

    # -- presence: each node reports its own members, again every beat ----------------

    def presence_out(self, room: TripRoom) -> None:
        members = [dataclasses.asdict(m) for m in room.presence.members.values()]
        locks = [dataclasses.asdict(lock) for lock in room.presence.locks.values()]
        record = {"p": members, "l": locks, "n": self.bus.node, "v": room.announced}
        self.bus.publish(topic(room.trip_id), orjson.dumps(record))

    def awareness_out(self, room: TripRoom, frame: bytes) -> None:
        """A y-websocket awareness frame this node's peers sent (identity-stamped)."""
        if not room.elsewhere:
            return
        record = {"a": base64.b64encode(frame).decode(), "n": self.bus.node}
        self.bus.publish(topic(room.trip_id), orjson.dumps(record))

    def _awareness_in(self, room: TripRoom, record: dict[str, Any]) -> None:
        frame, node = base64.b64decode(record["a"]), str(record["n"])
        for hook in self.awareness_hooks:
            try:
                hook(room, frame, node)
            except Exception:
                logger.exception("trip %s: awareness hook failed", room.trip_id)

    def _presence_in(self, room: TripRoom, record: dict[str, Any]) -> None:
        members = tuple(Member(**m) for m in record["p"])
        locks = tuple(FieldLock(**lock) for lock in record.get("l") or ())
        expires = self.clock.now_ms() + PRESENCE_TTL_MS
        if room.presence.set_remote(str(record["n"]), members, expires, locks):
            self.broadcast.publish_presence(room, relay=False)
        if int(record.get("v") or 0) > room.doc.version:  # a record of its was lost
            self.stale(room.trip_id)

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_BEAT_S)
            now = self.clock.now_ms()
            for room in list(self.registry.rooms.values()):
                if room.presence.members and room.elsewhere:
                    self.presence_out(room)
                if room.presence.expire_remote(now):  # a node stopped reporting (killed?)
                    self.broadcast.publish_presence(room, relay=False)
                    self.stale(room.trip_id)  # its last records may have died with it

    # -- rooms loaded and unloaded ------------------------------------------------------

    def watch(self, room: TripRoom) -> None:
        room.on_commit = self.committed
        room.on_settled = self.settled
        room.on_reloaded = self.announce_held
        room.on_adopted = self.adopted
        room.announced = room.doc.version
        if self.bus.healthy:  # else nothing to wait for: it is heard once the bus is back
            room.hearing = asyncio.get_running_loop().create_future()
        trip_id = room.trip_id
        self.bus.subscribe(
            topic(trip_id),
            lambda data: self.received(trip_id, data),
            ready=lambda: self.subscribed(trip_id),
        )

    def subscribed(self, trip_id: str) -> None:
        """The room hears its topic now: it says hello, and reads what it may have missed."""
        room = self.registry.rooms.get(trip_id)
        if room is not None and room.hearing is not None and not room.hearing.done():
            room.hearing.set_result(None)
        self._say(trip_id, "h")
        self.stale(trip_id)

    def forget(self, room: TripRoom) -> None:
        if room.elsewhere:
            self._say(room.trip_id, "b")
        self.bus.unsubscribe(topic(room.trip_id))
        self._waiting.pop(room.trip_id, None)
        self._stale.discard(room.trip_id)

    def stale(self, trip_id: str) -> None:
        """The room may have missed records (its topic was subscribed after it read the
        store, or the bus was down): it reads the store now, or once it has settled."""
        room = self.registry.rooms.get(trip_id)
        if room is None or room.broken:
            return
        if room.holds:
            self._stale.add(trip_id)
            room.announced = min(room.announced, room.doc.version)
        else:
            self.catch_up(room)

    # -- who else has the room: hello, here, bye -----------------------------------

    def _say(self, trip_id: str, word: str) -> None:
        self.bus.publish(topic(trip_id), orjson.dumps({word: 1, "n": self.bus.node}))

    def _heard_from(self, room: TripRoom, record: dict[str, Any]) -> None:
        """Whom a record says has the room (``h``/``i``/``b`` records, presence and
        awareness all name their node)."""
        node = str(record["n"])
        if "b" in record:
            room.elsewhere.discard(node)
            return
        known = node in room.elsewhere
        if not known:
            room.elsewhere.add(node)
            logger.debug("trip %s: node %s has it too", room.trip_id, node)
        if "h" in record or not known:  # it may not know us (a hello: it surely does not)
            self._say(room.trip_id, "i")
            self.presence_out(room)
        if "i" in record or not known:  # it may have committed before it knew of us
            self.stale(room.trip_id)

    # -- out: what this node committed and broadcast ---------------------------------

    def committed(
        self, room: TripRoom, writes: list[WriteOp[object]], relayed: list[Relayed] | None
    ) -> None:
        appended = [w for w in writes if type(w) is AppendUpdate]
        if appended:
            room.announced = max(room.announced, appended[-1].version)
        if relayed is None:  # no other node had the room (its events were not collected):
            return  # nobody to tell; a node that loads the room reads the store
        entries = [(w.version, base64.b64encode(w.update).decode(), w.meta_json) for w in appended]
        conflicts = any(room.kind_of(w) in _CONFLICT_KINDS for w in writes)
        if not entries and not conflicts and not relayed:
            return  # an outcome alone (a resend): nothing another node must learn
        record = {"e": entries, "c": conflicts, "r": relayed}
        self.bus.publish(topic(room.trip_id), orjson.dumps(record))
        logger.debug("trip %s: told the cluster of %d entries", room.trip_id, len(entries))

    def relay_now(self, room: TripRoom, relayed: Relayed) -> None:
        self.bus.publish(topic(room.trip_id), orjson.dumps({"r": [relayed]}))

    # -- in: what other nodes committed ----------------------------------------------

    def received(self, trip_id: str, data: bytes) -> None:
        room = self.registry.rooms.get(trip_id)
        logger.debug("trip %s: a record from the cluster (%d bytes)", trip_id, len(data))
        if room is None or room.broken:
            return  # not loaded here (any more): a load reads the store
        try:
            record: dict[str, Any] = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.error("trip %s: a bus record that is not JSON; ignored", trip_id)
            return
        if "n" in record:
            self._heard_from(room, record)
        if "p" in record:
            self._presence_in(room, record)
            return
        if "a" in record:
            self._awareness_in(room, record)
            return
        if "n" in record:  # hello, here or bye: no change in it
            return
        if room.holds:  # a change of ours may be in the document and not in the store
            self._waiting.setdefault(trip_id, []).append(record)
            return
        self.apply(room, record)

    def settled(self, room: TripRoom) -> None:
        """The room has no write in flight: what waited can be adopted now."""
        records = self._waiting.pop(room.trip_id, ())
        if room.trip_id in self._stale:
            self._stale.discard(room.trip_id)
            self.catch_up(room)
        for record in records:
            self.apply(room, record)

    def apply(self, room: TripRoom, record: dict[str, Any]) -> None:
        entries: list[list[Any]] = record.get("e") or []
        relayed: list[Relayed] = [(r[0], r[1], r[2]) for r in record.get("r") or ()]
        if entries:
            first, last = entries[0][0], entries[-1][0]
            logger.debug(
                "trip %s: record of versions %d-%d at version %d",
                room.trip_id,
                first,
                last,
                room.doc.version,
            )
            if record.get("c") or first > room.doc.version + 1:
                self.reload(room)  # missed one, or conflicts changed: read the store
                relayed = [r for r in relayed if r[0] != CHANGE]  # announced by the reload
            elif last <= room.doc.version:
                relayed = [r for r in relayed if r[0] != CHANGE]  # adopted from the store
            else:
                for version, update, meta in entries:
                    if version > room.doc.version:
                        entry = LogEntry(version, base64.b64decode(update), json.loads(meta))
                        self._adopted(room, room.doc.apply_logged(entry))
                self.broadcast.advance_seen(room, last, None)
        for item in relayed:
            self.broadcast.deliver(room, item)

    def resync(self) -> None:
        """The bus was down: records may be lost, every loaded room reads the store (and
        says hello again: a node that loaded it meanwhile did not hear of this one)."""
        for trip_id in list(self.registry.rooms):
            self._say(trip_id, "h")
            self.stale(trip_id)

    # -- the store, where a record could not do ------------------------------------

    def reload(self, room: TripRoom) -> None:
        room.reload(self.services)  # announces what it brought (announce_held)
        self.catch_up(room)

    def catch_up(self, room: TripRoom) -> None:
        """Announce what the room holds and its subscribers were not sent; then adopt
        what the store holds beyond it."""
        self.announce_held(room)
        newer = self.services.store.updates_since(room.trip_id, room.doc.version)
        if newer and newer[0].version != room.doc.version + 1:  # pruned meanwhile
            room.reload(self.services)
            self.catch_up(room)
            return
        for row in newer:
            entry = LogEntry(row.version, row.update, json.loads(row.meta_json))
            change = room.doc.apply_logged(entry)
            self._adopted(room, change)
            self._announce(room, change)

    def announce_held(self, room: TripRoom) -> None:
        """The versions the room holds that its subscribers here were not told of (the
        room was loaded anew from the store): told now, in order."""
        if room.announced < room.doc.version:
            try:
                changes = room.doc.changes_since(room.announced)
            except Exception:  # noqa: BLE001 - compacted past it: clients resync on their own
                logger.warning(
                    "trip %s: cannot announce versions after %d", room.trip_id, room.announced
                )
                changes = []
            for change in changes:
                self.broadcast.run_change_hooks(room, change, None, here=False)
                self._announce(room, change)
            room.announced = room.doc.version

    def adopted(self, room: TripRoom, changes: list[Change]) -> None:
        """What a rebase of the room brought from the store (``TripRoom._rebase``)."""
        for change in changes:
            self._adopted(room, change)
            self._announce(room, change)

    def _adopted(self, room: TripRoom, change: Change) -> None:
        room.appended.add(change.version, self.clock.now_ms())
        room.announced = max(room.announced, change.version)
        update_id = change.meta.get("updateId")
        if room.outcome_ids is not None and isinstance(update_id, str):
            room.outcome_ids.add(update_id)
        self.broadcast.run_change_hooks(room, change, None, here=False)

    def _announce(self, room: TripRoom, change: Change) -> None:
        payload = change_payload(room.trip_id, change, now=self.clock.now_ms())
        event = self.broadcast.encode(payload)
        self.broadcast.deliver(room, (ALL, event, False))
        self.broadcast.advance_seen(room, change.version, None)
