"""The :class:`TripDocument` facade: one trip's document, composed of its parts.

Each concern lives in its own module and works on the shared
:class:`~sync.document.state.DocState` (the live Doc, version and history):
:mod:`~sync.document.optimistic` decides JSON clients' updates,
:mod:`~sync.document.remote` vets and applies Yjs peers' updates,
:mod:`~sync.document.conflict` keeps the pending manual conflicts and settles
them, :mod:`~sync.document.history` restores, snapshots, compacts and reads
retained versions. This class only creates the trip and forwards to them.

Creation is version 1, made in a fork whose client id derives from the
update id ``create``: the declared fields (``notes`` always, as an empty
Y.Text unless given), each written with the kind it keeps for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pycrdt import Doc, Map

from tripsage_sync.sync.conflicts import (
    AUTO_RESOLVE_AFTER_MS,
    JSON,
    InvalidValue,
    PendingConflict,
    Stamp,
    parse_field_name,
    validate_value,
)
from tripsage_sync.sync.document import history
from tripsage_sync.sync.document.conflict import ManualConflicts
from tripsage_sync.sync.document.optimistic import apply_optimistic
from tripsage_sync.sync.document.remote import apply_remote_update
from tripsage_sync.sync.document.results import (
    ApplyResult,
    Change,
    LogEntry,
    RemoteResult,
    Snapshot,
    UpdateRequest,
)
from tripsage_sync.sync.document.schema import (
    ROOT_MAP,
    TEXT_FIELDS,
    FieldKind,
    check_kind,
    kind_of_value,
    read_field,
    to_shared,
)
from tripsage_sync.sync.document.state import DocState, OlderEntries

__all__ = ["CREATE_UPDATE_ID", "TripDocument"]

CREATE_UPDATE_ID: Final = "create"


class TripDocument:
    """One trip's Yjs document. Build it with :meth:`create` or :meth:`restore`."""

    def __init__(
        self, trip_id: str, manual_fields: frozenset[str], auto_resolve_after_ms: int
    ) -> None:
        self.trip_id = trip_id
        self.manual_fields = manual_fields
        self._state = DocState(trip_id)
        self._conflicts = ManualConflicts(trip_id, manual_fields, auto_resolve_after_ms)

    @classmethod
    def create(
        cls,
        trip_id: str,
        fields: dict[str, JSON],
        manual_fields: frozenset[str],
        *,
        created_by: str,
        now_ms: int,
        auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS,
    ) -> tuple[TripDocument, Change]:
        """A new trip at version 1; raises :class:`InvalidValue` on invalid fields."""
        values: dict[str, JSON] = {"notes": ""}
        for raw_name, raw_value in fields.items():
            name = parse_field_name(raw_name)
            values[name] = validate_value(raw_value)
            check_kind(name, kind_of_value(name, values[name]), values[name])
        for name in manual_fields:
            if parse_field_name(name) in TEXT_FIELDS or isinstance(values.get(name), list):
                raise InvalidValue(f"{name}: only scalar fields can be resolved manually")
        doc = cls(trip_id, manual_fields, auto_resolve_after_ms)
        stamp = Stamp(now_ms, created_by, CREATE_UPDATE_ID)
        fork = doc._state.fork(0, CREATE_UPDATE_ID)
        root, before = fork.get(ROOT_MAP, type=Map), fork.get_state()
        stamps: dict[str, Stamp | None] = {}
        for name, value in sorted(values.items()):
            kind = kind_of_value(name, value)
            root[name] = to_shared(kind, value)
            stamps[name] = stamp if kind is FieldKind.SCALAR else None
        change = doc._state.record(fork, before, created_by, CREATE_UPDATE_ID, "create", stamps)
        return doc, change

    @classmethod
    def restore(
        cls,
        trip_id: str,
        manual_fields: frozenset[str],
        snapshot: Snapshot | None,
        log: Iterable[LogEntry],
        pending_conflicts: Iterable[dict[str, Any]],
        *,
        auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS,
    ) -> TripDocument:
        """Rebuild from persisted state; entries at or below the snapshot are skipped."""
        doc = cls(trip_id, manual_fields, auto_resolve_after_ms)
        history.restore(doc._state, snapshot, log)
        doc._conflicts.load(pending_conflicts)
        return doc

    @property
    def version(self) -> int:
        """The number of applied changes (creation is version 1)."""
        return self._state.version

    @property
    def base_version(self) -> int:
        """The version of the history's base snapshot (older bases are gone)."""
        return self._state.base.version

    @property
    def doc(self) -> Doc[Any]:
        return self._state.doc

    def fields(self) -> dict[str, JSON]:
        """Current values as plain JSON (``notes`` as str, lists as list)."""
        root = self._state.root
        return {name: read_field(root, name) for name in sorted(root.keys())}

    def state_update(self) -> bytes:
        return self._state.doc.get_update()

    # -- "Optimistic Updates" ------------------------------------------------

    def apply_optimistic(self, req: UpdateRequest) -> ApplyResult:
        """Decide ``optimistic_update_start``: exactly one outcome for the sender."""
        return apply_optimistic(self._state, self._conflicts, req)

    # -- updates from Yjs peers ------------------------------------------------------

    def apply_remote_update(
        self, update: bytes, *, user_id: str, update_id: str, now_ms: int
    ) -> RemoteResult:
        """Apply a Yjs peer's v1 update (:mod:`sync.document.remote`).

        Raises :class:`RemoteUpdateRefused` with nothing applied when the update is
        malformed or leaves the trip schema.
        """
        return apply_remote_update(
            self._state,
            self._conflicts,
            update,
            user_id=user_id,
            update_id=update_id,
            now_ms=now_ms,
        )

    # -- "Conflict Resolution" -----------------------------------------------

    def resolve_conflict(
        self,
        conflict_id: str,
        *,
        user_id: str,
        chosen_option_id: str | None,
        custom_value: JSON | None,
        now_ms: int,
    ) -> ApplyResult:
        """Apply an editor's choice; ``custom_value`` is used when no option is chosen."""
        return self._conflicts.resolve(
            self._state,
            conflict_id,
            user_id=user_id,
            chosen_option_id=chosen_option_id,
            custom_value=custom_value,
            now_ms=now_ms,
        )

    def expire_conflicts(self, now_ms: int) -> list[ApplyResult]:
        """Apply the default option of every conflict whose deadline has passed."""
        return self._conflicts.expire(self._state, now_ms)

    def next_conflict_deadline_ms(self) -> int | None:
        return self._conflicts.next_deadline_ms()

    def pending_conflicts(self) -> list[PendingConflict]:
        return self._conflicts.in_deadline_order()

    # -- history ---------------------------------------------------------------

    def keep_recent(self, entries: int, older: OlderEntries) -> None:
        """Keep about ``entries`` log entries in memory; ``older`` reads older stored ones.

        ``older(after, up_to)`` returns the stored entries with ``after < version <=
        up_to``; it is called only for versions below the window (:mod:`.state`).
        """
        self._state.keep_recent(entries, older)

    def snapshot(self) -> Snapshot:
        """The full state and meta at :attr:`version` (retention is unchanged)."""
        return history.snapshot_at(self._state, self._state.version)

    def compact(self, keep_since_version: int | None = None) -> Snapshot:
        """Make the snapshot at ``keep_since_version`` the base; older bases become too old."""
        return history.compact(self._state, keep_since_version)

    def values_at(self, version: int) -> dict[str, JSON]:
        """Every field as plain JSON at a retained ``version`` (``base_version`` or later)."""
        return history.values_at(self._state, version)

    def apply_logged(self, entry: LogEntry) -> Change:
        """Another replica's stored change, as the next version (:func:`history.adopt`)."""
        return history.adopt(self._state, entry)

    def rebase(self, after: int, theirs: list[LogEntry]) -> list[Change] | None:
        """Another replica's stored changes under this one's unstored ones after
        ``after``, if they commute (:func:`history.rebase`); the changes adopted."""
        return history.rebase(self._state, after, theirs, self.manual_fields)

    def changes_since(self, since_version: int) -> list[Change]:
        """The changes after ``since_version`` up to :attr:`version`, in version order."""
        return history.changes_since(self._state, since_version)
