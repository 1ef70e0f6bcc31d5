"""Manual conflicts: detected conflicts, pending conflicts and their options.

A :class:`PendingConflict` holds the competing values as options (plus a
system average for numbers), a deadline and the default option: the one
last_write_wins would pick, i.e. the greatest stamp
(:mod:`sync.conflicts.stamp`). Applying the default at the deadline
therefore converges to the same value as last_write_wins. Pending
conflicts round-trip through :meth:`PendingConflict.to_json`.
:class:`ConflictDetected` is ``trip_conflict_detected``, for both
strategies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from tripsage_sync.sync.conflicts.stamp import Stamp
from tripsage_sync.sync.conflicts.value import JSON
from tripsage_sync.sync.errors import InvalidState

__all__ = [
    "AUTO_RESOLVE_AFTER_MS",
    "SYSTEM_OPTION_ID",
    "SYSTEM_SOURCE",
    "ConflictDetected",
    "ConflictOption",
    "ConflictingValue",
    "PendingConflict",
    "conflict_id_for",
    "new_pending_conflict",
]

AUTO_RESOLVE_AFTER_MS: Final = 30_000  # "Conflict Resolution": autoResolveAfter
SYSTEM_OPTION_ID: Final = "option-system"
SYSTEM_SOURCE: Final = "system"


def conflict_id_for(trip_id: str, update_id: str) -> str:
    """A stable conflict id for the conflict an update triggered."""
    digest = hashlib.blake2b(f"{trip_id}\x1f{update_id}".encode(), digest_size=8).hexdigest()
    return f"conflict-{digest}"


@dataclass(frozen=True)
class ConflictingValue:
    user_id: str
    value: JSON
    timestamp_ms: int


@dataclass(frozen=True)
class ConflictDetected:
    """``trip_conflict_detected`` for all collaborators (winner is None when manual)."""

    conflict_id: str
    field_name: str
    conflicting_values: tuple[ConflictingValue, ...]
    resolution_strategy: Literal["last_write_wins", "manual"]
    winning_value: JSON
    winning_user_id: str | None
    conflict_type: Literal["concurrent_edit"] = "concurrent_edit"


@dataclass(frozen=True)
class ConflictOption:
    """One choice of ``conflict_resolution_required``; ``stamp`` is None for the system one."""

    option_id: str
    value: JSON
    source: str
    timestamp_ms: int
    description: str
    stamp: Stamp | None

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.option_id,
            "value": self.value,
            "source": self.source,
            "timestamp": self.timestamp_ms,
            "description": self.description,
            "stamp": None if self.stamp is None else self.stamp.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> ConflictOption:
        try:
            stamp = data["stamp"]
            return cls(
                option_id=_str(data["id"]),
                value=data["value"],
                source=_str(data["source"]),
                timestamp_ms=_int(data["timestamp"]),
                description=_str(data["description"]),
                stamp=None if stamp is None else Stamp.from_json(stamp),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidState(f"malformed conflict option: {exc}") from exc


@dataclass(frozen=True)
class PendingConflict:
    """A manual conflict waiting for ``conflict_resolution_submit`` or its deadline."""

    conflict_id: str
    trip_id: str
    field_name: str
    options: tuple[ConflictOption, ...]
    default_option_id: str
    deadline_ms: int
    auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS

    def option(self, option_id: str) -> ConflictOption | None:
        return next((o for o in self.options if o.option_id == option_id), None)

    @property
    def default_option(self) -> ConflictOption:
        option = self.option(self.default_option_id)
        if option is None:
            raise InvalidState(f"{self.conflict_id}: default option missing")
        return option

    def max_stamp(self) -> Stamp:
        stamps = [o.stamp for o in self.options if o.stamp is not None]
        if not stamps:
            raise InvalidState(f"{self.conflict_id}: no stamped option")
        return max(stamps)

    def with_value(self, value: JSON, stamp: Stamp) -> PendingConflict:
        """Join another proposed value; the default is recomputed by last_write_wins."""
        proposals = [(o.value, o.stamp) for o in self.options if o.stamp is not None]
        return _build(self, [*proposals, (value, stamp)])

    def to_json(self) -> dict[str, JSON]:
        return {
            "conflictId": self.conflict_id,
            "tripId": self.trip_id,
            "fieldName": self.field_name,
            "options": [o.to_json() for o in self.options],
            "autoResolveAfter": self.auto_resolve_after_ms,
            "defaultOption": self.default_option_id,
            "deadlineMs": self.deadline_ms,
        }

    @classmethod
    def from_json(cls, data: Any) -> PendingConflict:
        try:
            conflict = cls(
                conflict_id=_str(data["conflictId"]),
                trip_id=_str(data["tripId"]),
                field_name=_str(data["fieldName"]),
                options=tuple(ConflictOption.from_json(o) for o in data["options"]),
                default_option_id=_str(data["defaultOption"]),
                deadline_ms=_int(data["deadlineMs"]),
                auto_resolve_after_ms=_int(data["autoResolveAfter"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidState(f"malformed pending conflict: {exc}") from exc
        conflict.default_option  # noqa: B018  # validates the default option id
        return conflict


def new_pending_conflict(
    *,
    conflict_id: str,
    trip_id: str,
    field_name: str,
    current: tuple[JSON, Stamp],
    incoming: tuple[JSON, Stamp],
    deadline_ms: int,
    auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS,
) -> PendingConflict:
    """The conflict between the field's current value and an incoming concurrent one."""
    seed = PendingConflict(
        conflict_id=conflict_id,
        trip_id=trip_id,
        field_name=field_name,
        options=(),
        default_option_id="",
        deadline_ms=deadline_ms,
        auto_resolve_after_ms=auto_resolve_after_ms,
    )
    return _build(seed, [current, incoming])


def _build(seed: PendingConflict, proposals: list[tuple[JSON, Stamp]]) -> PendingConflict:
    options = [
        ConflictOption(
            option_id=f"option-{i}",
            value=value,
            source=stamp.user_id,
            timestamp_ms=stamp.ts_ms,
            description="Current value" if i == 1 else "Concurrent edit",
            stamp=stamp,
        )
        for i, (value, stamp) in enumerate(proposals, start=1)
    ]
    default = options[max(range(len(proposals)), key=lambda i: proposals[i][1])]
    numbers = [o.value for o in options]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        mean = sum(v for v in numbers if isinstance(v, int | float)) / len(numbers)
        options.append(
            ConflictOption(
                option_id=SYSTEM_OPTION_ID,
                value=int(mean) if mean.is_integer() else mean,
                source=SYSTEM_SOURCE,
                timestamp_ms=max(o.timestamp_ms for o in options),
                description="Suggested average value",
                stamp=None,
            )
        )
    return replace(seed, options=tuple(options), default_option_id=default.option_id)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value
