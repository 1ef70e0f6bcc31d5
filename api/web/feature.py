"""The trip planner page: a static ES-module client of the documented protocol.

Theory of operation
-------------------
The ``.html``, ``.js`` and ``.css`` files beside this module in ``api/web/``
(installed as package data) are served as they are:
no build step. ``GET /``, ``/app`` and ``/trips/{tripId}`` (the path of the
spec's "Integration Testing with Playwright" scenarios) answer the one page,
``index.html``; it loads ``/static/app.js``, which uses ``/static/client.js``
(the spec's "Reconnection Strategy" ``WebSocketManager``, a durable queue of
optimistic updates, and the trip state machine). ``/sw.js`` is a service
worker served from the root so that its scope covers every page: it keeps the
page and its modules in the Cache API, so a reload while offline still opens
the trip, with the queued edits it kept in ``localStorage``.

Demo sign-in
------------
The page signs in with a JWT pasted into a form. For demos, ``POST
/api/dev/token {userId, name}`` mints a ``role: user`` token, but only when
:attr:`api.settings.Settings.dev_mode` is on (``TRIPSAGE_DEV_MODE=1`` or
``serve --demo-agent``) *and* no ``TRIPSAGE_JWT_SECRET`` is configured: a
server that shares its secret with a real identity provider never hands out
identities. Otherwise the route answers 404, and ``GET /api/web/config``
tells the page to hide the button.

Every page response carries a Content-Security-Policy that allows scripts,
styles and connections to this origin only; the client renders every value
it receives with ``textContent``, never as HTML.
"""

from __future__ import annotations

import logging
import os
import re
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.http_body import read_body
from tripsage_sync.api.transport.services import Services
from tripsage_sync.sync.errors import MessageTooLarge

__all__ = ["DEV_TOKEN_TTL_S", "STATIC_SUFFIXES", "WEB_DIR", "WebFeature", "dev_tokens_enabled"]

logger = logging.getLogger(__name__)

WEB_DIR: Final = Path(__file__).resolve().parent
STATIC_SUFFIXES: Final = frozenset({".html", ".js", ".css"})
DEV_TOKEN_TTL_S: Final = 12 * 3600
MAX_DEV_TOKEN_BODY_BYTES: Final = 4096
USER_ID: Final = re.compile(r"^[A-Za-z0-9_.@+=-]{1,64}$")
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:;"
    " connect-src 'self' ws: wss:; worker-src 'self'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The service worker fetches the network first; the browser cache must not
    # hand it yesterday's page either.
    "Cache-Control": "no-cache",
}


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    userId: str = Field(pattern=USER_ID.pattern)
    name: str | None = Field(default=None, min_length=1, max_length=64)


def dev_tokens_enabled(settings: Settings) -> bool:
    """Demo sign-in is on only in dev mode and without a configured secret."""
    return settings.dev_mode and not settings.jwt_secret


class NoCacheStaticFiles(StaticFiles):
    """The modules, revalidated on every load (ETag): no stale client after an upgrade.

    Only the page's own kinds of file are served (``STATIC_SUFFIXES``, the package
    data of pyproject.toml): this module and its bytecode share the folder.
    """

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if PurePosixPath(path).suffix not in STATIC_SUFFIXES:
            return "", None
        return super().lookup_path(path)

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


class WebFeature:
    """The page, its modules and service worker, and the demo sign-in."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.services: Services | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page, methods=["GET", "HEAD"]),
            Route("/app", self.page, methods=["GET", "HEAD"]),
            Route("/trips/{trip_id}", self.page, methods=["GET", "HEAD"]),
            Route("/sw.js", self.service_worker, methods=["GET", "HEAD"]),
            Route("/api/web/config", self.config, methods=["GET"]),
            Route("/api/dev/token", self.dev_token, methods=["POST"]),
            Mount("/static", NoCacheStaticFiles(directory=WEB_DIR), name="static"),
        ]

    async def start(self, services: Services) -> None:
        self.services = services
        if dev_tokens_enabled(self.settings):
            logger.warning("dev mode: POST /api/dev/token signs anyone in as any user (demo only)")
        elif self.settings.dev_mode:
            logger.info("dev mode, but TRIPSAGE_JWT_SECRET is set: dev tokens stay off")

    async def stop(self) -> None:
        self.services = None

    async def page(self, request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    async def service_worker(self, request: Request) -> Response:
        return FileResponse(WEB_DIR / "sw.js", media_type="text/javascript", headers=PAGE_HEADERS)

    async def config(self, request: Request) -> Response:
        return JSONResponse({"devTokens": dev_tokens_enabled(self.settings)})

    async def dev_token(self, request: Request) -> Response:
        if not dev_tokens_enabled(self.settings) or self.services is None:
            return JSONResponse(
                {"code": "NOT_FOUND", "message": "Dev sign-in is disabled"}, status_code=404
            )
        try:
            body = await read_body(request, MAX_DEV_TOKEN_BODY_BYTES)
        except MessageTooLarge as exc:
            return JSONResponse(
                {"code": exc.code, "message": exc.message, "details": exc.details},
                status_code=413,
            )
        try:
            data = DevTokenRequest.model_validate_json(body or b"{}")
        except ValidationError:
            return JSONResponse(
                {
                    "code": "INVALID_MESSAGE_FORMAT",
                    "message": "userId (1-64 of A-Z a-z 0-9 _ . @ + = -) and an optional name",
                    "details": {"field": "userId"},
                },
                status_code=400,
            )
        token = self.services.authority.mint(
            data.userId,
            now_s=self.clock.now_ms() / 1000,
            ttl_s=DEV_TOKEN_TTL_S,
            role="user",
            name=data.name or data.userId,
        )
        logger.info("dev token minted for %s", data.userId)
        return JSONResponse(
            {"token": token, "userId": data.userId, "expiresIn": DEV_TOKEN_TTL_S},
            headers={"Cache-Control": "no-store"},
        )
