"""Optimistic updates that fail validation: the error and its one outcome.

``websocket-api.md`` "Optimistic Updates": every ``optimistic_update_start``
gets exactly one outcome. One that fails validation but names a string
``updateId`` gets, besides the ``error`` event, an
``optimistic_update_rejected`` with ``rejectionReason: "invalid_message"``.
Ids are echoed only where they are valid strings (no lone surrogates).
"""

from __future__ import annotations

from typing import Any

from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.wire.outcome import OptimisticUpdateRejectedPayload

__all__ = ["InvalidUpdate", "invalid_update_payload"]


class InvalidUpdate(InvalidMessage):
    """An ``optimistic_update_start`` with a string ``updateId`` that fails validation.

    Besides the ``error`` it gets its one outcome, ``optimistic_update_rejected``
    with ``rejectionReason: "invalid_message"`` (:meth:`rejection`). The ids are
    echoed only where they are valid strings.
    """

    def __init__(
        self,
        message: str,
        *,
        update_id: str,
        trip_id: str | None,
        field_name: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.update_id = update_id
        self.trip_id = trip_id
        self.field_name = field_name

    @classmethod
    def of(cls, payload: object, invalid: InvalidMessage) -> InvalidUpdate | None:
        """The refusal of a payload whose ``updateId`` is a string, else None."""
        if not isinstance(payload, dict):
            return None
        update_id = _echo(payload.get("updateId"))
        if update_id is None:
            return None
        return cls(
            invalid.message,
            update_id=update_id,
            trip_id=_echo(payload.get("tripId")),
            field_name=_echo(payload.get("fieldName")) or _echo(payload.get("fieldPath")),
            details=invalid.details,
        )

    def rejection(self) -> OptimisticUpdateRejectedPayload:
        return invalid_update_payload(
            self.update_id, self.trip_id, self.field_name, self.message, self.details or {}
        )


def invalid_update_payload(
    update_id: str,
    trip_id: str | None,
    field_name: str | None,
    message: str,
    details: dict[str, Any],
    *,
    current: tuple[Any, int] | None = None,
) -> OptimisticUpdateRejectedPayload:
    """The ``optimistic_update_rejected`` payload of an update that fails validation.

    The server's value and version are sent only when ``current`` is known (unset
    keys stay off the wire).
    """
    server: dict[str, Any] = (
        {}
        if current is None
        else {"currentServerValue": current[0], "currentServerVersion": current[1]}
    )
    return OptimisticUpdateRejectedPayload(
        updateId=update_id,
        tripId=trip_id,
        fieldName=field_name,
        rejectionReason="invalid_message",
        message=message,
        details=details,
        **server,
    )


def _echo(value: object) -> str | None:
    """``value`` if it is a string that can be sent back (no lone surrogates).

    Its length is bounded by the frame size limit.
    """
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value
