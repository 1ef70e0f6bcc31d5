"""client/events.py: every event the client reacts to parses from the spec's examples
(``websocket-api.md``; README for the events the spec does not have), and no frame,
however new or broken, makes parsing raise.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripsage_sync.client.events import (
    AuthExpiring,
    ConnectionClose,
    ConnectionEstablished,
    ConnectionHeartbeat,
    ErrorEvent,
    OptimisticUpdateRollback,
    ServerEvent,
    UnknownEvent,
    decode_frame,
    parse_event,
)

STAMP = "2025-05-28T01:30:00.000Z"

# The payloads of the spec's examples ("Connection Events", "System Events", "Trip
# Collaboration Events", "collaboration_session_start" Response, "Optimistic Update
# Flow"), and of the README ("Token refresh", "Resuming") for the others.
EXAMPLES: dict[str, dict[str, Any]] = {
    "connection_established": {
        "connectionId": "conn-789",
        "serverVersion": "1.0.0",
        "features": ["message_batching", "compression", "heartbeat"],
        "limits": {"maxMessageSize": 1048576, "maxConnections": 1000, "rateLimitPerMinute": 100},
    },
    "connection_heartbeat": {
        "connectionId": "conn-789",
        "serverTime": STAMP,
        "metrics": {"uptime": 3600, "messagesSent": 42, "messagesReceived": 38},
    },
    "auth_expiring": {"expiresAt": STAMP, "refreshBefore": STAMP, "expiresIn": 60},
    "auth_refreshed": {"expiresAt": STAMP},
    "connection_error": {
        "errorCode": "RATE_LIMITED",
        "message": "Rate limit exceeded. Please slow down.",
        "retryAfter": 60,
        "severity": "warning",
    },
    "connection_close": {
        "reason": "Server maintenance",
        "code": 1001,
        "gracePeriod": 30,
        "reconnectAfter": 120,
    },
    "collaboration_session_started": {
        "sessionId": "collab-session-abc123",
        "tripId": "trip-456",
        "activeCollaborators": 3,
        "yourPermissions": {"canEdit": True, "canInvite": False, "canDelete": False},
        "features": ["real_time_editing", "live_cursors", "typing_indicators"],
        "serverVersion": 15,
    },
    "trip_update_broadcast": {
        "tripId": "trip-456",
        "updatedBy": "user-789",
        "updateType": "field_change",
        "changes": {
            "destination": {
                "oldValue": "Paris, France",
                "newValue": "Rome, Italy",
                "fieldPath": "trip.destination",
            }
        },
        "version": 15,
        "timestamp": STAMP,
    },
    "trip_snapshot": {
        "tripId": "trip-456",
        "version": 15,
        "fields": {"destination": "Rome, Italy"},
        "reason": "history_compacted",
    },
    "sync_complete": {
        "tripId": "trip-456",
        "version": 15,
        "fromVersion": 14,
        "changes": 1,
        "snapshot": False,
        "requestId": "sync-7",
    },
    "trip_collaborator_presence": {
        "tripId": "trip-456",
        "activeCollaborators": [
            {
                "userId": "user-789",
                "userName": "Jane Doe",
                "avatarUrl": "https://example.com/avatar.jpg",
                "lastSeen": STAMP,
                "currentField": "budget",
                "isActive": True,
                "permissionLevel": "editor",
            },
            {
                "userId": "user-123",
                "userName": "John Smith",
                "avatarUrl": "https://example.com/avatar2.jpg",
                "lastSeen": "2025-05-28T01:29:45.000Z",
                "currentField": None,
                "isActive": True,
                "permissionLevel": "viewer",
            },
        ],
    },
    "optimistic_update_confirmed": {
        "updateId": "update-abc123",
        "tripId": "trip-456",
        "fieldName": "destination",
        "confirmedValue": "Rome, Italy",
        "serverVersion": 15,
        "processingTime": 245,
    },
    "optimistic_update_rejected": {
        "updateId": "update-abc123",
        "tripId": "trip-456",
        "fieldName": "destination",
        "rejectionReason": "version_conflict",
        "currentServerValue": "Milan, Italy",
        "currentServerVersion": 16,
        "expectedVersion": 14,
        "conflictingUpdate": {"userId": "user-789", "timestamp": "2025-05-28T01:29:58.000Z"},
        "suggestedResolution": "merge_required",
    },
    "optimistic_update_rollback": {
        "updateId": "update-abc123",
        "tripId": "trip-456",
        "fieldName": "destination",
        "rollbackToValue": "Paris, France",
        "rollbackReason": "server_error",
        "canRetry": True,
        "retryAfter": 1000,
    },
    "error": {
        "code": "INVALID_MESSAGE_FORMAT",
        "message": "Message payload is missing required field 'content'",
        "details": {"field": "content", "expected": "string", "received": "undefined"},
        "severity": "error",
    },
}


def event(type_: str, payload: Any) -> dict[str, Any]:
    return {"id": f"{type_}-123", "type": type_, "timestamp": STAMP, "payload": payload}


def test_every_model_has_an_example() -> None:
    parsed = {type(parse_event(event(t, p))) for t, p in EXAMPLES.items()}
    assert parsed == set(typing.get_args(ServerEvent))


@pytest.mark.parametrize("type_", sorted(EXAMPLES))
def test_the_examples_parse(type_: str) -> None:
    parsed = parse_event(event(type_, EXAMPLES[type_]))
    assert not isinstance(parsed, UnknownEvent), parsed
    assert parsed.type == type_


def test_what_the_client_reads() -> None:
    def parsed(type_: str, **changes: Any) -> Any:
        result: Any = parse_event(event(type_, {**EXAMPLES[type_], **changes}))
        return result.payload

    assert parsed("connection_established").limits.heartbeat_interval is None
    limits = parsed("connection_established", limits={"heartbeatInterval": 25}).limits
    assert limits.heartbeat_interval == 25.0
    assert parsed("connection_close").reconnect_after == 120.0
    assert parsed("connection_error", errorCode="TOKEN_EXPIRED").error_code == "TOKEN_EXPIRED"
    assert parsed("auth_refreshed").expires_at == STAMP
    started = parsed("collaboration_session_started")
    assert (started.trip_id, started.current_version, started.fields) == ("trip-456", 15, {})
    # What this server sends besides the spec's fields: version, fields, permissionLevel.
    ours = parsed(
        "collaboration_session_started", version=16, fields={"a": 1}, permissionLevel="owner"
    )
    assert (ours.current_version, ours.fields, ours.permission_level) == (16, {"a": 1}, "owner")
    broadcast = parsed("trip_update_broadcast")
    assert broadcast.changes["destination"].new_value == "Rome, Italy"
    assert parsed("sync_complete").request_id == "sync-7"
    assert len(parsed("trip_collaborator_presence").active_collaborators) == 2
    confirmed = parsed("optimistic_update_confirmed")
    assert (confirmed.update_id, confirmed.server_value, confirmed.version) == (
        "update-abc123",
        "Rome, Italy",
        15,
    )
    rejected = parsed("optimistic_update_rejected")
    assert (rejected.server_value, rejected.version) == ("Milan, Italy", 16)
    rollback = parsed("optimistic_update_rollback")
    assert (rollback.server_value, rollback.version) == ("Paris, France", None)
    assert parsed("error", details={"messageId": "join-t-1", "tripId": "t"}).details.trip_id == "t"


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"type": None},
        {"type": ["not", "a", "tag"]},
        event("brand_new_event", {"anything": [1, 2]}),
        event("trip_snapshot", {"tripId": 5}),  # no version, no fields, tripId not a string
        event("trip_update_broadcast", {"tripId": "t", "version": "fifteen"}),
        event("trip_update_broadcast", {"tripId": "t", "version": 2, "changes": [1]}),
        event("sync_complete", {"tripId": "t"}),
        event("optimistic_update_confirmed", {"serverVersion": 3}),  # no updateId
        event("connection_established", ["not", "an", "object"]),
        event("trip_collaborator_presence", "present"),
        event("collaboration_session_started", {"tripId": "t", "fields": "many"}),
    ],
)
def test_unknown_and_malformed_events_do_not_raise(frame: dict[str, Any]) -> None:
    parsed = parse_event(frame)
    assert isinstance(parsed, UnknownEvent)
    assert parsed.type == str(frame.get("type"))


def test_optional_fields_degrade_alone() -> None:
    """A field the client can do without spoils only itself, never its event."""
    limits = {"heartbeatInterval": "x"}
    established = parse_event(event("connection_established", {"limits": limits}))
    assert isinstance(established, ConnectionEstablished)
    assert established.payload.limits is not None
    assert established.payload.limits.heartbeat_interval is None
    close = parse_event(event("connection_close", {"reconnectAfter": None}))
    assert isinstance(close, ConnectionClose)
    assert close.payload.reconnect_after is None
    error = parse_event(event("error", {"code": "X", "details": None}))
    assert isinstance(error, ErrorEvent)
    assert error.payload.details is None
    rollback = {"updateId": "u", "serverVersion": 1.5}
    outcome = parse_event(event("optimistic_update_rollback", rollback))
    assert isinstance(outcome, OptimisticUpdateRollback)
    assert outcome.payload.version is None
    # A missing or null payload reads as an empty one.
    assert isinstance(parse_event({"type": "connection_heartbeat"}), ConnectionHeartbeat)
    assert isinstance(parse_event(event("auth_expiring", None)), AuthExpiring)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["tripId", "version", "fields", "changes", "updateId", "serverVersion", "limits", "details"]
)


@given(
    type_=st.sampled_from([*EXAMPLES, "batch", "brand_new_event"]),
    payload=json_values | st.dictionaries(field_names, json_values, max_size=4),
)
def test_no_payload_makes_parsing_raise(type_: str, payload: Any) -> None:
    parse_event(event(type_, payload))


def test_decode_frame() -> None:
    one = event("connection_heartbeat", {})
    assert decode_frame(json.dumps(one)) == [one]
    assert decode_frame(json.dumps(one).encode()) == [one]
    batch = {"type": "batch", "payload": {"messages": [one, "not an event", one]}}
    assert decode_frame(json.dumps(batch)) == [one, one]
    assert decode_frame(json.dumps({"type": "batch", "payload": {}})) == []
    assert decode_frame("not json") is None
    assert decode_frame("[1, 2]") is None
    assert decode_frame(json.dumps({"type": "batch", "payload": {"messages": 7}})) is None
