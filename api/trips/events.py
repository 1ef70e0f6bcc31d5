"""Payloads of the trip events the server sends (``websocket-api.md``
"Real-time Collaboration", "Optimistic Updates", "Conflict Resolution").

Pure functions from the results of :mod:`sync.document` to the spec's JSON
payloads, shared by the live handlers (:mod:`api.trips.collaboration`,
:mod:`api.trips.broadcast`, :mod:`api.trips.commit`), the resume replay
(:mod:`api.trips.resume`) and the Yjs bridge.
"""

from __future__ import annotations

from typing import Any

from tripsage_sync.sync.conflicts import ConflictDetected, PendingConflict
from tripsage_sync.sync.document import (
    ApplyResult,
    Change,
    Confirmed,
    Refused,
    Rejected,
    Rolledback,
)
from tripsage_sync.sync.wire import invalid_update_payload, iso_ms

__all__ = [
    "change_payload",
    "conflict_detected_payload",
    "outcome_event",
    "resolution_required_payload",
    "rollback_event",
]


def outcome_event(
    result: ApplyResult, trip_id: str, processing_ms: int
) -> tuple[str, dict[str, Any]]:
    """``optimistic_update_confirmed`` / ``_rejected`` / ``_rollback`` payloads."""
    outcome = result.outcome
    base = {"updateId": outcome.update_id, "tripId": trip_id, "fieldName": outcome.field_name}
    match outcome:
        case Confirmed():
            return "optimistic_update_confirmed", {
                **base,
                "confirmedValue": outcome.confirmed_value,
                "serverVersion": outcome.server_version,
                "processingTime": processing_ms,
            }
        case Rejected():
            payload = {
                **base,
                "rejectionReason": outcome.rejection_reason,
                "currentServerValue": outcome.current_server_value,
                "currentServerVersion": outcome.current_server_version,
                "expectedVersion": outcome.expected_version,
                "conflictingUpdate": {
                    "userId": outcome.conflicting_update.user_id,
                    "timestamp": iso_ms(outcome.conflicting_update.timestamp_ms),
                },
                "suggestedResolution": outcome.suggested_resolution,
                "message": outcome.message,
            }
            if outcome.conflict_id is not None:
                payload["conflictId"] = outcome.conflict_id
            return "optimistic_update_rejected", payload
        case Refused():
            return "optimistic_update_rejected", invalid_update_payload(
                outcome.update_id,
                trip_id,
                outcome.field_name,
                outcome.message,
                outcome.details,
                current=(outcome.current_server_value, outcome.current_server_version),
            )
        case Rolledback():
            return "optimistic_update_rollback", {
                **base,
                "rollbackToValue": outcome.rollback_to_value,
                "rollbackReason": outcome.rollback_reason,
                "canRetry": outcome.can_retry,
                "message": outcome.message,
            }


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
) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "updateId": update_id,
        "tripId": trip_id,
        "fieldName": field_name,
        "rollbackToValue": value,
        "rollbackReason": reason,
        "canRetry": can_retry,
        "message": message,
    }
    if retry_after_ms is not None:
        payload["retryAfter"] = retry_after_ms
    return "optimistic_update_rollback", payload


def change_payload(
    trip_id: str, change: Change, *, now: int, replayed: bool = False
) -> dict[str, Any]:
    """The ``trip_update_broadcast`` payload of an applied change.

    ``replayed`` marks a change sent again in answer to ``sync_request``.
    """
    payload: dict[str, Any] = {
        "tripId": trip_id,
        "updatedBy": change.updated_by,
        "updateType": "field_change",
        "changes": {
            name: {"oldValue": c.old_value, "newValue": c.new_value, "fieldPath": c.field_path}
            for name, c in change.changes.items()
        },
        "version": change.version,
        "timestamp": iso_ms(now),
    }
    if replayed:
        payload["replayed"] = True
    return payload


def conflict_detected_payload(trip_id: str, detected: ConflictDetected) -> dict[str, Any]:
    return {
        "tripId": trip_id,
        "conflictId": detected.conflict_id,
        "fieldName": detected.field_name,
        "conflictType": detected.conflict_type,
        "conflictingValues": [
            {"userId": v.user_id, "value": v.value, "timestamp": iso_ms(v.timestamp_ms)}
            for v in detected.conflicting_values
        ],
        "resolutionStrategy": detected.resolution_strategy,
        "winningValue": detected.winning_value,
        "winningUserId": detected.winning_user_id,
    }


def resolution_required_payload(conflict: PendingConflict) -> dict[str, Any]:
    return {
        "conflictId": conflict.conflict_id,
        "tripId": conflict.trip_id,
        "fieldName": conflict.field_name,
        "options": [
            {
                "id": o.option_id,
                "value": o.value,
                "source": o.source,
                "timestamp": iso_ms(o.timestamp_ms),
                "description": o.description,
            }
            for o in conflict.options
        ],
        "autoResolveAfter": conflict.auto_resolve_after_ms,
        "defaultOption": conflict.default_option_id,
        "resolveBy": iso_ms(conflict.deadline_ms),
    }
