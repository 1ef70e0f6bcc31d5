"""End-to-end: authentication, envelope, validation, heartbeat, batch (real server)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from tests.api.chathelpers import assert_quiet, http
from tests.conftest import SECRET, ServerProcess
from tests.wsclient import Client, open_client
from tripsage_sync.api import __version__

pytestmark = pytest.mark.anyio

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def assert_envelope(event: dict[str, Any], type_: str) -> None:
    assert event["type"] == type_
    assert isinstance(event["id"], str)
    assert event["id"]
    assert ISO_MS.match(event["timestamp"]), event["timestamp"]
    assert isinstance(event["payload"], dict)


async def test_auth_success_and_connection_established(server: ServerProcess) -> None:
    client, auth, established = await open_client(
        server, "alice", "s-1", channels=["global", "agent:alice"]
    )
    assert auth["userId"] == "alice"
    assert auth["sessionId"] == "s-1"
    assert auth["connectionId"].startswith("conn-")
    assert set(auth["availableChannels"]) >= {"global", "agent:alice", "chat:s-1"}
    assert_envelope(established, "connection_established")
    payload = established["payload"]
    assert payload["connectionId"] == auth["connectionId"]
    assert payload["serverVersion"] == __version__
    assert "heartbeat" in payload["features"]
    assert payload["limits"]["maxMessageSize"] == 1048576
    assert payload["limits"]["maxConnections"] == 1000
    # The limits block carries the values actually enforced (the test server's).
    assert payload["limits"]["rateLimitPerMinute"] == 100000
    await client.close()


def forge(claims: dict[str, Any], *, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def unsigned(claims: dict[str, Any]) -> str:
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


FUTURE = int(time.time()) + 3600
BAD_TOKENS: list[tuple[str, Callable[[], str], str]] = [
    ("wrong signature", lambda: forge({"sub": "a", "exp": FUTURE}, key="y" * 40), "INVALID_TOKEN"),
    ("alg none", lambda: unsigned({"sub": "a", "exp": FUTURE}), "INVALID_TOKEN"),
    ("missing sub", lambda: forge({"exp": FUTURE}), "INVALID_TOKEN"),
    ("missing exp", lambda: forge({"sub": "a"}), "INVALID_TOKEN"),
    ("expired", lambda: forge({"sub": "a", "exp": int(time.time()) - 60}), "TOKEN_EXPIRED"),
    ("string exp", lambda: forge({"sub": "a", "exp": str(FUTURE)}), "INVALID_TOKEN"),
    ("bad role", lambda: forge({"sub": "a", "exp": FUTURE, "role": "root"}), "INVALID_TOKEN"),
    ("garbage", lambda: "not-a-jwt", "INVALID_TOKEN"),
]


@pytest.mark.parametrize(("case", "make_token", "code"), BAD_TOKENS, ids=[b[0] for b in BAD_TOKENS])
async def test_auth_failures_close_3000(
    server: ServerProcess, case: str, make_token: Callable[[], str], code: str
) -> None:
    client = await Client.connect(f"{server.ws}/ws/chat/s-1")
    await client.send({"token": make_token(), "sessionId": "s-1"})
    response = await client.recv()
    assert response["success"] is False
    assert response["code"] == code
    assert response["error"]
    assert await client.closed() == 3000


async def test_malformed_auth_request_closes_3000(server: ServerProcess) -> None:
    client = await Client.connect(f"{server.ws}/ws/chat/s-1")
    await client.send("{not json")
    response = await client.recv()
    assert response == {"success": False, "error": response["error"], "code": "AUTH_FAILED"}
    assert await client.closed() == 3000


async def test_session_id_mismatch_refused(server: ServerProcess) -> None:
    client = await Client.connect(f"{server.ws}/ws/chat/s-1")
    await client.send({"token": server.token("alice"), "sessionId": "other"})
    assert (await client.recv())["code"] == "AUTH_FAILED"
    assert await client.closed() == 3000


async def test_auth_timeout(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(auth_timeout_s=0.5)
    client = await Client.connect(f"{server.ws}/ws/chat/s-1")
    response = await client.recv(timeout=5)
    assert response["success"] is False
    assert response["code"] == "AUTH_FAILED"
    assert await client.closed() == 3000


async def test_validation_errors_keep_connection_open(server: ServerProcess) -> None:
    client, _, _ = await open_client(server)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("{oops", {"field": "", "expected": "JSON object", "received": "invalid JSON"}),
        (
            json.dumps({"type": "no_such_event", "payload": {}}),
            {"field": "type", "expected": "a known event type", "received": "no_such_event"},
        ),
        (
            json.dumps({"type": "chat_message", "payload": {}}),
            {"field": "payload.content", "expected": "string", "received": "undefined"},
        ),
        (
            json.dumps({"type": "chat_message", "payload": {"content": 42}}),
            {"field": "payload.content", "expected": "string", "received": "integer"},
        ),
        (
            json.dumps(
                {
                    "type": "optimistic_update_start",
                    "payload": {
                        "tripId": "t",
                        "updateId": "u",
                        "optimisticValue": 1,
                        "expectedVersion": "3",
                        "clientTimestamp": "2025-01-01T00:00:00Z",
                    },
                }
            ),
            {"field": "payload.expectedVersion", "expected": "integer", "received": "string"},
        ),
        (json.dumps([1, 2]), {"field": "", "expected": "object", "received": "array"}),
    ]
    for text, details in cases:
        await client.send(text)
        error = await client.recv_type("error")
        assert_envelope(error, "error")
        assert error["payload"]["code"] == "INVALID_MESSAGE_FORMAT"
        assert error["payload"]["details"] == details, text
        assert error["payload"]["severity"] == "error"
    await client.send({"type": "connection_heartbeat", "payload": {}})
    beat = await client.recv_type("connection_heartbeat")
    assert beat["payload"]["metrics"]["messagesReceived"] >= len(cases) + 2
    await client.close()


async def test_oversize_message_closes_1009(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(max_message_size=2000)
    client, _, established = await open_client(server)
    assert established["payload"]["limits"]["maxMessageSize"] == 2000
    await client.send({"type": "chat_message", "payload": {"content": "x" * 3000}})
    error = await client.recv_type("error")
    assert error["payload"]["code"] == "MESSAGE_TOO_LARGE"
    assert await client.closed() == 1009


async def test_heartbeats_and_idle_close(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(heartbeat_interval_s=0.6)
    client, auth, _ = await open_client(server)
    beat = await client.recv_type("connection_heartbeat", timeout=5)
    assert_envelope(beat, "connection_heartbeat")
    assert beat["payload"]["connectionId"] == auth["connectionId"]
    assert ISO_MS.match(beat["payload"]["serverTime"])
    assert set(beat["payload"]["metrics"]) == {"uptime", "messagesSent", "messagesReceived"}
    # Silent for two intervals: the server says why, then closes (reconnect allowed).
    close_event = await client.recv_type("connection_close", timeout=5)
    assert close_event["payload"]["reason"] == "idle timeout"
    assert await client.closed() == 1001


async def test_client_heartbeat_is_answered_and_keeps_alive(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(heartbeat_interval_s=0.5)
    client, _, _ = await open_client(server)
    start = time.monotonic()
    while time.monotonic() - start < 2.0:  # four intervals: would be idle twice over
        await client.send({"type": "connection_heartbeat", "payload": {}})
        reply = await client.recv_type("connection_heartbeat")
        assert reply["payload"]["metrics"]["messagesReceived"] >= 1
    await client.send({"type": "subscribe", "payload": {"channels": ["global"]}})
    update = await client.recv_type("subscription_update")
    assert "global" in update["payload"]["subscribedChannels"]
    await client.close()


async def test_batch_processed_in_order(server: ServerProcess) -> None:
    client, _, _ = await open_client(server)
    await client.send(
        {
            "type": "batch",
            "payload": {
                "messages": [
                    {"id": "m1", "type": "subscribe", "payload": {"channels": ["global"]}},
                    {"id": "m2", "type": "bogus", "payload": {}},
                    {"id": "m3", "type": "unsubscribe", "payload": {"channels": ["global"]}},
                    {"id": "m4", "type": "batch", "payload": {"messages": []}},
                ]
            },
        }
    )
    first = await client.recv()
    second = await client.recv()
    third = await client.recv()
    fourth = await client.recv()
    assert first["type"] == "subscription_update"
    assert "global" in first["payload"]["subscribedChannels"]
    assert second["type"] == "error"
    assert second["payload"]["details"]["messageId"] == "m2"
    assert third["type"] == "subscription_update"
    assert third["payload"]["unsubscribedChannels"] == ["global"]
    assert fourth["type"] == "error"
    assert fourth["payload"]["details"]["messageId"] == "m4"
    await client.close()


async def test_the_specs_batch_example_is_answered_item_by_item(server: ServerProcess) -> None:
    alice, _, _ = await open_client(server, "alice", "s-1")
    shared = await http(server, "PUT", "/api/sessions/s-1/members/bob", user="alice")
    assert shared.status_code == 200
    bob, _, _ = await open_client(server, "bob", "s-1")
    # The spec's "Batch Messages" example, literally, then what a client may get wrong.
    spec_items: list[Any] = [
        {
            "id": "msg-1",
            "type": "chat_message",
            "timestamp": "2025-05-28T01:30:00.000Z",
            "payload": {"content": "Hello"},
        },
        {
            "id": "msg-2",
            "type": "user_typing",
            "timestamp": "2025-05-28T01:30:00.100Z",
            "payload": {"userId": "user-456"},
        },
    ]
    wrong: list[Any] = [
        {"id": "msg-3", "type": "user_typed", "payload": {}},
        "not an object",
        {"id": "msg-5", "type": "chat_typing_stop", "payload": {}},
    ]
    await alice.send({"type": "batch", "payload": {"messages": spec_items + wrong}})
    message = await bob.recv_type("chat_message")
    assert (message["userId"], message["payload"]["content"]) == ("alice", "Hello")
    # user_typing is the spec's name for chat_typing_start; identity from the token.
    typing = await bob.recv_type("chat_typing_start")
    assert typing["payload"] == {"userId": "alice", "username": "Alice"}
    # Each bad item gets the error it would get alone, and the rest still runs.
    unknown = await alice.recv_type("error")
    invalid = await alice.recv_type("error")
    assert (await bob.recv_type("chat_typing_stop"))["payload"] == {"userId": "alice"}
    for bad, error in zip(wrong[:2], (unknown, invalid), strict=True):
        await alice.send(bad if isinstance(bad, dict) else json.dumps(bad))
        alone = await alice.recv_type("error")
        assert alone["payload"] == error["payload"]
        assert error["payload"]["code"] == "INVALID_MESSAGE_FORMAT"
    assert unknown["payload"]["details"]["messageId"] == "msg-3"
    assert unknown["payload"]["details"]["received"] == "user_typed"
    assert "messageId" not in invalid["payload"]["details"]
    await assert_quiet(alice, "error")
    for client in (alice, bob):
        await client.close()


async def test_outgoing_batching_when_asked(server: ServerProcess) -> None:
    client, auth, established = await open_client(server, features=["message_batching"])
    assert auth["success"]
    assert established["type"] == "connection_established"
    beats = [{"type": "connection_heartbeat", "payload": {}} for _ in range(3)]
    await client.send({"type": "batch", "payload": {"messages": beats}})
    frame = await client.recv()
    assert frame["type"] == "batch"
    assert [m["type"] for m in frame["payload"]["messages"]] == ["connection_heartbeat"] * 3
    await client.close()


async def test_unavailable_event_gets_a_clear_error(server: ServerProcess) -> None:
    client, _, _ = await open_client(server)
    await client.send({"type": "server_health", "payload": {}})
    error = await client.recv_type("error")
    assert error["payload"]["code"] in {"SERVER_ERROR", "PERMISSION_DENIED"}
    await client.close()
