"""The page's routes for the OpenAPI document (:mod:`api.transport.openapi`)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from tripsage_sync.api.transport.openapi import HttpError, Operation
from tripsage_sync.api.web.feature import DevTokenRequest

__all__ = ["OPERATIONS"]


class WebConfig(BaseModel):
    """What the page may offer: the demo sign-in button or not."""

    devTokens: bool


class DevToken(BaseModel):
    """A demo ``role: user`` token (dev mode without a configured secret only)."""

    token: str
    userId: str
    expiresIn: int


def _page(path: str, summary: str, media: str = "text/html") -> Operation:
    return Operation("GET", path, summary, {200: media}, auth=False, tag="web")


OPERATIONS: Final = (
    _page("/", "The trip planner page"),
    _page("/app", "The trip planner page"),
    _page("/trips/{tripId}", "The trip planner page, opened on a trip"),
    _page("/sw.js", "The page's service worker (offline reloads)", "text/javascript"),
    Operation(
        "GET", "/api/web/config", "The page's settings", {200: WebConfig}, auth=False, tag="web"
    ),
    Operation(
        "POST",
        "/api/dev/token",
        "Demo sign-in as anyone (dev mode only; 404 otherwise)",
        {200: DevToken, 400: HttpError, 404: HttpError, 413: HttpError},
        body=DevTokenRequest,
        auth=False,
        tag="web",
    ),
)
