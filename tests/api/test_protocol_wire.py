"""What crosses the wire is what docs/asyncapi.json and docs/openapi.json say (issue 14).

A real server serves the committed documents; a session that goes through
the protocol's main paths (join, presence, field editing, confirmed, rejected
and rolled-back updates, a manual conflict and its resolution, chat, typing,
subscriptions, errors, heartbeats, batches) has every frame it receives
validated against the server message of its type; every REST operation's
answers, successes and refusals, are validated against the OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.chathelpers import chunk, connect, connect_agent, event, user_message
from tests.api.test_trips import OUTCOMES, after_creation, auth, create_trip, join, update
from tests.conftest import ServerProcess
from tests.protocol import DOCS, response_errors, server_frame_errors
from tests.wsclient import open_client

pytestmark = pytest.mark.anyio


async def test_the_server_serves_the_committed_documents(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        for name in ("asyncapi.json", "openapi.json"):
            response = await http.get(f"/{name}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json")
            assert response.text == (DOCS / name).read_text(encoding="utf-8")


async def test_every_frame_of_a_session_matches_its_server_message(server: ServerProcess) -> None:
    await create_trip(server, manual=["budget"], collaborators={"bob": "editor", "carol": "viewer"})
    alice, _ = await join(server, "alice")
    bob, _ = await join(server, "bob")
    carol, _ = await join(server, "carol")
    batched, _, _ = await open_client(server, "alice", "s-batch", features=["message_batching"])
    await batched.send({"type": "collaboration_session_start", "payload": {"tripId": "trip-1"}})
    await batched.recv_type("collaboration_session_started")
    await bob.send(
        {"type": "trip_field_editing_start", "payload": {"tripId": "trip-1", "fieldName": "notes"}}
    )
    await alice.recv_type("trip_field_editing_start")
    await bob.send(
        {"type": "trip_field_editing_stop", "payload": {"tripId": "trip-1", "fieldName": "notes"}}
    )
    await alice.recv_type("trip_field_editing_stop")
    # Confirmed and broadcast; a stale base rolled back; a viewer refused.
    await alice.send(update("u1", "destination", "Rome", 1, ts=after_creation(1)))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_confirmed"
    await bob.recv_type("trip_update_broadcast")
    await alice.send(update("u2", "destination", "Oslo", 1, previous="Berlin"))
    assert (await alice.recv_type(*OUTCOMES))["type"] == "optimistic_update_rollback"
    await carol.send(update("u3", "destination", "Lima", 2))
    await carol.recv_type(*OUTCOMES)
    # A manual conflict, resolved.
    await alice.send(update("a", "budget", 2500, 2, ts=after_creation(3)))
    await alice.recv_type(*OUTCOMES)
    await bob.send(update("b", "budget", 3000, 2, ts=after_creation(2)))
    assert (await bob.recv_type(*OUTCOMES))["type"] == "optimistic_update_rejected"
    required = await bob.recv_type("conflict_resolution_required")
    option = required["payload"]["options"][0]["id"]
    await bob.send(
        {
            "type": "conflict_resolution_submit",
            "payload": {"conflictId": required["payload"]["conflictId"], "chosenOptionId": option},
        }
    )
    await alice.recv_type("conflict_resolved", "trip_update_broadcast")
    # Catching up, heartbeats, subscriptions, errors.
    await bob.send({"type": "sync_request", "payload": {"tripId": "trip-1", "sinceVersion": 1}})
    await bob.recv_type("sync_complete")
    await bob.send({"type": "connection_heartbeat", "payload": {}})
    await bob.recv_type("connection_heartbeat")
    await bob.send({"type": "subscribe", "payload": {"channels": ["global"]}})
    await bob.recv_type("subscription_update")
    await bob.send({"type": "no_such_message", "payload": {}})
    await bob.recv_type("error")
    await batched.recv_type("trip_update_broadcast")
    # Chat: a message, typing, the agent's streamed reply.
    user = await connect(server, "alice", "chat-1")
    agent = await connect_agent(server)
    await user.send({"type": "chat_typing_start", "payload": {}})
    await user.send(user_message("Find me a flight"))
    await user.recv_type("chat_message")
    await agent.recv_type("chat_message")
    for message in (
        event("agent_status_update", "chat-1", agentId="planner", isActive=True, progress=0.5),
        event("tool_call_start", "chat-1", toolCallId="c1", toolName="search", arguments={}),
        event("tool_call_complete", "chat-1", toolCallId="c1", result={}, executionTime=1.0),
        event("agent_task_start", "chat-1", taskId="t1", taskName="search", priority="high"),
        event("agent_task_complete", "chat-1", taskId="t1", result={"options": 2}),
        chunk("chat-1", "r1", 0, "Hi", last=True),
        event("chat_message_complete", "chat-1", messageId="r1", finalContent="Hi"),
    ):
        await agent.send(message)
    await user.recv_type("chat_message_complete")
    everyone = (alice, bob, carol, batched, user, agent)
    seen = {frame.get("type", "auth_response") for client in everyone for frame in client.seen}
    assert {
        "auth_response",
        "batch",
        "trip_collaborator_presence",
        "optimistic_update_rejected",
        "conflict_resolution_required",
        "chat_message_chunk",
        "tool_call_complete",
        "error",
    } <= seen, seen
    for client in everyone:
        for frame in client.seen:
            assert not server_frame_errors(frame), (frame, server_frame_errors(frame))
        await client.close()


async def test_every_rest_answer_matches_the_openapi_document(server: ServerProcess) -> None:
    alice, admin = (
        auth(server, "alice"),
        {"Authorization": f"Bearer {server.token('root', role='admin')}"},
    )
    agent = {"Authorization": f"Bearer {server.token('agent-1', role='agent')}"}
    chat = await connect(server, "alice", "chat-1")
    await chat.send(user_message("Hello"))
    await chat.recv_type("chat_message")
    calls: list[tuple[str, str, str, dict[str, str], Any]] = [
        ("POST", "/api/trips", "/api/trips", alice, {"tripId": "t1", "fields": {"a": 1}}),
        ("POST", "/api/trips", "/api/trips", alice, {"tripId": "t1"}),
        ("POST", "/api/trips", "/api/trips", alice, {"bogus": 1}),
        ("POST", "/api/trips", "/api/trips", {}, {}),
        ("GET", "/api/trips", "/api/trips", alice, None),
        ("GET", "/api/trips/{tripId}", "/api/trips/t1", alice, None),
        ("GET", "/api/trips/{tripId}", "/api/trips/nope", alice, None),
        (
            "PUT",
            "/api/trips/{t}/collaborators/{u}",
            "/api/trips/t1/collaborators/bob",
            alice,
            {"permissionLevel": "editor"},
        ),
        (
            "PUT",
            "/api/trips/{t}/collaborators/{u}",
            "/api/trips/t1/collaborators/bob",
            alice,
            {"permissionLevel": "king"},
        ),
        (
            "DELETE",
            "/api/trips/{t}/collaborators/{u}",
            "/api/trips/t1/collaborators/bob",
            alice,
            None,
        ),
        ("GET", "/api/sessions/{s}/messages", "/api/sessions/chat-1/messages", alice, None),
        ("GET", "/api/sessions/{s}/messages", "/api/sessions/chat-1/messages", {}, None),
        ("PUT", "/api/sessions/{s}/members/{u}", "/api/sessions/chat-1/members/bob", alice, None),
        (
            "DELETE",
            "/api/sessions/{s}/members/{u}",
            "/api/sessions/chat-1/members/bob",
            alice,
            None,
        ),
        (
            "POST",
            "/api/sessions/{s}/events",
            "/api/sessions/chat-1/events",
            agent,
            {"type": "agent_status_update", "payload": {"agentId": "a1", "status": "idle"}},
        ),
        ("POST", "/api/sessions/{s}/events", "/api/sessions/chat-1/events", alice, []),
        (
            "POST",
            "/api/broadcast",
            "/api/broadcast",
            admin,
            {"type": "notification", "payload": {"title": "Hi", "message": "All"}},
        ),
        ("POST", "/api/broadcast", "/api/broadcast", alice, {}),
        ("GET", "/health", "/health", {}, None),
        ("GET", "/api/web/config", "/api/web/config", {}, None),
        ("POST", "/api/dev/token", "/api/dev/token", {}, {"userId": "x"}),
        ("POST", "/api/maintenance", "/api/maintenance", admin, {"inSeconds": -1, "message": "x"}),
        ("POST", "/api/maintenance", "/api/maintenance", alice, {}),
        (
            "POST",
            "/api/maintenance",
            "/api/maintenance",
            admin,
            {"inSeconds": 3600, "message": "x"},
        ),
        ("DELETE", "/api/maintenance", "/api/maintenance", admin, None),
    ]
    statuses = set()
    async with httpx.AsyncClient(base_url=server.http) as http:
        for method, template, path, headers, body in calls:
            response = await http.request(method, path, headers=headers, json=body)
            statuses.add(response.status_code)
            problems = response_errors(method, template, response.status_code, response.json())
            assert not problems, (method, path, response.status_code, response.text, problems)
    assert {200, 201, 400, 401, 403, 404, 409} <= statuses
    await chat.close()


ODD_VALUES: list[Any] = [None, {}, [], "", "x", 7, 1.5, True, {"a": {}}, [[]], "\u00e9" * 300]
# A body each operation accepts, so that one odd property at a time gets past the others.
GOOD_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/broadcast"): {"type": "notification", "payload": {"title": "t", "message": "m"}},
    ("post", "/api/trips"): {"fields": {"destination": "Oslo"}},
    ("put", "/api/trips/{tripId}/collaborators/{userId}"): {"permissionLevel": "editor"},
    ("post", "/api/sessions/{sessionId}/events"): {
        "type": "agent_status_update",
        "payload": {"agentId": "a", "isActive": True},
    },
    ("post", "/api/dev/token"): {"userId": "x"},
    # Not /api/maintenance: a good body there would drain the server mid-test.
}


async def test_odd_bodies_get_a_documented_refusal_never_a_server_error(
    server: ServerProcess,
) -> None:
    """Every operation with a JSON body, sent shapes it does not expect: each top-level
    property of its schema set to odd values, and odd whole bodies. Found by schemathesis
    (``POST /api/broadcast`` with ``"type": {}`` answered 500)."""
    document = json.loads((DOCS / "openapi.json").read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    headers = {"Authorization": f"Bearer {server.token('root', role='admin')}"}
    await create_trip(server, "root", trip_id="t-odd")
    concrete = {"{tripId}": "t-odd", "{userId}": "bob", "{sessionId}": "s-odd"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        for path, item in document["paths"].items():
            for method, operation in sorted(item.items(), key=lambda m: m[0] == "delete"):
                body_schema = operation.get("requestBody", {}).get("content", {})
                if "application/json" not in body_schema:
                    continue
                url = path
                for name, value in concrete.items():
                    url = url.replace(name, value)
                ref = body_schema["application/json"]["schema"].get("$ref", "")
                properties = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
                bodies: list[Any] = list(ODD_VALUES)
                good = GOOD_BODIES.get((method, path), {})
                bodies += [{**good, name: odd} for name in properties for odd in ODD_VALUES]
                for body in bodies:
                    response = await http.request(
                        method.upper(), url, headers=headers, content=json.dumps(body)
                    )
                    assert response.status_code < 500, (method, url, body, response.text)
                    problems = response_errors(method, path, response.status_code, response.json())
                    assert not problems, (method, url, body, response.text, problems)


async def test_a_path_with_several_methods_allows_them_all(server: ServerProcess) -> None:
    document = json.loads((DOCS / "openapi.json").read_text(encoding="utf-8"))
    async with httpx.AsyncClient(base_url=server.http) as http:
        for path, item in document["paths"].items():
            url = path.replace("{tripId}", "t").replace("{userId}", "u").replace("{sessionId}", "s")
            response = await http.request("PATCH", url)
            assert response.status_code == 405, (path, response.status_code)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert {m.upper() for m in item} <= allowed, (path, allowed)
