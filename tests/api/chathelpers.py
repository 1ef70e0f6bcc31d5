"""Helpers for the chat end-to-end tests: connections, agent events, HTTP calls."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ServerProcess
from tests.wsclient import Client

AGENT = "travel-agent"


async def connect(
    server: ServerProcess,
    user: str,
    session_id: str,
    *,
    endpoint: str = "chat",
    role: str = "user",
    query: str = "",
    channels: list[str] | None = None,
) -> Client:
    """An authenticated client (``query`` is appended to the URL, e.g. ``?lastMessageId=m``)."""
    client = await Client.connect(f"{server.ws}/ws/{endpoint}/{session_id}{query}")
    await client.send(
        {
            "token": server.token(user, role=role),
            "sessionId": session_id,
            "channels": channels or [],
        }
    )
    auth = await client.recv()
    assert auth.get("success") is True, auth
    await client.recv_type("connection_established")
    return client


async def connect_agent(server: ServerProcess, agent: str = AGENT) -> Client:
    return await connect(server, agent, f"agent-{agent}", role="agent")


def event(type_: str, session_id: str | None, **payload: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": type_, "payload": payload}
    if session_id is not None:
        message["sessionId"] = session_id
    return message


def chunk(session_id: str, message_id: str, index: int, content: str, last: bool = False) -> Any:
    return event(
        "chat_message_chunk",
        session_id,
        messageId=message_id,
        content=content,
        chunkIndex=index,
        isComplete=last,
    )


def user_message(content: str, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"content": content, **extra}
    if message_id is not None:
        payload["messageId"] = message_id
    return {"type": "chat_message", "payload": payload}


def auth(server: ServerProcess, user: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, role=role)}"}


async def http(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    user: str | None = None,
    role: str = "user",
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = auth(server, user, role) if user is not None else {}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        return await client.request(method, path, headers=headers, json=json, params=params)


async def collect(client: Client, type_: str, count: int) -> list[dict[str, Any]]:
    return [await client.recv_type(type_) for _ in range(count)]


async def assert_quiet(client: Client, *types: str) -> None:
    """Nothing of ``types`` is pending: a heartbeat round trip comes back first."""
    await client.send({"type": "connection_heartbeat", "payload": {}})
    await client.recv_type("connection_heartbeat")
    leftovers = [m for m in client.backlog if m.get("type") in types]
    assert leftovers == [], leftovers
