"""The server events the client reacts to, typed, and the one place frames are parsed.

Theory of operation (``websocket-api.md`` "Connection Events", "System Events",
"Trip Collaboration Events", "Optimistic Update Flow"; README "Token refresh",
"Resuming")
------------------------------------------------------------------------
A text frame is decoded once (:func:`decode_frame`: JSON, a ``batch`` unwrapped
into its messages) and each event is parsed once (:func:`parse_event`) into one
model of the :data:`ServerEvent` union, a pydantic discriminated union on
``type``. The client has its own view of the protocol (it may not import the
server's ``sync.wire``), so a model holds only what the client reads; the rest
of an event stays in the raw dict that listeners receive.

The client must survive a server newer than itself (or a broken one): parsing
never raises. An unknown ``type``, or a known one whose payload lacks what the
client needs (a ``tripId``, a ``version``), becomes an :class:`UnknownEvent`
that the client ignores; an optional field it can do without (a heartbeat
interval, a version in an outcome) degrades on its own to ``None`` (the
``Lenient`` fields) instead of failing its event.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "AuthExpiring",
    "AuthRefreshed",
    "CollaborationSessionStarted",
    "ConnectionClose",
    "ConnectionErrorEvent",
    "ConnectionEstablished",
    "ConnectionEvent",
    "ConnectionEventBase",
    "ConnectionHeartbeat",
    "ErrorEvent",
    "OptimisticUpdateConfirmed",
    "OptimisticUpdateRejected",
    "OptimisticUpdateRollback",
    "OutcomeEvent",
    "OutcomeEventBase",
    "ServerEvent",
    "SyncComplete",
    "TripCollaboratorPresence",
    "TripEvent",
    "TripEventBase",
    "TripSnapshot",
    "TripUpdateBroadcast",
    "UnknownEvent",
    "decode_frame",
    "parse_event",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _none_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


# An optional field the client can do without: ``None`` when absent or invalid.
Lenient = Annotated[T | None, WrapValidator(_none_if_invalid)]


class _Model(BaseModel):
    """Frozen, camelCase on the wire, extra keys ignored (a newer server may add some)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, extra="ignore")


class ConnectionEventBase(_Model):
    """The events of the connection: heartbeat, token, errors and close."""


class TripEventBase(_Model):
    """The events of one trip's view, joins and sync requests."""


class OutcomeEventBase(_Model):
    """The outcome of one optimistic update."""


# -- connection events ("Connection Events"; README "Token refresh") -----------------


class Limits(_Model):
    heartbeat_interval: Lenient[StrictFloat] = None  # seconds


class EstablishedPayload(_Model):
    limits: Lenient[Limits] = None


class ConnectionEstablished(ConnectionEventBase):
    type: Literal["connection_established"]
    payload: EstablishedPayload


class EmptyPayload(_Model):
    """A payload whose arrival is all the client reads."""


class ConnectionHeartbeat(ConnectionEventBase):
    """The server's answer to the client's ``connection_heartbeat`` (its latency sample)."""

    type: Literal["connection_heartbeat"]
    payload: EmptyPayload


class AuthExpiring(ConnectionEventBase):
    """The token expires soon: the client asks its ``token_provider`` for a fresh one."""

    type: Literal["auth_expiring"]
    payload: EmptyPayload


class RefreshedPayload(_Model):
    expires_at: Lenient[StrictStr] = None


class AuthRefreshed(ConnectionEventBase):
    type: Literal["auth_refreshed"]
    payload: RefreshedPayload


class ConnectionErrorPayload(_Model):
    error_code: Lenient[StrictStr] = None  # TOKEN_EXPIRED: a close with 3000 follows


class ConnectionErrorEvent(ConnectionEventBase):
    """``connection_error`` (the name ``ConnectionError`` is a builtin)."""

    type: Literal["connection_error"]
    payload: ConnectionErrorPayload


class ClosePayload(_Model):
    reconnect_after: Lenient[StrictFloat] = None  # seconds


class ConnectionClose(ConnectionEventBase):
    type: Literal["connection_close"]
    payload: ClosePayload


# -- trip events ("Trip Collaboration Events"; README "Resuming") ----------------------


class SessionStartedPayload(_Model):
    trip_id: str
    fields: dict[str, Any] = Field(default_factory=dict)
    version: Lenient[int] = None
    server_version: Lenient[int] = None  # the spec's name for version
    permission_level: Lenient[StrictStr] = None
    collaborators: list[dict[str, Any]] | None = None  # None: a server that sends none

    @property
    def current_version(self) -> int:
        version = self.version if self.version is not None else self.server_version
        return version or 0


class CollaborationSessionStarted(TripEventBase):
    """The answer to ``collaboration_session_start`` (a join)."""

    type: Literal["collaboration_session_started"]
    payload: SessionStartedPayload


class FieldChange(_Model):
    new_value: Any = None


