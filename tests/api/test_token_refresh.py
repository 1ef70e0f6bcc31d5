"""End-to-end: live tokens (issue 10 item 7) over real sockets.

A connection lives until its token's ``exp``: ``auth_expiring`` before it,
``connection_error`` ``TOKEN_EXPIRED`` and close 3000 at it (Yjs: 4401),
unless ``auth_refresh {token}`` moved it. Tokens here live a few seconds
(``ServerProcess.token(ttl_s=...)``); every wait is on an event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.api.test_trips import OUTCOMES, create_trip, get_trip, join, update
from tests.api.test_yjs import FIELDS, frames_until_close, has
from tests.api.yjspeer import NodePeer
from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client
from tripsage_sync.client import AuthenticationFailed, SyncClient
from tripsage_sync.sync.wire import iso_ms, parse_iso_ms
from tripsage_sync.sync.ysync import auth_denied_frame

pytestmark = pytest.mark.anyio

SHORT_TTL_S = 4  # exp is a whole second: 3-4 s left, enough to connect on a busy machine


def exp_ms(token: str) -> int:
    claims = jwt.decode(token, options={"verify_signature": False})
    return int(claims["exp"]) * 1000


async def metrics_text(server: ServerProcess) -> str:
    async with httpx.AsyncClient(base_url=server.http) as http:
        return (await http.get("/metrics")).text


def refresh(token: str, message_id: str = "r-1") -> dict[str, Any]:
    return {"id": message_id, "type": "auth_refresh", "payload": {"token": token}}


async def until_server_time(client: Client, at_ms: int) -> None:
    """Read (answering heartbeats) until a server heartbeat stamped after ``at_ms``."""
    while True:
        beat = await client.recv_type("connection_heartbeat")
        echo = beat["payload"]["serverTime"]
        await client.send({"type": "connection_heartbeat", "payload": {"serverTime": echo}})
        if parse_iso_ms(echo) > at_ms:
            return


async def test_a_short_token_is_warned_then_closed_at_exp(server: ServerProcess) -> None:
    await create_trip(server)
    token = server.token("alice", ttl_s=SHORT_TTL_S)
    client, _, _ = await open_client(server, "alice", "s-alice", token=token)
    # Less than 60 s left at connect: the warning comes at once.
    warning = await client.recv_type("auth_expiring")
    assert warning["payload"]["expiresAt"] == iso_ms(exp_ms(token))
    assert parse_iso_ms(warning["payload"]["refreshBefore"]) <= exp_ms(token)
    assert 0 < warning["payload"]["expiresIn"] <= SHORT_TTL_S
    await client.send({"type": "collaboration_session_start", "payload": {"tripId": "trip-1"}})
    started = await client.recv_type("collaboration_session_started")
    version = started["payload"]["version"]
    expired = await client.recv_type("connection_error", timeout=SHORT_TTL_S + 10)
    assert expired["payload"]["errorCode"] == "TOKEN_EXPIRED"
    assert time.time() * 1000 >= exp_ms(token) - 50  # not before exp (50 ms of clock rounding)
    # Whatever it still sends is never handled: no join, no edit.
    try:
        await client.send({"type": "collaboration_session_start", "payload": {"tripId": "trip-1"}})
        await client.send(update("late", "destination", "Rome", version))
    except ConnectionClosed:
        pass
    assert await client.closed() == 3000
    assert not [m for m in client.seen if m.get("type") in (*OUTCOMES, "error")]
    assert (await get_trip(server))["fields"]["destination"] == "Paris"
    assert 'tripsage_auth_failures_total{code="TOKEN_EXPIRED"} 1.0' in await metrics_text(server)


async def test_a_refresh_keeps_the_connection_past_the_first_exp(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(heartbeat_interval_s=1)
    await create_trip(server)
    token = server.token("alice", ttl_s=SHORT_TTL_S)
    client, _, _ = await open_client(server, "alice", "s-alice", token=token)
    await client.recv_type("auth_expiring")
    fresh = server.token("alice", ttl_s=3600)
    await client.send(refresh(fresh))
    refreshed = await client.recv_type("auth_refreshed", "error")
    assert refreshed["type"] == "auth_refreshed", refreshed
    assert refreshed["payload"] == {"expiresAt": iso_ms(exp_ms(fresh))}
    await until_server_time(client, exp_ms(token) + 500)
    # Still open and still allowed to join and edit after the first token's exp.
    await client.send({"type": "collaboration_session_start", "payload": {"tripId": "trip-1"}})
    started = await client.recv_type("collaboration_session_started")
    await client.send(update("u1", "destination", "Rome", started["payload"]["version"]))
    outcome = await client.recv_type(*OUTCOMES)
    assert outcome["type"] == "optimistic_update_confirmed", outcome
    assert not [m for m in client.seen if m.get("type") == "connection_error"]
    await client.close()


async def test_refused_refreshes_change_nothing(server: ServerProcess) -> None:
    token = server.token("alice", ttl_s=SHORT_TTL_S)
    client, _, _ = await open_client(server, "alice", "s-alice", token=token)
    await client.recv_type("auth_expiring")
    expired_token = server.authority.mint("alice", now_s=time.time() - 120, ttl_s=60)
    other_secret = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 3600}, "y" * 40, algorithm="HS256"
    )
    refusals = [
        (server.token("bob"), "PERMISSION_DENIED"),  # another user
        (server.token("alice", role="admin"), "PERMISSION_DENIED"),  # another role
        (expired_token, "TOKEN_EXPIRED"),
        (other_secret, "INVALID_TOKEN"),
        ("not-a-jwt", "INVALID_TOKEN"),
    ]
    for index, (bad, code) in enumerate(refusals):
        await client.send(refresh(bad, f"r-{index}"))
        error = await client.recv_type("error", "auth_refreshed")
        assert error["type"] == "error", error
        assert error["payload"]["code"] == code
        assert error["payload"]["details"]["messageId"] == f"r-{index}"
    await client.send({"type": "auth_refresh", "payload": {}})
    invalid = await client.recv_type("error")
    assert invalid["payload"]["code"] == "INVALID_MESSAGE_FORMAT"
    # Still open (a refused refresh is not a reason to close)...
    await client.send({"type": "connection_heartbeat", "payload": {}})
    await client.recv_type("connection_heartbeat")
    # ...and the old expiry kept running.
    expired = await client.recv_type("connection_error", timeout=SHORT_TTL_S + 10)
    assert expired["payload"]["errorCode"] == "TOKEN_EXPIRED"
    assert await client.closed() == 3000
    assert not [m for m in client.seen if m.get("type") == "auth_refreshed"]
    logs = server.logs()
    assert "token refresh refused" in logs
    assert token not in logs
    assert other_secret not in logs


async def test_a_yjs_peer_is_closed_at_exp_and_reconnects_with_a_fresh_token(
    server: ServerProcess,
) -> None:
    await create_trip(server, fields=FIELDS, collaborators={"bob": "viewer"})
    token = server.token("alice", ttl_s=SHORT_TTL_S)
    raw = await connect(f"{server.ws}/ws/yjs/trip-1?token={token}", max_size=None)
    frames, code = await asyncio.wait_for(frames_until_close(raw), SHORT_TTL_S + 10)
    assert code == 4401
    assert frames[-1] == auth_denied_frame("token expired")
    assert 'tripsage_auth_failures_total{code="TOKEN_EXPIRED"} 1.0' in await metrics_text(server)
    assert time.time() * 1000 >= exp_ms(token) - 50
    # Stock y-websocket stops on 4401; the app gives it a fresh token and reconnects.
    # (A longer life than SHORT_TTL_S: starting node may take seconds on a busy machine.)
    peer_token = server.token("alice", ttl_s=2 * SHORT_TTL_S)
    peer = await NodePeer.start(server, "trip-1", "alice", token=peer_token)
    try:
        await peer.synced()
        terminal = await peer.wait(lambda e: e["event"] == "terminal", timeout=3 * SHORT_TTL_S)
        assert terminal["code"] == 4401
        mark = peer.mark()
        await peer.send({"cmd": "token", "token": server.token("alice")})
        await peer.wait_event("sync", synced=True, after=mark)
        watcher, _ = await join(server, "bob")
        await peer.send({"cmd": "set", "key": "destination", "value": "Rome"})
        await peer.trip(has(destination="Rome"))
        await watcher.recv_matching("trip_update_broadcast", lambda p: p["updatedBy"] == "alice")
        await watcher.close()
    finally:
        await peer.close()
    assert (await get_trip(server))["fields"]["destination"] == "Rome"


async def test_the_python_client_refreshes_through_its_callback(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(heartbeat_interval_s=1)
    await create_trip(server)
    first = server.token("alice", ttl_s=SHORT_TTL_S)
    issued: list[str] = []

    async def token_provider() -> str:
        issued.append(server.token("alice", ttl_s=3600))
        return issued[-1]

    # heartbeat_interval_s: pinging from the start (the server's 1 s is learnt after the first ping)
    client = SyncClient(server.ws, first, token_provider=token_provider, heartbeat_interval_s=0.5)
    events = client.events()
    try:
        async with asyncio.timeout(10):
            await client.connect()
        refreshed = None
        async with asyncio.timeout(SHORT_TTL_S + 10):
            while True:
                event = await events.get()
                if event["type"] == "auth_refreshed":
                    refreshed = event
                if event["type"] == "connection_heartbeat" and refreshed is not None:
                    if parse_iso_ms(event["payload"]["serverTime"]) > exp_ms(first) + 500:
                        break
        assert refreshed is not None
        assert refreshed["payload"]["expiresAt"] == iso_ms(exp_ms(issued[0]))
        assert client.state == "open"
        assert client.metrics().reconnections == 0
        async with asyncio.timeout(10):
            view = await client.join("trip-1")
        assert view.fields["destination"] == "Paris"
        # A reconnect (the first token has expired by now) uses the fresh one.
        client.abort()
        async with asyncio.timeout(10):
            await client.wait_until(lambda: client.metrics().reconnections == 1)
            await client.wait_until(lambda: client.state == "open")
        assert client.error is None
    finally:
        await client.close()


async def test_the_python_client_reconnects_with_a_fresh_token_after_expiry(
    server: ServerProcess,
) -> None:
    calls: list[str] = []

    async def token_provider() -> str:
        calls.append("call")
        if len(calls) == 1:  # the app could not refresh in time (say, its auth server was down)
            raise RuntimeError("auth server unavailable")
        return server.token("alice", ttl_s=3600)

    first = server.token("alice", ttl_s=SHORT_TTL_S)
    client = SyncClient(server.ws, first, token_provider=token_provider)
    try:
        async with asyncio.timeout(10):
            await client.connect()
        async with asyncio.timeout(SHORT_TTL_S + 10):
            await client.wait_until(lambda: client.metrics().reconnections == 1)
            await client.wait_until(lambda: client.state == "open")
        assert client.error is None
        assert len(calls) == 2
        assert time.time() * 1000 >= exp_ms(first) - 50  # it was the expiry that closed it
        async with asyncio.timeout(10):
            assert await client.ping() > 0
    finally:
        await client.close()


async def test_the_python_client_replaces_a_token_refused_as_expired(server: ServerProcess) -> None:
    stale = server.authority.mint("alice", now_s=time.time() - 120, ttl_s=60)

    async def token_provider() -> str:
        return server.token("alice")

    client = SyncClient(server.ws, stale, token_provider=token_provider)
    try:
        async with asyncio.timeout(10):
            await client.connect()
        assert client.user_id == "alice"
    finally:
        await client.close()
    # Without a provider the refusal ends the client, as before.
    plain = SyncClient(server.ws, stale)
    with pytest.raises(AuthenticationFailed) as refused:
        async with asyncio.timeout(10):
            await plain.connect()
    assert refused.value.code == "TOKEN_EXPIRED"
    await plain.close()
