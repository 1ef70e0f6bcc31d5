"""The sender's outcome of an optimistic update, worded for people.

Builders of the :class:`~sync.document.results.Outcome` values
(``websocket-api.md`` "Optimistic Updates": ``optimistic_update_confirmed``,
``_rejected``, ``_rollback``). A page shows "Your change to Destination could
not be saved: <message>", so messages complete that sentence; ``canRetry``
is false for every rollback, since re-sending the same update cannot
succeed. An invalid field name is echoed as sent, with no current value.
"""

from __future__ import annotations

from typing import Literal

from tripsage_sync.sync.conflicts import FIELD_PATH_PREFIX, JSON, InvalidValue, is_field_name
from tripsage_sync.sync.document.results import (
    ApplyResult,
    Confirmed,
    ConflictingUpdate,
    Refused,
    Rejected,
    RollbackReason,
    Rolledback,
    UpdateRequest,
)
from tripsage_sync.sync.document.schema import json_type
from tripsage_sync.sync.document.state import DocState

__all__ = ["confirmed", "refuse", "rejected", "rollback", "stale", "too_old"]


def confirmed(state: DocState, req: UpdateRequest, name: str) -> Confirmed:
    path = FIELD_PATH_PREFIX + name
    return Confirmed(req.update_id, name, path, state.value(name), state.version)


def rejected(
    state: DocState,
    req: UpdateRequest,
    name: str,
    suggested: Literal["accept_server_value", "merge_required"],
    conflict_id: str | None,
) -> Rejected:
    current = state.current_stamp(name)
    if conflict_id is None:
        message = "someone else changed it at the same time, and their change was kept."
    else:
        message = "someone else changed it at the same time; choose which value to keep."
    return Rejected(
        update_id=req.update_id,
        field_name=name,
        field_path=FIELD_PATH_PREFIX + name,
        current_server_value=state.value(name),
        current_server_version=state.version,
        expected_version=req.expected_version,
        conflicting_update=ConflictingUpdate(current.user_id, current.ts_ms),
        suggested_resolution=suggested,
        conflict_id=conflict_id,
        message=message,
    )


def refuse(
    state: DocState, req: UpdateRequest, name: str, field: str, exc: InvalidValue
) -> ApplyResult:
    """``field`` is the payload path that failed (``payload.optimisticValue``, ...)."""
    valid = is_field_name(name)
    current = state.value(name) if valid else None
    path = FIELD_PATH_PREFIX + name if valid else name
    sent = {"payload.fieldName": req.field_name, "payload.previousValue": req.previous_value}
    received = json_type(sent.get(field, req.optimistic_value))
    details: dict[str, JSON] = {"field": field, "expected": exc.message, "received": received}
    return ApplyResult(
        Refused(req.update_id, name, path, exc.message, details, current, state.version)
    )


def rollback(
    state: DocState,
    req: UpdateRequest,
    name: str,
    reason: RollbackReason,
    message: str,
    retry: bool,
) -> ApplyResult:
    valid = is_field_name(name)
    current = state.value(name) if valid else None
    path = FIELD_PATH_PREFIX + name if valid else name
    return ApplyResult(Rolledback(req.update_id, name, path, current, reason, retry, message))


def stale(state: DocState, req: UpdateRequest, name: str) -> ApplyResult:
    message = (
        "it was based on an out-of-date copy of this field."
        " The current value is shown; please make the change again."
    )
    return rollback(state, req, name, "stale_previous_value", message, False)


def too_old(state: DocState, req: UpdateRequest, name: str) -> ApplyResult:
    message = (
        "the trip changed too much since your copy was loaded to merge it."
        " The current value is shown; please make the change again."
    )
    return rollback(state, req, name, "history_unavailable", message, False)
