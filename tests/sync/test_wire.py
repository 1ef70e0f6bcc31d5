"""Unit tests of sync.wire: parsing, validation details, envelopes."""

from __future__ import annotations

import json
from typing import ClassVar, get_args

import pytest
from pydantic import TypeAdapter

from tripsage_sync.sync import collaboration, events, health
from tripsage_sync.sync.chat import ChatTypingStartPayload
from tripsage_sync.sync.errors import InvalidMessage
from tripsage_sync.sync.wire import (
    AGENT_EVENT_TYPES,
    CLIENT_MESSAGE_TYPES,
    EVENT_PAYLOADS,
    MESSAGE_MODELS,
    AnyClientMessage,
    BatchMessage,
    ClientMessage,
    CollaborationSessionStartMessage,
    ConflictResolutionSubmitMessage,
    EventPayload,
    InvalidUpdate,
    OptimisticUpdateRejectedPayload,
    OptimisticUpdateRollbackPayload,
    OptimisticUpdateStartMessage,
    encode,
    iso_ms,
    make_event,
    message_id_of,
    parse_auth_request,
    parse_client_message,
    parse_client_value,
    parse_iso_ms,
    read_outcome,
    stored_outcome,
)


def test_iso_ms_round_trip() -> None:
    assert iso_ms(1_748_395_800_123) == "2025-05-28T01:30:00.123Z"
    assert parse_iso_ms("2025-05-28T01:30:00.123Z") == 1_748_395_800_123
    assert parse_iso_ms("2025-05-28T01:30:00") == 1_748_395_800_000
    with pytest.raises(InvalidMessage):
        parse_iso_ms("yesterday")


def test_every_spec_client_event_has_a_model() -> None:
    spec_client_events = {
        "chat_message",
        "chat_typing_start",
        "chat_typing_stop",
        "trip_collaboration_join",
        "trip_collaboration_leave",
        "trip_field_editing_start",
        "trip_field_editing_stop",
        "collaboration_session_start",
        "optimistic_update_start",
        "conflict_resolution_submit",
        "connection_heartbeat",
        "subscribe",
        "batch",
    }
    assert spec_client_events <= set(CLIENT_MESSAGE_TYPES)
    assert AGENT_EVENT_TYPES <= set(CLIENT_MESSAGE_TYPES)


def test_spec_examples_parse() -> None:
    message = parse_client_message(
        {
            "type": "collaboration_session_start",
            "payload": {
                "tripId": "trip-456",
                "features": ["real_time_editing", "live_cursors", "typing_indicators"],
                "preferences": {"conflictResolution": "manual", "autoSave": True},
            },
        }
    )
    assert isinstance(message, CollaborationSessionStartMessage)
    assert message.payload.tripId == "trip-456"
    update = parse_client_message(
        {
            "id": "opt-update-123",
            "type": "optimistic_update_start",
            "timestamp": "2025-05-28T01:30:00.000Z",
            "payload": {
                "updateId": "update-abc123",
                "tripId": "trip-456",
                "fieldName": "destination",
                "optimisticValue": "Rome, Italy",
                "previousValue": "Paris, France",
                "expectedVersion": 14,
                "clientTimestamp": "2025-05-28T01:30:00.000Z",
            },
        }
    )
    assert isinstance(update, OptimisticUpdateStartMessage)
    assert update.payload.expectedVersion == 14
    resolution = parse_client_message(
        {
            "type": "conflict_resolution_submit",
            "payload": {"conflictId": "c", "chosenOptionId": "option-2", "customValue": None},
        }
    )
    assert isinstance(resolution, ConflictResolutionSubmitMessage)
    assert resolution.payload.chosenOptionId == "option-2"


@pytest.mark.parametrize(
    ("data", "field", "expected", "received"),
    [
        ({"payload": {}}, "type", "string", "undefined"),
        ({"type": 5}, "type", "string", "integer"),
        ({"type": "subscribe"}, "payload", "object", "undefined"),
        (
            {"type": "subscribe", "payload": {"channels": "global"}},
            "payload.channels",
            "array",
            "string",
        ),
        (
            {"type": "chat_message", "payload": {"content": None}},
            "payload.content",
            "string",
            "null",
        ),
        (
            {"type": "optimistic_update_start", "payload": {"tripId": "t"}},
            "payload.updateId",
            "string",
            "undefined",
        ),
    ],
)
def test_validation_details(
    data: dict[str, object], field: str, expected: str, received: str
) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_client_message(data)
    assert info.value.details == {"field": field, "expected": expected, "received": received}
    assert info.value.code == "INVALID_MESSAGE_FORMAT"


