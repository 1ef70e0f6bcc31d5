"""Client envelopes ("Base Message Structure"): one class per message ``type``.

Every message shares the envelope (``id``, ``timestamp``, ``userId``,
``sessionId``, ``type``, ``payload``); a concrete message narrows ``type`` to
its ``Literal`` and ``payload`` to its model (:mod:`sync.wire.payload`), so
validating the envelope validates the payload in the same pass. A payload
that is not required defaults to the model's empty value.

:data:`ClientMessage` is the discriminated union of them all (by ``type``):
what :func:`sync.wire.parse_client_message` returns and what the server's one
``match`` dispatches on. :data:`MESSAGE_MODELS` maps each type to its class
(the parser validates with it, so that an error names the fields of that
message).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import Field

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
    "AgentEventMessage",
    "AgentPublishedMessage",
    "AgentStatusUpdateMessage",
    "AgentTaskCompleteMessage",
    "AgentTaskProgressMessage",
    "AgentTaskStartMessage",
    "AnyClientMessage",
    "AuthRefreshMessage",
    "BatchMessage",
    "ChatMessage",
    "ChatMessageChunkMessage",
    "ChatMessageCompleteMessage",
    "ChatTypingStartMessage",
    "ChatTypingStopMessage",
    "ClientMessage",
    "CollaborationSessionStartMessage",
    "ConflictResolutionSubmitMessage",
    "ConnectionHealthMessage",
    "ConnectionHeartbeatMessage",
    "Envelope",
    "NotificationMessage",
    "OptimisticUpdateStartMessage",
    "PerformanceMetricsMessage",
    "ServerHealthMessage",
    "SubscribeMessage",
    "SyncRequestMessage",
    "SystemEventMessage",
    "SystemMessage",
    "ToolCallCompleteMessage",
    "ToolCallErrorMessage",
    "ToolCallProgressMessage",
    "ToolCallStartMessage",
    "TripCollaborationJoinMessage",
    "TripCollaborationLeaveMessage",
    "TripFieldEditingStartMessage",
    "TripFieldEditingStopMessage",
    "TripJoinMessage",
    "TypingMessage",
    "UnsubscribeMessage",
    "UserTypingMessage",
]


class Envelope(WireModel):
    id: Id | None = None
    timestamp: Annotated[str, Field(max_length=64)] | None = None
    # A userId a client sends is never trusted; agents and admins may use it to
    # address a user (see the chat issue), everyone else has it ignored.
    userId: Id | None = None
    sessionId: Id | None = None
    # Narrowed by every concrete message to its ``Literal``; each adds its ``payload``.
    type: str


# --- Chat, typing, trips, the connection ("Chat Events", "Trip Collaboration", ...) ---


class ChatMessage(Envelope):
    type: Literal["chat_message"]
    payload: ChatMessagePayload


class ChatTypingStartMessage(Envelope):
    type: Literal["chat_typing_start"]
    payload: TypingPayload = TypingPayload()


class ChatTypingStopMessage(Envelope):
    type: Literal["chat_typing_stop"]
    payload: TypingPayload = TypingPayload()


class UserTypingMessage(Envelope):
    type: Literal["user_typing"]
    payload: TypingPayload = TypingPayload()


class TripCollaborationJoinMessage(Envelope):
    type: Literal["trip_collaboration_join"]
    payload: CollaborationJoinPayload


class TripCollaborationLeaveMessage(Envelope):
    type: Literal["trip_collaboration_leave"]
    payload: CollaborationJoinPayload


class TripFieldEditingStartMessage(Envelope):
    type: Literal["trip_field_editing_start"]
    payload: FieldEditingPayload


class TripFieldEditingStopMessage(Envelope):
    type: Literal["trip_field_editing_stop"]
    payload: FieldEditingPayload


class CollaborationSessionStartMessage(Envelope):
    type: Literal["collaboration_session_start"]
    payload: CollaborationSessionStartPayload


class OptimisticUpdateStartMessage(Envelope):
    type: Literal["optimistic_update_start"]
    payload: OptimisticUpdateStartPayload


class ConflictResolutionSubmitMessage(Envelope):
    type: Literal["conflict_resolution_submit"]
    payload: ConflictResolutionSubmitPayload


class ConnectionHeartbeatMessage(Envelope):
    type: Literal["connection_heartbeat"]
    payload: HeartbeatRequestPayload = HeartbeatRequestPayload()


class SubscribeMessage(Envelope):
    type: Literal["subscribe"]
    payload: SubscribePayload


class UnsubscribeMessage(Envelope):
    type: Literal["unsubscribe"]
    payload: UnsubscribePayload


class BatchMessage(Envelope):
    type: Literal["batch"]
    payload: BatchPayload


class SyncRequestMessage(Envelope):
    type: Literal["sync_request"]
    payload: SyncRequestPayload


class AuthRefreshMessage(Envelope):
    type: Literal["auth_refresh"]
    payload: AuthRefreshPayload


class ConnectionHealthMessage(Envelope):
    type: Literal["connection_health"]
    payload: EmptyPayload = EmptyPayload()


class PerformanceMetricsMessage(Envelope):
    type: Literal["performance_metrics"]
    payload: EmptyPayload = EmptyPayload()


class ServerHealthMessage(Envelope):
    type: Literal["server_health"]
    payload: EmptyPayload = EmptyPayload()


# Published by agents (role "agent") and admins.


class ChatMessageChunkMessage(Envelope):
    type: Literal["chat_message_chunk"]
    payload: ChatMessageChunkPayload


class ChatMessageCompleteMessage(Envelope):
    type: Literal["chat_message_complete"]
    payload: ChatMessageCompletePayload


class ToolCallStartMessage(Envelope):
    type: Literal["tool_call_start"]
    payload: ToolCallStartPayload


class ToolCallProgressMessage(Envelope):
    type: Literal["tool_call_progress"]
    payload: ToolCallProgressPayload


class ToolCallCompleteMessage(Envelope):
    type: Literal["tool_call_complete"]
    payload: ToolCallCompletePayload


class ToolCallErrorMessage(Envelope):
    type: Literal["tool_call_error"]
    payload: ToolCallErrorPayload


class AgentStatusUpdateMessage(Envelope):
    type: Literal["agent_status_update"]
    payload: AgentStatusUpdatePayload


class AgentTaskStartMessage(Envelope):
    type: Literal["agent_task_start"]
    payload: AgentTaskStartPayload


class AgentTaskProgressMessage(Envelope):
    type: Literal["agent_task_progress"]
    payload: AgentTaskProgressPayload


class AgentTaskCompleteMessage(Envelope):
    type: Literal["agent_task_complete"]
    payload: AgentTaskCompletePayload


class NotificationMessage(Envelope):
    type: Literal["notification"]
    payload: NotificationPayload


class SystemMessage(Envelope):
    type: Literal["system_message"]
    payload: SystemMessagePayload


# Both join a trip's collaboration session (the second is the spec's older name).
TripJoinMessage = CollaborationSessionStartMessage | TripCollaborationJoinMessage
TypingMessage = ChatTypingStartMessage | ChatTypingStopMessage | UserTypingMessage
# Published by agents (role "agent") and admins ("Tool Events", "Agent Status Events").
AgentEventMessage = (
    ChatMessageChunkMessage
    | ChatMessageCompleteMessage
    | ToolCallStartMessage
    | ToolCallProgressMessage
    | ToolCallCompleteMessage
    | ToolCallErrorMessage
    | AgentStatusUpdateMessage
    | AgentTaskStartMessage
    | AgentTaskProgressMessage
    | AgentTaskCompleteMessage
)
# What an agent may publish over HTTP too: its events and its own chat messages.
AgentPublishedMessage = AgentEventMessage | ChatMessage
SystemEventMessage = NotificationMessage | SystemMessage

AnyClientMessage = (
    ChatMessage
    | ChatTypingStartMessage
    | ChatTypingStopMessage
    | UserTypingMessage
    | TripCollaborationJoinMessage
    | TripCollaborationLeaveMessage
    | TripFieldEditingStartMessage
    | TripFieldEditingStopMessage
    | CollaborationSessionStartMessage
    | OptimisticUpdateStartMessage
    | ConflictResolutionSubmitMessage
    | ConnectionHeartbeatMessage
    | SubscribeMessage
    | UnsubscribeMessage
    | BatchMessage
    | SyncRequestMessage
    | AuthRefreshMessage
    | ConnectionHealthMessage
    | PerformanceMetricsMessage
    | ServerHealthMessage
    | ChatMessageChunkMessage
    | ChatMessageCompleteMessage
    | ToolCallStartMessage
    | ToolCallProgressMessage
    | ToolCallCompleteMessage
    | ToolCallErrorMessage
    | AgentStatusUpdateMessage
    | AgentTaskStartMessage
    | AgentTaskProgressMessage
    | AgentTaskCompleteMessage
    | NotificationMessage
    | SystemMessage
)
ClientMessage = Annotated[AnyClientMessage, Field(discriminator="type")]


def _tag(model: type[AnyClientMessage]) -> str:
    (tag,) = get_args(model.model_fields["type"].annotation)
    return str(tag)


MESSAGE_MODELS: Final[dict[str, type[AnyClientMessage]]] = {
    _tag(model): model for model in get_args(AnyClientMessage)
}
CLIENT_MESSAGE_TYPES: Final = tuple(MESSAGE_MODELS)
AGENT_EVENT_TYPES: Final = frozenset(_tag(model) for model in get_args(AgentEventMessage))
