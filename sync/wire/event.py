"""Server events: the envelope every server-sent event shares, built and encoded once.

:class:`ServerEvent` envelopes carry ``id``, ``type``, ``timestamp`` in UTC
with milliseconds, optional ``sessionId`` and ``userId``, and ``payload``;
:func:`encode` turns one into its JSON text once, and that text is shared by
every recipient.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from tripsage_sync.sync.wire.base import iso_ms, new_id
from tripsage_sync.sync.wire.payload import AuthResponse

__all__ = ["ServerEvent", "encode", "make_event"]


class ServerEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    timestamp: str
    sessionId: str | None = None
    userId: str | None = None
    payload: dict[str, Any]


def make_event(
    type_: str,
    payload: BaseModel | dict[str, Any],
    *,
    now_ms: int,
    session_id: str | None = None,
    user_id: str | None = None,
    event_id: str | None = None,
) -> ServerEvent:
    """Build the envelope of a server-sent event."""
    body = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
    return ServerEvent(
        id=event_id or new_id(type_.split("_", 1)[0]),
        type=type_,
        timestamp=iso_ms(now_ms),
        sessionId=session_id,
        userId=user_id,
        payload=body,
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
    data["payload"] = event.payload
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
