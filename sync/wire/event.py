"""Server events: the envelope every server-sent event shares, built and encoded once.

:class:`ServerEvent` envelopes carry ``id``, ``type``, ``timestamp`` in UTC
with milliseconds, optional ``sessionId`` and ``userId``, and ``payload``, an
:class:`~sync.wire.eventpayload.EventPayload` whose model names the ``type``.
:func:`make_event` takes models only (a dict is refused, by mypy and at run
time); the event is generic in its payload, so ``event.payload.x`` is typed
where it is built. :func:`encode` turns one into its JSON text once, and that
text is shared by every recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic

from typing_extensions import TypeVar

from tripsage_sync.sync.wire.base import iso_ms, new_id
from tripsage_sync.sync.wire.eventpayload import EventPayload
from tripsage_sync.sync.wire.jsontext import json_text
from tripsage_sync.sync.wire.payload import AuthResponse

__all__ = ["ServerEvent", "encode", "make_event"]

P_co = TypeVar("P_co", bound=EventPayload, covariant=True, default=EventPayload)
P = TypeVar("P", bound=EventPayload)


@dataclass(frozen=True, slots=True)
class ServerEvent(Generic[P_co]):
    """One server-sent event; ``ServerEvent`` alone means any payload."""

    id: str
    timestamp: str
    payload: P_co
    sessionId: str | None = None
    userId: str | None = None

    @property
    def type(self) -> str:
        return self.payload.EVENT_TYPE


def make_event(
    payload: P,
    *,
    now_ms: int,
    session_id: str | None = None,
    user_id: str | None = None,
    event_id: str | None = None,
) -> ServerEvent[P]:
    """Build the envelope of a server-sent event; its type is the payload model's."""
    if not isinstance(payload, EventPayload):
        raise TypeError(f"an event payload must be an EventPayload, not {type(payload).__name__}")
    return ServerEvent(
        id=event_id or new_id(payload.EVENT_TYPE.split("_", 1)[0]),
        timestamp=iso_ms(now_ms),
        payload=payload,
        sessionId=session_id,
        userId=user_id,
    )


def encode(event: ServerEvent | AuthResponse) -> str:
    """The JSON text of an event, without ``None`` envelope fields.

    ``None`` inside a payload is kept: the spec shows ``null`` values there.
    """
    if isinstance(event, AuthResponse):
        return event.model_dump_json(exclude_none=True)
    data: dict[str, Any] = {"id": event.id, "type": event.type, "timestamp": event.timestamp}
    if event.sessionId is not None:
        data["sessionId"] = event.sessionId
    if event.userId is not None:
        data["userId"] = event.userId
    data["payload"] = event.payload.wire()
    return json_text(data)
