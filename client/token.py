"""The client's token, kept live (README "Token refresh").

With a ``token_provider`` (an async callable returning a fresh token), the server's
``auth_expiring`` starts one refresh at a time, owned by the connection: the client
awaits the provider and sends ``auth_refresh {token}`` on the open connection, ahead
of the queue (``exp`` will not wait). The fresh token is also the one every later
connection authenticates with. ``expired`` records a ``connection_error``
``TOKEN_EXPIRED`` on the current connection: its close with 3000 then asks the
provider once more and reconnects instead of ending the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from websockets.exceptions import ConnectionClosed

__all__ = ["TokenSource"]

logger = logging.getLogger(__name__)


class TokenSource:
    def __init__(self, token: str, provider: Callable[[], Awaitable[str]] | None) -> None:
        self.token = token
        self._provider = provider
        self._refresher: asyncio.Task[None] | None = None
        self.expired = False  # the server said TOKEN_EXPIRED on this connection

    def refresh_soon(
        self, send_text: Callable[[str], Awaitable[None]], next_id: Callable[[str], str]
    ) -> None:
        """On ``auth_expiring``: start a refresh unless one runs (or there is no provider)."""
        if self._provider is None:
            return
        if self._refresher is not None and not self._refresher.done():
            return
        refresh = self._refresh(send_text, next_id)
        self._refresher = asyncio.create_task(refresh, name="sync-client-refresh")

    async def fresh(self) -> str | None:
        """A new token from the provider (kept for reconnects); ``None`` if none."""
        if self._provider is None:
            return None
        try:
            token = await self._provider()
        except Exception:  # the app's callback: report, never crash the client
            logger.warning("token provider failed", exc_info=True)
            return None
        if not isinstance(token, str) or not token:
            logger.warning("token provider returned no token")
            return None
        self.token = token
        return token

    async def stop(self) -> None:
        """The connection ended: cancel its refresh."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await self._refresher
        self._refresher = None

    async def _refresh(
        self, send_text: Callable[[str], Awaitable[None]], next_id: Callable[[str], str]
    ) -> None:
        token = await self.fresh()
        if token is None:
            return  # the server closes at exp; the reconnect asks the provider again
        payload = {"token": token}
        message = {"id": next_id("refresh"), "type": "auth_refresh", "payload": payload}
        await send_text(json.dumps(message))
