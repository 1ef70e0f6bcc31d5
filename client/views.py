"""What the client knows of a trip (fields and version), kept up to date from events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TripView"]


@dataclass
class TripView:
    """The client's copy of a trip: server values at ``version`` (pending edits apart)."""

    trip_id: str
    version: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    joined: bool = False
    permission_level: str | None = None
    collaborators: list[dict[str, Any]] = field(default_factory=list)
