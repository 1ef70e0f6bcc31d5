"""Client envelopes ("Base Message Structure"): one model per message ``type``.

Every message shares the envelope (``id``, ``timestamp``, ``userId``,
``sessionId``, ``type``, ``payload``); a concrete message narrows ``type`` to
its ``Literal`` and ``payload`` to its model (:mod:`sync.wire.payload`), so
validating the envelope validates the payload in the same pass.
:data:`MESSAGE_MODELS` maps each type to its model; a payload that is not
required defaults to the model's empty value.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, Field

from tripsage_sync.sync.wire.base import Id
from tripsage_sync.sync.wire.payload import (
    AgentStatusUpdatePayload,
    AgentTaskCompletePayload,
    AgentTaskProgressPayload,
    AgentTaskStartPayload,
    AuthRefreshPayload,
    BatchPayload,
    ChatMessageChunkPayload,
    ChatMessageCompletePayload,
    ChatMessagePayload,
    CollaborationJoinPayload,
    CollaborationSessionStartPayload,
    ConflictResolutionSubmitPayload,
    EmptyPayload,
    FieldEditingPayload,
    HeartbeatRequestPayload,
    NotificationPayload,
    OptimisticUpdateStartPayload,
    SubscribePayload,
    SyncRequestPayload,
    SystemMessagePayload,
    ToolCallCompletePayload,
    ToolCallErrorPayload,
    ToolCallProgressPayload,
    ToolCallStartPayload,
    TypingPayload,
    UnsubscribePayload,
    WireModel,
)

__all__ = [
    "AGENT_EVENT_TYPES",
    "CLIENT_MESSAGE_TYPES",
    "MESSAGE_MODELS",
    "ClientMessage",
    "Envelope",
]


class Envelope(WireModel):
    id: Id | None = None
    timestamp: Annotated[str, Field(max_length=64)] | None = None
    # A userId a client sends is never trusted; agents and admins may use it to
    # address a user (see the chat issue), everyone else has it ignored.
    userId: Id | None = None
    sessionId: Id | None = None
    # Narrowed by every concrete message: ``Literal[...]`` and its payload model.
    type: str
    payload: Any


def _envelope(type_: str, payload: type[BaseModel], *, required: bool = True) -> type[Envelope]:
    default: Any = ... if required else payload()
    model = type(
        "".join(part.title() for part in type_.split("_")) + "Message",
        (Envelope,),
        {
            "__annotations__": {"type": Literal[type_], "payload": payload},
            "payload": default,
            "__module__": __name__,
        },
    )
    return model


_SPECS: Final[dict[str, tuple[type[BaseModel], bool]]] = {
    "chat_message": (ChatMessagePayload, True),
    "chat_typing_start": (TypingPayload, False),
    "chat_typing_stop": (TypingPayload, False),
    "user_typing": (TypingPayload, False),
    "trip_collaboration_join": (CollaborationJoinPayload, True),
    "trip_collaboration_leave": (CollaborationJoinPayload, True),
    "trip_field_editing_start": (FieldEditingPayload, True),
    "trip_field_editing_stop": (FieldEditingPayload, True),
    "collaboration_session_start": (CollaborationSessionStartPayload, True),
    "optimistic_update_start": (OptimisticUpdateStartPayload, True),
    "conflict_resolution_submit": (ConflictResolutionSubmitPayload, True),
    "connection_heartbeat": (HeartbeatRequestPayload, False),
    "subscribe": (SubscribePayload, True),
    "unsubscribe": (UnsubscribePayload, True),
    "batch": (BatchPayload, True),
    "sync_request": (SyncRequestPayload, True),
    "auth_refresh": (AuthRefreshPayload, True),
    "connection_health": (EmptyPayload, False),
    "performance_metrics": (EmptyPayload, False),
    "server_health": (EmptyPayload, False),
    # Published by agents (role "agent") and admins.
    "chat_message_chunk": (ChatMessageChunkPayload, True),
    "chat_message_complete": (ChatMessageCompletePayload, True),
    "tool_call_start": (ToolCallStartPayload, True),
    "tool_call_progress": (ToolCallProgressPayload, True),
    "tool_call_complete": (ToolCallCompletePayload, True),
    "tool_call_error": (ToolCallErrorPayload, True),
    "agent_status_update": (AgentStatusUpdatePayload, True),
    "agent_task_start": (AgentTaskStartPayload, True),
    "agent_task_progress": (AgentTaskProgressPayload, True),
    "agent_task_complete": (AgentTaskCompletePayload, True),
    "notification": (NotificationPayload, True),
    "system_message": (SystemMessagePayload, True),
}

CLIENT_MESSAGE_TYPES: Final = tuple(_SPECS)
AGENT_EVENT_TYPES: Final = frozenset(
    {
        "chat_message_chunk",
        "chat_message_complete",
        "tool_call_start",
        "tool_call_progress",
        "tool_call_complete",
        "tool_call_error",
        "agent_status_update",
        "agent_task_start",
        "agent_task_progress",
        "agent_task_complete",
    }
)

MESSAGE_MODELS: Final[dict[str, type[Envelope]]] = {
    type_: _envelope(type_, payload, required=required)
    for type_, (payload, required) in _SPECS.items()
}

ClientMessage = Envelope
