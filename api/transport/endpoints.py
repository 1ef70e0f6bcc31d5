"""HTTP and WebSocket endpoints of the connection layer.

Before a WebSocket upgrade is accepted: the ``Origin`` allowlist (browsers
only; no Origin header means a native client), shutdown, the per-IP
connection rate and the server-wide cap on authenticated connections. Sockets
still awaiting their auth frame have a smaller cap of their own: when it is
full a new one displaces the oldest of the busiest address
(:meth:`api.transport.hub.Hub.make_room_for_unauthenticated`), so a flood of sockets
that never authenticate cannot lock clients out. Refusals after the upgrade
use the documented ``error`` event and close codes.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from tripsage_sync.api.transport.connection import Connection
from tripsage_sync.api.transport.services import Services
from tripsage_sync.sync.errors import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_RATE_LIMITED,
    ConnectionLimitExceeded,
    InvalidMessage,
    SyncError,
)
from tripsage_sync.sync.events import error_event
from tripsage_sync.sync.wire import encode

SESSION_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

__all__ = [
    "admit_upgrade",
    "agent_status_endpoint",
    "chat_endpoint",
    "client_ip",
    "origin_allowed",
]


def _services(conn: Request | WebSocket) -> Services:
    services: Services = conn.app.state.services
    return services


def client_ip(conn: Request | WebSocket, trusted: tuple[str, ...]) -> str:
    """The client's address; ``X-Forwarded-For`` only from trusted proxies."""
    peer = conn.client.host if conn.client else "unknown"
    if not trusted:
        return peer
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not is_trusted(peer):
        return peer
    forwarded = conn.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    # Walk from the nearest hop; the first untrusted address is the client.
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower() != ""


async def admit_upgrade(websocket: WebSocket, services: Services) -> str | None:
    """The checks every WebSocket endpoint makes before the upgrade: the Origin
    allowlist (403) and shutdown (503). The client's address, or ``None`` when
    the upgrade was refused with that HTTP response."""
    settings = services.settings
    if not origin_allowed(websocket, settings.allowed_origins):
        await websocket.send_denial_response(PlainTextResponse("Origin not allowed", 403))
        return None
    if not services.hub.accepting:
        await websocket.send_denial_response(PlainTextResponse("Server shutting down", 503))
        return None
    return client_ip(websocket, settings.trusted_proxies)


async def _refuse_after_accept(websocket: WebSocket, exc: SyncError, code: int) -> None:
    await websocket.accept()
    now_ms = _services(websocket).clock.now_ms()
    await websocket.send_text(encode(error_event(exc, now_ms=now_ms)))
    await websocket.close(code, exc.code.lower())


async def _serve(websocket: WebSocket, endpoint: str) -> None:
    services = _services(websocket)
    settings, hub = services.settings, services.hub
    ip = await admit_upgrade(websocket, services)
    if ip is None:
        return
    limited = hub.check(hub.connection_limiter, ip, "connections per IP")
    if limited is not None:
        services.count_rate_limited("connections")
        await _refuse_after_accept(websocket, limited, CLOSE_RATE_LIMITED)
        return
    if hub.authenticated_count() >= settings.max_connections:
        exc = ConnectionLimitExceeded(
            "Server connection limit reached",
            retry_after=settings.reconnect_after_s,
            details={"limit": settings.max_connections},
        )
        await _refuse_after_accept(websocket, exc, CLOSE_RATE_LIMITED)
        return
    session_id = websocket.path_params["session_id"]
    if not SESSION_ID.match(session_id):
        bad_id = InvalidMessage(
            "Invalid session id",
            details={
                "field": "session_id",
                "expected": "1-128 of [A-Za-z0-9_.:@-]",
                "received": session_id[:128],
            },
        )
        await _refuse_after_accept(websocket, bad_id, CLOSE_POLICY_VIOLATION)
        return
    displaced = hub.make_room_for_unauthenticated()
    if displaced is not None:
        displaced.displace()
    await websocket.accept()
    conn = Connection(
        websocket, services, endpoint=endpoint, path_session_id=session_id, client_ip=ip
    )
    await conn.run()


async def chat_endpoint(websocket: WebSocket) -> None:
    await _serve(websocket, "chat")


async def agent_status_endpoint(websocket: WebSocket) -> None:
    await _serve(websocket, "agent-status")
