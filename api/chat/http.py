"""HTTP routes of the chat feature (Bearer JWT on every request).

- ``POST /api/sessions/{sessionId}/events``: an agent or admin publishes agent
  events (one envelope, a JSON array of them, or ``{"events": [...]}``), in
  order, exactly as over WebSocket. Every event is validated before any is
  applied. 200 ``{"accepted": n, "delivered": connections}``.
- ``GET /api/sessions/{sessionId}/messages?after=SEQ&before=SEQ&limit=N``:
  stored history, oldest first; ``after`` pages forward (default: from the
  start), ``before`` pages backward (the newest ``limit`` before it). Members,
  agents and admins only.
- ``PUT``/``DELETE /api/sessions/{sessionId}/members/{userId}``: the owner
  shares the session or takes it back (live connections of a removed user
  lose access at once).
- ``POST /api/broadcast``: an admin sends ``notification``/``system_message``
  to ``userId``, ``channel`` or, with neither, everyone connected.

Errors use the ``error`` event's payload (``code``, ``message``, ``details``)
under ``error``, with 400/401/403/404/413 statuses. A session that does not
exist is refused to users like one they may not read (403), so ids do not leak.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tripsage_sync.api.chat.feature import ChatFeature
from tripsage_sync.api.transport.endpoints import SESSION_ID
from tripsage_sync.api.transport.http_body import read_body
from tripsage_sync.api.transport.services import Services
from tripsage_sync.sync.channels import Principal
from tripsage_sync.sync.errors import (
    AuthError,
    ChannelNotFound,
    InvalidMessage,
    MessageTooLarge,
    NotFound,
    PermissionDenied,
    RateLimited,
    SyncError,
)
from tripsage_sync.sync.events import error_event
from tripsage_sync.sync.wire import (
    AgentPublishedMessage,
    SystemEventMessage,
    parse_client_message,
    parse_client_value,
)

__all__ = ["ChatHttp", "chat_routes"]

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST: Final = 1000
MAX_PAGE: Final = 500
DEFAULT_PAGE: Final = 100
BROADCASTABLE: Final = frozenset({"notification", "system_message"})

_STATUS: Final[dict[type[SyncError], int]] = {
    AuthError: 401,
    PermissionDenied: 403,
    NotFound: 404,
    ChannelNotFound: 404,
    InvalidMessage: 400,
    MessageTooLarge: 413,
    RateLimited: 429,
}


def _status(exc: SyncError) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _error_response(exc: SyncError) -> JSONResponse:
    payload = error_event(exc, now_ms=0).payload.wire()
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    return JSONResponse({"error": payload}, status_code=_status(exc), headers=headers)


Endpoint = Callable[[Request], Awaitable[Response]]


class ChatHttp:
    """The chat's HTTP API: a :class:`api.transport.services.Feature` composed on the
    :class:`ChatFeature` it publishes through."""

    def __init__(self, chat: ChatFeature) -> None:
        self.chat = chat

    def routes(self) -> list[BaseRoute]:
        return chat_routes(self.chat)

    async def start(self, services: Services) -> None:
        """Nothing to start: the chat feature holds the state."""

    async def stop(self) -> None:
        """Nothing to stop."""


def chat_routes(feature: ChatFeature) -> list[BaseRoute]:
    def guarded(handler: Callable[[Request], Awaitable[dict[str, Any]]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request))
            except SyncError as exc:
                logger.info("%s %s refused: %s", request.method, request.url.path, exc.code)
                return _error_response(exc)

        return endpoint

    def principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Missing bearer token", code="AUTH_FAILED")
        return feature.services.authority.verify(token.strip())

    def session_id(request: Request) -> str:
        value: str = request.path_params["session_id"]
        if not SESSION_ID.match(value):
            raise InvalidMessage(
                "Invalid session id", details={"field": "sessionId", "received": value[:128]}
            )
        return value

    async def body(request: Request) -> Any:
        limit = feature.settings.max_message_size
        raw = await read_body(request, limit)
        try:
            return json.loads(raw)
        except ValueError:
            raise InvalidMessage(
                "Body is not valid JSON",
                details={"field": "", "expected": "JSON", "received": "invalid JSON"},
            ) from None

    async def post_events(request: Request) -> dict[str, Any]:
        who = principal(request)
        if not who.is_privileged:
            raise PermissionDenied("Only agents and admins publish agent events")
        sid = session_id(request)
        data = await body(request)
        items = data.get("events") if isinstance(data, dict) and "type" not in data else data
        items = items if isinstance(items, list) else [items]
        if not 0 < len(items) <= MAX_EVENTS_PER_REQUEST:
            raise InvalidMessage(
                f"Send 1 to {MAX_EVENTS_PER_REQUEST} events",
                details={"field": "events", "received": len(items)},
            )
        messages: list[AgentPublishedMessage] = []
        for item in items:
            message = parse_client_value(item)
            if not isinstance(message, AgentPublishedMessage):  # agent events, chat_message
                raise InvalidMessage(
                    f"'{message.type}' is not an agent event",
                    details={
                        "field": "type",
                        "expected": "an agent event",
                        "received": message.type,
                    },
                )
            if message.sessionId is not None and message.sessionId != sid:
                raise InvalidMessage(
                    "sessionId does not match the URL",
                    details={"field": "sessionId", "expected": sid, "received": message.sessionId},
                )
            messages.append(message)
        delivered = 0
        for message in messages:
            delivered += await feature.publish_agent_event(who, message, sid)
        # The request is one batch already: its chunks go out now, not a window later.
        delivered += feature.relay.flush(sid)
        return {"accepted": len(messages), "delivered": delivered}

    async def get_messages(request: Request) -> dict[str, Any]:
        who = principal(request)
        sid = session_id(request)
        members = await feature.services.chat_members(sid)
        if members is None and who.is_privileged:
            raise NotFound("No such chat session", details={"sessionId": sid})
        if members is None or (who.user_id not in members and not who.is_privileged):
            raise PermissionDenied("Not a member of this chat session")
        query = request.query_params
        limit = min(_int(query, "limit", DEFAULT_PAGE, low=1), MAX_PAGE)
        store = feature.store
        if "before" in query:
            before = _int(query, "before", 0, low=1)
            page = store.chat_messages_before(sid, before_seq=before, limit=limit + 1)
            has_more, page = len(page) > limit, page[-limit:]
        else:
            after = _int(query, "after", 0, low=0)
            page = store.chat_messages(sid, after_seq=after, limit=limit + 1)
            has_more, page = len(page) > limit, page[:limit]
        return {
            "sessionId": sid,
            "messages": [feature.message_event(m).payload.wire() for m in page],
            "hasMore": has_more,
            "firstSeq": page[0].seq if page else None,
            "lastSeq": page[-1].seq if page else None,
        }

    async def owned_session(request: Request) -> tuple[str, str]:
        who = principal(request)
        sid = session_id(request)
        if feature.store.chat_session_owner(sid) != who.user_id:
            raise PermissionDenied("Only the owner shares this chat session")
        user_id: str = request.path_params["user_id"]
        if not SESSION_ID.match(user_id):
            raise InvalidMessage(
                "Invalid user id", details={"field": "userId", "received": user_id[:128]}
            )
        return sid, user_id

    async def put_member(request: Request) -> dict[str, Any]:
        sid, user_id = await owned_session(request)
        await feature.services.write(feature.store.share_chat_session(sid, user_id))
        logger.info("session %s shared with %s", sid, user_id)
        return {"sessionId": sid, "members": sorted(feature.store.chat_session_members(sid))}

    async def delete_member(request: Request) -> dict[str, Any]:
        sid, user_id = await owned_session(request)
        removed = await feature.services.write(feature.store.unshare_chat_session(sid, user_id))
        cut = feature.revoke(sid, user_id) if removed else 0
        logger.info("session %s unshared with %s (%d connection(s) cut)", sid, user_id, cut)
        return {
            "sessionId": sid,
            "removed": removed,
            "members": sorted(feature.store.chat_session_members(sid)),
        }

    async def member(request: Request) -> dict[str, Any]:
        return await (put_member if request.method == "PUT" else delete_member)(request)

    async def post_broadcast(request: Request) -> dict[str, Any]:
        who = principal(request)
        if who.role != "admin":
            raise PermissionDenied("Only admins broadcast")
        data = await body(request)
        if not isinstance(data, dict):
            raise InvalidMessage("Body must be a JSON object", details={"field": ""})
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in BROADCASTABLE:
            raise InvalidMessage(
                "type must be 'notification' or 'system_message'",
                details={"field": "type", "expected": sorted(BROADCASTABLE)},
            )
        channel = data.get("channel")
        if channel is not None and not isinstance(channel, str):
            raise InvalidMessage("channel must be a string", details={"field": "channel"})
        message = parse_client_message(
            {"type": data["type"], "payload": data.get("payload"), "userId": data.get("userId")}
        )
        assert isinstance(message, SystemEventMessage)  # its type is checked above
        delivered = feature.broadcast(who, message, user_id=message.userId, channel=channel)
        return {"delivered": delivered}

    prefix = "/api/sessions/{session_id}"
    return [
        Route(f"{prefix}/events", guarded(post_events), methods=["POST"]),
        Route(f"{prefix}/messages", guarded(get_messages), methods=["GET"]),
        # One route for both methods, so that a 405 allows both.
        Route(f"{prefix}/members/{{user_id}}", guarded(member), methods=["PUT", "DELETE"]),
        Route("/api/broadcast", guarded(post_broadcast), methods=["POST"]),
    ]


def _int(query: Any, name: str, default: int, *, low: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        raise InvalidMessage(
            f"'{name}' must be an integer of at least {low}",
            details={"field": name, "expected": "integer", "received": str(raw)[:32]},
        )
    return value
