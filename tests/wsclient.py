"""A small test client over real WebSockets (the ``websockets`` package).

Every wait is on an event with a timeout: :meth:`Client.recv_type` returns the
first message of a type, :meth:`Client.closed` the close code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerProcess

TIMEOUT_S = 10.0


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        # Received but not yet returned by recv_type, oldest first.
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        ws = await connect(url, open_timeout=TIMEOUT_S, max_size=None, **kwargs)
        return cls(ws)

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        self.seen.append(message)
        return message

    async def recv_type(self, *types: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """The oldest unclaimed message whose ``type`` is one of ``types``.

        Messages of other types stay in :attr:`backlog` for a later call.
        """
        for index, message in enumerate(self.backlog):
            if message.get("type") in types:
                return self.backlog.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                unpacked = (
                    message["payload"]["messages"] if message.get("type") == "batch" else [message]
                )
                found = None
                for inner in unpacked:
                    if found is None and inner.get("type") in types:
                        found = dict(inner)
                    else:
                        self.backlog.append(inner)
                if found is not None:
                    return found

    async def recv_matching(
        self, type_: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT_S
    ) -> dict[str, Any]:
        """The first message of ``type_`` whose payload satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv_type(type_, timeout=timeout)
                if predicate(message["payload"]):
                    return message

    async def closed(self, timeout: float = TIMEOUT_S) -> int | None:
        """Read until the server closes; the close code."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.ws.recv()
                    self.seen.append(json.loads(raw))
        except ConnectionClosed:
            pass
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


async def open_client(
    server: ServerProcess,
    user: str = "alice",
    session_id: str = "s-1",
    *,
    endpoint: str = "chat",
    channels: list[str] | None = None,
    token: str | None = None,
    role: str = "user",
    features: list[str] | None = None,
) -> tuple[Client, dict[str, Any], dict[str, Any]]:
    """Connect and authenticate; returns the client, auth response, established event."""
    client = await Client.connect(f"{server.ws}/ws/{endpoint}/{session_id}")
    request: dict[str, Any] = {
        "token": token or server.token(user, role=role),
        "sessionId": session_id,
        "channels": channels or [],
    }
    if features:
        request["features"] = features
    await client.send(request)
    auth = await client.recv()
    assert auth.get("success") is True, auth
    established = await client.recv_type("connection_established")
    return client, auth, established
