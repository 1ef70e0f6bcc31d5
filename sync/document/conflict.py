"""The trip's pending manual conflicts ("Conflict Resolution"), and settling them.

A write of a manual field that is concurrent with its current value (or
finds a conflict pending on the field) raises, or joins, a
:class:`~sync.conflicts.PendingConflict` here; the rules and the conflict's
options are in :mod:`sync.conflicts`. :meth:`ManualConflicts.resolve` (an
editor's choice) and :meth:`ManualConflicts.expire` (the default option once
the deadline passed) apply the chosen value as a new change that every
replica converges to.

A CRDT peer cannot be told "rejected": its edit is in its replica for good.
So a concurrent Yjs write of a manual field is applied (Yjs picks the
interim value) and raises, or joins, the manual conflict
(:meth:`ManualConflicts.remote_write`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tripsage_sync.sync.conflicts import (
    FIELD_PATH_PREFIX,
    JSON,
    SYSTEM_SOURCE,
    ConflictDetected,
    ConflictingValue,
    PendingConflict,
    Stamp,
    conflict_id_for,
    json_equal,
    new_pending_conflict,
    validate_value,
)
from tripsage_sync.sync.document.results import ApplyResult, Confirmed
from tripsage_sync.sync.document.schema import check_kind
from tripsage_sync.sync.document.state import DocState
from tripsage_sync.sync.errors import InvalidMessage, NotFound

__all__ = ["ManualConflicts"]


class ManualConflicts:
    """The pending conflicts of one trip, by conflict id."""

    def __init__(
        self, trip_id: str, manual_fields: frozenset[str], auto_resolve_after_ms: int
    ) -> None:
        self.trip_id = trip_id
        self.manual_fields = manual_fields
        self.auto_resolve_after_ms = auto_resolve_after_ms
        self.pending: dict[str, PendingConflict] = {}

    def load(self, pending_conflicts: Iterable[dict[str, Any]]) -> None:
        for data in pending_conflicts:
            conflict = PendingConflict.from_json(data)
            self.pending[conflict.conflict_id] = conflict

    def open_on(self, name: str) -> PendingConflict | None:
        """The conflict pending on field ``name``, if any."""
        return next((c for c in self.pending.values() if c.field_name == name), None)

    def join(self, pending: PendingConflict, value: JSON, stamp: Stamp) -> PendingConflict:
        """Add a proposed value to an open conflict; returns the updated conflict."""
        joined = pending.with_value(value, stamp)
        self.pending[joined.conflict_id] = joined
        return joined

    def open(
        self,
        conflict_id: str,
        name: str,
        current: tuple[JSON, Stamp],
        incoming: tuple[JSON, Stamp],
        now_ms: int,
    ) -> PendingConflict:
        """Raise a new conflict on ``name``, due ``auto_resolve_after_ms`` after ``now_ms``."""
        conflict = new_pending_conflict(
            conflict_id=conflict_id,
            trip_id=self.trip_id,
            field_name=name,
            current=current,
            incoming=incoming,
            deadline_ms=now_ms + self.auto_resolve_after_ms,
            auto_resolve_after_ms=self.auto_resolve_after_ms,
        )
        self.pending[conflict_id] = conflict
        return conflict

    def remote_write(
        self, state: DocState, name: str, concurrent: bool, written: JSON, stamp: Stamp, now_ms: int
    ) -> tuple[PendingConflict, ConflictDetected | None] | None:
        """Raise or join the manual conflict a Yjs write of ``name`` makes, if any."""
        if name not in self.manual_fields:
            return None
        pending = self.open_on(name)
        if pending is not None:  # "Conflict Resolution": the value joins the open conflict
            return self.join(pending, written, stamp), None
        current_value = state.value(name)
        if not concurrent or json_equal(written, current_value):
            return None
        current = state.current_stamp(name)
        conflict_id = conflict_id_for(self.trip_id, stamp.update_id)
        conflict = self.open(conflict_id, name, (current_value, current), (written, stamp), now_ms)
        values = (
            ConflictingValue(current.user_id, current_value, current.ts_ms),
            ConflictingValue(stamp.user_id, written, stamp.ts_ms),
        )
        return conflict, ConflictDetected(conflict_id, name, values, "manual", None, None)

    def resolve(
        self,
        state: DocState,
        conflict_id: str,
        *,
        user_id: str,
        chosen_option_id: str | None,
        custom_value: JSON | None,
        now_ms: int,
    ) -> ApplyResult:
        """Apply an editor's choice; ``custom_value`` is used when no option is chosen."""
        conflict = self.pending.get(conflict_id)
        if conflict is None:
            raise NotFound("Conflict not found", details={"conflictId": conflict_id})
        if chosen_option_id is not None:
            option = conflict.option(chosen_option_id)
            if option is None:
                raise InvalidMessage("Unknown option", details={"chosenOptionId": chosen_option_id})
            value = option.value
        else:  # raises InvalidValue, an InvalidMessage
            value = validate_value(custom_value)
            check_kind(conflict.field_name, state.kind(conflict.field_name), value)
        return self._settle(state, conflict, value, Stamp(now_ms, user_id, conflict_id))

    def expire(self, state: DocState, now_ms: int) -> list[ApplyResult]:
        """Apply the default option of every conflict whose deadline has passed."""
        due = sorted(
            (c for c in self.pending.values() if c.deadline_ms <= now_ms),
            key=lambda c: (c.deadline_ms, c.conflict_id),
        )
        return [
            self._settle(
                state, c, c.default_option.value, Stamp(now_ms, SYSTEM_SOURCE, c.conflict_id)
            )
            for c in due
        ]

    def next_deadline_ms(self) -> int | None:
        return min((c.deadline_ms for c in self.pending.values()), default=None)

    def in_deadline_order(self) -> list[PendingConflict]:
        return sorted(self.pending.values(), key=lambda c: (c.deadline_ms, c.conflict_id))

    def _settle(
        self, state: DocState, conflict: PendingConflict, value: JSON, stamp: Stamp
    ) -> ApplyResult:
        name = conflict.field_name
        stamp = stamp.after(conflict.max_stamp())
        change = state.write(
            name, value, stamp, stamp.user_id, "r:" + conflict.conflict_id, "resolution"
        )
        del self.pending[conflict.conflict_id]
        outcome = Confirmed(
            conflict.conflict_id, name, FIELD_PATH_PREFIX + name, state.value(name), state.version
        )
        return ApplyResult(outcome, change, conflict_resolved=conflict.conflict_id)
