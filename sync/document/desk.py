"""The optimistic-update path as one call that returns intents (``websocket-api.md``
"Optimistic Updates").

Theory of operation
-------------------
``api/`` turns an ``optimistic_update_start`` into an :class:`UpdateStart`
(:meth:`UpdateStart.of` refuses one that names no field), gathers the
:class:`UpdateFacts` it holds (who sends it, their permission or its refusal,
the outcome stored for this ``updateId``, whether one is in flight, the storage
backoff, the version the connection has seen, the receive time) and calls
:func:`receive_update`. The answer is a list of intents, carried out in order;
no I/O and no clock here, times arrive as ``*_ms``.

Rules, first match wins (exactly one outcome per update):

1. No permission (not a collaborator, or an unknown trip): :class:`SendError`
   then :class:`SendRollback` (``permission_denied``, back to ``previousValue``).
2. A viewer: the same, back to the field's current value.
3. An update with this ``updateId`` in flight: :class:`AwaitInFlightOutcome`;
   else one already decided: :class:`SendStoredOutcome`. An update is never
   applied twice.
4. Storage is failing (:mod:`sync.backoff` refuses): :class:`SendRollback`
   (``server_error``, ``canRetry``, ``retryAfter``), nothing applied.
5. Else the document decides (:meth:`TripDocument.apply_optimistic`, based on
   ``expectedVersion`` or the version the connection has seen) and the answer
   is :class:`Persist` (change + outcome + conflict in one commit) with its
   follow-ups, run only once that commit is durable: :class:`Broadcast`, then
   :class:`SendError` for a refused update or :class:`NoteOwnVersion` for a
   confirmed one, then :class:`SendOutcome` ("persist, then broadcast, then
   ack"). After it, :class:`Compact` when a change was applied and
   :class:`ScheduleConflictDeadline` when a manual conflict was raised or joined,
   whether or not the commit held.

If the commit fails, the shell reloads the document from storage and calls
:func:`persist_failed`: the sender's outcome becomes a ``server_error`` rollback
to what storage holds, with the ``retryAfter`` the backoff gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from tripsage_sync.sync.backoff import StorageBackoff
from tripsage_sync.sync.conflicts import JSON
from tripsage_sync.sync.document.results import ApplyResult, Confirmed, Refused, UpdateRequest
from tripsage_sync.sync.document.trip import TripDocument
from tripsage_sync.sync.errors import InvalidMessage, InvalidState, PermissionDenied, SyncError
from tripsage_sync.sync.wire import InvalidUpdate, parse_iso_ms

__all__ = [
    "EDITORS",
    "AwaitInFlightOutcome",
    "Broadcast",
    "Compact",
    "FollowUp",
    "Intent",
    "NoteOwnVersion",
    "Persist",
    "RefusalReason",
    "ScheduleConflictDeadline",
    "SendError",
    "SendOutcome",
    "SendRollback",
    "SendStoredOutcome",
    "UpdateFacts",
    "UpdateStart",
    "persist_failed",
    "receive_update",
]

EDITORS: Final = frozenset({"editor", "owner"})
"""The permissions that may edit a trip (``viewer`` may not)."""

RefusalReason = Literal["permission_denied", "server_error"]
"""Why an update was rolled back before the document saw it."""

_TRIP_PREFIX: Final = "trip."
# Rollback messages complete "Your change to <field> could not be saved: ..."
_NOT_COLLABORATOR: Final = "you are not a collaborator on this trip."
_VIEWER: Final = "you can view this trip but not edit it."


@dataclass(frozen=True, kw_only=True)
class UpdateStart:
    """An ``optimistic_update_start`` payload, as the core reads it."""

    update_id: str
    trip_id: str
    field_name: str  # ``fieldName``, else ``fieldPath``, as sent
    optimistic_value: JSON
    previous_value: JSON = None
    has_previous_value: bool = False
    expected_version: int | None = None
    client_timestamp: str | None = None

    @classmethod
    def of(
        cls,
        *,
        update_id: str,
        trip_id: str,
        field_name: str | None,
        field_path: str | None,
        optimistic_value: JSON,
        previous_value: JSON = None,
        has_previous_value: bool = False,
        expected_version: int | None = None,
        client_timestamp: str | None = None,
    ) -> UpdateStart:
        """Raises :class:`InvalidUpdate` when neither ``fieldName`` nor ``fieldPath`` is sent."""
        name = field_name or field_path
        if name is None:
            raise InvalidUpdate(
                "fieldName or fieldPath is required",
                update_id=update_id,
                trip_id=trip_id,
                field_name=None,
                details={
                    "field": "payload.fieldName",
                    "expected": "string",
                    "received": "undefined",
                },
            )
        return cls(
            update_id=update_id,
            trip_id=trip_id,
            field_name=name,
            optimistic_value=optimistic_value,
            previous_value=previous_value,
            has_previous_value=has_previous_value,
            expected_version=expected_version,
            client_timestamp=client_timestamp,
        )


@dataclass(frozen=True, kw_only=True)
class UpdateFacts:
    """What the shell knows when the update arrives.

    ``doc`` is the trip's document, None exactly when ``permission`` is the
    refusal. ``backoff`` is asked only when the update would be applied (a
    refusal there may start the backoff's trial, see :mod:`sync.backoff`).
    """

    user_id: str
    doc: TripDocument | None
    permission: str | PermissionDenied
    stored_outcome: str | None  # the outcome stored for this updateId, as stored
    in_flight: bool  # an update with this updateId is being committed
    backoff: StorageBackoff
    seen_version: int  # the latest version of the trip this connection has seen
    received_ms: int


# -- intents (imperative); the shell carries them out in order ------------------------


@dataclass(frozen=True)
class SendError:
    """Send the ``error`` event, in reply to the update's message."""

    error: SyncError


@dataclass(frozen=True, kw_only=True)
class SendRollback:
    """Send ``optimistic_update_rollback`` for an update the document never saw."""

    trip_id: str
    update_id: str
    field_name: str
    value: JSON  # rollbackToValue
    reason: RefusalReason
    message: str
    can_retry: bool
    retry_after_ms: int | None = None


@dataclass(frozen=True)
class SendStoredOutcome:
    """Send again the outcome stored for this ``updateId`` (as stored)."""

    stored: str


@dataclass(frozen=True)
class AwaitInFlightOutcome:
    """Wait for the outcome of the update with this ``updateId`` in flight; send it."""


@dataclass(frozen=True)
class Broadcast:
    """Publish the result's change and conflicts to the trip (not to the sender)."""

    result: ApplyResult


@dataclass(frozen=True)
class NoteOwnVersion:
    """The sender has now seen ``version`` (its own confirmation)."""

    version: int


@dataclass(frozen=True)
class SendOutcome:
    """Send the sender's outcome of ``result`` (confirmed, rejected or rollback)."""

    result: ApplyResult


FollowUp = Broadcast | SendError | NoteOwnVersion | SendOutcome


@dataclass(frozen=True)
class Persist:
    """Commit ``result`` (its change, its outcome, its conflict) all-or-nothing.

    While it commits, the update is in flight. Once it is durable, carry out
    ``then`` in order; if the commit fails, call :func:`persist_failed` instead.
    """

    result: ApplyResult
    then: tuple[FollowUp, ...]


@dataclass(frozen=True)
class Compact:
    """A change was applied: count it toward the next snapshot."""


@dataclass(frozen=True)
class ScheduleConflictDeadline:
    """A manual conflict was raised or joined: arm the timer for its deadline."""

    deadline_ms: int


Intent = (
    SendError
    | SendRollback
    | SendStoredOutcome
    | AwaitInFlightOutcome
    | Persist
    | Compact
    | ScheduleConflictDeadline
)


# -- the path ---------------------------------------------------------------------------


def receive_update(update: UpdateStart, facts: UpdateFacts) -> list[Intent]:
    """Decide ``update`` (rules 1-5 of the module docstring); applies it to ``facts.doc``."""
    if isinstance(facts.permission, PermissionDenied):
        return [
            SendError(facts.permission),
            _denied(update, update.trip_id, update.previous_value, _NOT_COLLABORATOR),
        ]
    doc = facts.doc
    if doc is None:
        raise InvalidState("a permission without the trip's document")
    if facts.permission not in EDITORS:
        denied = PermissionDenied(
            "Viewers cannot edit this trip",
            details={"tripId": doc.trip_id, "updateId": update.update_id},
        )
        current = _current(doc, update.field_name)
        return [SendError(denied), _denied(update, doc.trip_id, current, _VIEWER)]
    if facts.in_flight:
        return [AwaitInFlightOutcome()]
    if facts.stored_outcome is not None:
        return [SendStoredOutcome(facts.stored_outcome)]
    refused_ms = facts.backoff.admit(facts.received_ms)
    if refused_ms is not None:  # storage is failing: not applied, retry later
        return [_storage_rollback(update, doc, refused_ms)]
    result = doc.apply_optimistic(_request(update, facts))
    intents: list[Intent] = [Persist(result, _follow_ups(result))]
    if result.change is not None:
        intents.append(Compact())
    if result.conflict_raised is not None:
        intents.append(ScheduleConflictDeadline(result.conflict_raised.deadline_ms))
    return intents


def persist_failed(update: UpdateStart, doc: TripDocument, retry_after_ms: int) -> list[Intent]:
    """The commit of :class:`Persist` failed; ``doc`` is what storage holds again."""
    return [_storage_rollback(update, doc, retry_after_ms)]


def _request(update: UpdateStart, facts: UpdateFacts) -> UpdateRequest:
    received = facts.received_ms
    try:
        client_ts = (
            received if update.client_timestamp is None else parse_iso_ms(update.client_timestamp)
        )
    except InvalidMessage:  # an unreadable clientTimestamp: the receive time stands in
        client_ts = received
    expected = update.expected_version
    if expected is None:  # based on the latest version this connection has seen
        expected = facts.seen_version
    return UpdateRequest(
        update_id=update.update_id,
        user_id=facts.user_id,
        field_name=update.field_name,
        optimistic_value=update.optimistic_value,
        previous_value=update.previous_value,
        has_previous_value=update.has_previous_value,
        expected_version=expected,
        client_ts_ms=client_ts,
        received_ts_ms=received,
    )


def _follow_ups(result: ApplyResult) -> tuple[FollowUp, ...]:
    """What happens once ``result`` is durable: broadcast, then answer the sender."""
    then: list[FollowUp] = []
    if any(
        x is not None for x in (result.change, result.conflict_detected, result.conflict_raised)
    ):
        then.append(Broadcast(result))
    outcome = result.outcome
    if isinstance(outcome, Refused):
        then.append(SendError(InvalidMessage(outcome.message, details=outcome.details)))
    elif isinstance(outcome, Confirmed):
        then.append(NoteOwnVersion(outcome.server_version))
    then.append(SendOutcome(result))
    return tuple(then)


def _current(doc: TripDocument, field_name: str) -> JSON:
    """The field's value now (None for a field the trip does not have)."""
    return doc.fields().get(field_name.removeprefix(_TRIP_PREFIX))


def _denied(update: UpdateStart, trip_id: str, value: JSON, message: str) -> SendRollback:
    return SendRollback(
        trip_id=trip_id,
        update_id=update.update_id,
        field_name=update.field_name,
        value=value,
        reason="permission_denied",
        message=message,
        can_retry=False,
    )


def _storage_rollback(update: UpdateStart, doc: TripDocument, retry_after_ms: int) -> SendRollback:
    """The rollback of an edit storage could not take: retry after ``retry_after_ms``."""
    return SendRollback(
        trip_id=doc.trip_id,
        update_id=update.update_id,
        field_name=update.field_name,
        value=_current(doc, update.field_name),  # what storage holds
        reason="server_error",
        message=(
            f"the server cannot store changes right now; try again in {retry_after_ms / 1000:g} s."
        ),
        can_retry=True,
        retry_after_ms=retry_after_ms,
    )
