"""The published protocol: ``/asyncapi.json`` and ``/openapi.json``, generated from the models.

The WebSocket document is :func:`sync.protocol.asyncapi_document` (the wire
models); the REST document is :func:`api.transport.openapi.openapi_document` of
every wing's ``OPERATIONS`` (``api/<wing>/schema.py``). Both are built once per
process, as JSON text with sorted keys and an indent, so that the bytes served
are the bytes committed under ``docs/`` (``tripsage-sync schema --check``
compares them; CI runs it).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tripsage_sync.api import __version__
from tripsage_sync.api.chat.schema import OPERATIONS as CHAT
from tripsage_sync.api.ops.schema import OPERATIONS as OPS
from tripsage_sync.api.transport.openapi import Operation, openapi_document
from tripsage_sync.api.trips.schema import OPERATIONS as TRIPS
from tripsage_sync.api.web.schema import OPERATIONS as WEB
from tripsage_sync.sync.protocol import asyncapi_document

__all__ = ["DOCUMENTS", "OPERATIONS", "document_text", "protocol_routes", "write_documents"]

OPERATIONS: Final = (
    *TRIPS,
    *CHAT,
    *OPS,
    *WEB,
    Operation(
        "GET",
        "/asyncapi.json",
        "This server's AsyncAPI 3 document (the WebSocket protocol)",
        {200: "application/json"},
        auth=False,
        tag="protocol",
    ),
    Operation(
        "GET",
        "/openapi.json",
        "This server's OpenAPI 3.1 document (the REST API)",
        {200: "application/json"},
        auth=False,
        tag="protocol",
    ),
)
# The documents, by their file name under docs/ (and path on the server).
DOCUMENTS: Final = ("asyncapi.json", "openapi.json")


def _build(name: str) -> dict[str, Any]:
    if name == "asyncapi.json":
        return asyncapi_document(version=__version__)
    if name == "openapi.json":
        return openapi_document(OPERATIONS, version=__version__)
    raise KeyError(name)


@functools.cache
def document_text(name: str) -> str:
    """The JSON text of a document (``asyncapi.json`` or ``openapi.json``), built once."""
    return json.dumps(_build(name), indent=2, ensure_ascii=False) + "\n"


def protocol_routes() -> list[BaseRoute]:
    def serve(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            # Built once, off the event loop (tens of ms): no client waits for it.
            text = await asyncio.to_thread(document_text, name)
            return Response(text, media_type="application/json")

        return endpoint

    return [Route(f"/{name}", serve(name), methods=["GET"]) for name in DOCUMENTS]


def write_documents(folder: Path) -> list[Path]:
    """Write both documents into ``folder``; the paths written."""
    written = []
    for name in DOCUMENTS:
        path = folder / name
        path.write_text(document_text(name), encoding="utf-8")
        written.append(path)
    return written
