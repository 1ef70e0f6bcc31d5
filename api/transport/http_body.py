"""Request bodies read against a limit: refused (413) while reading, never buffered whole.

Every REST endpoint with a body reads it with :func:`read_body`. A declared
``Content-Length`` over the limit is refused before a byte is read; a chunked
or understated body is refused as soon as what arrived passes the limit. The
refusal is :class:`~sync.errors.MessageTooLarge` (HTTP 413). The rest of the
body is then read and dropped by uvicorn, never stored, for at most
``TRIPSAGE_HEADER_TIMEOUT_S`` (:class:`api.transport.protocol.HttpProtocol`): closing at
once would reset the connection under a client still sending, and it would
see a reset instead of the 413.
"""

from __future__ import annotations

from starlette.requests import Request

from tripsage_sync.sync.errors import MessageTooLarge

__all__ = ["read_body"]


def _too_large(limit: int, size: int) -> MessageTooLarge:
    return MessageTooLarge(
        f"Request body exceeds {limit} bytes", details={"limit": limit, "size": size}
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; raises :class:`MessageTooLarge` beyond."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, size)
        chunks.append(chunk)
    return b"".join(chunks)
