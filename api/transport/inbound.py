"""Unwrapping a client's ``batch`` (``websocket-api.md`` "Message Batching").

Each item of a batch is parsed on its own: one invalid item is refused (its
``error`` names the item's id) and the others are still handled, in order.
Batches do not nest. Pure: the connection counts and carries out what this yields.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.wire import ClientMessage, message_id_of, parse_client_value

__all__ = ["RefusedItem", "unwrap_batch"]


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
            if inner.type == "batch":
                raise InvalidMessage(
                    "Batches cannot be nested",
                    details={"field": "type", "expected": "not batch", "received": "batch"},
                )
        except InvalidMessage as exc:
            yield RefusedItem(exc, message_id_of(item))
            continue
        yield inner
