"""End-to-end: chat messages, agent streams, resume and history (real server, real sockets)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.api.chathelpers import (
    AGENT,
    assert_quiet,
    chunk,
    collect,
    connect,
    connect_agent,
    event,
    http,
    user_message,
)
from tests.conftest import ServerProcess

pytestmark = pytest.mark.anyio

ATTACHMENT = {
    "id": "att-456",
    "url": "https://example.com/file.pdf",
    "name": "itinerary.pdf",
    "contentType": "application/pdf",
    "size": 1024,
}
TOOL_CALL = {
    "id": "call-789",
    "name": "search_flights",
    "arguments": {"origin": "NYC", "destination": "LAX"},
    "state": "result",
}


async def test_message_is_stored_echoed_and_delivered_to_the_agent(server: ServerProcess) -> None:
    phone = await connect(server, "alice", "s-1")
    laptop = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    await phone.send(
        user_message("Find me a flight", attachments=[ATTACHMENT], toolCalls=[TOOL_CALL])
    )
    echoes = [await c.recv_type("chat_message") for c in (phone, laptop)]
    delivered = await agent.recv_type("chat_message")
    for message in (*echoes, delivered):
        assert message["sessionId"] == "s-1"
        assert message["userId"] == "alice"
        payload = message["payload"]
        assert payload["content"] == "Find me a flight"
        assert payload["role"] == "user"
        assert payload["attachments"] == [ATTACHMENT]
        assert payload["toolCalls"] == [TOOL_CALL]
        assert payload["messageId"].startswith("msg-")
        assert payload["seq"] >= 1
    assert len({m["payload"]["messageId"] for m in (*echoes, delivered)}) == 1

    # A client id is kept; re-sending it (offline queue after a reconnect) stores it once.
    await phone.send(user_message("Hello again", "client-1"))
    first = await phone.recv_type("chat_message")
    assert first["payload"]["messageId"] == "client-1"
    assert (await agent.recv_type("chat_message"))["payload"]["messageId"] == "client-1"
    await laptop.recv_type("chat_message")
    await phone.send(user_message("Hello again", "client-1"))
    again = await phone.recv_type("chat_message")
    assert again["payload"]["seq"] == first["payload"]["seq"]
    await assert_quiet(agent, "chat_message")
    await assert_quiet(laptop, "chat_message")

    history = await http(server, "GET", "/api/sessions/s-1/messages", user="alice")
    assert history.status_code == 200
    stored = history.json()["messages"]
    assert [m["content"] for m in stored] == ["Find me a flight", "Hello again"]
    assert stored[0]["attachments"] == [ATTACHMENT]
    assert stored[0]["toolCalls"] == [TOOL_CALL]
    for client in (phone, laptop, agent):
        await client.close()


async def test_agent_reply_chunks_arrive_in_order_once_and_are_stored(
    server: ServerProcess,
) -> None:
    alice = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    parts = ["I ", "can ", "help ", "you ", "find ", "flights!"]
    # Out of order and repeated, as a concurrent agent or a retry would send them.
    for index in [0, 2, 1, 1, 4, 3, 0, 5, 2]:
        await agent.send(chunk("s-1", "reply-1", index, parts[index], index == 5))
    chunks = await collect(alice, "chat_message_chunk", 6)
    assert [c["payload"]["chunkIndex"] for c in chunks] == list(range(6))
    assert "".join(c["payload"]["content"] for c in chunks) == "".join(parts)
    assert chunks[-1]["payload"]["isComplete"] is True
    await agent.send(
        event(
            "chat_message_complete",
            "s-1",
            messageId="reply-1",
            finalContent="".join(parts),
            metadata={"processingTime": 1.5, "tokenCount": 12},
        )
    )
    complete = await alice.recv_type("chat_message_complete")
    assert complete["payload"]["finalContent"] == "I can help you find flights!"
    assert complete["payload"]["metadata"] == {"processingTime": 1.5, "tokenCount": 12}
    # A late duplicate chunk or completion changes nothing.
    await agent.send(chunk("s-1", "reply-1", 3, "you "))
    await agent.send(event("chat_message_complete", "s-1", messageId="reply-1", finalContent="x"))
    await assert_quiet(alice, "chat_message_chunk", "chat_message_complete")

    stored = (await http(server, "GET", "/api/sessions/s-1/messages", user="alice")).json()
    [reply] = stored["messages"]
    assert reply["messageId"] == "reply-1"
    assert reply["role"] == "assistant"
    assert reply["userId"] == AGENT
    assert reply["content"] == "I can help you find flights!"
    assert reply["metadata"] == {"processingTime": 1.5, "tokenCount": 12}
    assert reply["seq"] == complete["payload"]["seq"]
    await alice.close()
    await agent.close()


async def test_fast_shuffled_stream_reaches_every_subscriber_in_order(
    server: ServerProcess,
) -> None:
    subscribers = [await connect(server, "alice", "s-fast") for _ in range(3)]
    agent = await connect_agent(server)
    total = 400
    order = list(range(total))
    rng = random.Random(7)
    for start in range(0, total, 16):  # shuffled within windows, with duplicates
        window = order[start : start + 16]
        rng.shuffle(window)
        order[start : start + 16] = window
    order.remove(0)
    order.insert(0, 0)  # the first chunk to arrive sets the start (0 or 1)
    order += rng.sample(range(total), 40)
    frames = [chunk("s-fast", "fast", i, f"{i},", i == total - 1) for i in order]
    await agent.send({"type": "batch", "payload": {"messages": frames[:100]}})
    for frame in frames[100:]:
        await agent.send(frame)
    for client in subscribers:
        got = await collect(client, "chat_message_chunk", total)
        assert [c["payload"]["chunkIndex"] for c in got] == list(range(total))
        assert "".join(c["payload"]["content"] for c in got) == "".join(
            f"{i}," for i in range(total)
        )
    await assert_quiet(subscribers[0], "chat_message_chunk")
    # A chunk too far ahead of the stream is refused to the agent.
    await agent.send(chunk("s-fast", "other", 5000, "x"))
    error = await agent.recv_type("error")
    assert error["payload"]["code"] == "INVALID_MESSAGE_FORMAT"
    for client in (*subscribers, agent):
        await client.close()


async def test_a_stream_numbered_from_one_is_streamed_at_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # A window far longer than the test's waits: nothing may be held for index 0.
    server = server_factory(chat_chunk_reorder_window_s=60)
    alice = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    # The spec's example chunk: chunkIndex 1 is the first one.
    await agent.send(chunk("s-1", "msg-123", 1, "I can help you find"))
    first = await alice.recv_type("chat_message_chunk")
    assert first["payload"] == {
        "messageId": "msg-123",
        "content": "I can help you find",
        "isComplete": False,
        "chunkIndex": 1,
    }
    for index, text in [(3, " trip!"), (2, " the best flights for your")]:
        await agent.send(chunk("s-1", "msg-123", index, text, index == 3))
    rest = await collect(alice, "chat_message_chunk", 2)
    assert [c["payload"]["chunkIndex"] for c in rest] == [2, 3]
    assert rest[-1]["payload"]["isComplete"] is True
    # A late joiner gets the content so far, numbered like the stream.
    late = await connect(server, "alice", "s-1", query="?lastMessageId=none")
    assert (await late.recv_type("chat_resumed"))["payload"]["streaming"] == ["msg-123"]
    catch_up = await late.recv_type("chat_message_chunk")
    assert catch_up["payload"] == {
        "messageId": "msg-123",
        "content": "I can help you find the best flights for your trip!",
        "isComplete": True,
        "chunkIndex": 3,
        "catchUp": True,
    }
    final = "I can help you find the best flights for your trip!"
    await agent.send(event("chat_message_complete", "s-1", messageId="msg-123", finalContent=final))
    for client in (alice, late):
        complete = await client.recv_type("chat_message_complete")
        assert complete["payload"]["finalContent"] == final
    for client in (alice, late, agent):
        await client.close()


async def test_a_gap_is_skipped_after_the_reorder_window(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(chat_chunk_reorder_window_s=0.3)
    alice = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    parts = ["Paris ", "in ", "spring ", "is ", "lovely."]
    # Chunk 1 is lost on the agent's side. One frame, so that a slow machine
    # cannot make 3 later than 4's window.
    frames = [chunk("s-1", "reply-gap", i, parts[i], i == 4) for i in [0, 2, 4, 3]]
    await agent.send({"type": "batch", "payload": {"messages": frames}})
    got = await collect(alice, "chat_message_chunk", 4)
    assert [c["payload"]["chunkIndex"] for c in got] == [0, 2, 3, 4]
    assert "".join(c["payload"]["content"] for c in got) == "Paris spring is lovely."
    # Chunk 1 arriving after the window is late: dropped, the order stays.
    await agent.send(chunk("s-1", "reply-gap", 1, parts[1]))
    await assert_quiet(alice, "chat_message_chunk")
    late = await connect(server, "alice", "s-1")
    catch_up = await late.recv_type("chat_message_chunk")
    assert catch_up["payload"]["content"] == "Paris spring is lovely."
    assert catch_up["payload"]["chunkIndex"] == 4
    # The completion stays authoritative.
    await agent.send(
        event("chat_message_complete", "s-1", messageId="reply-gap", finalContent="".join(parts))
    )
    for client in (alice, late):
        complete = await client.recv_type("chat_message_complete")
        assert complete["payload"]["finalContent"] == "Paris in spring is lovely."
    for client in (alice, late, agent):
        await client.close()


async def test_reconnect_mid_stream_gets_content_so_far_once_then_the_rest(
    server: ServerProcess,
) -> None:
    alice = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    for index in range(5):
        await agent.send(chunk("s-1", "reply-9", index, f"part{index} "))
    await collect(alice, "chat_message_chunk", 5)
    await alice.close()  # the phone goes through a tunnel

    late = await connect(server, "alice", "s-1")
    catch_up = await late.recv_type("chat_message_chunk")
    assert catch_up["payload"] == {
        "messageId": "reply-9",
        "content": "part0 part1 part2 part3 part4 ",
        "isComplete": False,
        "chunkIndex": 4,
        "catchUp": True,
    }
    for index in range(5, 8):
        await agent.send(chunk("s-1", "reply-9", index, f"part{index} ", index == 7))
    rest = await collect(late, "chat_message_chunk", 3)
    assert [c["payload"]["chunkIndex"] for c in rest] == [5, 6, 7]
    await agent.send(
        event("chat_message_complete", "s-1", messageId="reply-9", finalContent="all parts")
    )
    assert (await late.recv_type("chat_message_complete"))["payload"]["finalContent"] == "all parts"
    await assert_quiet(late, "chat_message_chunk")
    await late.close()
    await agent.close()


async def test_resume_replays_missed_messages_in_order(server: ServerProcess) -> None:
    phone = await connect(server, "alice", "s-1")
    laptop = await connect(server, "alice", "s-1")
    agent = await connect_agent(server)
    await phone.send(user_message("one", "m-1"))
    await phone.recv_type("chat_message")
    # The laptop sees "one" too: take it, so that each wait below is for its own message
    # (else "three" could still be being stored when the phone resumes, and arrive live).
    assert (await laptop.recv_type("chat_message"))["payload"]["content"] == "one"
    await phone.close()  # saw m-1 only
    for text in ("two", "three"):
        await laptop.send(user_message(text))
        assert (await laptop.recv_type("chat_message"))["payload"]["content"] == text
    await agent.send(chunk("s-1", "reply-2", 0, "Thinking"))
    await laptop.recv_type("chat_message_chunk")

    phone = await connect(server, "alice", "s-1", query="?lastMessageId=m-1")
    replayed = await collect(phone, "chat_message", 2)
    assert [m["payload"]["content"] for m in replayed] == ["two", "three"]
    assert all(m["payload"]["replay"] is True for m in replayed)
    assert replayed[0]["payload"]["seq"] < replayed[1]["payload"]["seq"]
    resumed = await phone.recv_type("chat_resumed")
    assert resumed["payload"] == {
        "lastMessageId": "m-1",
        "found": True,
        "replayed": 2,
        "gap": None,
        "streaming": ["reply-2"],
    }
    catch_up = await phone.recv_type("chat_message_chunk")
    assert catch_up["payload"]["catchUp"] is True
    assert catch_up["payload"]["content"] == "Thinking"
    # The order on the wire: replay, chat_resumed, catch-up, then live events.
    order = [m.get("type") for m in phone.seen]
    assert order[-4:] == ["chat_message", "chat_message", "chat_resumed", "chat_message_chunk"]
    await laptop.send(user_message("four"))
    live = await phone.recv_type("chat_message")
    assert live["payload"]["content"] == "four"
    assert "replay" not in live["payload"]
    for client in (phone, laptop, agent):
        await client.close()


async def test_resume_past_the_replay_limit_reports_a_gap(server_factory: type) -> None:
    server: ServerProcess = server_factory(chat_replay_max_messages=2)
    alice = await connect(server, "alice", "s-1")
    seqs = []
    for text in ("a", "b", "c", "d"):
        await alice.send(user_message(text))
        seqs.append((await alice.recv_type("chat_message"))["payload"]["seq"])
    again = await connect(server, "alice", "s-1", query="?lastMessageId=never-seen")
    replayed = await collect(again, "chat_message", 2)
    assert [m["payload"]["content"] for m in replayed] == ["c", "d"]
    resumed = (await again.recv_type("chat_resumed"))["payload"]
    assert resumed["found"] is False
    assert resumed["gap"] == {"afterSeq": 0, "beforeSeq": seqs[2]}
    # The gap is fetched over HTTP.
    page = await http(
        server, "GET", "/api/sessions/s-1/messages", user="alice", params={"after": 0, "limit": 2}
    )
    assert [m["content"] for m in page.json()["messages"]] == ["a", "b"]
    assert page.json()["hasMore"] is True
    await alice.close()
    await again.close()


async def test_history_over_http_is_paged_and_for_members_only(server: ServerProcess) -> None:
    alice = await connect(server, "alice", "s-1")
    for n in range(5):
        await alice.send(user_message(f"m{n}"))
        await alice.recv_type("chat_message")
    path = "/api/sessions/s-1/messages"
    first = (await http(server, "GET", path, user="alice", params={"limit": 2})).json()
    assert [m["content"] for m in first["messages"]] == ["m0", "m1"]
    assert first["hasMore"] is True
    nxt = (
        await http(
            server, "GET", path, user="alice", params={"after": first["lastSeq"], "limit": 10}
        )
    ).json()
    assert [m["content"] for m in nxt["messages"]] == ["m2", "m3", "m4"]
    assert nxt["hasMore"] is False
    older = (
        await http(server, "GET", path, user="alice", params={"before": nxt["lastSeq"], "limit": 2})
    ).json()
    assert [m["content"] for m in older["messages"]] == ["m2", "m3"]
    assert older["hasMore"] is True

    assert (await http(server, "GET", path)).status_code == 401
    denied = await http(server, "GET", path, user="bob")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    assert (await http(server, "GET", "/api/sessions/nope/messages", user="bob")).status_code == 403
    assert (await http(server, "GET", path, user=AGENT, role="agent")).status_code == 200
    bad = await http(server, "GET", path, user="alice", params={"limit": "lots"})
    assert bad.status_code == 400
    await alice.close()