class BroadcastPayload(_Model):
    trip_id: str
    version: int
    changes: dict[str, FieldChange] = Field(default_factory=dict)


class TripUpdateBroadcast(TripEventBase):
    type: Literal["trip_update_broadcast"]
    payload: BroadcastPayload


class SnapshotPayload(_Model):
    trip_id: str
    version: int
    fields: dict[str, Any]


class TripSnapshot(TripEventBase):
    type: Literal["trip_snapshot"]
    payload: SnapshotPayload


class SyncCompletePayload(_Model):
    trip_id: str
    version: int
    request_id: Lenient[StrictStr] = None  # the sync_request's id


class SyncComplete(TripEventBase):
    type: Literal["sync_complete"]
    payload: SyncCompletePayload


class PresencePayload(_Model):
    trip_id: str
    active_collaborators: list[dict[str, Any]] = Field(default_factory=list)


class TripCollaboratorPresence(TripEventBase):
    type: Literal["trip_collaborator_presence"]
    payload: PresencePayload


# -- optimistic outcomes ("Optimistic Update Flow") -------------------------------------


class _OutcomePayload(_Model):
    update_id: str
    server_version: Lenient[StrictInt] = None
    current_server_version: Lenient[StrictInt] = None  # in rejections

    @property
    def version(self) -> int | None:
        """``serverVersion`` if the outcome names one, else ``currentServerVersion``."""
        if "server_version" in self.model_fields_set:
            return self.server_version
        return self.current_server_version


class ConfirmedPayload(_OutcomePayload):
    server_value: Any = Field(default=None, alias="confirmedValue")


class RejectedPayload(_OutcomePayload):
    server_value: Any = Field(default=None, alias="currentServerValue")


class RollbackPayload(_OutcomePayload):
    server_value: Any = Field(default=None, alias="rollbackToValue")


class OptimisticUpdateConfirmed(OutcomeEventBase):
    type: Literal["optimistic_update_confirmed"]
    payload: ConfirmedPayload


class OptimisticUpdateRejected(OutcomeEventBase):
    type: Literal["optimistic_update_rejected"]
    payload: RejectedPayload


class OptimisticUpdateRollback(OutcomeEventBase):
    type: Literal["optimistic_update_rollback"]
    payload: RollbackPayload


# -- errors ("System Events", "Error Response Format") ----------------------------------


class ErrorDetails(_Model):
    message_id: Lenient[StrictStr] = None  # the refused request's id
    trip_id: Lenient[StrictStr] = None


class ErrorPayload(_Model):
    details: Lenient[ErrorDetails] = None


class ErrorEvent(_Model):
    type: Literal["error"]
    payload: ErrorPayload


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event the client does not know (``type``), or cannot use (``reason``)."""

    type: str
    reason: str


ConnectionEvent = (
    ConnectionEstablished
    | ConnectionHeartbeat
    | AuthExpiring
    | AuthRefreshed
    | ConnectionErrorEvent
    | ConnectionClose
)
TripEvent = (
    CollaborationSessionStarted
    | TripUpdateBroadcast
    | TripSnapshot
    | SyncComplete
    | TripCollaboratorPresence
)
OutcomeEvent = OptimisticUpdateConfirmed | OptimisticUpdateRejected | OptimisticUpdateRollback
ServerEvent = ConnectionEvent | TripEvent | OutcomeEvent | ErrorEvent

_EVENTS: Final[TypeAdapter[ServerEvent]] = TypeAdapter(
    Annotated[ServerEvent, Field(discriminator="type")]
)
_UNKNOWN_TAG: Final = frozenset({"union_tag_invalid", "union_tag_not_found"})


def parse_event(event: dict[str, Any]) -> ServerEvent | UnknownEvent:
    """The typed event of a decoded one; never raises (see the module doc)."""
    type_ = event.get("type")
    # A missing or null payload reads as an empty one, as the spec's examples allow.
    frame = {"type": type_, "payload": event.get("payload") or {}}
    try:
        return _EVENTS.validate_python(frame)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors[0]["type"] in _UNKNOWN_TAG:
            logger.debug("unknown event type ignored")
            return UnknownEvent(str(type_), "unknown type")
        # Where and what, never the values (they may be document contents).
        reason = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['type']}" for e in errors)
        logger.warning("malformed %s ignored (%s)", type_, reason)
        return UnknownEvent(str(type_), reason)


def decode_frame(raw: str | bytes) -> list[dict[str, Any]] | None:
    """The events of a text frame, a ``batch`` unwrapped; ``None`` if it is not one."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("type") != "batch":
        return [message]
    payload = message.get("payload") or {}
    inner = payload.get("messages", []) if isinstance(payload, dict) else None
    if not isinstance(inner, list):
        return None
    events = [item for item in inner if isinstance(item, dict)]
    if len(events) < len(inner):
        logger.warning("batch: %d item(s) that are not events ignored", len(inner) - len(events))
    return events
