"""What every wire module shares: size limits, field types, ids and times.

Size limits are named constants; ids and timestamps are made here without
reading a clock (``now_ms`` comes in).
"""

from __future__ import annotations

import functools
import itertools
import os
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import Field

from tripsage_sync.sync.errors import InvalidMessage

__all__ = [
    "MAX_BATCH_MESSAGES",
    "MAX_CHANNELS_PER_REQUEST",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TOKEN_CHARS",
    "ChannelList",
    "Fraction",
    "Id",
    "Text",
    "iso_ms",
    "new_id",
    "parse_iso_ms",
]

MAX_ID_CHARS: Final = 128
MAX_TEXT_CHARS: Final = 100_000
MAX_BATCH_MESSAGES: Final = 100
MAX_CHANNELS_PER_REQUEST: Final = 50
MAX_TOKEN_CHARS: Final = 8192

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
ChannelList = Annotated[list[Id], Field(max_length=MAX_CHANNELS_PER_REQUEST)]

_counter = itertools.count()
_prefix = os.urandom(4).hex()


def new_id(kind: str) -> str:
    """A process-unique id such as ``evt-1a2b3c4d-42`` (no clock, no I/O)."""
    return f"{kind}-{_prefix}-{next(_counter)}"


def iso_ms(now_ms: int) -> str:
    """``2025-05-28T01:30:00.000Z`` for a Unix time in milliseconds."""
    seconds, millis = divmod(now_ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)  # every event has a timestamp; most fall in one second
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_iso_ms(value: str) -> int:
    """Milliseconds since the epoch for an ISO-8601 timestamp (naive means UTC)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidMessage(
            "Invalid timestamp",
            details={"expected": "ISO 8601 timestamp", "received": value[:64]},
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