def test_batch_items_are_validated_one_by_one() -> None:
    # The spec's batch example: user_typing is a known type (chat_typing_start's alias).
    items = [
        {"id": "msg-1", "type": "chat_message", "payload": {"content": "Hello"}},
        {"id": "msg-2", "type": "user_typing", "payload": {"userId": "user-456"}},
        "not an object",
        {"id": "msg-4", "type": "user_typed", "payload": {}},
    ]
    batch = parse_client_message({"type": "batch", "payload": {"messages": items}})
    assert isinstance(batch, BatchMessage)
    assert batch.payload.messages == items  # any JSON values: judged one at a time
    assert parse_client_value(items[1]).type == "user_typing"
    with pytest.raises(InvalidMessage) as info:
        parse_client_value(items[2])  # a value, not JSON text to decode again
    assert info.value.details == {"field": "", "expected": "object", "received": "string"}
    with pytest.raises(InvalidMessage) as info:
        parse_client_value(items[3])
    assert info.value.details is not None
    assert info.value.details["messageId"] == "msg-4"  # the error names the message
    # The same error for the same message sent alone as a text frame.
    with pytest.raises(InvalidMessage) as alone:
        parse_client_message(json.dumps(items[3]))
    assert alone.value.details == info.value.details


def test_message_id_of() -> None:
    assert message_id_of({"id": "m-1"}) == "m-1"
    for value in ({"id": 5}, {"id": ""}, {"id": "x" * 129}, {"id": "\ud800"}, ["m"], "m"):
        assert message_id_of(value) is None


def test_strict_types_and_limits() -> None:
    with pytest.raises(InvalidMessage):  # booleans are not integers, strings not numbers
        parse_client_message(
            {"type": "sync_request", "payload": {"tripId": "t", "sinceVersion": True}}
        )
    with pytest.raises(InvalidMessage):
        parse_client_message({"type": "batch", "payload": {"messages": [{}] * 101}})
    with pytest.raises(InvalidMessage):
        parse_client_message({"type": "subscribe", "payload": {"channels": ["x" * 200]}})


def test_auth_request() -> None:
    request = parse_auth_request(json.dumps({"token": "t", "channels": ["global"]}))
    assert request.channels == ["global"]
    assert request.sessionId is None
    with pytest.raises(InvalidMessage):
        parse_auth_request("[]")
    with pytest.raises(InvalidMessage):
        parse_auth_request(json.dumps({"token": ""}))


def test_encode_keeps_payload_nulls_and_drops_empty_envelope_fields() -> None:
    event = make_event(ChatTypingStartPayload(userId="u", username=None), now_ms=0)
    data = json.loads(encode(event))
    assert data["type"] == "chat_typing_start"
    assert data["payload"] == {"userId": "u", "username": None}
    assert "sessionId" not in data
    assert "userId" not in data
    assert data["timestamp"] == "1970-01-01T00:00:00.000Z"


# -- optimistic_update_start ("Optimistic Updates") ------------------------------------


def test_optimistic_update_without_expected_version_and_with_the_value_alias() -> None:
    payload = {"updateId": "u1", "tripId": "t", "fieldName": "destination", "value": "Rome"}
    message = parse_client_message({"type": "optimistic_update_start", "payload": payload})
    assert isinstance(message, OptimisticUpdateStartMessage)
    assert message.payload.optimisticValue == "Rome"
    assert message.payload.expectedVersion is None
    assert message.payload.clientTimestamp is None
    both = {**payload, "optimisticValue": "Oslo"}
    message = parse_client_message({"type": "optimistic_update_start", "payload": both})
    assert isinstance(message, OptimisticUpdateStartMessage)
    assert message.payload.optimisticValue == "Oslo"  # the spec's name wins


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"updateId": "u1", "fieldName": "destination", "value": "Paris"}, "payload.tripId"),
        ({"updateId": "u1", "tripId": "t", "fieldName": "x"}, "payload.optimisticValue"),
        (
            {"updateId": "u1", "tripId": "t", "optimisticValue": 1, "expectedVersion": "5"},
            "payload.expectedVersion",
        ),
    ],
)
def test_an_invalid_update_with_a_string_update_id_carries_its_rejection(
    payload: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidUpdate) as caught:
        parse_client_message({"type": "optimistic_update_start", "payload": payload})
    rejection = caught.value.rejection()
    assert rejection.updateId == "u1"
    assert rejection.rejectionReason == "invalid_message"
    assert rejection.details is not None
    assert rejection.details["field"] == field
    assert caught.value.code == "INVALID_MESSAGE_FORMAT"


