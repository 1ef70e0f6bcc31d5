"""Trip rooms: one loaded trip document, its presence, and its commit pipeline.

Theory of operation
-------------------
A :class:`TripRoom` owns one :class:`sync.document.TripDocument`. Every
change is applied to the document synchronously on the event loop (so
versions are assigned in one order), then handed to the storage writer; the
writer batches commits from many rooms and many editors into one fsync.
:meth:`TripRoom.commit` resolves once the change is durable *and* every
earlier change of the room was broadcast, so the shell can keep the rule
"persist, then broadcast, then acknowledge" in version order while commits
are still shared.

If a commit fails, the in-memory document is ahead of the database: the room
reloads its document from SQLite in place (presence, subscribers and Yjs
peers stay; reads work on a full disk), and the sender gets
``optimistic_update_rollback`` (server_error, canRetry, retryAfter). Every
commit is reported to ``Services.storage_backoff`` (:mod:`sync.backoff`),
which the shells ask before they apply an edit, so while storage fails edits
are refused with a growing ``retryAfter`` instead of failing one by one. An
update is appended only right after its predecessor (``contiguous``), and
the commits of one document form a storage chain (``chain``): when a commit
fails, the ones applied after it fail too (also when, in a cluster, another
node's change took the failed one's version), so the log never has a gap and
the reloaded document is exactly what was confirmed. Only if the reload
itself fails is the room marked broken; the registry then evicts it and
loads it anew on next use.

Rooms are loaded lazily from ``Storage.trip_history`` (snapshot + updates +
pending conflicts); compaction takes a snapshot every ``compact_every_updates``
changes, keeping the history of the last ``history_retention_days`` for clients
that were offline. A room nobody uses is unloaded after
``room_idle_unload_s`` (:mod:`api.trips.sweep`, decided by :mod:`sync.idle`):
it is dropped from the registry (:mod:`api.trips.registry`), and the next
lookup loads it anew. While a commit, compaction or other write of the room
runs, ``holds`` counts it (:meth:`TripRoom.held`), and every lookup stamps
``used_ms``. The commits in flight are :mod:`api.trips.inflight`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.restore import restore_document
from tripsage_sync.api.transport.bus import BusUnavailable
from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.inflight import (
    CHAINS,
    REBASE_RETRIES,
    Commit,
    WriteKinds,
    landed,
    movable,
    raced,
    stored_since,
)
from tripsage_sync.storage import ops
from tripsage_sync.storage.errors import is_unavailable
from tripsage_sync.storage.writer import WriteOp
from tripsage_sync.sync.conflicts import PendingConflict
from tripsage_sync.sync.document import (
    EDITORS,
    AppendTimes,
    Change,
    IdFilter,
    TripDocument,
)
from tripsage_sync.sync.errors import NotFound
from tripsage_sync.sync.presence import Presence
from tripsage_sync.sync.wire import OutcomePayload, json_text

__all__ = [
    "EDITORS",
    "PERMISSIONS",
    "RACE_RETRIES",
    "SETTLE_WAITS",
    "CommitHook",
    "Relayed",
    "RoomBroken",
    "TripRoom",
]

logger = logging.getLogger(__name__)

PERMISSIONS: Final = ("viewer", "editor", "owner")

#: Cluster mode: how many times a change whose commit another node beat is decided again
#: (on what the store holds then) before its sender is told it failed.
RACE_RETRIES: Final = 16
#: How many commit turns a read waits at most for the room's changes in flight
#: (:meth:`TripRoom.settle`; a room never idle is answered anyway).
SETTLE_WAITS: Final = 8
#: How long a join waits for a room just loaded to hear its bus topic (cluster mode).
HEAR_WAIT_S: Final = 2.0


class RoomBroken(Exception):
    """A commit failed; the room went back to what storage holds.

    ``retry_after_ms`` is how long edits are refused now (:mod:`sync.backoff`).
    ``raced``: another node of the cluster committed that version (or that
    update's outcome) first; storage works, and the change may be decided again
    on what it holds now.
    """

    def __init__(self, trip_id: str, *, retry_after_ms: int = 0, raced: bool = False) -> None:
        super().__init__(trip_id)
        self.trip_id = trip_id
        self.retry_after_ms = retry_after_ms
        self.raced = raced


#: Called after a commit of the room and its broadcast, in version order, with the
#: writes and the events the broadcast sent (``api/trips/replica.py`` tells other nodes);
#: ``None`` when they were not collected (no other node had the room loaded).
CommitHook = Callable[["TripRoom", list[WriteOp[object]], list["Relayed"] | None], None]
#: An event broadcast to the room: (audience, encoded event, droppable).
Relayed = tuple[str, str, bool]


@dataclass
class TripRoom:
    trip_id: str
    doc: TripDocument
    owner_id: str
    permissions: dict[str, str]
    presence: Presence
    clock: Clock
    broken: bool = False
    # When the retained versions were appended (or loaded), for retention, in spans.
    appended: AppendTimes = field(default_factory=AppendTimes)
    inflight: dict[str, asyncio.Future[OutcomePayload]] = field(default_factory=dict)
    # The update ids that may have a stored outcome, built on first use (api/trips/optimistic.py).
    outcome_ids: IdFilter | None = None
    timer: asyncio.TimerHandle | None = None
    since_snapshot: int = 0
    holds: int = 0  # writes of the room not yet finished (see ``held``)
    used_ms: int = 0  # wall time of its last lookup (RoomRegistry.get)
    _tail: asyncio.Future[None] | None = None
    _commits: list[Commit] = field(default_factory=list)  # in flight, in version order
    # Cluster mode (api/trips/replica.py): told of each commit, and of each moment the room
    # has no write in flight (what other nodes committed meanwhile can then be adopted).
    on_commit: CommitHook | None = None
    on_settled: Callable[[TripRoom], None] | None = None
    on_reloaded: Callable[[TripRoom], None] | None = None
    # What the store held beyond the room, adopted by a rebase (``_rebase``): to announce.
    on_adopted: Callable[[TripRoom, list[Change]], None] | None = None
    # The events broadcast inside the commit body now running (``durable``), for on_commit;
    # collected only while another node has the room loaded (``elsewhere``).
    relay: list[Relayed] | None = None
    # The other nodes that have the room loaded, as far as this one has heard (replica.py).
    elsewhere: set[str] = field(default_factory=set)
    # A commit body (its broadcast) is running: its events go with the commit or not at all.
    committing: bool = False
    # The storage chain of the document's commits (``durable``): a new one per reload.
    chain: int = field(default_factory=lambda: next(CHAINS))
    # The latest version this node's subscribers were told of (cluster mode).
    announced: int = 0
    # Cluster mode: done once the room hears its bus topic (events from other nodes reach
    # it from then on); a join is answered after it (``hear``). None on one node.
    hearing: asyncio.Future[None] | None = None
    # What each write of ``writes_for`` stands for ("append", "conflict_raised",
    # "conflict_resolved"), counted by ``durable`` once committed (api/transport/metrics.py).
    _kinds: WriteKinds = field(default_factory=WriteKinds)

    def permission(self, user_id: str) -> str | None:
        return self.permissions.get(user_id)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The room is in use (a write, a compaction): it is not unloaded meanwhile."""
        self.holds += 1
        try:
            yield
        finally:
            self.holds -= 1

    def writes_for(
        self,
        change: Change | None,
        *,
        outcome: tuple[str, str] | None = None,
        conflict: PendingConflict | None = None,
        resolved: str | None = None,
    ) -> list[WriteOp[object]]:
        """The storage operations of one applied result, committed all-or-nothing."""
        now = self.clock.now_ms()
        writes: list[WriteOp[Any]] = []
        if change is not None:
            append = ops.append_update(
                self.trip_id,
                change.version,
                change.update,
                json_text(change.meta),
                now,
                contiguous=True,
            )
            writes.append(self._kinds.mark(append, "append"))
            self.appended.add(change.version, now)
        if outcome is not None:
            update_id, outcome_json = outcome
            writes.append(ops.put_outcome(self.trip_id, update_id, outcome_json, now))
        if conflict is not None:
            raised = ops.put_conflict(
                self.trip_id, conflict.conflict_id, json.dumps(conflict.to_json()), "pending"
            )
            writes.append(self._kinds.mark(raised, "conflict_raised"))
        if resolved is not None:
            settled = ops.set_conflict_status(resolved, "resolved")
            writes.append(self._kinds.mark(settled, "conflict_resolved"))
        return writes

    def kind_of(self, write: WriteOp[Any]) -> str | None:
        """What a write of ``writes_for`` stands for ("append", "conflict_raised"...)."""
        return self._kinds.kind_of(write)

    @contextlib.asynccontextmanager
    async def durable(
        self,
        services: Services,
        writes: list[WriteOp[object]],
        *,
        change: Change | None = None,
    ) -> AsyncIterator[Change | None]:
        """Commit ``writes``; the body (the broadcast) runs after the previous one's.

        Commits of one room share fsyncs with everything else in flight; only the
        broadcasts are serialised, in the order the changes were applied.

        ``change``: the change ``writes`` append, alone, given when it may be moved
        under another node's (a Yjs peer's change with no conflict, see :meth:`_rebase`).
        The body gets the change as committed (its version may have moved).
        """
        previous = self._tail
        generation = self.doc  # the document the change was applied to
        # Its changes were each decided on the ones before: once one fails, the later ones
        # of this document must not commit (in a cluster another node's change may fill
        # the failed one's version, and a later change, decided on the failed one, would
        # then follow it in the log): the reload starts a new chain.
        commit = Commit(writes, change, self.chain)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail = mine
        self._commits.append(commit)
        backoff = services.storage_backoff
        self.holds += 1
        try:
            failure: Exception | None = None
            retry_after_ms = 0
            started = time.perf_counter()
            if writes and not services.bus.healthy:  # confirmed, others would not hear
                failure = BusUnavailable("the cluster's bus (Redis) is unreachable")
            elif writes:  # none: the body only waits its turn (after the earlier ones)
                failure = await landed(
                    services, services.store.submit_all(writes, chain=commit.chain)
                )
            if previous is not None and not previous.done():
                await asyncio.shield(previous)
            # Lost to another node: moved under its changes where they commute (with the
            # later commits of the chain), committed again; else the room reloads below.
            # Once moved, only the new attempt counts (the first failed, or will).
            for _ in range(REBASE_RETRIES):
                if commit.retry is None and not (raced(failure) and self._rebase(services, commit)):
                    break
                assert commit.retry is not None
                retry, commit.retry = commit.retry, None
                failure = await landed(services, retry)
            lost = raced(failure)
            if failure is None:
                if writes:
                    services.metrics.commit_seconds.observe(time.perf_counter() - started)
                    self._kinds.count(services.metrics, commit.writes)
                    if backoff.succeeded():
                        logger.warning("storage works again: trip edits are accepted")
            else:
                if lost:  # another node was first: nothing is wrong with storage
                    retry_after_ms = 0
                elif writes and (is_unavailable(failure) or isinstance(failure, BusUnavailable)):
                    retry_after_ms = backoff.failed(self.clock.now_ms())
                else:  # the write's own fault (or its predecessor's): no episode of its own
                    retry_after_ms = backoff.delay_ms if backoff.failing else backoff.initial_ms
                logger.log(
                    logging.INFO if lost else logging.ERROR,
                    "trip %s: commit failed (%s: %s); edits refused for %d ms",
                    self.trip_id,
                    type(failure).__name__,
                    failure,
                    retry_after_ms,
                )
                # Nothing written, nothing to undo; else the doc is ahead of storage, unless
                # it was already reloaded for an earlier failure.
                if writes and self.doc is generation and commit.chain == self.chain:
                    self.reload(services)
                raise RoomBroken(
                    self.trip_id, retry_after_ms=retry_after_ms, raced=lost
                ) from failure
            if self.on_commit is None or not writes:
                yield commit.change
            else:
                relayed: list[Relayed] | None = [] if self.elsewhere else None
                self.relay = relayed
                self.committing = True
                try:
                    yield commit.change
                finally:
                    self.relay = None
                    self.committing = False
                self.on_commit(self, commit.writes, relayed)
        finally:
            self._commits.remove(commit)
            self.holds -= 1
            if not mine.done():
                mine.set_result(None)
            if self.holds == 0 and self.on_settled is not None:
                self.on_settled(self)

    def _rebase(self, services: Services, failed: Commit) -> bool:
        """``failed`` lost its version to another node: move it and the later changes of
        its chain under what the store holds now, if they commute with it
        (:meth:`TripDocument.rebase`: Yjs peers' changes to other fields), and commit
        them again, in order, in a new chain (each awaits its own: ``Commit.retry``).

        What the store brought is adopted and announced (``on_adopted``) as a reload
        would. ``False`` (nothing done) when they do not commute: the room reloads.
        """
        later = movable(self._commits, failed, self.chain, self.doc.version)
        after = self.doc.version - len(later)  # the version before the first of them
        theirs = stored_since(services, self.trip_id, after) if later else []
        adopted = self.doc.rebase(after, theirs) if later else None
        if adopted is None:
            return False
        self.chain = next(CHAINS)
        self.appended.truncate(after)
        if self.on_adopted is not None:
            self.on_adopted(self, adopted)
        version = self.doc.version - len(later)
        for commit in later:
            assert commit.change is not None
            version += 1
            commit.change = replace(commit.change, version=version)
            commit.writes = self.writes_for(commit.change)
            commit.chain = self.chain
            commit.retry = services.store.submit_all(commit.writes, chain=self.chain)
        logger.info(
            "trip %s: %d change(s) moved under another node's %d (now up to %d)",
            *(self.trip_id, len(later), len(theirs), version),
        )
        return True

    async def settle(self, services: Services) -> None:
        """Until no change of the room is in flight (at most :data:`SETTLE_WAITS` commit
        turns): a read then answers with what storage holds, not with a change that may
        yet fail (and, in a cluster, see another node's take its version). Look the room
        up again afterwards: it may have been unloaded meanwhile."""
        for _ in range(SETTLE_WAITS):
            if self.holds == 0 or self.broken:
                return
            async with self.durable(services, []):  # after the earlier ones
                pass

    async def hear(self) -> None:
        """Until the room hears the other nodes (cluster mode; at most :data:`HEAR_WAIT_S`,
        the bus may be down): a client told it has joined then hears every event sent
        after that, from any node."""
        hearing = self.hearing
        if hearing is not None and not hearing.done():
            await asyncio.wait((hearing,), timeout=HEAR_WAIT_S)

    def reload(self, services: Services) -> None:
        """Go back to the document storage holds (after a failed commit it was ahead)."""
        try:
            trip = services.store.get_trip(self.trip_id)
            if trip is None:
                raise NotFound("Trip not found", details={"tripId": self.trip_id})
            doc = restore_document(
                services.store,
                trip,
                auto_resolve_after_ms=services.settings.conflict_auto_resolve_ms,
                keep_entries=services.settings.history_window_updates,
            )
        except Exception:
            logger.exception("trip %s: reload failed; the room will be loaded anew", self.trip_id)
            self.broken = True
            return
        self.doc = doc
        self.chain = next(CHAINS)
        self.appended.truncate(doc.version)
        logger.info("trip %s: back at stored version %d", self.trip_id, doc.version)
        if self.on_reloaded is not None:  # what other nodes committed is announced now
            self.on_reloaded(self)
