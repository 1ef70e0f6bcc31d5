"""Where agent events go, and the stored form of a chat message.

``websocket-api.md`` "Chat Events", "Tool Events" and "Agent Status Events".
:func:`agent_event_channels` names the hub channels an agent event goes to:
chat events to the session's stream, tool and status events to both
endpoints of the session and the owner's agent channel.
:func:`stored_message_payload` rebuilds the ``chat_message`` payload of a
stored message (history, replay, echo).

The payload models of the chat events the server sends: ``chat_message`` (a
stored message, :class:`ChatMessageEventPayload`), ``chat_message_chunk`` and
``chat_message_complete`` (a reply as the server releases it, with the stored
``seq``), ``chat_typing_start``/``_stop`` (identity from the token) and the
extension ``chat_resumed``. Keys sent only in some cases (``metadata``,
``replay``, ``catchUp``) are left out unless set.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.wire import AGENT_EVENT_TYPES, EventPayload, iso_ms

__all__ = [
    "CHAT_STREAM_EVENTS",
    "STATUS_EVENTS",
    "ChatChunkEventPayload",
    "ChatCompleteEventPayload",
    "ChatMessageEventPayload",
    "ChatResumedPayload",
    "ChatTypingStartPayload",
    "ChatTypingStopPayload",
    "agent_event_channels",
    "stored_message_payload",
]

# Events that belong to a chat session's history and stream: ``chat:{sessionId}``.
CHAT_STREAM_EVENTS: Final = frozenset(
    {"chat_message", "chat_message_chunk", "chat_message_complete"}
)
# Tool and agent-status events: both endpoints of the session and the owner's agent channel.
STATUS_EVENTS: Final = AGENT_EVENT_TYPES - CHAT_STREAM_EVENTS


class ChatMessageEventPayload(EventPayload):
    """``chat_message``: a stored message; ``replay: true`` when sent again on resume."""

    EVENT_TYPE: ClassVar[str] = "chat_message"
    OMIT_UNSET: ClassVar[bool] = True

    messageId: str
    content: str
    role: str
    userId: str | None
    attachments: list[Any]
    toolCalls: list[Any]
    metadata: Any = None
    seq: int
    createdAt: str
    replay: bool | None = None


class ChatChunkEventPayload(EventPayload):
    """``chat_message_chunk`` as released; ``catchUp: true`` for the content so far."""

    EVENT_TYPE: ClassVar[str] = "chat_message_chunk"
    OMIT_UNSET: ClassVar[bool] = True

    messageId: str
    content: str
    isComplete: bool
    chunkIndex: int
    catchUp: bool | None = None


class ChatCompleteEventPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "chat_message_complete"

    messageId: str
    finalContent: str
    metadata: dict[str, Any]
    seq: int


class ChatTypingStartPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "chat_typing_start"

    userId: str
    username: str | None


class ChatTypingStopPayload(EventPayload):
    EVENT_TYPE: ClassVar[str] = "chat_typing_stop"

    userId: str


class ChatResumedPayload(EventPayload):
    """The end of a chat replay (``gap``: the seqs left out of a too long one)."""

    EVENT_TYPE: ClassVar[str] = "chat_resumed"

    lastMessageId: str
    found: bool
    replayed: int
    gap: dict[str, int] | None
    streaming: list[str]


def agent_event_channels(
    event_type: str, *, session_id: str | None, owner_id: str | None, user_id: str | None
) -> list[str]:
    """Hub channels an agent-published event is delivered to.

    Chat events go to ``chat:{sessionId}``. Tool and status events go to both
    endpoints of the session (``chat:{sessionId}``, the internal
    ``agent-status:{sessionId}``) and to ``agent:{ownerId}``; an envelope
    ``userId`` also addresses ``agent:{userId}`` directly (alone, when there is
    no session).
    """
    if event_type in CHAT_STREAM_EVENTS:
        if session_id is None:
            raise InvalidMessage(
                f"'{event_type}' needs a sessionId",
                details={"field": "sessionId", "expected": "string", "received": "undefined"},
            )
        return [f"chat:{session_id}"]
    if event_type not in STATUS_EVENTS:
        raise ValueError(f"not an agent event: {event_type!r}")
    names: list[str] = []
    if session_id is not None:
        names += [f"chat:{session_id}", f"agent-status:{session_id}"]
        if owner_id is not None:
            names.append(f"agent:{owner_id}")
    if user_id is not None and f"agent:{user_id}" not in names:
        names.append(f"agent:{user_id}")
    if not names:
        raise InvalidMessage(
            f"'{event_type}' needs a sessionId or a userId",
            details={"field": "sessionId", "expected": "string", "received": "undefined"},
        )
    return names


def stored_message_payload(
    *,
    message_id: str,
    role: str,
    user_id: str | None,
    content: str,
    payload_json: str,
    seq: int,
    created_ms: int,
) -> ChatMessageEventPayload:
    """The ``chat_message`` payload of a stored message (history, replay, echo).

    ``payload_json`` holds what the message carried besides its content
    (``attachments``, ``toolCalls``, ``metadata``, ``clientMessageId``).
    """
    extra = json.loads(payload_json) if payload_json else {}
    payload = ChatMessageEventPayload(
        messageId=message_id,
        content=content,
        role=role,
        userId=user_id,
        attachments=extra.get("attachments", []),
        toolCalls=extra.get("toolCalls", []),
        seq=seq,
        createdAt=iso_ms(created_ms),
    )
    if "metadata" in extra:
        payload = payload.model_copy(update={"metadata": extra["metadata"]})
    return payload
