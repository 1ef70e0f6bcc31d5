"""The sender's outcome of an optimistic update, as event payloads.

``websocket-api.md`` "Optimistic Updates": every ``optimistic_update_start``
gets exactly one of ``optimistic_update_confirmed``, ``_rejected`` (a conflict,
or ``invalid_message``) or ``_rollback``. Keys the spec marks as situational
(``conflictId``, ``details``, ``retryAfter``, ``processingTime`` outside a
confirmation) are sent only when set (:attr:`EventPayload.OMIT_UNSET`); a set
``None`` is sent as ``null``. Outcomes are stored as JSON
``{"type": ..., "payload": ...}`` (:func:`stored_outcome`) and read back into
their model (:func:`read_outcome`) to be sent again, unchanged.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict

from tripsage_sync.sync.wire.eventpayload import EventPayload
from tripsage_sync.sync.wire.jsontext import json_text

__all__ = [
    "OUTCOME_PAYLOADS",
    "ConflictingUpdate",
    "OptimisticUpdateConfirmedPayload",
    "OptimisticUpdateRejectedPayload",
    "OptimisticUpdateRollbackPayload",
    "OutcomePayload",
    "read_outcome",
    "stored_outcome",
]


class _Outcome(EventPayload):
    OMIT_UNSET: ClassVar[bool] = True

    updateId: str
    tripId: str | None
    fieldName: str | None


class ConflictingUpdate(BaseModel):
    model_config = ConfigDict(frozen=True)

    userId: str
    timestamp: str


class OptimisticUpdateConfirmedPayload(_Outcome):
    EVENT_TYPE: ClassVar[str] = "optimistic_update_confirmed"

    confirmedValue: Any
    serverVersion: int
    processingTime: int


class OptimisticUpdateRejectedPayload(_Outcome):
    """A conflict (``currentServerValue`` ... ``suggestedResolution``) or an invalid
    update (``rejectionReason: "invalid_message"`` with ``details``)."""

    EVENT_TYPE: ClassVar[str] = "optimistic_update_rejected"

    rejectionReason: str
    currentServerValue: Any = None
    currentServerVersion: int | None = None
    expectedVersion: int | None = None
    conflictingUpdate: ConflictingUpdate | None = None
    suggestedResolution: str | None = None
    message: str
    details: dict[str, Any] | None = None
    conflictId: str | None = None
    processingTime: int | None = None


class OptimisticUpdateRollbackPayload(_Outcome):
    EVENT_TYPE: ClassVar[str] = "optimistic_update_rollback"

    rollbackToValue: Any
    rollbackReason: str
    canRetry: bool
    retryAfter: int | None = None  # milliseconds
    message: str
    processingTime: int | None = None


OutcomePayload = (
    OptimisticUpdateConfirmedPayload
    | OptimisticUpdateRejectedPayload
    | OptimisticUpdateRollbackPayload
)

OUTCOME_PAYLOADS: Final[dict[str, type[OutcomePayload]]] = {
    model.EVENT_TYPE: model
    for model in (
        OptimisticUpdateConfirmedPayload,
        OptimisticUpdateRejectedPayload,
        OptimisticUpdateRollbackPayload,
    )
}


def stored_outcome(payload: OutcomePayload) -> str:
    """The JSON an outcome is stored as (by ``updateId``, for a re-send).

    By orjson where it can (:mod:`sync.wire.jsontext`); either reads back the same.
    """
    return json_text({"type": payload.EVENT_TYPE, "payload": payload.wire()})


def read_outcome(stored: str) -> OutcomePayload:
    """A stored outcome back in its model (:func:`stored_outcome`)."""
    data = json.loads(stored)
    return OUTCOME_PAYLOADS[data["type"]].model_validate(data["payload"])
