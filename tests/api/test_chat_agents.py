"""End-to-end: tool and status events, typing, authorization, sharing, broadcast, demo agent."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import pytest

from tests.api.chathelpers import (
    AGENT,
    assert_quiet,
    collect,
    connect,
    connect_agent,
    event,
    http,
    user_message,
)
from tests.conftest import ROOT, ServerProcess
from tests.wsclient import Client

pytestmark = pytest.mark.anyio

STATUS_EVENTS = [
    event("tool_call_start", "s-1", toolCallId="c1", toolName="search_flights", arguments={}),
    event("tool_call_progress", "s-1", toolCallId="c1", progress=0.6, status="Searching..."),
    event("tool_call_complete", "s-1", toolCallId="c1", result={"flights": []}, executionTime=4.2),
    event("tool_call_error", "s-1", toolCallId="c2", error="API rate limit exceeded"),
    event("agent_status_update", "s-1", agentId="planner", isActive=True, progress=0.75),
    event("agent_task_start", "s-1", taskId="t1", taskName="search_hotels", priority="high"),
    event("agent_task_progress", "s-1", taskId="t1", progress=0.4, stepsCompleted=2, totalSteps=5),
    event("agent_task_complete", "s-1", taskId="t1", result={"totalOptions": 23}),
]
STATUS_TYPES = [e["type"] for e in STATUS_EVENTS]


async def test_tool_and_task_events_reach_both_endpoints_once(server: ServerProcess) -> None:
    chat = await connect(server, "alice", "s-1", channels=["agent:alice"])
    status = await connect(server, "alice", "s-1", endpoint="agent-status")
    agent = await connect_agent(server)
    for message in STATUS_EVENTS:
        await agent.send(message)
    for client in (chat, status):
        got = [await client.recv_type(type_) for type_ in STATUS_TYPES]
        assert [m["payload"] for m in got] == [
            {**e["payload"], **{k: v for k, v in m["payload"].items() if k not in e["payload"]}}
            for e, m in zip(STATUS_EVENTS, got, strict=True)
        ]
        assert all(m["sessionId"] == "s-1" for m in got)
    # ``chat`` reads both chat:s-1 and agent:alice, and still got each event once.
    await assert_quiet(chat, *STATUS_TYPES)

    # Over HTTP, with the agent's token: the same routing.
    response = await http(
        server,
        "POST",
        "/api/sessions/s-1/events",
        user=AGENT,
        role="agent",
        json={"type": "agent_task_progress", "payload": {"taskId": "t1", "progress": 0.9}},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "delivered": 2}
    for client in (chat, status):
        assert (await client.recv_type("agent_task_progress"))["payload"]["progress"] == 0.9

    # A status connection opened later gets the latest agent_status_update first.
    late = await connect(server, "alice", "s-1", endpoint="agent-status")
    assert (await late.recv_type("agent_status_update"))["payload"]["progress"] == 0.75

    # An agent may address a user directly (no session): agent:{userId}.
    await agent.send(
        {
            "type": "agent_status_update",
            "userId": "alice",
            "payload": {"agentId": "planner", "isActive": False},
        }
    )
    direct = await chat.recv_type("agent_status_update")
    assert direct["userId"] == "alice"
    assert "sessionId" not in direct
    await assert_quiet(status, "agent_status_update")
    for client in (chat, status, late, agent):
        await client.close()


async def test_http_events_stream_a_reply(server: ServerProcess) -> None:
    alice = await connect(server, "alice", "s-1")
    frames = [
        {
            "type": "chat_message_chunk",
            "payload": {"messageId": "r", "content": c, "chunkIndex": i, "isComplete": i == 2},
        }
        for i, c in [(0, "a"), (2, "c"), (1, "b"), (1, "b")]
    ]
    frames.append(
        {"type": "chat_message_complete", "payload": {"messageId": "r", "finalContent": "abc"}}
    )
    response = await http(
        server, "POST", "/api/sessions/s-1/events", user=AGENT, role="agent", json=frames
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 5
    chunks = await collect(alice, "chat_message_chunk", 3)
    assert "".join(c["payload"]["content"] for c in chunks) == "abc"
    assert (await alice.recv_type("chat_message_complete"))["payload"]["finalContent"] == "abc"

    for payload, status in [
        ({"type": "chat_message_chunk", "payload": {"messageId": "x"}}, 400),
        ({"type": "subscribe", "payload": {"channels": []}}, 400),
        ("not json", 400),
    ]:
        refused = await http(
            server, "POST", "/api/sessions/s-1/events", user=AGENT, role="agent", json=payload
        )
        assert refused.status_code == status, payload
    unknown = await http(
        server, "POST", "/api/sessions/nope/events", user=AGENT, role="agent", json=frames[0]
    )
    assert unknown.status_code == 404
    await alice.close()


async def test_http_events_stream_a_reply_numbered_from_one_and_skip_a_gap(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(chat_chunk_reorder_window_s=0.3)
    alice = await connect(server, "alice", "s-1")
    path = "/api/sessions/s-1/events"

    def frame(index: int, content: str, last: bool = False) -> dict[str, object]:
        payload = {"messageId": "r1", "content": content, "chunkIndex": index, "isComplete": last}
        return {"type": "chat_message_chunk", "payload": payload}

    posted = await http(
        server, "POST", path, user=AGENT, role="agent", json=[frame(1, "b"), frame(2, "c")]
    )
    assert posted.json() == {"accepted": 2, "delivered": 2}  # streamed at once, from 1
    first = await collect(alice, "chat_message_chunk", 2)
    assert [c["payload"]["chunkIndex"] for c in first] == [1, 2]
    # Chunk 3 never comes: 4 is held for the window, then delivered.
    held = await http(server, "POST", path, user=AGENT, role="agent", json=frame(4, "e", True))
    assert held.json() == {"accepted": 1, "delivered": 0}
    after_gap = await alice.recv_type("chat_message_chunk")
    assert after_gap["payload"]["chunkIndex"] == 4
    assert after_gap["payload"]["isComplete"] is True
    done = {"type": "chat_message_complete", "payload": {"messageId": "r1", "finalContent": "bcde"}}
    assert (
        await http(server, "POST", path, user=AGENT, role="agent", json=done)
    ).status_code == 200
    assert (await alice.recv_type("chat_message_complete"))["payload"]["finalContent"] == "bcde"
    await alice.close()


async def test_users_cannot_publish_agent_events(server: ServerProcess) -> None:
    alice = await connect(server, "alice", "s-1")
    for message in [
        event("chat_message_chunk", "s-1", messageId="m", content="x", chunkIndex=0),
        event("chat_message_complete", "s-1", messageId="m", finalContent="x"),
        event("agent_status_update", "s-1", agentId="fake", isActive=True),
        event("tool_call_start", "s-1", toolCallId="c", toolName="t"),
        event("notification", None, title="t", message="m"),
        user_message("I am the assistant", role="assistant"),
    ]:
        await alice.send(message)
        error = await alice.recv_type("error")
        assert error["payload"]["code"] == "PERMISSION_DENIED", message
    refused = await http(
        server,
        "POST",
        "/api/sessions/s-1/events",
        user="alice",
        json=event("agent_status_update", None, agentId="fake", isActive=True),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    assert (await http(server, "POST", "/api/sessions/s-1/events", json={})).status_code == 401
    await assert_quiet(alice, "agent_status_update", "chat_message_chunk")
    await alice.close()


async def test_sessions_are_private_until_shared(server: ServerProcess) -> None:
    alice = await connect(server, "alice", "s-1")
    # Bob may not post into Alice's session from his own, nor share it.
    bob_own = await connect(server, "bob", "s-bob")
    await bob_own.send({**user_message("hi"), "sessionId": "s-1"})
    assert (await bob_own.recv_type("error"))["payload"]["code"] == "PERMISSION_DENIED"
    share = await http(server, "PUT", "/api/sessions/s-1/members/bob", user="bob")
    assert share.status_code == 403

    shared = await http(server, "PUT", "/api/sessions/s-1/members/bob", user="alice")
    assert shared.status_code == 200
    assert shared.json()["members"] == ["bob"]
    bob = await connect(server, "bob", "s-1")
    await bob.send(user_message("Bob here"))
    for client in (alice, bob):
        message = await client.recv_type("chat_message")
        assert message["userId"] == "bob"
    history = await http(server, "GET", "/api/sessions/s-1/messages", user="bob")
    assert history.status_code == 200

    removed = await http(server, "DELETE", "/api/sessions/s-1/members/bob", user="alice")
    assert removed.json() == {"sessionId": "s-1", "removed": True, "members": []}
    assert (await bob.recv_type("error"))["payload"]["code"] == "PERMISSION_DENIED"
    assert await bob.closed() == 1008
    assert (await http(server, "GET", "/api/sessions/s-1/messages", user="bob")).status_code == 403
    for client in (alice, bob_own):
        await client.close()


async def test_typing_is_relayed_with_the_token_identity_and_times_out(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(typing_timeout_s=0.5)
    alice = await connect(server, "alice", "s-1")
    shared = await http(server, "PUT", "/api/sessions/s-1/members/bob", user="alice")
    assert shared.status_code == 200
    bob = await connect(server, "bob", "s-1")
    await alice.send({"type": "chat_typing_start", "payload": {"userId": "bob", "username": "X"}})
    start = await bob.recv_type("chat_typing_start")
    assert start["payload"] == {"userId": "alice", "username": "Alice"}
    assert start["sessionId"] == "s-1"
    await alice.send({"type": "chat_typing_stop", "payload": {}})
    assert (await bob.recv_type("chat_typing_stop"))["payload"] == {"userId": "alice"}

    # No stop: the indicator ends by itself after typing_timeout_s.
    await bob.send({"type": "chat_typing_start", "payload": {}})
    assert (await alice.recv_type("chat_typing_start"))["payload"]["userId"] == "bob"
    stop = await alice.recv_type("chat_typing_stop", timeout=5)
    assert stop["payload"] == {"userId": "bob"}
    # The typist's own connections are not told about themselves.
    await assert_quiet(bob, "chat_typing_start", "chat_typing_stop")

    # Closing the last connection ends the indicator too.
    await bob.send({"type": "chat_typing_start", "payload": {}})
    await alice.recv_type("chat_typing_start")
    await bob.close()
    assert (await alice.recv_type("chat_typing_stop", timeout=5))["payload"] == {"userId": "bob"}
    await alice.close()


async def test_broadcast_to_one_user_a_channel_and_everyone(server: ServerProcess) -> None:
    alice = await connect(server, "alice", "s-1")
    bob = await connect(server, "bob", "s-2")
    note = {"title": "New Feature", "message": "Price alerts!", "type": "info"}
    to_alice = await http(
        server,
        "POST",
        "/api/broadcast",
        user="ops",
        role="admin",
        json={"type": "notification", "payload": note, "userId": "alice"},
    )
    assert to_alice.json() == {"delivered": 1}
    got = await alice.recv_type("notification")
    assert got["payload"]["message"] == "Price alerts!"
    await assert_quiet(bob, "notification")

    to_channel = await http(
        server,
        "POST",
        "/api/broadcast",
        user="ops",
        role="admin",
        json={"type": "notification", "payload": note, "channel": "chat:s-2"},
    )
    assert to_channel.json() == {"delivered": 1}
    await bob.recv_type("notification")

    maintenance = {"level": "maintenance", "message": "Back soon", "affectedServices": ["chat"]}
    everyone = await http(
        server,
        "POST",
        "/api/broadcast",
        user="ops",
        role="admin",
        json={"type": "system_message", "payload": maintenance},
    )
    assert everyone.json() == {"delivered": 2}
    for client in (alice, bob):
        assert (await client.recv_type("system_message"))["payload"]["level"] == "maintenance"

    denied = await http(
        server,
        "POST",
        "/api/broadcast",
        user=AGENT,
        role="agent",
        json={"type": "notification", "payload": note},
    )
    assert denied.status_code == 403

    # The CLI: an admin token minted from the server's secret, or one passed in.
    base = [sys.executable, "-m", "tripsage_sync.api.cli", "broadcast", "--server", server.http]
    minted = ["--user", "bob", "--db", str(server.db)]
    for extra in (minted, ["--user", "bob", "--token", server.token("o", role="admin")]):
        code, out, err = await run_cli(server, *base, *extra, "--title", "Hi", "From the CLI")
        assert code == 0, err
        assert "delivered to 1 connection(s)" in out
        assert (await bob.recv_type("notification"))["payload"]["message"] == "From the CLI"
    code, _, err = await run_cli(server, *base, "--token", server.token("mallory"), "nope")
    assert code == 1
    assert "403" in err
    await alice.close()
    await bob.close()


async def run_cli(server: ServerProcess, *argv: str) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=server.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_demo_agent_answers_with_a_stream_and_a_tool_call(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(demo_agent=1)
    alice = await connect(server, "alice", "s-demo")
    status = await connect(server, "alice", "s-demo", endpoint="agent-status")
    deadline_s = 15
    # The in-process agent connects over loopback once the server listens; wait for it.
    for _ in range(100):
        health = await http(server, "GET", "/health")
        if health.json()["connections"] >= 3:
            break
        await alice.send({"type": "connection_heartbeat", "payload": {}})
        await alice.recv_type("connection_heartbeat")
    await alice.send(user_message("Flights to Lisbon?"))
    await alice.recv_type("chat_message")
    tool = await status.recv_type("tool_call_start", timeout=deadline_s)
    assert tool["payload"]["toolName"] == "search_flights"
    progress = await status.recv_type("tool_call_progress", timeout=deadline_s)
    assert 0 < progress["payload"]["progress"] <= 1
    await status.recv_type("tool_call_complete", timeout=deadline_s)
    complete = await alice.recv_type("chat_message_complete", timeout=deadline_s)
    chunks = [m for m in alice.backlog if m.get("type") == "chat_message_chunk"]
    assert [c["payload"]["chunkIndex"] for c in chunks] == list(range(len(chunks)))
    assert len(chunks) > 3
    text = complete["payload"]["finalContent"]
    assert "".join(c["payload"]["content"] for c in chunks) == text
    assert "Flights to Lisbon?" in text
    assert "example" in text
    history = (await http(server, "GET", "/api/sessions/s-demo/messages", user="alice")).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    for client in (alice, status):
        await client.close()


async def test_agent_connections_do_not_claim_sessions(server: ServerProcess) -> None:
    agent = await connect_agent(server)
    early = await connect(server, AGENT, "s-later", role="agent")
    alice = await connect(server, "alice", "s-later")  # still Alice's to claim
    await alice.send(user_message("mine"))
    assert (await agent.recv_type("chat_message"))["userId"] == "alice"
    for client in (agent, early, alice):
        await client.close()
    assert isinstance(alice, Client)
