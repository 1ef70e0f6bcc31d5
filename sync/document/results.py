"""What the trip document takes in and hands back: requests, changes, outcomes.

Outcomes (one per optimistic update, in :class:`ApplyResult`)
    Confirmed: applied (or already in place); ``confirmedValue`` is the
    field's merged value. Rejected: a concurrent scalar write that lost
    last_write_wins, or any write to a manual field that is concurrent or
    finds a conflict pending (it raises or joins that conflict). Refused
    (``invalid_message``): an invalid field name, value or previousValue.
    Rolledback: ``previousValue`` not the value at E, E newer than the trip,
    or a merge the history no longer allows. Messages are worded for people
    (a page shows "Your change to Destination could not be saved:
    <message>"); ``canRetry`` is false for all of these, since re-sending
    the same update cannot succeed. :mod:`sync.document.outcome` builds them.

A :class:`Change` is one applied version: ``api/`` persists its update and
meta as a :class:`LogEntry` and broadcasts its field changes. A Yjs peer's
update comes back as a :class:`RemoteResult`, or raises
:class:`RemoteUpdateRefused` with nothing applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tripsage_sync.sync.conflicts import JSON, ConflictDetected, PendingConflict, Stamp
from tripsage_sync.sync.errors import InvalidMessage, InvalidState

__all__ = [
    "ApplyResult",
    "Change",
    "Confirmed",
    "ConflictingUpdate",
    "FieldChange",
    "LogEntry",
    "MalformedRemoteUpdate",
    "Outcome",
    "Refused",
    "Rejected",
    "RemoteResult",
    "RemoteUpdateRefused",
    "RollbackReason",
    "Rolledback",
    "Snapshot",
    "UpdateRequest",
    "entry_stamps",
]

RollbackReason = Literal["stale_previous_value", "history_unavailable", "invalid_expected_version"]


@dataclass(frozen=True, kw_only=True)
class UpdateRequest:
    """``optimistic_update_start``; ``field_name`` may be a path like ``trip.budget``."""

    update_id: str
    user_id: str
    field_name: str
    optimistic_value: JSON
    previous_value: JSON = None
    has_previous_value: bool = False
    expected_version: int
    client_ts_ms: int
    received_ts_ms: int


@dataclass(frozen=True)
class FieldChange:
    old_value: JSON
    new_value: JSON
    field_path: str


@dataclass(frozen=True)
class Change:
    """An applied change: persist ``version``/``update``/``meta``, broadcast the rest."""

    version: int
    update: bytes
    meta: dict[str, JSON]
    changes: dict[str, FieldChange]
    updated_by: str


@dataclass(frozen=True)
class Snapshot:
    version: int
    state: bytes
    meta: dict[str, JSON]


@dataclass(frozen=True)
class LogEntry:
    version: int
    update: bytes
    meta: dict[str, JSON]


@dataclass(frozen=True)
class Confirmed:
    update_id: str
    field_name: str
    field_path: str
    confirmed_value: JSON
    server_version: int


@dataclass(frozen=True)
class ConflictingUpdate:
    user_id: str
    timestamp_ms: int


@dataclass(frozen=True)
class Rejected:
    update_id: str
    field_name: str
    field_path: str
    current_server_value: JSON
    current_server_version: int
    expected_version: int
    conflicting_update: ConflictingUpdate
    suggested_resolution: Literal["accept_server_value", "merge_required"]
    conflict_id: str | None
    message: str
    rejection_reason: Literal["version_conflict"] = "version_conflict"


@dataclass(frozen=True)
class Refused:
    """An update that fails validation: ``rejectionReason: "invalid_message"``.

    ``details`` are the ``error`` event's (field, expected, received); the api
    sends that ``INVALID_MESSAGE_FORMAT`` error as well.
    """

    update_id: str
    field_name: str
    field_path: str
    message: str
    details: dict[str, JSON]
    current_server_value: JSON
    current_server_version: int
    rejection_reason: Literal["invalid_message"] = "invalid_message"


@dataclass(frozen=True)
class Rolledback:
    update_id: str
    field_name: str
    field_path: str
    rollback_to_value: JSON
    rollback_reason: RollbackReason
    can_retry: bool
    message: str


Outcome = Confirmed | Rejected | Refused | Rolledback


@dataclass(frozen=True)
class ApplyResult:
    """The sender's outcome plus what to persist and broadcast.

    ``conflict_raised`` is a new or updated pending conflict to persist and send
    as ``conflict_resolution_required``; ``conflict_resolved`` names one to delete.
    """

    outcome: Outcome
    change: Change | None = None
    conflict_detected: ConflictDetected | None = None
    conflict_raised: PendingConflict | None = None
    conflict_resolved: str | None = None


class RemoteUpdateRefused(InvalidMessage):
    """A Yjs peer's update the trip refuses (off-schema); nothing was applied."""


class MalformedRemoteUpdate(RemoteUpdateRefused):
    """Bytes pycrdt (or :mod:`sync.yupdate`) cannot read as a Yjs v1 update."""


@dataclass(frozen=True)
class RemoteResult:
    """A Yjs peer's update as applied: ``change`` is None when it brought nothing new.

    ``conflicts`` pairs each manual conflict it raised or joined with the
    ``trip_conflict_detected`` to broadcast (None when it joined one).
    """

    change: Change | None
    conflicts: tuple[tuple[PendingConflict, ConflictDetected | None], ...] = ()


def entry_stamps(meta: dict[str, JSON]) -> dict[str, Stamp | None]:
    """The fields a log entry wrote, with their stamps (``None``: text and lists)."""
    fields = meta.get("fields")
    if not isinstance(fields, dict):
        raise InvalidState("log entry meta without fields")
    return {n: None if s is None else Stamp.from_json(s) for n, s in fields.items()}
