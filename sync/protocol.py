"""The AsyncAPI 3 document of the WebSocket endpoints, generated from the wire models.

Theory of operation
-------------------
Nothing here is a hand-written schema: every schema under
``components.schemas`` is pydantic's JSON Schema (2020-12, the dialect
OpenAPI 3.1 also uses) of a model the server itself parses with or sends:

- each client message: its envelope class from :data:`sync.wire.MESSAGE_MODELS`
  in *validation* mode, i.e. what the server accepts (fields it ignores are
  allowed, as the server ignores them);
- each server event: the envelope (``id``, ``type``, ``timestamp``, optional
  ``sessionId`` and ``userId``, see :func:`sync.wire.encode`) around the one
  payload model registered for its type in :data:`sync.wire.EVENT_PAYLOADS`,
  in *serialization* mode, i.e. what the server sends;
- the first frame (:class:`~sync.wire.payload.AuthRequest`), its answer
  (:class:`~sync.wire.payload.AuthResponse`), and the ``batch`` envelope the
  server sends to clients that asked for ``message_batching``.

The error codes and close codes come from :mod:`sync.errors` and
:mod:`sync.ysync`. :func:`asyncapi_document` is a pure function of the models
(sorted, so the same models give the same bytes); the server serves it at
``/asyncapi.json`` and ``docs/asyncapi.json`` is its committed copy
(``tripsage-sync schema``; a test keeps the two equal).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import JsonSchemaMode, SkipJsonSchema, models_json_schema

from tripsage_sync.sync import chat as _chat  # noqa: F401  (registers its event payloads)
from tripsage_sync.sync import collaboration as _collaboration  # noqa: F401
from tripsage_sync.sync import events as _events  # noqa: F401
from tripsage_sync.sync import health as _health  # noqa: F401
from tripsage_sync.sync.errors import (
    CLOSE_ABNORMAL,
    CLOSE_AUTH_FAILED,
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_RATE_LIMITED,
    CLOSE_SERVER_ERROR,
)
from tripsage_sync.sync.wire import EVENT_PAYLOADS, MESSAGE_MODELS
from tripsage_sync.sync.wire.envelope import Envelope
from tripsage_sync.sync.wire.eventpayload import EventPayload
from tripsage_sync.sync.wire.payload import AuthRequest, AuthResponse
from tripsage_sync.sync.ysync import YJS_CLOSE_CODES

__all__ = ["ASYNCAPI_VERSION", "CLOSE_CODES", "ERROR_CODES", "REF_TEMPLATE", "asyncapi_document"]

ASYNCAPI_VERSION: Final = "3.1.0"
REF_TEMPLATE: Final = "#/components/schemas/{model}"

# websocket-api.md "Error Codes": code -> (description, what the client should do).
ERROR_CODES: Final = {
    "AUTH_FAILED": ("Authentication failed", "Re-authenticate"),
    "INVALID_TOKEN": ("JWT token invalid", "Refresh token"),
    "TOKEN_EXPIRED": ("JWT token expired", "Refresh token"),
    "RATE_LIMITED": ("Rate limit exceeded", "Slow down requests (retryAfter)"),
    "INVALID_MESSAGE_FORMAT": ("Message format error", "Fix message structure"),
    "CHANNEL_NOT_FOUND": ("Channel doesn't exist", "Check channel name"),
    "PERMISSION_DENIED": ("Insufficient permissions", "Check user access"),
    "CONNECTION_LIMIT_EXCEEDED": ("Too many connections", "Close unused connections"),
    "MESSAGE_TOO_LARGE": ("Message exceeds size limit", "Reduce message size"),
    "NOT_FOUND": ("No such trip, session or message (extension)", "Check the id"),
    "SERVER_ERROR": ("Internal server error", "Retry later"),
}
# "Connection Close Codes" of the JSON endpoints: code -> (description, reconnect?).
CLOSE_CODES: Final = {
    CLOSE_NORMAL: ("Normal closure", False),
    CLOSE_GOING_AWAY: ("Going away: shutdown (after connection_close), idle, slow consumer", True),
    CLOSE_ABNORMAL: ("Abnormal closure: the socket dropped (never sent by the server)", True),
    CLOSE_POLICY_VIOLATION: (
        "Policy violation: another user's chat session, per-user connection cap, bad session id",
        False,
    ),
    CLOSE_MESSAGE_TOO_BIG: ("Message too large", False),
    CLOSE_SERVER_ERROR: ("Server error, or a peer silent for TRIPSAGE_PEER_TIMEOUT_S", True),
    CLOSE_AUTH_FAILED: (
        "Authentication failed or timed out, or the token expired (a fresh token may reconnect)",
        False,
    ),
    CLOSE_RATE_LIMITED: ("Rate limited or server full: reconnect after retryAfter", True),
}


class ServerEnvelope(BaseModel):
    """The envelope of every server event ("Base Message Structure")."""

    model_config = ConfigDict(title="ServerEnvelope")

    id: str
    type: str
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    sessionId: str | SkipJsonSchema[None] = None
    userId: str | SkipJsonSchema[None] = None


def _literal(value: str) -> Any:
    """``Literal[value]`` for a value known only at run time."""
    return Literal[value]


def _event_name(payload: type[EventPayload]) -> str:
    return payload.__name__.removesuffix("Payload") + "Event"


def _event_models() -> dict[str, type[BaseModel]]:
    """Event type -> the envelope model around its one payload model."""
    models: dict[str, type[BaseModel]] = {}
    for event_type, payload in sorted(EVENT_PAYLOADS.items()):
        models[event_type] = create_model(
            _event_name(payload),
            __base__=ServerEnvelope,
            __doc__=(payload.__doc__ or f"The ``{event_type}`` event.").strip(),
            type=(_literal(event_type), ...),
            payload=(payload, ...),
        )
    return models


def _batch_model(events: dict[str, type[BaseModel]]) -> type[BaseModel]:
    union: Any = None
    for model in events.values():
        union = model if union is None else union | model
    payload = create_model(
        "ServerBatchPayload",
        __doc__="Consecutive events in one frame, each as it would be sent alone.",
        messages=(list[union], ...),
    )
    return create_model(
        "ServerBatchEvent",
        __base__=ServerEnvelope,
        __doc__="Sent instead of single events to a client that asked for message_batching.",
        type=(_literal("batch"), ...),
        payload=(payload, ...),
    )


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().split("\n\n")[0].replace("\n", " ")


def _code_schema(title: str, codes: dict[Any, tuple[str, Any]], extra: str) -> dict[str, Any]:
    return {
        "title": title,
        "oneOf": [
            {"const": code, "description": f"{text}. {extra}: {_word(then)}"}
            for code, (text, then) in codes.items()
        ],
    }


def _word(then: str | bool) -> str:
    if isinstance(then, bool):
        return "yes" if then else "no"
    return then


def _message(name: str, schema: str, summary: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": REF_TEMPLATE.format(model=schema)},
    }


def asyncapi_document(*, version: str) -> dict[str, Any]:
    """The AsyncAPI 3 document of ``/ws/chat``, ``/ws/agent-status`` and ``/ws/yjs``."""
    events = _event_models()
    batch = _batch_model(events)
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(AuthRequest, "validation")]
    inputs += [(model, "validation") for _, model in sorted(MESSAGE_MODELS.items())]
    inputs += [(Envelope, "validation"), (ServerEnvelope, "serialization")]
    inputs += [(AuthResponse, "serialization"), (batch, "serialization")]
    inputs += [(model, "serialization") for model in events.values()]
    refs, top = models_json_schema(inputs, ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(sorted(top["$defs"].items()))
    schemas["ErrorCode"] = _code_schema("ErrorCode", ERROR_CODES, "Action")
    schemas["CloseCode"] = _code_schema("CloseCode", CLOSE_CODES, "Reconnect")
    schemas["YjsCloseCode"] = _code_schema("YjsCloseCode", YJS_CLOSE_CODES, "Reconnect")

    def ref_name(model: type[BaseModel], mode: JsonSchemaMode) -> str:
        return str(refs[(model, mode)]["$ref"]).rsplit("/", 1)[-1]

    messages: dict[str, Any] = {
        "auth": _message("auth", ref_name(AuthRequest, "validation"), _summary(AuthRequest)),
        "auth_response": _message(
            "auth_response", ref_name(AuthResponse, "serialization"), _summary(AuthResponse)
        ),
    }
    client = ["auth"]
    for message_type, client_model in sorted(MESSAGE_MODELS.items()):
        key = f"client.{message_type}"
        messages[key] = _message(
            message_type, ref_name(client_model, "validation"), _summary(client_model)
        )
        client.append(key)
    server = ["auth_response", "server.batch"]
    messages["server.batch"] = _message("batch", ref_name(batch, "serialization"), _summary(batch))
    for event_type, model in events.items():
        key = f"server.{event_type}"
        messages[key] = _message(event_type, ref_name(model, "serialization"), _summary(model))
        server.append(key)
    messages["yjs.frame"] = {
        "name": "yjs_frame",
        "title": "y-websocket frame",
        "summary": "One binary y-websocket frame (sync step 1/2, update, awareness, auth).",
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "format": "binary"},
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "TripSage Sync WebSocket API",
            "version": version,
            "description": (
                "Generated from the server's pydantic models. The JSON endpoints take an "
                "auth frame first ({token, sessionId, channels}), answer it with an "
                "auth_response, then exchange envelopes. Error events carry an ErrorCode; "
                "connections end with a CloseCode (YjsCloseCode on /ws/yjs)."
            ),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "localhost:8000", "protocol": "ws", "description": "serve"}},
        "channels": {
            "chat": _json_channel("/ws/chat/{sessionId}", "Chat, trips, presence", messages),
            "agentStatus": _json_channel(
                "/ws/agent-status/{sessionId}", "Agent status (the same protocol)", messages
            ),
            "yjs": {
                "address": "/ws/yjs/{tripId}",
                "description": "Stock y-websocket peers; the JWT is the token query parameter.",
                "parameters": {"tripId": {"description": "The trip's id."}},
                "messages": {"yjs.frame": {"$ref": "#/components/messages/yjs.frame"}},
                "bindings": {
                    "ws": {
                        "query": {
                            "type": "object",
                            "required": ["token"],
                            "properties": {"token": {"type": "string"}},
                        }
                    }
                },
            },
        },
        "operations": {
            **_operations("chat", client, server),
            **_operations("agentStatus", client, server),
            **_operations("yjs", ["yjs.frame"], ["yjs.frame"]),
        },
        "components": {"schemas": schemas, "messages": messages},
    }


def _json_channel(address: str, description: str, messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "parameters": {"sessionId": {"description": "The chat session's id."}},
        "messages": {
            key: {"$ref": f"#/components/messages/{key}"}
            for key in messages
            if not key.startswith("yjs.")
        },
    }


def _operations(channel: str, client: list[str], server: list[str]) -> dict[str, Any]:
    """What the server receives and sends on ``channel`` (the document describes it)."""

    def refs(keys: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{key}"} for key in keys]

    return {
        f"{channel}.receive": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": "What clients send.",
            "messages": refs(client),
        },
        f"{channel}.send": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": "What the server sends.",
            "messages": refs(server),
        },
    }
