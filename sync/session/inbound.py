"""The frames of an open connection, before any handler sees them.

``websocket-api.md`` "Message Batching": each item of a ``batch`` is parsed on
its own (:func:`unwrap_batch`): one invalid item is refused (its ``error``
names the item's id) and the others are still handled, in order. Batches do
not nest. "Rate Limiting": a message over the user's rate is refused with
``RATE_LIMITED``; a refused ``optimistic_update_start`` also gets its one
outcome, the rollback of :func:`rate_limited_rollback`. Binary frames are not
accepted on the JSON endpoints (:func:`binary_refusal`), nor frames over the
size limit (:func:`too_large`, close 1009).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tripsage_sync.sync.errors import InvalidMessage, MessageTooLarge, RateLimited
from tripsage_sync.sync.session.intent import Received
from tripsage_sync.sync.wire import (
    BatchMessage,
    ClientMessage,
    OptimisticUpdateRollbackPayload,
    OptimisticUpdateStartPayload,
    message_id_of,
    parse_client_message,
    parse_client_value,
)

__all__ = [
    "RefusedItem",
    "binary_refusal",
    "rate_limited_rollback",
    "read_text",
    "too_large",
    "unwrap_batch",
]


@dataclass(frozen=True, slots=True)
class RefusedItem:
    """A batch item that is not a valid message: answered with ``error``, not handled."""

    error: InvalidMessage
    message_id: str | None


def unwrap_batch(items: Sequence[Any]) -> Iterator[ClientMessage | RefusedItem]:
    """The batch's messages in order, each parsed (lazily) or refused."""
    for item in items:
        try:
            inner = parse_client_value(item)
            if isinstance(inner, BatchMessage):
                raise InvalidMessage(
                    "Batches cannot be nested",
                    details={"field": "type", "expected": "not batch", "received": "batch"},
                )
        except InvalidMessage as exc:
            yield RefusedItem(exc, message_id_of(item))
            continue
        yield inner


def read_text(text: str, size: int) -> Iterator[Received | ClientMessage | RefusedItem]:
    """A text frame's messages in order, each after the :class:`Received` that counts it.

    The frame counts its ``size`` under its type (``invalid`` when it does not
    parse); a batch's items count 0 bytes each, under their own types.
    """
    try:
        message = parse_client_message(text)
    except InvalidMessage as exc:
        yield Received("invalid", size)
        yield RefusedItem(exc, None)
        return
    yield Received(message.type, size)
    if not isinstance(message, BatchMessage):
        yield message
        return
    for item in unwrap_batch(message.payload.messages):
        yield Received("invalid" if isinstance(item, RefusedItem) else item.type, 0)
        yield item


def binary_refusal() -> InvalidMessage:
    return InvalidMessage(
        "Binary frames are not accepted on this endpoint",
        details={"field": "", "expected": "text frame", "received": "binary"},
    )


def too_large(size: int, limit: int) -> MessageTooLarge:
    return MessageTooLarge(f"Message exceeds {limit} bytes", details={"size": size, "limit": limit})


def rate_limited_rollback(
    p: OptimisticUpdateStartPayload, limited: RateLimited
) -> OptimisticUpdateRollbackPayload:
    """The ``optimistic_update_rollback`` payload of an update refused as rate limited."""
    return OptimisticUpdateRollbackPayload(
        updateId=p.updateId,
        tripId=p.tripId,
        fieldName=p.fieldName or p.fieldPath,
        rollbackToValue=p.previousValue,
        rollbackReason="rate_limited",
        canRetry=True,
        retryAfter=int((limited.retry_after or 1.0) * 1000),
        message="too many changes were sent at once; try again in a moment.",
    )
