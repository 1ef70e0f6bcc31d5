"""Optimistic updates (``websocket-api.md`` "Optimistic Updates"): one
``optimistic_update_start`` gets exactly one outcome (confirmed, rejected, conflict or
rollback), idempotent by ``updateId``; persisted, then broadcast, then answered.

The rules are :mod:`sync.document.desk`'s. This shell gathers the facts it asks for
(the room and the sender's permission, the stored or in-flight outcome, the storage
backoff, the version the connection has seen, the receive time), makes the one call
:func:`~sync.document.desk.receive_update` and carries out the intents it returns, in
order: events are built by :mod:`api.trips.events`, commits go through
:meth:`TripRoom.durable`, and an update is in flight (``TripRoom.inflight``, for a
re-send to wait on) while its commit and follow-ups run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final, assert_never

from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.trips.events import (
    outcome_event,
    rollback_event,
)
from tripsage_sync.api.trips.part import TripPart
from tripsage_sync.api.trips.rooms import RACE_RETRIES, RoomBroken, TripRoom
from tripsage_sync.sync.document import (
    AwaitInFlightOutcome,
    Broadcast,
    Compact,
    IdFilter,
    Intent,
    NoteOwnVersion,
    Persist,
    ScheduleConflictDeadline,
    SendError,
    SendOutcome,
    SendRollback,
    SendStoredOutcome,
    UpdateFacts,
    UpdateStart,
    persist_failed,
    receive_update,
)
from tripsage_sync.sync.errors import InvalidState, PermissionDenied
from tripsage_sync.sync.wire import (
    OptimisticUpdateStartMessage,
    OutcomePayload,
    make_event,
    read_outcome,
    stored_outcome,
)

__all__ = ["OptimisticUpdates"]

logger = logging.getLogger(__name__)

# A room's filter of stored update ids (sync/document/idfilter.py) is built from at most
# this many (about 4 us each, once, on the loop); a trip with more asks storage every time.
FILTER_MAX_IDS: Final = 25_000


class OptimisticUpdates(TripPart):
    """A part of the trip feature (:mod:`tripsage_sync.api.trips.part`).

    The decisions are :func:`sync.document.receive_update`'s; this gathers its
    facts and carries out the intents it returns (:class:`_Reply`).
    """

    async def on_optimistic_update(
        self, conn: Connection, message: OptimisticUpdateStartMessage
    ) -> None:
        p = message.payload
        received = self.clock.now_ms()
        update = UpdateStart.of(  # InvalidUpdate when it names no field
            update_id=p.updateId,
            trip_id=p.tripId,
            field_name=p.fieldName,
            field_path=p.fieldPath,
            optimistic_value=p.optimisticValue,
            previous_value=p.previousValue,
            has_previous_value="previousValue" in p.model_fields_set,
            expected_version=p.expectedVersion,
            client_timestamp=p.clientTimestamp,
        )
        await self.decide(conn, message.id, update, received, retries=RACE_RETRIES)

    async def decide(
        self,
        conn: Connection,
        message_id: str | None,
        update: UpdateStart,
        received: int,
        *,
        retries: int,
        own: asyncio.Future[OutcomePayload] | None = None,
    ) -> OutcomePayload | None:
        """Gather the facts, decide and carry out; the outcome sent, if one was.

        ``own`` is the in-flight outcome of this very update when it is decided
        again (another node committed first): not one to wait for.
        """
        room: TripRoom | None = None
        permission: str | PermissionDenied
        try:
            room, permission = self.trips.room_for(conn.principal, update.trip_id)
        except PermissionDenied as exc:
            permission = exc
        inflight = None if room is None else room.inflight.get(update.update_id)
        if inflight is not None and inflight is own:
            inflight = None
        stored = None
        if room is not None and inflight is None and self._may_be_stored(room, update.update_id):
            stored = self.trips.services.store.get_outcome(room.trip_id, update.update_id)
        facts = UpdateFacts(
            user_id=conn.principal.user_id,
            doc=None if room is None else room.doc,
            permission=permission,
            stored_outcome=stored,
            in_flight=inflight is not None,
            backoff=self.trips.services.storage_backoff,
            seen_version=self.trips.seen_versions(conn).get(update.trip_id, 0),
            received_ms=received,
        )
        reply = _Reply(self, conn, message_id, update, room, inflight, received, retries)
        outcome = None
        for intent in receive_update(update, facts):
            outcome = await reply.carry_out(intent) or outcome
        return outcome

    def _may_be_stored(self, room: TripRoom, update_id: str) -> bool:
        """Whether storage may hold an outcome for ``update_id``: a read of storage is
        needed only then (nearly every id is new; sync/document/idfilter.py)."""
        if room.outcome_ids is None:  # ids stored before the room was loaded
            ids = self.trips.services.store.outcome_ids(room.trip_id, FILTER_MAX_IDS + 1)
            too_many = len(ids) > FILTER_MAX_IDS  # the build would stall the loop
            room.outcome_ids = IdFilter.everything() if too_many else IdFilter(ids)
        return room.outcome_ids.may_hold(update_id)


@dataclass
class _Reply:
    """Carrying out the intents of one update for its sender."""

    part: OptimisticUpdates
    conn: Connection
    message_id: str | None
    update: UpdateStart
    room: TripRoom | None
    inflight: asyncio.Future[OutcomePayload] | None
    received_ms: int
    retries: int  # how many times a commit another node beat may be decided again

    async def carry_out(self, intent: Intent) -> OutcomePayload | None:
        """Do what ``intent`` says; returns the outcome it sent, if it sent one."""
        trips = self.part.trips
        outcome: OutcomePayload | None = None
        match intent:
            case SendError(error):
                self.conn.send_error(error, in_reply_to=self.message_id)
            case SendRollback():
                outcome = _rollback(intent)
            case SendStoredOutcome(stored):
                outcome = read_outcome(stored)
            case AwaitInFlightOutcome():
                if self.inflight is None:
                    raise InvalidState("no outcome in flight to wait for")
                outcome = await asyncio.shield(self.inflight)
            case Persist():
                await self._persist(intent)
            case Compact():
                await trips.maybe_compact(self._room())
            case ScheduleConflictDeadline():
                trips.schedule(self._room())
            case _:
                assert_never(intent)
        if outcome is not None:
            self._send_outcome(outcome)
        return outcome

    def _send_outcome(self, outcome: OutcomePayload) -> None:
        self.part.trips.services.count_outcome(outcome.EVENT_TYPE)
        now = self.part.clock.now_ms()
        session_id = self.conn.session.path_session_id
        self.conn.send(make_event(outcome, now_ms=now, session_id=session_id))

    def _room(self) -> TripRoom:
        if self.room is None:
            raise InvalidState("an intent on the trip without its room")
        return self.room

    def _processing_ms(self) -> int:
        return self.part.clock.now_ms() - self.received_ms

    async def _persist(self, persist: Persist) -> None:
        """Commit, then run the follow-ups; the update is in flight until then."""
        room, trips, result = self._room(), self.part.trips, persist.result
        update_id = self.update.update_id
        outcome = outcome_event(result, room.trip_id, self._processing_ms())
        waiter: asyncio.Future[OutcomePayload] = asyncio.get_running_loop().create_future()
        room.inflight[update_id] = waiter
        if room.outcome_ids is not None:  # before its commit: a failed one is only a "maybe"
            room.outcome_ids.add(update_id)
        writes = room.writes_for(
            result.change,
            outcome=(update_id, stored_outcome(outcome)),
            conflict=result.conflict_raised,
        )
        try:
            async with room.durable(trips.services, writes):
                for follow_up in persist.then:
                    match follow_up:
                        case Broadcast(broadcast):
                            trips.broadcast_result(room, broadcast, exclude=self.conn)
                        case SendError(error):
                            self.conn.send_error(error, in_reply_to=self.message_id)
                        case NoteOwnVersion(version):
                            trips.saw_own(self.conn, room.trip_id, version)
                        case SendOutcome(answered):
                            processing_ms = self._processing_ms()
                            if answered is not result:  # the stored one is built from result
                                outcome = outcome_event(answered, room.trip_id, processing_ms)
                            outcome = outcome.model_copy(update={"processingTime": processing_ms})
                            self._send_outcome(outcome)
                        case _:
                            assert_never(follow_up)
        except RoomBroken as broken:  # the room is back at what storage holds
            if broken.raced and self.retries > 0:
                # Another node committed that version (or this update) first: decide
                # again on what the store holds now, as one node would have.
                again = await self.part.decide(
                    self.conn,
                    self.message_id,
                    self.update,
                    self.received_ms,
                    retries=self.retries - 1,
                    own=waiter,
                )
                outcome = again or outcome
            else:
                for intent in persist_failed(self.update, room.doc, broken.retry_after_ms):
                    outcome = await self.carry_out(intent) or outcome
        finally:
            room.inflight.pop(update_id, None)
            waiter.set_result(outcome)


def _rollback(intent: SendRollback) -> OutcomePayload:
    return rollback_event(
        intent.trip_id,
        intent.update_id,
        intent.field_name,
        intent.value,
        intent.reason,
        intent.message,
        can_retry=intent.can_retry,
        retry_after_ms=intent.retry_after_ms,
    )
