"""Wire messages: every JSON message of ``websocket-api.md`` as a pydantic model.

One module a concern, each with its part of the theory:

* :mod:`.base`: size limits, field types, ids and timestamps;
* :mod:`.payload`: the client payload models (authentication included);
* :mod:`.envelope`: "Base Message Structure", one model per message type;
* :mod:`.parse`: frames to validated messages, errors that say what was wrong;
* :mod:`.refusal`: the outcome of an optimistic update that fails validation;
* :mod:`.event`: server event envelopes, built and encoded once.

Callers import from here: ``from sync.wire import parse_client_message, ...``.
"""

from __future__ import annotations

from tripsage_sync.sync.wire.base import (
    MAX_BATCH_MESSAGES,
    MAX_CHANNELS_PER_REQUEST,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    MAX_TOKEN_CHARS,
    ChannelList,
    Fraction,
    Id,
    Text,
    iso_ms,
    new_id,
    parse_iso_ms,
)
from tripsage_sync.sync.wire.envelope import (
    AGENT_EVENT_TYPES,
    CLIENT_MESSAGE_TYPES,
    MESSAGE_MODELS,
    ClientMessage,
    Envelope,
)
from tripsage_sync.sync.wire.event import (
    ServerEvent,
    encode,
    make_event,
)
from tripsage_sync.sync.wire.parse import (
    message_id_of,
    parse_auth_request,
    parse_client_message,
    parse_client_value,
)
from tripsage_sync.sync.wire.payload import (
    AgentStatusUpdatePayload,
    AgentTaskCompletePayload,
    AgentTaskProgressPayload,
    AgentTaskStartPayload,
    Attachment,
    AuthRefreshPayload,
    AuthRequest,
    AuthResponse,
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
    ToolCall,
    ToolCallCompletePayload,
    ToolCallErrorPayload,
    ToolCallProgressPayload,
    ToolCallStartPayload,
    TripRef,
    TypingPayload,
    UnsubscribePayload,
    WireModel,
)
from tripsage_sync.sync.wire.refusal import (
    InvalidUpdate,
    invalid_update_payload,
)

__all__ = [
    "AGENT_EVENT_TYPES",
    "CLIENT_MESSAGE_TYPES",
    "MAX_BATCH_MESSAGES",
    "MAX_CHANNELS_PER_REQUEST",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TOKEN_CHARS",
    "MESSAGE_MODELS",
    "AgentStatusUpdatePayload",
    "AgentTaskCompletePayload",
    "AgentTaskProgressPayload",
    "AgentTaskStartPayload",
    "Attachment",
    "AuthRefreshPayload",
    "AuthRequest",
    "AuthResponse",
    "BatchPayload",
    "ChannelList",
    "ChatMessageChunkPayload",
    "ChatMessageCompletePayload",
    "ChatMessagePayload",
    "ClientMessage",
    "CollaborationJoinPayload",
    "CollaborationSessionStartPayload",
    "ConflictResolutionSubmitPayload",
    "EmptyPayload",
    "Envelope",
    "FieldEditingPayload",
    "Fraction",
    "HeartbeatRequestPayload",
    "Id",
    "InvalidUpdate",
    "NotificationPayload",
    "OptimisticUpdateStartPayload",
    "ServerEvent",
    "SubscribePayload",
    "SyncRequestPayload",
    "SystemMessagePayload",
    "Text",
    "ToolCall",
    "ToolCallCompletePayload",
    "ToolCallErrorPayload",
    "ToolCallProgressPayload",
    "ToolCallStartPayload",
    "TripRef",
    "TypingPayload",
    "UnsubscribePayload",
    "WireModel",
    "encode",
    "invalid_update_payload",
    "iso_ms",
    "make_event",
    "message_id_of",
    "new_id",
    "parse_auth_request",
    "parse_client_message",
    "parse_client_value",
    "parse_iso_ms",
]