@pytest.mark.parametrize("update_id", [None, 7, "\ud800"])
def test_without_a_sendable_update_id_it_is_a_plain_invalid_message(update_id: object) -> None:
    payload = {"updateId": update_id, "tripId": "t"}
    with pytest.raises(InvalidMessage) as caught:
        parse_client_message({"type": "optimistic_update_start", "payload": payload})
    assert not isinstance(caught.value, InvalidUpdate)
    refused = InvalidUpdate.of({"updateId": "ok", "tripId": "\ud800"}, caught.value)
    assert refused is not None
    assert refused.trip_id is None  # never echoed: it could not be encoded


# -- the union of client messages ------------------------------------------------------

# The smallest valid payload of every client message type (None: the payload may be absent).
MINIMAL_PAYLOADS: dict[str, dict[str, object] | None] = {
    "chat_message": {"content": "hi"},
    "chat_typing_start": None,
    "chat_typing_stop": None,
    "user_typing": None,
    "trip_collaboration_join": {"tripId": "t"},
    "trip_collaboration_leave": {"tripId": "t"},
    "trip_field_editing_start": {"tripId": "t", "fieldName": "destination"},
    "trip_field_editing_stop": {"tripId": "t", "fieldName": "destination"},
    "collaboration_session_start": {"tripId": "t"},
    "optimistic_update_start": {"tripId": "t", "updateId": "u", "optimisticValue": 1},
    "conflict_resolution_submit": {"conflictId": "c"},
    "connection_heartbeat": None,
    "subscribe": {},
    "unsubscribe": {"channels": []},
    "batch": {"messages": []},
    "sync_request": {"tripId": "t", "sinceVersion": 0},
    "auth_refresh": {"token": "x"},
    "connection_health": None,
    "performance_metrics": None,
    "server_health": None,
    "chat_message_chunk": {"messageId": "m", "content": "a", "chunkIndex": 0},
    "chat_message_complete": {"messageId": "m", "finalContent": "a"},
    "tool_call_start": {"toolCallId": "c", "toolName": "search"},
    "tool_call_progress": {"toolCallId": "c", "progress": 0.5},
    "tool_call_complete": {"toolCallId": "c"},
    "tool_call_error": {"toolCallId": "c", "error": "boom"},
    "agent_status_update": {"agentId": "a", "isActive": True},
    "agent_task_start": {"taskId": "k", "taskName": "plan"},
    "agent_task_progress": {"taskId": "k", "progress": 0.1},
    "agent_task_complete": {"taskId": "k"},
    "notification": {"title": "t", "message": "m"},
    "system_message": {"level": "info", "message": "m"},
}


def test_the_union_parses_every_client_message_type_to_its_class() -> None:
    assert set(MINIMAL_PAYLOADS) == set(CLIENT_MESSAGE_TYPES)
    members = get_args(AnyClientMessage)
    assert len(members) == len(CLIENT_MESSAGE_TYPES) == len(set(members))
    union: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
    for type_, payload in MINIMAL_PAYLOADS.items():
        data: dict[str, object] = {"type": type_}
        if payload is not None:
            data["payload"] = payload
        model = MESSAGE_MODELS[type_]
        assert model in members
        message = union.validate_python(data)
        assert type(message) is model
        assert message.type == type_
        assert type(parse_client_message(data)) is model
        assert type(parse_client_message(json.dumps(data))) is model
        if payload is None:  # an absent payload is the model's empty one
            assert message.payload == model.model_fields["payload"].default


