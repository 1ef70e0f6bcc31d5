"""Optimistic updates (``websocket-api.md`` "Optimistic Updates"): one
``optimistic_update_start`` gets exactly one outcome (confirmed, rejected, conflict or
rollback), idempotent by ``updateId``; persisted, then broadcast, then answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.trips.events import (
    outcome_event,
    rollback_event,
)
from tripsage_sync.api.trips.feature import EDITORS
from tripsage_sync.api.trips.part import TripPart
from tripsage_sync.api.trips.rooms import RoomBroken, TripRoom
from tripsage_sync.sync.document import (
    Confirmed,
    Refused,
    UpdateRequest,
)
from tripsage_sync.sync.errors import InvalidMessage, PermissionDenied
from tripsage_sync.sync.wire import (
    InvalidUpdate,
    OptimisticUpdateStartMessage,
    make_event,
    parse_iso_ms,
)

__all__ = ["OptimisticUpdates"]

logger = logging.getLogger(__name__)


class OptimisticUpdates(TripPart):
    """A part of the trip feature (:mod:`tripsage_sync.api.trips.part`)."""

    async def on_optimistic_update(
        self, conn: Connection, message: OptimisticUpdateStartMessage
    ) -> None:
        p = message.payload
        received = self.clock.now_ms()
        field_name = p.fieldName or p.fieldPath
        if field_name is None:
            raise InvalidUpdate(
                "fieldName or fieldPath is required",
                update_id=p.updateId,
                trip_id=p.tripId,
                field_name=None,
                details={
                    "field": "payload.fieldName",
                    "expected": "string",
                    "received": "undefined",
                },
            )
        try:
            room, permission = self.trips.room_for(conn.principal, p.tripId)
        except PermissionDenied as exc:
            conn.send_error(exc, in_reply_to=message.id)
            self._send_outcome(
                conn,
                rollback_event(
                    p.tripId,
                    p.updateId,
                    field_name,
                    p.previousValue,
                    "permission_denied",
                    "you are not a collaborator on this trip.",
                    can_retry=False,
                ),
            )
            return
        if permission not in EDITORS:
            denied = PermissionDenied(
                "Viewers cannot edit this trip",
                details={"tripId": room.trip_id, "updateId": p.updateId},
            )
            conn.send_error(denied, in_reply_to=message.id)
            current = room.doc.fields().get(field_name.removeprefix("trip."))
            self._send_outcome(
                conn,
                rollback_event(
                    room.trip_id,
                    p.updateId,
                    field_name,
                    current,
                    "permission_denied",
                    "you can view this trip but not edit it.",
                    can_retry=False,
                ),
            )
            return
        # Idempotent re-send: the same outcome, never a second application.
        inflight = room.inflight.get(p.updateId)
        if inflight is not None:
            self._send_outcome(conn, await asyncio.shield(inflight))
            return
        stored = self.trips.services.store.get_outcome(room.trip_id, p.updateId)
        if stored is not None:
            data = json.loads(stored)
            self._send_outcome(conn, (data["type"], data["payload"]))
            return
        refused_ms = self.trips.services.storage_backoff.admit(received)
        if refused_ms is not None:  # storage is failing: not applied, retry later
            self._send_outcome(
                conn, self._storage_rollback(room, p.updateId, field_name, refused_ms)
            )
            return
        try:
            client_ts = received if p.clientTimestamp is None else parse_iso_ms(p.clientTimestamp)
        except InvalidMessage:
            client_ts = received
        expected = p.expectedVersion
        if expected is None:  # based on the latest version this connection has seen
            expected = self.trips.seen_versions(conn).get(room.trip_id, 0)
        request = UpdateRequest(
            update_id=p.updateId,
            user_id=conn.principal.user_id,
            field_name=field_name,
            optimistic_value=p.optimisticValue,
            previous_value=p.previousValue,
            has_previous_value="previousValue" in p.model_fields_set,
            expected_version=expected,
            client_ts_ms=client_ts,
            received_ts_ms=received,
        )
        result = room.doc.apply_optimistic(request)
        outcome = outcome_event(result, room.trip_id, self.clock.now_ms() - received)
        waiter: asyncio.Future[tuple[str, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        room.inflight[p.updateId] = waiter
        writes = room.writes_for(
            result.change,
            outcome=(p.updateId, json.dumps({"type": outcome[0], "payload": outcome[1]})),
            conflict=result.conflict_raised,
        )
        try:
            async with room.durable(self.trips.services, writes):
                self.trips.broadcast_result(room, result, exclude=conn)
                outcome[1]["processingTime"] = self.clock.now_ms() - received
                if isinstance(result.outcome, Refused):
                    refused = InvalidMessage(result.outcome.message, details=result.outcome.details)
                    conn.send_error(refused, in_reply_to=message.id)
                elif isinstance(result.outcome, Confirmed):
                    self.trips.saw_own(conn, room.trip_id, result.outcome.server_version)
                self._send_outcome(conn, outcome)
        except RoomBroken as broken:
            outcome = self._storage_rollback(room, p.updateId, field_name, broken.retry_after_ms)
            self._send_outcome(conn, outcome)
        finally:
            room.inflight.pop(p.updateId, None)
            waiter.set_result(outcome)
        if result.change is not None:
            await self.trips.maybe_compact(room)
        if result.conflict_raised is not None:
            self.trips.schedule(room)

    @staticmethod
    def _storage_rollback(
        room: TripRoom, update_id: str, field_name: str, retry_after_ms: int
    ) -> tuple[str, dict[str, Any]]:
        """The rollback of an edit storage could not take: retry after ``retry_after_ms``."""
        return rollback_event(
            room.trip_id,
            update_id,
            field_name,
            room.doc.fields().get(field_name.removeprefix("trip.")),  # what storage holds
            "server_error",
            f"the server cannot store changes right now; try again in {retry_after_ms / 1000:g} s.",
            can_retry=True,
            retry_after_ms=retry_after_ms,
        )

    def _send_outcome(self, conn: Connection, outcome: tuple[str, dict[str, Any]]) -> None:
        type_, payload = outcome
        self.trips.services.count_outcome(type_)
        conn.send(
            make_event(
                type_, payload, now_ms=self.clock.now_ms(), session_id=conn.session.path_session_id
            )
        )
