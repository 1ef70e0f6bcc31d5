"""End-to-end: streamed chunks gathered per session (``chat_chunk_gather_s``) keep their order.

A gather window far longer than the tests' waits: a chunk published before
it ends was published by what has to follow it (a joiner's catch-up, a tool
event, a completion, the end of an HTTP request), not by the timer.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from tests.api.chathelpers import (
    AGENT,
    assert_quiet,
    chunk,
    connect,
    connect_agent,
    event,
    http,
)
from tests.conftest import ServerProcess
from tests.wsclient import Client

pytestmark = pytest.mark.anyio

STREAM_TYPES = ("chat_message_chunk", "tool_call_start", "chat_message_complete")


async def handled(agent: Client) -> None:
    """Everything the agent sent before was handled: its connection reads in order."""
    await agent.send({"type": "connection_heartbeat", "payload": {}})
    await agent.recv_type("connection_heartbeat")


async def three_chunks_one_sent(server: ServerProcess) -> tuple[Client, Client]:
    """Alice subscribed to s-1, the agent streamed 3 chunks: 0 went at once, 1 and 2 wait."""
    alice = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    for index in range(3):
        await agent.send(chunk("s-1", "reply", index, f"p{index} "))
    assert (await alice.recv_type("chat_message_chunk"))["payload"]["chunkIndex"] == 0
    await handled(agent)
    return alice, agent


def stream_seen(client: Client) -> list[tuple[str, object]]:
    return [
        (m["type"], m["payload"].get("chunkIndex"))
        for m in client.seen
        if m.get("type") in STREAM_TYPES
    ]


async def test_what_follows_gathered_chunks_waits_for_them(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(chat_chunk_gather_s=60)
    alice, agent = await three_chunks_one_sent(server)
    await assert_quiet(alice, "chat_message_chunk")

    # A joiner: the others get the gathered chunks first, the joiner the content so far once.
    late = await connect(server, "alice", "s-1")
    catch_up = await late.recv_type("chat_message_chunk")
    assert catch_up["payload"] == {
        "messageId": "reply",
        "content": "p0 p1 p2 ",
        "isComplete": False,
        "chunkIndex": 2,
        "catchUp": True,
    }
    got = [await alice.recv_type("chat_message_chunk") for _ in range(2)]
    assert [c["payload"]["chunkIndex"] for c in got] == [1, 2]

    # A tool event and the completion come after the chunks gathered before them.
    await agent.send(chunk("s-1", "reply", 3, "p3 "))
    await agent.send(event("tool_call_start", "s-1", toolCallId="c1", toolName="search"))
    await agent.send(chunk("s-1", "reply", 4, "p4", True))
    await agent.send(
        event("chat_message_complete", "s-1", messageId="reply", finalContent="p0 p1 p2 p3 p4")
    )
    for client in (alice, late):
        await client.recv_type("chat_message_complete")
    assert stream_seen(alice) == [
        ("chat_message_chunk", 0),
        ("chat_message_chunk", 1),
        ("chat_message_chunk", 2),
        ("chat_message_chunk", 3),
        ("tool_call_start", None),
        ("chat_message_chunk", 4),
        ("chat_message_complete", None),
    ]
    assert stream_seen(late) == [
        ("chat_message_chunk", 2),  # the catch-up
        ("chat_message_chunk", 3),
        ("tool_call_start", None),
        ("chat_message_chunk", 4),
        ("chat_message_complete", None),
    ]
    for client in (alice, late, agent):
        await client.close()


async def test_chunks_posted_over_http_go_out_before_the_response(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(chat_chunk_gather_s=60)
    alice = await connect(server, "alice", "s-1")
    frames = [
        {
            "type": "chat_message_chunk",
            "payload": {"messageId": "r1", "content": c, "chunkIndex": i, "isComplete": False},
        }
        for i, c in enumerate("abc")
    ]
    posted = await http(
        server, "POST", "/api/sessions/s-1/events", user=AGENT, role="agent", json=frames
    )
    assert posted.json() == {"accepted": 3, "delivered": 3}
    got = [await alice.recv_type("chat_message_chunk") for _ in range(3)]
    assert [c["payload"]["content"] for c in got] == ["a", "b", "c"]
    await alice.close()


async def test_gathered_chunks_go_out_before_the_shutdown_drain(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(chat_chunk_gather_s=60)
    alice, agent = await three_chunks_one_sent(server)

    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    await alice.recv_type("connection_close")
    assert stream_seen(alice) == [("chat_message_chunk", i) for i in range(3)]
    for client in (alice, agent):
        await client.close()
    await asyncio.to_thread(server.stop)
