"""Payloads of the trip events the server sends (``websocket-api.md``
"Real-time Collaboration", "Optimistic Updates", "Conflict Resolution").

Pure functions from the results of :mod:`sync.document` to the payload models
(:mod:`sync.collaboration`, :mod:`sync.wire.outcome`), shared by the live
handlers (:mod:`api.trips.collaboration`, :mod:`api.trips.broadcast`,
:mod:`api.trips.commit`), the resume replay (:mod:`api.trips.resume`) and the
Yjs bridge.
"""

from __future__ import annotations

from typing import Any

from tripsage_sync.sync.collaboration import (
    ConflictingValuePart,
    ConflictOptionPart,
    ConflictResolutionRequiredPayload,
    FieldChangePart,
    TripConflictDetectedPayload,
    TripUpdateBroadcastPayload,
)
from tripsage_sync.sync.conflicts import ConflictDetected, PendingConflict
from tripsage_sync.sync.document import (
    ApplyResult,
    Change,
    Confirmed,
    Refused,
    Rejected,
    Rolledback,
)
from tripsage_sync.sync.wire import (
    ConflictingUpdate,
    OptimisticUpdateConfirmedPayload,
    OptimisticUpdateRejectedPayload,
    OptimisticUpdateRollbackPayload,
    OutcomePayload,
    invalid_update_payload,
    iso_ms,
)

__all__ = [
    "change_payload",
    "conflict_detected_payload",
    "outcome_event",
    "resolution_required_payload",
    "rollback_event",
]


def outcome_event(result: ApplyResult, trip_id: str, processing_ms: int) -> OutcomePayload:
    """``optimistic_update_confirmed`` / ``_rejected`` / ``_rollback`` payloads."""
    outcome = result.outcome
    match outcome:
        case Confirmed():
            return OptimisticUpdateConfirmedPayload(
                updateId=outcome.update_id,
                tripId=trip_id,
                fieldName=outcome.field_name,
                confirmedValue=outcome.confirmed_value,
                serverVersion=outcome.server_version,
                processingTime=processing_ms,
            )
        case Rejected():
            conflicting = ConflictingUpdate(
                userId=outcome.conflicting_update.user_id,
                timestamp=iso_ms(outcome.conflicting_update.timestamp_ms),
            )
            rejected = OptimisticUpdateRejectedPayload(
                updateId=outcome.update_id,
                tripId=trip_id,
                fieldName=outcome.field_name,
                rejectionReason=outcome.rejection_reason,
                currentServerValue=outcome.current_server_value,
                currentServerVersion=outcome.current_server_version,
                expectedVersion=outcome.expected_version,
                conflictingUpdate=conflicting,
                suggestedResolution=outcome.suggested_resolution,
                message=outcome.message,
            )
            if outcome.conflict_id is not None:
                rejected = rejected.model_copy(update={"conflictId": outcome.conflict_id})
            return rejected
        case Refused():
            return invalid_update_payload(
                outcome.update_id,
                trip_id,
                outcome.field_name,
                outcome.message,
                outcome.details,
                current=(outcome.current_server_value, outcome.current_server_version),
            )
        case Rolledback():
            return OptimisticUpdateRollbackPayload(
                updateId=outcome.update_id,
                tripId=trip_id,
                fieldName=outcome.field_name,
                rollbackToValue=outcome.rollback_to_value,
                rollbackReason=outcome.rollback_reason,
                canRetry=outcome.can_retry,
                message=outcome.message,
            )


def rollback_event(
    trip_id: str,
    update_id: str,
    field_name: str,
    value: Any,
    reason: str,
    message: str,
    *,
    can_retry: bool,
    retry_after_ms: int | None = None,
) -> OptimisticUpdateRollbackPayload:
    payload = OptimisticUpdateRollbackPayload(
        updateId=update_id,
        tripId=trip_id,
        fieldName=field_name,
        rollbackToValue=value,
        rollbackReason=reason,
        canRetry=can_retry,
        message=message,
    )
    if retry_after_ms is not None:
        payload = payload.model_copy(update={"retryAfter": retry_after_ms})
    return payload


def change_payload(
    trip_id: str, change: Change, *, now: int, replayed: bool = False
) -> TripUpdateBroadcastPayload:
    """The ``trip_update_broadcast`` payload of an applied change.

    ``replayed`` marks a change sent again in answer to ``sync_request``.
    """
    payload = TripUpdateBroadcastPayload(
        tripId=trip_id,
        updatedBy=change.updated_by,
        updateType="field_change",
        changes={
            name: FieldChangePart(
                oldValue=c.old_value, newValue=c.new_value, fieldPath=c.field_path
            )
            for name, c in change.changes.items()
        },
        version=change.version,
        timestamp=iso_ms(now),
    )
    if replayed:
        payload = payload.model_copy(update={"replayed": True})
    return payload


def conflict_detected_payload(
    trip_id: str, detected: ConflictDetected
) -> TripConflictDetectedPayload:
    return TripConflictDetectedPayload(
        tripId=trip_id,
        conflictId=detected.conflict_id,
        fieldName=detected.field_name,
        conflictType=detected.conflict_type,
        conflictingValues=[
            ConflictingValuePart(userId=v.user_id, value=v.value, timestamp=iso_ms(v.timestamp_ms))
            for v in detected.conflicting_values
        ],
        resolutionStrategy=detected.resolution_strategy,
        winningValue=detected.winning_value,
        winningUserId=detected.winning_user_id,
    )


def resolution_required_payload(conflict: PendingConflict) -> ConflictResolutionRequiredPayload:
    return ConflictResolutionRequiredPayload(
        conflictId=conflict.conflict_id,
        tripId=conflict.trip_id,
        fieldName=conflict.field_name,
        options=[
            ConflictOptionPart(
                id=o.option_id,
                value=o.value,
                source=o.source,
                timestamp=iso_ms(o.timestamp_ms),
                description=o.description,
            )
            for o in conflict.options
        ],
        autoResolveAfter=conflict.auto_resolve_after_ms,
        defaultOption=conflict.default_option_id,
        resolveBy=iso_ms(conflict.deadline_ms),
    )
