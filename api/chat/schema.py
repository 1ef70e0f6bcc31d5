"""The chat's HTTP operations and answers, for :mod:`api.transport.openapi`."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, RootModel

from tripsage_sync.api.transport.endpoints import SESSION_ID
from tripsage_sync.api.transport.openapi import HttpErrorEvent, Operation
from tripsage_sync.sync.chat.event import ChatMessageEventPayload
from tripsage_sync.sync.wire import AgentPublishedMessage
from tripsage_sync.sync.wire.base import Id
from tripsage_sync.sync.wire.payload import NotificationPayload, SystemMessagePayload

__all__ = ["OPERATIONS"]


class AgentEvents(BaseModel):
    events: list[AgentPublishedMessage]


class AgentEventsBody(RootModel[AgentPublishedMessage | list[AgentPublishedMessage] | AgentEvents]):
    """One agent event envelope, a JSON array of them, or ``{"events": [...]}``."""


class Accepted(BaseModel):
    """How many events were taken, and how many connections they reached."""

    accepted: int
    delivered: int


class MessagesPage(BaseModel):
    """Stored history, oldest first; ``after``/``before`` page by ``seq``."""

    sessionId: str
    messages: list[ChatMessageEventPayload]
    hasMore: bool
    firstSeq: int | None
    lastSeq: int | None


class Members(BaseModel):
    """Who may read the chat session besides its owner."""

    sessionId: str
    members: list[str]


class MemberRemoved(Members):
    removed: bool


class BroadcastRequest(BaseModel):
    type: Literal["notification", "system_message"]
    payload: NotificationPayload | SystemMessagePayload
    userId: Id | None = None
    channel: str | None = None


class Delivered(BaseModel):
    """How many connections the message reached."""

    delivered: int


_SESSION: Final = "/api/sessions/{sessionId}"
# Session and user ids in paths are held to one pattern.
_IDS: Final = {"sessionId": SESSION_ID.pattern, "userId": SESSION_ID.pattern}
_REFUSED: Final[dict[int, type[BaseModel] | str]] = {
    code: HttpErrorEvent for code in (400, 401, 403, 404, 413)
}

OPERATIONS: Final = (
    Operation(
        "POST",
        f"{_SESSION}/events",
        "Publish agent events (agents and admins), in order, as over WebSocket",
        {200: Accepted, **_REFUSED, 429: HttpErrorEvent},
        body=AgentEventsBody,
        tag="chat",
        patterns=_IDS,
    ),
    Operation(
        "GET",
        f"{_SESSION}/messages",
        "A page of the session's stored messages (members, agents, admins)",
        {200: MessagesPage, **_REFUSED},
        tag="chat",
        patterns=_IDS,
        query={
            "after": ("integer", "Page forward from this seq (default: from the start)"),
            "before": ("integer", "The newest messages before this seq"),
            "limit": ("integer", "At most this many (1-500, default 100)"),
        },
    ),
    Operation(
        "PUT",
        f"{_SESSION}/members/{{userId}}",
        "Share the session (its owner only)",
        {200: Members, **_REFUSED},
        tag="chat",
        patterns=_IDS,
    ),
    Operation(
        "DELETE",
        f"{_SESSION}/members/{{userId}}",
        "Take the session back from a user (its owner only); their connections lose it",
        {200: MemberRemoved, **_REFUSED},
        tag="chat",
        patterns=_IDS,
    ),
    Operation(
        "POST",
        "/api/broadcast",
        "notification or system_message to a user, a channel or everyone (admins)",
        {200: Delivered, **_REFUSED},
        body=BroadcastRequest,
        tag="chat",
    ),
)
