"""The router: every client message to the part of the server that serves it.

One ``match`` over the classes of :data:`sync.wire.ClientMessage`, a ``case`` per
class and ``assert_never`` at the end, so that a new message type does not
type-check until it is routed and every handler receives its concrete class
(``on_optimistic_update(conn, message: OptimisticUpdateStartMessage)``): no
``Any`` from the wire reaches one. The connection's own messages (heartbeat,
subscriptions, ``auth_refresh``) go back to the :class:`Connection`; the others to
the feature wings. The router sits above the wings (the layers contract in
``pyproject.toml``): the transport wing, which calls it, never imports a feature.

A feature this server does not run (``None`` here), and a ``batch`` (which the
connection unwraps before dispatch), get ``SERVER_ERROR``: "'x' is not available
on this server yet".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, assert_never

from tripsage_sync.api.chat.feature import ChatFeature
from tripsage_sync.api.ops.feature import OpsFeature
from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.trips.conflicts import ConflictResolution
from tripsage_sync.api.trips.feature import TripFeature
from tripsage_sync.api.trips.locks import FieldLocks
from tripsage_sync.api.trips.optimistic import OptimisticUpdates
from tripsage_sync.api.trips.resume import ResumeFeature
from tripsage_sync.sync.errors import ServerError
from tripsage_sync.sync.wire import (
    AgentStatusUpdateMessage,
    AgentTaskCompleteMessage,
    AgentTaskProgressMessage,
    AgentTaskStartMessage,
    AuthRefreshMessage,
    BatchMessage,
    ChatMessage,
    ChatMessageChunkMessage,
    ChatMessageCompleteMessage,
    ChatTypingStartMessage,
    ChatTypingStopMessage,
    ClientMessage,
    CollaborationSessionStartMessage,
    ConflictResolutionSubmitMessage,
    ConnectionHealthMessage,
    ConnectionHeartbeatMessage,
    Envelope,
    NotificationMessage,
    OptimisticUpdateStartMessage,
    PerformanceMetricsMessage,
    ServerHealthMessage,
    SubscribeMessage,
    SyncRequestMessage,
    SystemMessage,
    ToolCallCompleteMessage,
    ToolCallErrorMessage,
    ToolCallProgressMessage,
    ToolCallStartMessage,
    TripCollaborationJoinMessage,
    TripCollaborationLeaveMessage,
    TripFieldEditingStartMessage,
    TripFieldEditingStopMessage,
    UnsubscribeMessage,
    UserTypingMessage,
)

__all__ = ["Router"]

F = TypeVar("F")


def _unavailable(message: Envelope) -> ServerError:
    return ServerError(
        f"'{message.type}' is not available on this server yet", details={"type": message.type}
    )


def _served(feature: F | None, message: Envelope) -> F:
    """The feature that serves ``message``; refused when this server does not run it."""
    if feature is None:
        raise _unavailable(message)
    return feature


@dataclass(frozen=True, kw_only=True, slots=True)
class Router:
    """The features that serve client messages (those this server runs); called as the
    :class:`api.transport.services.Services` ``dispatch``."""

    trips: TripFeature | None = None
    locks: FieldLocks | None = None
    optimistic: OptimisticUpdates | None = None
    conflicts: ConflictResolution | None = None
    resume: ResumeFeature | None = None
    chat: ChatFeature | None = None
    ops: OpsFeature | None = None

    async def __call__(self, conn: Connection, message: ClientMessage) -> None:
        match message:
            # The connection's own (websocket-api.md "Connection Events", "Channels").
            case ConnectionHeartbeatMessage():
                conn.on_heartbeat(message)
            case SubscribeMessage():
                await conn.on_subscribe(message)
            case UnsubscribeMessage():
                await conn.on_unsubscribe(message)
            case AuthRefreshMessage():
                conn.on_auth_refresh(message)
            case BatchMessage():  # unwrapped before dispatch; never nested
                raise _unavailable(message)
            # Trips ("Real-time Collaboration", "Optimistic Updates", "Conflict Resolution").
            case CollaborationSessionStartMessage() | TripCollaborationJoinMessage():
                await _served(self.trips, message).on_session_start(conn, message)
            case TripCollaborationLeaveMessage():
                await _served(self.trips, message).on_leave(conn, message)
            case TripFieldEditingStartMessage():
                await _served(self.locks, message).on_editing_start(conn, message)
            case TripFieldEditingStopMessage():
                await _served(self.locks, message).on_editing_stop(conn, message)
            case OptimisticUpdateStartMessage():
                await _served(self.optimistic, message).on_optimistic_update(conn, message)
            case ConflictResolutionSubmitMessage():
                await _served(self.conflicts, message).on_resolution_submit(conn, message)
            case SyncRequestMessage():
                await _served(self.resume, message).on_sync_request(conn, message)
            # Chat ("Chat Events"), and what agents and admins publish.
            case ChatMessage():
                await _served(self.chat, message).on_chat_message(conn, message)
            case ChatTypingStartMessage() | ChatTypingStopMessage() | UserTypingMessage():
                await _served(self.chat, message).on_typing(conn, message)
            case (
                ChatMessageChunkMessage()
                | ChatMessageCompleteMessage()
                | ToolCallStartMessage()
                | ToolCallProgressMessage()
                | ToolCallCompleteMessage()
                | ToolCallErrorMessage()
                | AgentStatusUpdateMessage()
                | AgentTaskStartMessage()
                | AgentTaskProgressMessage()
                | AgentTaskCompleteMessage()
            ):
                await _served(self.chat, message).on_agent_event(conn, message)
            case NotificationMessage() | SystemMessage():
                await _served(self.chat, message).on_system_event(conn, message)
            # Ops ("System Events").
            case ConnectionHealthMessage():
                await _served(self.ops, message).on_connection_health(conn, message)
            case PerformanceMetricsMessage():
                await _served(self.ops, message).on_performance_metrics(conn, message)
            case ServerHealthMessage():
                await _served(self.ops, message).on_server_health(conn, message)
            case _:
                assert_never(message)
