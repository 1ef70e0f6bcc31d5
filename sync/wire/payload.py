"""Client payload models: the ``payload`` of every message type a client may send.

``websocket-api.md`` "Authentication Request"/"Response", "Chat Events",
"Trip Collaboration", "Optimistic Updates", "Conflict Resolution", and the
events agents publish ("Tool Events", "Agent Status Events"). Each model
validates itself, so an invalid payload cannot be constructed; which model
belongs to which ``type`` is :mod:`sync.wire.envelope`. Field names are the
wire's camelCase, so models dump without aliases. A payload the server relays as
it came (tool and agent status events, notifications, system messages) is an
:class:`~sync.wire.eventpayload.EventPayload` as well. :class:`WireModel` is
strict (JSON types are taken as sent: ``"5"`` is not an integer), frozen,
and ignores unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue

from tripsage_sync.sync.wire.base import (
    MAX_BATCH_MESSAGES,
    MAX_TOKEN_CHARS,
    ChannelList,
    Fraction,
    Id,
    Text,
)
from tripsage_sync.sync.wire.eventpayload import EventPayload

__all__ = [
    "AgentStatusUpdatePayload",
    "AgentTaskCompletePayload",
    "AgentTaskProgressPayload",
    "AgentTaskStartPayload",
    "Attachment",
    "AuthRefreshPayload",
    "AuthRequest",
    "AuthResponse",
    "BatchPayload",
    "ChatMessageChunkPayload",
    "ChatMessageCompletePayload",
    "ChatMessagePayload",
    "CollaborationJoinPayload",
    "CollaborationSessionStartPayload",
    "ConflictResolutionSubmitPayload",
    "EmptyPayload",
    "FieldEditingPayload",
    "HeartbeatRequestPayload",
    "NotificationPayload",
    "OptimisticUpdateStartPayload",
    "SubscribePayload",
    "SyncRequestPayload",
    "SystemMessagePayload",
    "ToolCall",
    "ToolCallCompletePayload",
    "ToolCallErrorPayload",
    "ToolCallProgressPayload",
    "ToolCallStartPayload",
    "TripRef",
    "TypingPayload",
    "UnsubscribePayload",
    "WireModel",
]


class WireModel(BaseModel):
    # strict: JSON types are taken as sent ("5" is not an integer).
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


# --- Authentication ("Authentication Request" / "Authentication Response") ---


class AuthRequest(WireModel):
    type: Literal["auth", "authenticate"] | None = None
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)]
    sessionId: Id | None = None
    channels: ChannelList = []
    # Extension: optional features the client asks for ("message_batching").
    features: Annotated[list[Id], Field(max_length=20)] = []


class AuthRefreshPayload(WireModel):
    """Extension ``auth_refresh``: a fresh token for an open connection (README)."""

    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)]


class AuthResponse(WireModel):
    success: bool
    connectionId: str | None = None
    userId: str | None = None
    sessionId: str | None = None
    availableChannels: list[str] | None = None
    error: str | None = None
    code: str | None = None
    retryAfter: float | None = None


# --- Client payloads -----------------------------------------------------------


class Attachment(WireModel):
    id: Id
    url: Annotated[str, Field(max_length=2048)]
    name: Annotated[str, Field(max_length=512)]
    contentType: Annotated[str, Field(max_length=255)]
    size: Annotated[int, Field(ge=0)]


class ToolCall(WireModel):
    id: Id
    name: Id
    arguments: dict[str, JsonValue] = {}
    state: Annotated[str, Field(max_length=64)] = "call"


class ChatMessagePayload(WireModel):
    content: Text
    role: Literal["user", "assistant", "system"] = "user"
    messageId: Id | None = None
    attachments: Annotated[list[Attachment], Field(max_length=20)] = []
    toolCalls: Annotated[list[ToolCall], Field(max_length=50)] = []


class TypingPayload(WireModel):
    # userId/username a client sends are ignored: identity comes from the token.
    userId: str | None = None
    username: str | None = None


class TripRef(WireModel):
    tripId: Id


class CollaborationJoinPayload(TripRef):
    sessionId: Id | None = None


class FieldEditingPayload(TripRef):
    fieldName: Id
    fieldPath: Id | None = None
    lockId: Id | None = None


class CollaborationSessionStartPayload(TripRef):
    features: Annotated[list[Id], Field(max_length=20)] = []
    preferences: dict[str, JsonValue] = {}


class OptimisticUpdateStartPayload(TripRef):
    """``optimistic_update_start``; ``value`` is the spec's alias of ``optimisticValue``.

    Without ``expectedVersion`` the update is based on the latest version the
    connection has seen of the trip (``api/trips/feature.py``); 0 means none.
    """

    updateId: Id
    fieldName: Id | None = None
    fieldPath: Id | None = None
    optimisticValue: JsonValue = Field(validation_alias=AliasChoices("optimisticValue", "value"))
    previousValue: JsonValue = None
    expectedVersion: Annotated[int, Field(ge=0)] | None = None
    clientTimestamp: Annotated[str, Field(max_length=64)] | None = None


class ConflictResolutionSubmitPayload(WireModel):
    conflictId: Id
    chosenOptionId: Id | None = None
    customValue: JsonValue = None
    reason: Annotated[str, Field(max_length=2000)] | None = None


class SubscribePayload(WireModel):
    channels: ChannelList = []
    unsubscribeChannels: ChannelList = []


class UnsubscribePayload(WireModel):
    channels: ChannelList


class BatchPayload(WireModel):
    # Any JSON values: each is validated on its own (parse_client_value), so one
    # bad item gets the error it would get alone and the others still run.
    messages: Annotated[list[Any], Field(max_length=MAX_BATCH_MESSAGES)]


class SyncRequestPayload(TripRef):
    sinceVersion: Annotated[int, Field(ge=0)]


class EmptyPayload(WireModel):
    pass


class HeartbeatRequestPayload(WireModel):
    # The serverTime of the server heartbeat this one answers (sync/health.py).
    serverTime: Annotated[str, Field(max_length=64)] | None = None


# Agent-published events ("Chat Events", "Tool Events", "Agent Status Events"). The
# tool and status events, and an admin's notification and system message, are sent on
# as they came: their model is the server event's payload model too (EventPayload).


class ChatMessageChunkPayload(WireModel):
    messageId: Id
    content: Text
    isComplete: bool = False
    chunkIndex: Annotated[int, Field(ge=0)]


class ChatMessageCompletePayload(WireModel):
    messageId: Id
    finalContent: Annotated[str, Field(max_length=1_000_000)]
    metadata: dict[str, JsonValue] = {}


class ToolCallStartPayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "tool_call_start"

    toolCallId: Id
    toolName: Id
    arguments: dict[str, JsonValue] = {}
    estimatedDuration: Annotated[float, Field(ge=0)] | None = None


class ToolCallProgressPayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "tool_call_progress"

    toolCallId: Id
    progress: Fraction
    status: Annotated[str, Field(max_length=2000)] | None = None
    intermediateResults: dict[str, JsonValue] = {}


class ToolCallCompletePayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "tool_call_complete"

    toolCallId: Id
    result: JsonValue = None
    executionTime: Annotated[float, Field(ge=0)] | None = None


class ToolCallErrorPayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "tool_call_error"

    toolCallId: Id
    error: Annotated[str, Field(max_length=2000)]
    errorCode: Id | None = None
    retryAfter: Annotated[float, Field(ge=0)] | None = None
    fallbackOptions: Annotated[list[Id], Field(max_length=20)] = []


class AgentStatusUpdatePayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "agent_status_update"

    agentId: Id
    isActive: bool
    currentTask: Annotated[str, Field(max_length=2000)] | None = None
    progress: Fraction | None = None
    statusMessage: Annotated[str, Field(max_length=2000)] | None = None
    estimatedCompletion: Annotated[str, Field(max_length=64)] | None = None


class AgentTaskStartPayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "agent_task_start"

    taskId: Id
    taskName: Id
    taskDescription: Annotated[str, Field(max_length=2000)] | None = None
    estimatedDuration: Annotated[float, Field(ge=0)] | None = None
    priority: Literal["low", "medium", "normal", "high", "urgent"] | None = None


class AgentTaskProgressPayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "agent_task_progress"

    taskId: Id
    progress: Fraction
    currentStep: Annotated[str, Field(max_length=2000)] | None = None
    stepsCompleted: Annotated[int, Field(ge=0)] | None = None
    totalSteps: Annotated[int, Field(ge=0)] | None = None
    intermediateResults: dict[str, JsonValue] = {}


class AgentTaskCompletePayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "agent_task_complete"

    taskId: Id
    result: JsonValue = None
    nextTask: Id | None = None


class NotificationPayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "notification"

    title: Annotated[str, Field(max_length=500)]
    message: Annotated[str, Field(max_length=5000)]
    type: Literal["info", "success", "warning", "error"] = "info"
    actionUrl: Annotated[str, Field(max_length=2048)] | None = None
    dismissible: bool = True


class SystemMessagePayload(WireModel, EventPayload):
    EVENT_TYPE: ClassVar[str] = "system_message"

    level: Literal["info", "warning", "error", "critical", "maintenance"]
    message: Annotated[str, Field(max_length=5000)]
    scheduledTime: Annotated[str, Field(max_length=64)] | None = None
    estimatedDuration: Annotated[float, Field(ge=0)] | None = None
    affectedServices: Annotated[list[Id], Field(max_length=20)] = []
