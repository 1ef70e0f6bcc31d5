"""The connection loop: dial, authenticate, serve, reconnect (``websocket-api.md``
"Authentication", "Reconnection Strategy", "Connection Close Codes").

Each connection opens ``{url}/ws/{endpoint}/{sessionId}``, sends the
"Authentication Request" and reads the response, then hands the socket to the
client's ``serve`` (resume, writer, heartbeat, reading) until it ends. A refusal,
or a close with 1000, 1008 or 3000, ends the client; any other loss is retried:
attempt *n* waits ``reconnect_delay_s * 2**(n-1)`` (capped at
``max_reconnect_delay_s``, and never sooner than a ``connection_close``'s
``reconnectAfter``), giving up after ``max_reconnect_attempts`` consecutive
failures (``None``: never), or at once when the very first attempt fails and
``fail_unreached`` is set (a command line that was given a wrong URL). An
expired token (refused at connect, or a 3000 after ``TOKEN_EXPIRED``) asks the
token provider once more instead of ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tripsage_sync.client.base import NO_RECONNECT_CLOSE_CODES, AuthenticationFailed
from tripsage_sync.client.metrics import Meter
from tripsage_sync.client.state import ClientState
from tripsage_sync.client.token import TokenSource

__all__ = ["ConnectOptions", "Connector"]

logger = logging.getLogger(__name__)


class ConnectOptions(Protocol):
    """Where and how to connect: the client's public settings, read at each use."""

    ws_url: str
    session_id: str
    channels: list[str]
    max_reconnect_attempts: int | None
    fail_unreached: bool
    reconnect_delay_s: float
    max_reconnect_delay_s: float
    open_timeout_s: float


class Connector:
    def __init__(
        self,
        options: ConnectOptions,
        *,
        state: ClientState,
        token: TokenSource,
        meter: Meter,
        serve: Callable[[ClientConnection], Awaitable[None]],
        fail: Callable[[BaseException], None],
        disconnected: Callable[[], None],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._options = options
        self._state = state
        self._token = token
        self._meter = meter
        self._serve = serve
        self._fail = fail
        self._disconnected = disconnected
        self._sleep = sleep  # the backoff's (a seam for tests)
        self.ws: ClientConnection | None = None
        self.user_id: str | None = None
        self.connection_id: str | None = None
        self.reconnect_after_s = 0.0  # from connection_close
        self.closing = False
        self._expired_retry = False  # a TOKEN_EXPIRED refusal was just retried
        self._reached = False  # a connection was ever opened

    async def send(self, ws: ClientConnection, text: str) -> None:
        await ws.send(text)
        self._meter.count_sent(text)

    async def run(self) -> None:
        # The spec's reconnectAttempts: 0 connecting afresh, n before the n-th retry.
        attempt = 0
        while not self.closing:
            if attempt > 0 and not await self._backoff(attempt):
                return
            self._state.set("connecting")
            options = self._options
            try:
                ws = await connect(
                    options.ws_url,
                    open_timeout=options.open_timeout_s,
                    max_size=None,
                    compression=None,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                if options.fail_unreached and not self._reached:
                    reason = str(exc) or type(exc).__name__
                    self._fail(ConnectionError(f"cannot reach {options.ws_url}: {reason}"))
                    return
                attempt += 1
                logger.info("connect failed (attempt %d): %s", attempt, type(exc).__name__)
                continue
            self._reached = True
            attempt = await self._connected(ws)
            if attempt < 0:
                return

    async def _connected(self, ws: ClientConnection) -> int:
        """Serve a connection until it ends: the next attempt (0 at once), -1 to end."""
        try:
            code = await self._session(ws)
        except AuthenticationFailed as exc:
            logger.warning("authentication refused: %s", exc.code)
            # Once in a row: a provider of stale tokens must not spin.
            if exc.code == "TOKEN_EXPIRED" and not self._expired_retry:
                self._expired_retry = True
                if await self._token.fresh() is not None:
                    return 0
            self._fail(exc)
            return -1
        self._expired_retry = False
        if self.closing:
            return -1
        if code == 3000 and self._token.expired and await self._token.fresh() is not None:
            logger.info("token expired; reconnecting with a fresh one")
            self._meter.reconnections += 1
            return 0
        if code in NO_RECONNECT_CLOSE_CODES:
            logger.info("closed by the server with %s; not reconnecting", code)
            self._fail(ConnectionError(f"closed by the server ({code})"))
            return -1
        self._meter.reconnections += 1
        return 1

    async def _backoff(self, attempt: int) -> bool:
        """Sleep before attempt ``attempt``; ``False`` once attempts are exhausted."""
        options = self._options
        limit = options.max_reconnect_attempts
        if limit is not None and attempt > limit:
            self._fail(ConnectionError(f"gave up after {limit} reconnection attempts"))
            return False
        delay = min(options.reconnect_delay_s * 2 ** (attempt - 1), options.max_reconnect_delay_s)
        delay = max(delay, min(self.reconnect_after_s, options.max_reconnect_delay_s))
        self.reconnect_after_s = 0.0
        self._state.set("waiting")
        await self._sleep(delay)  # the backoff itself, not a wait for an event
        return True

    async def _session(self, ws: ClientConnection) -> int | None:
        """Authenticate, then serve until the connection ends; its close code."""
        self.ws = ws
        self._token.expired = False
        options = self._options
        try:
            auth = {
                "token": self._token.token,
                "sessionId": options.session_id,
                "channels": options.channels,
            }
            await self.send(ws, json.dumps(auth))
            response = json.loads(await asyncio.wait_for(ws.recv(), options.open_timeout_s))
            self._meter.count_received(response)
            if response.get("success") is not True:
                raise AuthenticationFailed(
                    str(response.get("code")), str(response.get("error", "refused"))
                )
            self.user_id = response.get("userId")
            self.connection_id = response.get("connectionId")
            self._meter.connected()
            self._state.set("resuming")
            await self._serve(ws)
        except (ConnectionClosed, TimeoutError, OSError):
            pass
        finally:
            await self._token.stop()
            self.ws = None
            self._meter.disconnected()
            self._disconnected()
        code = ws.close_code
        logger.info("disconnected (close code %s)", code)
        return code

    async def close(self) -> None:
        """Stop reconnecting and close the connection politely (1000)."""
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self.ws.close()

    def abort(self) -> None:
        """Cut the TCP connection without a close handshake (the client reconnects)."""
        if self.ws is not None:
            self.ws.transport.abort()
