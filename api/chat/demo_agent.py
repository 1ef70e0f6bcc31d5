"""The demo agent, an example only: a reference agent for TripSage Sync.

It does no travel planning. It is part of the package because
``tripsage-sync serve --demo-agent`` runs it.

It shows the agent side of the chat protocol with nothing but a WebSocket
client (the ``websockets`` package):

1. connect to ``/ws/chat/agent-{agentId}`` and authenticate with a token whose
   ``role`` is ``agent``; every agent connection joins the server's internal
   ``agents`` channel and so receives every user's ``chat_message`` (envelope
   ``sessionId`` and ``userId``);
2. answer each one in its session (envelope ``sessionId``): an
   ``agent_status_update``, a fake ``search_flights`` tool call with progress,
   the reply streamed as ``chat_message_chunk`` (``chunkIndex`` 0, 1, ...) and
   a ``chat_message_complete`` with the final text, which the server stores;
3. reconnect with a backoff when the connection drops.

Run it against a server (``tripsage-sync token --role agent --user echo-agent``
prints a token)::

    python -m tripsage_sync.api.chat.demo_agent --url ws://127.0.0.1:8000 --token "$TOKEN"

``tripsage-sync serve --demo-agent`` runs the same code in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["reply_events", "run_agent"]

logger = logging.getLogger(__name__)

AGENT_ID: Final = "echo-agent"
WORDS_PER_CHUNK: Final = 3
MAX_BACKOFF_S: Final = 10.0


def _event(type_: str, session_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "sessionId": session_id, "payload": payload}


def reply_events(
    session_id: str, message_id: str, content: str, *, agent_id: str = AGENT_ID
) -> list[dict[str, Any]]:
    """Every event the example sends in answer to one user message, in order."""
    reply_id = f"reply-{message_id}"
    call_id = f"call-{message_id}"
    text = (
        f'You said: "{content[:200]}". I searched flights for you and found one '
        "on Example Air for $299. (This answer comes from the example echo agent.)"
    )
    words = text.split(" ")
    groups = [words[i : i + WORDS_PER_CHUNK] for i in range(0, len(words), WORDS_PER_CHUNK)]
    # Every chunk but the last keeps its trailing space, so the chunks join to the text.
    chunks = [" ".join(group) + " " for group in groups[:-1]] + [" ".join(groups[-1])]
    status = {"agentId": agent_id, "isActive": True, "currentTask": "Answering your message"}
    events = [
        _event("agent_status_update", session_id, {**status, "progress": 0.0}),
        _event(
            "tool_call_start",
            session_id,
            {
                "toolCallId": call_id,
                "toolName": "search_flights",
                "arguments": {"query": content[:100]},
                "estimatedDuration": 0.2,
            },
        ),
        _event(
            "tool_call_progress",
            session_id,
            {"toolCallId": call_id, "progress": 0.5, "status": "Searching airline APIs..."},
        ),
        _event(
            "tool_call_complete",
            session_id,
            {
                "toolCallId": call_id,
                "result": {"flights": [{"airline": "Example Air", "price": 299}]},
                "executionTime": 0.2,
            },
        ),
    ]
    for index, chunk in enumerate(chunks):
        events.append(
            _event(
                "chat_message_chunk",
                session_id,
                {
                    "messageId": reply_id,
                    "content": chunk,
                    "isComplete": index == len(chunks) - 1,
                    "chunkIndex": index,
                },
            )
        )
    events.append(
        _event(
            "chat_message_complete",
            session_id,
            {
                "messageId": reply_id,
                "finalContent": "".join(chunks),
                "metadata": {"agent": agent_id, "chunks": len(chunks), "example": True},
            },
        )
    )
    events.append(
        _event("agent_status_update", session_id, {"agentId": agent_id, "isActive": False})
    )
    return events


async def _answer(
    ws: ClientConnection, event: dict[str, Any], agent_id: str, delay_s: float
) -> None:
    payload = event.get("payload") or {}
    session_id = event.get("sessionId")
    if payload.get("role") != "user" or not isinstance(session_id, str):
        return
    started = time.monotonic()
    for reply in reply_events(
        session_id, str(payload.get("messageId")), str(payload.get("content", ""))
    ):
        await ws.send(json.dumps(reply))
        if delay_s and reply["type"] in ("chat_message_chunk", "tool_call_progress"):
            await asyncio.sleep(delay_s)  # a typing effect for people watching
    logger.info("answered a message in %.2f s", time.monotonic() - started)


async def _serve_once(url: str, token: str, agent_id: str, delay_s: float) -> None:
    async with connect(f"{url}/ws/chat/agent-{agent_id}", open_timeout=10, max_size=None) as ws:
        await ws.send(json.dumps({"token": token}))
        response = json.loads(await ws.recv())
        if response.get("success") is not True:
            raise PermissionError(f"authentication refused: {response.get('code')}")
        logger.info("example agent %s connected", agent_id)
        async for raw in ws:
            event = json.loads(raw)
            if event.get("type") == "chat_message":
                await _answer(ws, event, agent_id, delay_s)


async def run_agent(
    url: str,
    token: str | Callable[[], str],
    *,
    agent_id: str = AGENT_ID,
    delay_s: float = 0.05,
) -> None:
    """Serve until cancelled, reconnecting with a backoff.

    ``url`` is ``ws://host:port``; ``token`` a JWT with role ``agent``, or a
    function returning a fresh one for every (re)connection.
    """
    backoff_s = 0.2
    while True:
        try:
            await _serve_once(url, token if isinstance(token, str) else token(), agent_id, delay_s)
            backoff_s = 0.2
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
            logger.info("example agent disconnected (%s); retrying", type(exc).__name__)
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)


def main() -> None:
    parser = argparse.ArgumentParser(description="EXAMPLE echo agent for TripSage Sync")
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--token", required=True, help="a JWT with role 'agent'")
    parser.add_argument("--agent-id", default=AGENT_ID)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between chunks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_agent(args.url, args.token, agent_id=args.agent_id, delay_s=args.delay))


if __name__ == "__main__":
    main()