# -- server events: one payload model a type ("Event Types", "Real-time Collaboration",
# "Optimistic Updates"; the extensions in README) ---------------------------------------

# Every event of websocket-api.md whose direction is "Server to Client" or "Bidirectional".
SPEC_SERVER_EVENTS = frozenset(
    {
        *("chat_message", "chat_message_chunk", "chat_message_complete"),
        *("chat_typing_start", "chat_typing_stop"),
        *("tool_call_start", "tool_call_progress", "tool_call_complete", "tool_call_error"),
        *("agent_status_update", "agent_task_start", "agent_task_progress"),
        "agent_task_complete",
        *("connection_established", "connection_heartbeat", "connection_error"),
        "connection_close",
        *("error", "notification", "system_message"),
        *("trip_collaboration_join", "trip_collaboration_leave"),
        *("trip_field_editing_start", "trip_field_editing_stop", "trip_update_broadcast"),
        *("trip_collaborator_presence", "trip_conflict_detected", "trip_permission_change"),
        *("optimistic_update_confirmed", "optimistic_update_rejected"),
        *("optimistic_update_rollback", "conflict_resolution_required"),
    }
)
# Sent by the server beyond those (README: token refresh, resuming, channels, health).
EXTENSION_EVENTS = frozenset(
    {
        *("auth_expiring", "auth_refreshed", "subscription_update", "chat_resumed"),
        *("collaboration_session_started", "conflict_resolved", "trip_snapshot"),
        *("sync_complete", "connection_health", "server_health", "performance_metrics"),
    }
)


def test_every_server_event_type_has_exactly_one_payload_model() -> None:
    # Models are registered as their modules are imported.
    assert EVENT_PAYLOADS["error"] is events.ErrorPayload
    assert EVENT_PAYLOADS["sync_complete"] is collaboration.SyncCompletePayload
    assert EVENT_PAYLOADS["server_health"] is health.ServerHealthPayload
    assert set(EVENT_PAYLOADS) == SPEC_SERVER_EVENTS | EXTENSION_EVENTS
    for event_type, model in EVENT_PAYLOADS.items():
        assert model.EVENT_TYPE == event_type
        others = [m for m in _all_subclasses(EventPayload) if m.__dict__.get("EVENT_TYPE")]
        assert [m for m in others if m.EVENT_TYPE == event_type] == [model]


def test_a_second_model_for_an_event_type_is_refused() -> None:
    with pytest.raises(TypeError, match="has a payload model already"):

        class Again(EventPayload):
            EVENT_TYPE: ClassVar[str] = "error"


def test_make_event_takes_payload_models_only() -> None:
    with pytest.raises(TypeError, match="EventPayload"):
        make_event({"code": "X"}, now_ms=0)  # type: ignore[type-var]
    event = make_event(events.AuthRefreshedPayload(expiresAt="t"), now_ms=0)
    assert event.type == "auth_refreshed"
    assert event.payload.expiresAt == "t"  # typed where it is built


def test_unset_situational_keys_stay_absent_and_set_nulls_are_sent() -> None:
    rollback = OptimisticUpdateRollbackPayload(
        updateId="u",
        tripId="t",
        fieldName=None,
        rollbackToValue=None,
        rollbackReason="stale_previous_value",
        canRetry=False,
        message="m",
    )
    assert rollback.wire() == {
        "updateId": "u",
        "tripId": "t",
        "fieldName": None,
        "rollbackToValue": None,
        "rollbackReason": "stale_previous_value",
        "canRetry": False,
        "message": "m",
    }


def test_a_stored_outcome_is_read_back_into_its_model_unchanged() -> None:
    rejected = OptimisticUpdateRejectedPayload(
        updateId="u",
        tripId=None,
        fieldName="name",
        rejectionReason="invalid_message",
        message="m",
        details={"field": "payload.optimisticValue"},
    )
    stored = stored_outcome(rejected)
    assert json.loads(stored) == {"type": "optimistic_update_rejected", "payload": rejected.wire()}
    again = read_outcome(stored)
    assert isinstance(again, OptimisticUpdateRejectedPayload)
    assert again.wire() == rejected.wire()
    assert "conflictId" not in again.wire()


def _all_subclasses(cls: type[EventPayload]) -> list[type[EventPayload]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found
