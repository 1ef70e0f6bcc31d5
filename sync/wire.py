"""Wire messages: every JSON message of ``websocket-api.md`` as a pydantic model.

Theory of operation
-------------------
Client frames are parsed in two steps. :func:`parse_auth_request` reads the
first frame of a connection ("Authentication Request"). Every later frame is
read by :func:`parse_client_message`, which validates the envelope of "Base
Message Structure" and the payload of its ``type`` in one pass through a
discriminated union, so an invalid message cannot be constructed. A failure is
turned into :class:`~sync.errors.InvalidMessage` whose ``details`` name the
field, the expected type and what was received (the spec's ``error`` event),
and the message's ``id`` as ``messageId`` when it has one. The items of a
``batch`` are any JSON values, each judged by :func:`parse_client_value` as
if it had come alone.

Server events are :class:`ServerEvent` envelopes (``id``, ``type``,
``timestamp`` in UTC with milliseconds, optional ``sessionId``, ``payload``),
encoded once with :func:`encode` and then shared by every recipient.

Field names are the wire's camelCase, so models dump without aliases.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
)

from tripsage_sync.sync.errors import InvalidMessage

__all__ = [
    "AGENT_EVENT_TYPES",
    "CLIENT_MESSAGE_TYPES",
    "MAX_BATCH_MESSAGES",
    "MAX_ID_CHARS",
    "AuthRequest",
    "AuthResponse",
    "ClientMessage",
    "InvalidUpdate",
    "ServerEvent",
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

MAX_ID_CHARS: Final = 128
MAX_TEXT_CHARS: Final = 100_000
MAX_BATCH_MESSAGES: Final = 100
MAX_CHANNELS_PER_REQUEST: Final = 50
MAX_TOKEN_CHARS: Final = 8192

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ChannelList = Annotated[list[Id], Field(max_length=MAX_CHANNELS_PER_REQUEST)]

_counter = itertools.count()
_prefix = os.urandom(4).hex()


def new_id(kind: str) -> str:
    """A process-unique id such as ``evt-1a2b3c4d-42`` (no clock, no I/O)."""
    return f"{kind}-{_prefix}-{next(_counter)}"


def iso_ms(now_ms: int) -> str:
    """``2025-05-28T01:30:00.000Z`` for a Unix time in milliseconds."""
    seconds, millis = divmod(now_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def parse_iso_ms(value: str) -> int:
    """Milliseconds since the epoch for an ISO-8601 timestamp (naive means UTC)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidMessage(
            "Invalid timestamp",
            details={"expected": "ISO 8601 timestamp", "received": value[:64]},
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class _Model(BaseModel):
    # strict: JSON types are taken as sent ("5" is not an integer).
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


# --- Authentication ("Authentication Request" / "Authentication Response") ---


class AuthRequest(_Model):
    type: Literal["auth", "authenticate"] | None = None
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)]
    sessionId: Id | None = None
    channels: ChannelList = []
    # Extension: optional features the client asks for ("message_batching").
    features: Annotated[list[Id], Field(max_length=20)] = []


class AuthRefreshPayload(_Model):
    """Extension ``auth_refresh``: a fresh token for an open connection (README)."""

    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)]


class AuthResponse(_Model):
    success: bool
    connectionId: str | None = None
    userId: str | None = None
    sessionId: str | None = None
    availableChannels: list[str] | None = None
    error: str | None = None
    code: str | None = None
    retryAfter: float | None = None


# --- Client payloads -----------------------------------------------------------


class Attachment(_Model):
    id: Id
    url: Annotated[str, Field(max_length=2048)]
    name: Annotated[str, Field(max_length=512)]
    contentType: Annotated[str, Field(max_length=255)]
    size: Annotated[int, Field(ge=0)]


class ToolCall(_Model):
    id: Id
    name: Id
    arguments: dict[str, JsonValue] = {}
    state: Annotated[str, Field(max_length=64)] = "call"


