"""The writer loop over a Starlette WebSocket on plain ASGI callables (no server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.websockets import WebSocket, WebSocketState

from tripsage_sync.api.transport.metrics import Metrics
from tripsage_sync.api.transport.outbox import Outbox

pytestmark = pytest.mark.anyio


class _Framing:
    def frame(self, item: str, queue: Any) -> str:
        return item

    def sent(self, frame: str | bytes) -> None:
        pass


async def test_a_writer_that_fails_closes_its_connection_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "websocket.send":
            message["text"].encode()  # what the server does: a lone surrogate fails here
        sent.append(message)

    websocket = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive, send)
    websocket.application_state = websocket.client_state = WebSocketState.CONNECTED
    refused: list[int] = []

    def may_close(code: int) -> bool:
        refused.append(code)
        return True

    log = logging.LoggerAdapter(logging.getLogger("test.outbox"), {})
    outbox: Outbox[str] = Outbox(
        websocket, size=8, send_timeout_s=1, metrics=Metrics(), log=log, may_close=may_close
    )
    outbox.put("fine")
    outbox.put("bad \ud800")
    outbox.put("never sent")
    with caplog.at_level(logging.WARNING):
        outbox.start(_Framing())
        assert await outbox.finish(5)
    assert [m.get("text") for m in sent if m["type"] == "websocket.send"] == ["fine"]
    assert sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "server error"}
    assert refused == [1011]
    assert not outbox.open
    assert any(
        r.levelno == logging.WARNING and "writer failed" in r.message for r in caplog.records
    )