class ChatMessagePayload(_Model):
    content: Text
    role: Literal["user", "assistant", "system"] = "user"
    messageId: Id | None = None
    attachments: Annotated[list[Attachment], Field(max_length=20)] = []
    toolCalls: Annotated[list[ToolCall], Field(max_length=50)] = []


class TypingPayload(_Model):
    # userId/username a client sends are ignored: identity comes from the token.
    userId: str | None = None
    username: str | None = None


class TripRef(_Model):
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
    connection has seen of the trip (``api/trips.py``); 0 means none.
    """

    updateId: Id
    fieldName: Id | None = None
    fieldPath: Id | None = None
    optimisticValue: JsonValue = Field(validation_alias=AliasChoices("optimisticValue", "value"))
    previousValue: JsonValue = None
    expectedVersion: Annotated[int, Field(ge=0)] | None = None
    clientTimestamp: Annotated[str, Field(max_length=64)] | None = None


class ConflictResolutionSubmitPayload(_Model):
    conflictId: Id
    chosenOptionId: Id | None = None
    customValue: JsonValue = None
    reason: Annotated[str, Field(max_length=2000)] | None = None


class SubscribePayload(_Model):
    channels: ChannelList = []
    unsubscribeChannels: ChannelList = []


class UnsubscribePayload(_Model):
    channels: ChannelList


class BatchPayload(_Model):
    # Any JSON values: each is validated on its own (parse_client_value), so one
    # bad item gets the error it would get alone and the others still run.
    messages: Annotated[list[Any], Field(max_length=MAX_BATCH_MESSAGES)]


class SyncRequestPayload(TripRef):
    sinceVersion: Annotated[int, Field(ge=0)]


class EmptyPayload(_Model):
    pass


class HeartbeatRequestPayload(_Model):
    # The serverTime of the server heartbeat this one answers (sync/health.py).
    serverTime: Annotated[str, Field(max_length=64)] | None = None


# Agent-published events ("Chat Events", "Tool Events", "Agent Status Events").


class ChatMessageChunkPayload(_Model):
    messageId: Id
    content: Text
    isComplete: bool = False
    chunkIndex: Annotated[int, Field(ge=0)]


class ChatMessageCompletePayload(_Model):
    messageId: Id
    finalContent: Annotated[str, Field(max_length=1_000_000)]
    metadata: dict[str, JsonValue] = {}


class ToolCallStartPayload(_Model):
    toolCallId: Id
    toolName: Id
    arguments: dict[str, JsonValue] = {}
    estimatedDuration: Annotated[float, Field(ge=0)] | None = None


class ToolCallProgressPayload(_Model):
    toolCallId: Id
    progress: Fraction
    status: Annotated[str, Field(max_length=2000)] | None = None
    intermediateResults: dict[str, JsonValue] = {}


class ToolCallCompletePayload(_Model):
    toolCallId: Id
    result: JsonValue = None
    executionTime: Annotated[float, Field(ge=0)] | None = None


class ToolCallErrorPayload(_Model):
    toolCallId: Id
    error: Annotated[str, Field(max_length=2000)]
    errorCode: Id | None = None
    retryAfter: Annotated[float, Field(ge=0)] | None = None
    fallbackOptions: Annotated[list[Id], Field(max_length=20)] = []


class AgentStatusUpdatePayload(_Model):
    agentId: Id
    isActive: bool
    currentTask: Annotated[str, Field(max_length=2000)] | None = None
    progress: Fraction | None = None
    statusMessage: Annotated[str, Field(max_length=2000)] | None = None
    estimatedCompletion: Annotated[str, Field(max_length=64)] | None = None


class AgentTaskStartPayload(_Model):
    taskId: Id
    taskName: Id
    taskDescription: Annotated[str, Field(max_length=2000)] | None = None
    estimatedDuration: Annotated[float, Field(ge=0)] | None = None
    priority: Literal["low", "medium", "normal", "high", "urgent"] | None = None


class AgentTaskProgressPayload(_Model):
    taskId: Id
    progress: Fraction
    currentStep: Annotated[str, Field(max_length=2000)] | None = None
    stepsCompleted: Annotated[int, Field(ge=0)] | None = None
    totalSteps: Annotated[int, Field(ge=0)] | None = None
    intermediateResults: dict[str, JsonValue] = {}


class AgentTaskCompletePayload(_Model):
    taskId: Id
    result: JsonValue = None
    nextTask: Id | None = None


class NotificationPayload(_Model):
    title: Annotated[str, Field(max_length=500)]
    message: Annotated[str, Field(max_length=5000)]
    type: Literal["info", "success", "warning", "error"] = "info"
    actionUrl: Annotated[str, Field(max_length=2048)] | None = None
    dismissible: bool = True


class SystemMessagePayload(_Model):
    level: Literal["info", "warning", "error", "critical", "maintenance"]
    message: Annotated[str, Field(max_length=5000)]
    scheduledTime: Annotated[str, Field(max_length=64)] | None = None
    estimatedDuration: Annotated[float, Field(ge=0)] | None = None
    affectedServices: Annotated[list[Id], Field(max_length=20)] = []


# --- Client envelopes ("Base Message Structure") -------------------------------


class _Envelope(_Model):
    id: Id | None = None
    timestamp: Annotated[str, Field(max_length=64)] | None = None
    # A userId a client sends is never trusted; agents and admins may use it to
    # address a user (see the chat issue), everyone else has it ignored.
    userId: Id | None = None
    sessionId: Id | None = None
    # Narrowed by every concrete message: ``Literal[...]`` and its payload model.
    type: str
    payload: Any


def _envelope(type_: str, payload: type[BaseModel], *, required: bool = True) -> type[_Envelope]:
    default: Any = ... if required else payload()
    model = type(
        "".join(part.title() for part in type_.split("_")) + "Message",
        (_Envelope,),
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

MESSAGE_MODELS: Final[dict[str, type[_Envelope]]] = {
    type_: _envelope(type_, payload, required=required)
    for type_, (payload, required) in _SPECS.items()
}

ClientMessage = _Envelope


# --- Parsing ---------------------------------------------------------------------

_JSON_TYPE_NAMES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}

_EXPECTED_BY_ERROR: Final = {
    "string_type": "string",
    "string_too_long": "shorter string",
    "string_too_short": "non-empty string",
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
    "greater_than_equal": "larger number",
    "less_than_equal": "smaller number",
    "too_long": "fewer items",
    "literal_error": "one of the allowed values",
    "missing": "a value",
    "extra_forbidden": "no such field",
}


def _describe(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into a parsed str
# (json.loads joins a valid pair into one code point; UTF-8 frames cannot carry one).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _lone_surrogate_at(value: Any, path: str = "") -> str | None:
    """The path of the first string (value or key, any depth) holding a lone surrogate."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if _SURROGATE.search(key):
                return path or "(key)"
            found = _lone_surrogate_at(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _loads(text: str | bytes) -> Any:
    """Parse a frame; a string that is not valid Unicode (a lone surrogate) is refused here,
    at any depth, so no later step (storage, fan-out, the writer's UTF-8 encode) meets one."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(
            "Message is not valid JSON",
            details={"field": "", "expected": "JSON object", "received": "invalid JSON"},
        ) from exc
    suspect = (
        _SURROGATE_ESCAPE_BYTES.search(text)
        if isinstance(text, bytes)
        else _SURROGATE_ESCAPE.search(text) or _SURROGATE.search(text)
    )
    if suspect is not None:
        try:
            field = _lone_surrogate_at(data)
        except RecursionError:
            field = ""
        if field is not None:
            raise InvalidMessage(
                "Message contains a string that is not valid Unicode (a lone surrogate)",
                details={
                    "field": field[:128],
                    "expected": "valid Unicode string",
                    "received": "lone surrogate",
                },
            )
    return data


def _annotation_name(annotation: Any) -> str | None:
    origin = getattr(annotation, "__origin__", None)
    for candidate in (annotation, origin):
        if candidate in _JSON_TYPE_NAMES:
            return _JSON_TYPE_NAMES[candidate]
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return "object"
    return None


def _expected_type(model: type[BaseModel], loc: list[str]) -> str | None:
    """The JSON type name of the field at ``loc`` in ``model``, if simple."""
    current: Any = model
    annotation: Any = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        annotation = current = field.annotation
    return _annotation_name(annotation)


def _invalid(exc: ValidationError, model: type[BaseModel]) -> InvalidMessage:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    field = ".".join(loc)
    kind = error["type"]
    received: Any = "undefined" if kind == "missing" else _describe(error.get("input"))
    if kind == "literal_error" and isinstance(error.get("input"), str):
        received = error["input"][:64]
    expected = _EXPECTED_BY_ERROR.get(kind, kind)
    if kind == "missing":
        expected = _expected_type(model, loc) or expected
    ctx = error.get("ctx") or {}
    if kind == "literal_error" and "expected" in ctx:
        expected = str(ctx["expected"])
    message = f"Invalid field '{field}': {error['msg']}" if field else error["msg"]
    return InvalidMessage(
        message,
        details={"field": field, "expected": expected, "received": received},
    )


def parse_auth_request(text: str | bytes) -> AuthRequest:
    """The first frame of a connection; raises :class:`InvalidMessage`."""
    data = _loads(text)
    if not isinstance(data, dict):
        raise InvalidMessage(
            "Authentication request must be a JSON object",
            details={"field": "", "expected": "object", "received": _describe(data)},
        )
    try:
        return AuthRequest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, AuthRequest) from None


def message_id_of(value: Any) -> str | None:
    """The ``id`` of a decoded client message, when it has a usable one.

    Used to say which message an error answers (``details.messageId``); an id
    that could not be sent back (too long, not a string, not encodable) is none.
    """
    message_id = value.get("id") if isinstance(value, dict) else None
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_ID_CHARS:
        return None
    try:
        message_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return message_id


def parse_client_message(data: str | bytes | dict[str, Any]) -> _Envelope:
    """Validate a client message (a text frame, or a decoded object)."""
    return parse_client_value(_loads(data) if isinstance(data, str | bytes) else data)


def parse_client_value(value: Any) -> _Envelope:
    """Validate a decoded JSON value as a client message (e.g. an item of a batch).

    The error of a message that has an id names it (``details.messageId``).
    """
    try:
        return _parse_value(value)
    except InvalidMessage as exc:
        message_id = message_id_of(value)
        if message_id is not None:
            exc.details = {**(exc.details or {}), "messageId": message_id}
        raise


def _parse_value(data: Any) -> _Envelope:
    if not isinstance(data, dict):
        raise InvalidMessage(
            "Message must be a JSON object",
            details={"field": "", "expected": "object", "received": _describe(data)},
        )
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise InvalidMessage(
            "Message has no 'type'" if type_ is None else "Field 'type' must be a string",
            details={
                "field": "type",
                "expected": "string",
                "received": "undefined" if type_ is None else _describe(type_),
            },
        )
    model = MESSAGE_MODELS.get(type_)
    if model is None:
        raise InvalidMessage(
            f"Unknown message type '{type_[:64]}'",
            details={"field": "type", "expected": "a known event type", "received": type_[:64]},
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        invalid = _invalid(exc, model)
        if type_ == "optimistic_update_start":
            refused = InvalidUpdate.of(data.get("payload"), invalid)
            if refused is not None:
                raise refused from None
        raise invalid from None


# --- Optimistic updates that fail validation ----------------------------------


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

    def rejection(self) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """The ``optimistic_update_rejected`` payload of an update that fails validation."""
    payload: dict[str, Any] = {
        "updateId": update_id,
        "tripId": trip_id,
        "fieldName": field_name,
        "rejectionReason": "invalid_message",
        "message": message,
        "details": details,
    }
    if current is not None:
        payload["currentServerValue"], payload["currentServerVersion"] = current
    return payload


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


# --- Server events --------------------------------------------------------------


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
