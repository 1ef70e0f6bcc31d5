"""The trip document: a pycrdt Doc per trip, its version, optimistic updates and history.

Theory of operation (``websocket-api.md`` "Real-time Collaboration",
"Optimistic Updates", "Conflict Resolution"; the rules themselves live in
:mod:`sync.conflicts`). Sans-I/O: time arrives as ``*_ms`` arguments, results
are returned for ``api/`` to persist and broadcast.

Schema (kept exactly so standard Yjs clients can share the doc)
    The root is the Y.Map ``trip``. ``notes`` is a Y.Text (always present),
    list fields are Y.Arrays of plain JSON values, every other field is a
    plain JSON value (a scalar, or an object kept whole). A field's kind
    never changes; Y.Array fields are declared when the trip is created,
    because two concurrent creations of one Y.Array would drop one of them.

Versions and history
    ``version`` counts applied changes (creation is version 1). Each change is
    one Yjs v1 update plus JSON ``meta`` (who, which update, the fields and
    the stamps it wrote). The document keeps its base :class:`Snapshot` and
    the :class:`LogEntry` list after it; the doc at any retained version is
    the snapshot plus the entries up to it, replayed into a fresh Doc
    (``merge_updates`` is super-linear in pycrdt, so it is never used).
    :meth:`TripDocument.compact` moves the base forward.

Applying an update made at ``expectedVersion`` E
    Every text or list edit, concurrent or not, is made in a *fork*: a fresh
    Doc holding the state at E whose client id is a 32-bit hash of (trip id,
    update id), re-salted while it is 0, the live doc's id or already in the
    live state vector (pycrdt silently drops the edits of a merged doc that
    reuses a client id). The fork's update relative to its own starting state
    is applied to the live doc. Yjs orders concurrent inserts at one position
    by client id, so deriving ids from update ids makes the merged text
    independent of arrival order. Scalar sets need no fork: the value is
    decided before it is written, so the live doc writes it with its own
    (trip-derived) client id, and neither the state vector nor the cost of a
    write grows with the number of scalar writes.

    * text and list fields: ``previousValue -> optimisticValue`` is diffed
      into inserts and deletes applied at E, so edits of different parts
      merge. Text indexes in pycrdt 0.14 are UTF-8 byte offsets; they are
      computed from code point positions at character boundaries.
    * scalars: last_write_wins or manual conflicts, per :mod:`sync.conflicts`.
      An update is concurrent when the field changed after E.

Bases (which version an update is decided at)
    Version 0 means no base is known (a client that never saw the trip, or
    sent no ``expectedVersion`` and saw nothing): the update is taken as made
    at the creation, concurrent with every later change, and a null
    ``previousValue`` says nothing. Below the retained history (after
    :meth:`TripDocument.compact`) the base snapshot stands in for E, exactly
    so when the field did not change in between. Otherwise the value at E is
    unknown: a scalar is still decided, concurrent, against the current stamp
    alone (no causal bump, previousValue unchecked); a text or list edit is
    merged where its ``previousValue`` is the field at the base snapshot or
    now, and rolled back (``history_unavailable``) where it cannot be placed.
    A text or list edit made at version 0 diffs from the creation value (or
    from its ``previousValue`` where that is the value at creation or now).

Outcomes (one per update, in :class:`ApplyResult`)
    Confirmed: applied (or already in place); ``confirmedValue`` is the
    field's merged value. Rejected: a concurrent scalar write that lost
    last_write_wins, or any write to a manual field that is concurrent or
    finds a conflict pending (it raises or joins that conflict). Refused
    (``invalid_message``): an invalid field name, value or previousValue.
    Rolledback: ``previousValue`` not the value at E, E newer than the trip,
    or a merge the history no longer allows. Messages are worded for people
    (a page shows "Your change to Destination could not be saved:
    <message>"); ``canRetry`` is false for all of these, since re-sending
    the same update cannot succeed. Nothing is applied unless Confirmed,
    and validation happens before any Yjs call, so no input reaches a pycrdt
    panic. A concurrent write of the value the field already holds is not a
    conflict. :meth:`TripDocument.resolve_conflict` and
    :meth:`~TripDocument.expire_conflicts` apply a choice as a new change.

Values
    Validation and number normalisation are in :mod:`sync.conflicts`
    ("Values"): integral floats read back from Yjs become ints.

Updates from Yjs peers (:meth:`TripDocument.apply_remote_update`)
    A peer's update is first applied to a *shadow* Doc that mirrors the live
    one (every change is applied to both), under a deep observer: pycrdt
    panics are ``BaseException`` and a refused update leaves marks, so only
    the shadow may see raw peer bytes; it is rebuilt from the live doc after
    a refusal. The observer yields what the update did: the root map keys it
    set or deleted, the text and list fields it edited, and the transaction's
    own update (only what was new: a re-sent update yields nothing and is not
    a version). The update is refused, and nothing applied, unless it keeps
    the schema: writes only into ``trip``; a key's kind never changes; text
    and list fields stay, with plain text and plain JSON items; scalar values
    are valid JSON (not lists: lists are declared Y.Arrays); every key it sets
    or edits keeps the field-name rule of the JSON API
    (:func:`sync.conflicts.is_field_name`), so a Yjs peer cannot create a
    field a JSON client could not name (``__proto__``, ``../``, ``trip.x``);
    deleting such a key (left by an older server) is allowed. The
    transaction's update is then applied to the live doc and recorded as one
    version with meta ``kind: "yjs"`` and a stamp ``(now, user, update id)``
    for every scalar it changed, so :meth:`restore` rebuilds it like any
    other change.

    A CRDT peer cannot be told "rejected": its edit is in its replica for
    good. So a concurrent write of a manual field is applied (Yjs picks the
    interim value) and raises, or joins, the manual conflict; resolving it
    writes the chosen value as a new change that every replica converges to.
    Concurrent means the writer had not seen the field's current value: the
    map item it wrote was inserted after another item than the one holding
    the key now (:func:`sync.yupdate.seen_values` reads that from the bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

from pycrdt import (
    Array,
    ArrayEvent,
    Doc,
    Map,
    MapEvent,
    Subscription,
    Text,
    TextEvent,
    TransactionEvent,
    XmlElement,
    XmlFragment,
    XmlText,
)

from tripsage_sync.sync.conflicts import (
    AUTO_RESOLVE_AFTER_MS,
    FIELD_NAME_RULE,
    FIELD_PATH_PREFIX,
    JSON,
    SYSTEM_SOURCE,
    ConflictDetected,
    ConflictingValue,
    InvalidValue,
    PendingConflict,
    Stamp,
    canonical_json,
    conflict_id_for,
    diff_ops,
    is_field_name,
    json_equal,
    new_pending_conflict,
    normalise_json,
    parse_field_name,
    validate_value,
)
from tripsage_sync.sync.errors import InvalidMessage, InvalidState, NotFound
from tripsage_sync.sync.yupdate import MalformedUpdate, RootKeys, Struct, decode_update, seen_values

__all__ = [
    "ROOT_MAP",
    "TEXT_FIELDS",
    "ApplyResult",
    "Change",
    "Confirmed",
    "ConflictingUpdate",
    "FieldChange",
    "FieldKind",
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
    "TripDocument",
    "UpdateRequest",
]

ROOT_MAP: Final = "trip"
TEXT_FIELDS: Final = frozenset({"notes"})
META_FORMAT: Final = 1
CREATE_UPDATE_ID: Final = "create"
EMPTY_UPDATE: Final = b"\x00\x00"
_SHARED_TYPES: Final = (Array, Map, Text, XmlElement, XmlFragment, XmlText)

RollbackReason = Literal["stale_previous_value", "history_unavailable", "invalid_expected_version"]


class FieldKind(StrEnum):
    SCALAR = "scalar"
    TEXT = "text"
    LIST = "list"


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


@dataclass
class _Shadow:
    """The shadow Doc and what its observers saw during the last apply."""

    doc: Doc[Any]
    subscriptions: list[Subscription] = field(default_factory=list)
    update: bytes = b""
    edits: dict[str, str] = field(default_factory=dict)  # key -> set | delete | edit
    refusal: str | None = None

    def on_transaction(self, event: TransactionEvent) -> None:
        self.update = event.update

    def on_events(self, events: list[Any]) -> None:
        for event in events:
            path = list(event.path)
            if isinstance(event, MapEvent) and not path:
                for key, change in event.keys.items():  # type: ignore[attr-defined]
                    added = change.get("newValue")
                    if isinstance(added, _SHARED_TYPES):
                        self._refuse(f"{key}: nested shared types are not part of a trip")
                    self.edits[key] = "delete" if change["action"] == "delete" else "set"
            elif isinstance(event, TextEvent | ArrayEvent) and len(path) == 1:
                delta = event.delta  # type: ignore[union-attr]
                inserted = [d.get("insert") for d in delta if "insert" in d]
                if isinstance(event, TextEvent):
                    plain = all(isinstance(i, str) for i in inserted)
                else:
                    plain = not any(isinstance(v, _SHARED_TYPES) for i in inserted for v in i)
                if not plain:
                    self._refuse(f"{path[0]}: only plain text and JSON items")
                self.edits.setdefault(str(path[0]), "edit")
            else:
                self._refuse("edits below a field's own text or list")

    def _refuse(self, message: str) -> None:
        self.refusal = self.refusal or message


_History = dict[str, list[tuple[int, Stamp | None]]]  # field -> (version, stamp) ascending


class TripDocument:
    """One trip's Yjs document. Build it with :meth:`create` or :meth:`restore`."""

    def __init__(
        self, trip_id: str, manual_fields: frozenset[str], auto_resolve_after_ms: int
    ) -> None:
        self.trip_id = trip_id
        self.manual_fields = manual_fields
        self.version = 0
        self._auto_resolve_after_ms = auto_resolve_after_ms
        self._doc = Doc[Any](client_id=_derive_client_id(trip_id, "live", set()))
        self._root = self._doc.get(ROOT_MAP, type=Map)
        self._base = Snapshot(0, b"", {})
        self._entries: list[LogEntry] = []
        self._history: _History = {}
        self._pending: dict[str, PendingConflict] = {}
        self._shadow: _Shadow | None = None
        self._root_keys: RootKeys | None = None  # built on first use, then kept up to date

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
            _check_kind(name, _kind_of_value(name, values[name]), values[name])
        for name in manual_fields:
            if parse_field_name(name) in TEXT_FIELDS or isinstance(values.get(name), list):
                raise InvalidValue(f"{name}: only scalar fields can be resolved manually")
        doc = cls(trip_id, manual_fields, auto_resolve_after_ms)
        stamp = Stamp(now_ms, created_by, CREATE_UPDATE_ID)
        fork = doc._fork(0, CREATE_UPDATE_ID)
        root, before = fork.get(ROOT_MAP, type=Map), fork.get_state()
        stamps: dict[str, Stamp | None] = {}
        for name, value in sorted(values.items()):
            kind = _kind_of_value(name, value)
            root[name] = _shared(kind, value)
            stamps[name] = stamp if kind is FieldKind.SCALAR else None
        return doc, doc._record(fork, before, created_by, CREATE_UPDATE_ID, "create", stamps)

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
        if snapshot is not None:
            doc._doc.apply_update(snapshot.state)
            doc._base, doc.version = snapshot, snapshot.version
            for name, (version, stamp) in _snapshot_fields(snapshot.meta).items():
                doc._history[name] = [(version, stamp)]
        for entry in sorted(log, key=lambda e: e.version):
            if entry.version <= doc.version:
                continue
            if entry.version != doc.version + 1:
                raise InvalidState(f"{trip_id}: log gap before version {entry.version}")
            doc._doc.apply_update(entry.update)
            doc._entries.append(entry)
            doc.version = entry.version
            doc._note(entry.version, _entry_stamps(entry.meta))
        for data in pending_conflicts:
            conflict = PendingConflict.from_json(data)
            doc._pending[conflict.conflict_id] = conflict
        return doc

    @property
    def base_version(self) -> int:
        """The version of the history's base snapshot (older bases are gone)."""
        return self._base.version

    @property
    def doc(self) -> Doc[Any]:
        return self._doc

    def fields(self) -> dict[str, JSON]:
        """Current values as plain JSON (``notes`` as str, lists as list)."""
        return {name: _read(self._root, name) for name in sorted(self._root.keys())}

    def state_update(self) -> bytes:
        return self._doc.get_update()

    # -- "Optimistic Updates" ------------------------------------------------

    def apply_optimistic(self, req: UpdateRequest) -> ApplyResult:
        """Decide ``optimistic_update_start``: exactly one outcome for the sender."""
        try:
            name = parse_field_name(req.field_name)
        except InvalidValue as exc:
            return self._refuse(req, req.field_name, "payload.fieldName", exc)
        kind = _kind(self._root, name)
        try:
            previous = validate_value(req.previous_value) if req.has_previous_value else None
        except InvalidValue as exc:
            return self._refuse(req, name, "payload.previousValue", exc)
        try:
            value = validate_value(req.optimistic_value)
            if kind is None and (name in TEXT_FIELDS or isinstance(value, list)):
                raise InvalidValue(f"{name}: text and list fields are declared at creation")
            _check_kind(name, kind, value)
        except InvalidValue as exc:
            return self._refuse(req, name, "payload.optimisticValue", exc)
        if not 0 <= req.expected_version <= self.version:
            message = (
                "it was based on a newer copy of the trip than the server has."
                " Reload the trip and make the change again."
            )
            return self._rollback(req, name, "invalid_expected_version", message, False)
        # With no base known (version 0), a null previousValue says nothing.
        known = req.has_previous_value and not (req.expected_version == 0 and previous is None)
        if kind is FieldKind.TEXT or kind is FieldKind.LIST:
            return self._merge(req, name, value, previous if known else None, known)
        return self._write_scalar(req, name, value, previous, known)

    def _base_of(self, name: str, expected_version: int) -> tuple[int, bool]:
        """Where an update made at ``expected_version`` is decided ("Bases" above).

        Returns the version and whether ``name`` there is exactly as it was at
        the update's base. Version 0 (no base known) is taken as the creation,
        version 1. Below the retained history the base snapshot stands in: exact
        when the field did not change in between.
        """
        version = max(expected_version, 1)
        if version >= self._base.version:
            return version, True
        history = self._history.get(name, [])
        return self._base.version, not history or history[0][0] <= version

    def _merge(
        self, req: UpdateRequest, name: str, value: JSON, previous: JSON, known: bool
    ) -> ApplyResult:
        at, exact = self._base_of(name, req.expected_version)
        unknown = req.expected_version == 0
        if exact and not unknown:
            tries = [at]  # previousValue, if sent, must be the value at the base
        elif exact:
            tries = [at, self.version]  # the creation, else the text as it is now
        else:
            tries = [at, self.version] if known else []
        for version in dict.fromkeys(tries):
            fork = self._fork(version, "u:" + req.update_id)
            root, before = fork.get(ROOT_MAP, type=Map), fork.get_state()
            base_value = _read(root, name)
            if known and not json_equal(previous, base_value):
                continue
            shared = root[name]
            if isinstance(shared, Text) and isinstance(base_value, str) and isinstance(value, str):
                changed = _edit_text(shared, base_value, value)
            elif (
                isinstance(shared, Array)
                and isinstance(base_value, list)
                and isinstance(value, list)
            ):
                changed = _edit_list(shared, base_value, value)
            else:
                raise InvalidState(f"{name}: kind changed between versions")
            if not changed:  # optimisticValue == previousValue: nothing to apply
                return ApplyResult(self._confirmed(req, name))
            change = self._record(fork, before, req.user_id, req.update_id, "update", {name: None})
            return ApplyResult(self._confirmed(req, name), change)
        if exact:
            return self._stale(req, name)
        return self._too_old(req, name)

    def _write_scalar(
        self, req: UpdateRequest, name: str, value: JSON, previous: JSON, known: bool
    ) -> ApplyResult:
        at, exact = self._base_of(name, req.expected_version)
        history = self._history.get(name, [])
        concurrent = not exact or (bool(history) and history[-1][0] > at)
        # previousValue is checked where the value at the base is known.
        if known and exact and req.expected_version != 0:
            base = self._value_at(at, name) if concurrent else self._value(name)
            if not json_equal(previous, base):
                return self._stale(req, name)
        clamped_ms = min(req.client_ts_ms, req.received_ts_ms)
        seen = self._stamp_at(name, at) if exact else None
        stamp = Stamp(clamped_ms, req.user_id, req.update_id, req.client_ts_ms).after(seen)
        pending = next((c for c in self._pending.values() if c.field_name == name), None)
        if pending is not None:  # "Conflict Resolution": the value joins the open conflict
            joined = pending.with_value(value, stamp)
            self._pending[joined.conflict_id] = joined
            outcome = self._rejected(req, name, "merge_required", joined.conflict_id)
            return ApplyResult(outcome, conflict_raised=joined)
        if not concurrent:
            change = self._write(name, value, stamp, req.user_id, req.update_id, "update")
            return ApplyResult(self._confirmed(req, name), change)
        current, current_value = self._current_stamp(name), self._value(name)
        if json_equal(value, current_value):  # concurrent but in agreement: no conflict
            if stamp < current:
                return ApplyResult(self._confirmed(req, name))
            change = self._write(name, value, stamp, req.user_id, req.update_id, "update")
            return ApplyResult(self._confirmed(req, name), change)
        conflict_id = conflict_id_for(self.trip_id, req.update_id)
        values = (
            ConflictingValue(current.user_id, current_value, current.ts_ms),
            ConflictingValue(req.user_id, value, stamp.ts_ms),
        )
        if name in self.manual_fields:
            conflict = new_pending_conflict(
                conflict_id=conflict_id,
                trip_id=self.trip_id,
                field_name=name,
                current=(current_value, current),
                incoming=(value, stamp),
                deadline_ms=req.received_ts_ms + self._auto_resolve_after_ms,
                auto_resolve_after_ms=self._auto_resolve_after_ms,
            )
            self._pending[conflict_id] = conflict
            detected = ConflictDetected(conflict_id, name, values, "manual", None, None)
            outcome = self._rejected(req, name, "merge_required", conflict_id)
            return ApplyResult(outcome, None, detected, conflict)
        if stamp > current:  # last_write_wins: the incoming write is the later one
            change = self._write(name, value, stamp, req.user_id, req.update_id, "update")
            detected = ConflictDetected(
                conflict_id, name, values, "last_write_wins", value, req.user_id
            )
            return ApplyResult(self._confirmed(req, name), change, detected)
        detected = ConflictDetected(
            conflict_id, name, values, "last_write_wins", current_value, current.user_id
        )
        outcome = self._rejected(req, name, "accept_server_value", None)
        return ApplyResult(outcome, conflict_detected=detected)

    # -- updates from Yjs peers ------------------------------------------------------

    def apply_remote_update(
        self, update: bytes, *, user_id: str, update_id: str, now_ms: int
    ) -> RemoteResult:
        """Apply a Yjs peer's v1 update (see "Updates from Yjs peers" above).

        Raises :class:`RemoteUpdateRefused` with nothing applied when the update is
        malformed or leaves the trip schema.
        """
        if update == EMPTY_UPDATE:
            return RemoteResult(None)
        shadow = self._shadow_doc()
        shadow.update, shadow.edits, shadow.refusal = b"", {}, None
        try:
            shadow.doc.apply_update(update)
        except BaseException as exc:  # pycrdt panics are BaseException (PanicException)
            self._shadow = None
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
            raise MalformedRemoteUpdate("Malformed Yjs update") from exc
        if not shadow.update or shadow.update == EMPTY_UPDATE:  # nothing new
            return RemoteResult(None)
        try:
            writes, written = self._check_remote(shadow, update)
        except RemoteUpdateRefused:
            self._shadow = None
            raise
        stamps: dict[str, Stamp] = {}
        conflicts: list[tuple[PendingConflict, ConflictDetected | None]] = []
        for name, (concurrent, value) in writes.items():
            stamp = Stamp(now_ms, user_id, update_id)
            joined = self._remote_conflict(name, concurrent, value, stamp, now_ms)
            if joined is None:  # a write that saw the current value beats it
                stamp = stamp.after(self._stamp_at(name, self.version))
            else:
                conflicts.append(joined)
            stamps[name] = stamp
        old = {name: self._value(name) for name in shadow.edits.keys() | writes.keys()}
        self._doc.apply_update(shadow.update)
        self._keys().add(written)
        changed = {n: v for n, v in old.items() if not json_equal(v, self._value(n))}
        recorded: dict[str, Stamp | None] = {n: stamps.get(n) for n in changed}
        change = self._log(shadow.update, changed, user_id, update_id, "yjs", recorded, None)
        return RemoteResult(change, tuple(conflicts))

    def _shadow_doc(self) -> _Shadow:
        if self._shadow is None:
            doc = Doc[Any]()
            doc.apply_update(self._doc.get_update())
            shadow = _Shadow(doc)
            root = doc.get(ROOT_MAP, type=Map)
            shadow.subscriptions = [
                doc.observe(shadow.on_transaction),
                root.observe_deep(shadow.on_events),
            ]
            self._shadow = shadow
        return self._shadow

    def _check_remote(
        self, shadow: _Shadow, update: bytes
    ) -> tuple[dict[str, tuple[bool, JSON]], dict[str, list[Struct]]]:
        """Validate what the update did to the shadow.

        Returns the scalar keys it wrote, (concurrent, value written), and its map
        items by key. Only manual fields are checked for concurrency.
        """
        if shadow.refusal is not None:
            raise RemoteUpdateRefused(shadow.refusal)
        if any(name != ROOT_MAP for name in shadow.doc.keys()):
            raise RemoteUpdateRefused(f"Only the root map '{ROOT_MAP}' is shared")
        root = shadow.doc.get(ROOT_MAP, type=Map)
        writes: dict[str, tuple[bool, JSON]] = {}
        for name, action in shadow.edits.items():
            kind = _kind(self._root, name)
            if action != "delete" and not is_field_name(name):
                raise RemoteUpdateRefused(f"Field names must be {FIELD_NAME_RULE}")
            if action != "edit" and kind in (FieldKind.TEXT, FieldKind.LIST):
                raise RemoteUpdateRefused(f"{name}: text and list fields cannot be replaced")
            if action == "set" and name in TEXT_FIELDS:
                raise RemoteUpdateRefused(f"{name}: text fields are declared at creation")
            try:
                value = validate_value(_read_raw(root, name))
            except InvalidValue as exc:
                raise RemoteUpdateRefused(f"{name}: {exc}") from None
            if action == "set" and isinstance(value, list):
                raise RemoteUpdateRefused(f"{name}: lists are declared Y.Arrays")
            if action != "edit":
                writes[name] = (False, value)
        keys = self._keys()
        try:
            written = keys.keys_written(decode_update(shadow.update))
            manual = [name for name in written if name in self.manual_fields]
            if manual:  # a write that lost in Yjs is a write too: no event shows it
                deleted = decode_update(self._doc.get_update(self._doc.get_state()))
                seen = seen_values(written, keys, deleted, decode_update(update))
                for name in manual:
                    writes[name] = (seen[name].concurrent, validate_value(seen[name].written))
        except MalformedUpdate as exc:
            raise MalformedRemoteUpdate(str(exc)) from None
        except InvalidValue as exc:
            raise RemoteUpdateRefused(str(exc)) from None
        return writes, written

    def _keys(self) -> RootKeys:
        if self._root_keys is None:
            keys = RootKeys(ROOT_MAP)
            keys.add(keys.keys_written(decode_update(self._doc.get_update())))
            self._root_keys = keys
        return self._root_keys

    def _remote_conflict(
        self, name: str, concurrent: bool, written: JSON, stamp: Stamp, now_ms: int
    ) -> tuple[PendingConflict, ConflictDetected | None] | None:
        """Raise or join the manual conflict a Yjs write of ``name`` makes, if any."""
        if name not in self.manual_fields:
            return None
        pending = next((c for c in self._pending.values() if c.field_name == name), None)
        if pending is not None:  # "Conflict Resolution": the value joins the open conflict
            joined = pending.with_value(written, stamp)
            self._pending[joined.conflict_id] = joined
            return joined, None
        current_value = self._value(name)
        if not concurrent or json_equal(written, current_value):
            return None
        current = self._current_stamp(name)
        conflict_id = conflict_id_for(self.trip_id, stamp.update_id)
        conflict = new_pending_conflict(
            conflict_id=conflict_id,
            trip_id=self.trip_id,
            field_name=name,
            current=(current_value, current),
            incoming=(written, stamp),
            deadline_ms=now_ms + self._auto_resolve_after_ms,
            auto_resolve_after_ms=self._auto_resolve_after_ms,
        )
        self._pending[conflict_id] = conflict
        values = (
            ConflictingValue(current.user_id, current_value, current.ts_ms),
            ConflictingValue(stamp.user_id, written, stamp.ts_ms),
        )
        return conflict, ConflictDetected(conflict_id, name, values, "manual", None, None)

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
        conflict = self._pending.get(conflict_id)
        if conflict is None:
            raise NotFound("Conflict not found", details={"conflictId": conflict_id})
        if chosen_option_id is not None:
            option = conflict.option(chosen_option_id)
            if option is None:
                raise InvalidMessage("Unknown option", details={"chosenOptionId": chosen_option_id})
            value = option.value
        else:  # raises InvalidValue, an InvalidMessage
            value = validate_value(custom_value)
            _check_kind(conflict.field_name, _kind(self._root, conflict.field_name), value)
        return self._settle(conflict, value, Stamp(now_ms, user_id, conflict_id))

    def expire_conflicts(self, now_ms: int) -> list[ApplyResult]:
        """Apply the default option of every conflict whose deadline has passed."""
        due = sorted(
            (c for c in self._pending.values() if c.deadline_ms <= now_ms),
            key=lambda c: (c.deadline_ms, c.conflict_id),
        )
        return [
            self._settle(c, c.default_option.value, Stamp(now_ms, SYSTEM_SOURCE, c.conflict_id))
            for c in due
        ]

    def next_conflict_deadline_ms(self) -> int | None:
        return min((c.deadline_ms for c in self._pending.values()), default=None)

    def pending_conflicts(self) -> list[PendingConflict]:
        return sorted(self._pending.values(), key=lambda c: (c.deadline_ms, c.conflict_id))

    def _settle(self, conflict: PendingConflict, value: JSON, stamp: Stamp) -> ApplyResult:
        name = conflict.field_name
        stamp = stamp.after(conflict.max_stamp())
        change = self._write(
            name, value, stamp, stamp.user_id, "r:" + conflict.conflict_id, "resolution"
        )
        del self._pending[conflict.conflict_id]
        outcome = Confirmed(
            conflict.conflict_id, name, FIELD_PATH_PREFIX + name, self._value(name), self.version
        )
        return ApplyResult(outcome, change, conflict_resolved=conflict.conflict_id)

    # -- history ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The full state and meta at :attr:`version` (retention is unchanged)."""
        return self._snapshot_at(self.version)

    def compact(self, keep_since_version: int | None = None) -> Snapshot:
        """Make the snapshot at ``keep_since_version`` the base; older bases become too old."""
        version = self.version if keep_since_version is None else keep_since_version
        if not self._base.version <= version <= self.version:
            raise InvalidState(f"cannot compact at {version}")
        snapshot = self._snapshot_at(version)
        self._base = snapshot
        self._entries = [e for e in self._entries if e.version > version]
        for history in self._history.values():
            older = [i for i, (v, _) in enumerate(history) if v <= version]
            if older:
                del history[: older[-1]]
        return snapshot

    def _snapshot_at(self, version: int) -> Snapshot:
        state = self._fork(version, "snapshot").get_update()
        fields: dict[str, JSON] = {}
        for name, history in self._history.items():
            known = [(v, s) for v, s in history if v <= version]
            if known:
                v, s = known[-1]
                fields[name] = {"version": v, "stamp": None if s is None else s.to_json()}
        return Snapshot(version, state, {"format": META_FORMAT, "fields": fields})

    # -- reading the retained history ("sync_request") -------------------------

    def values_at(self, version: int) -> dict[str, JSON]:
        """Every field as plain JSON at a retained ``version`` (``base_version`` or later).

        Version 0 is the empty trip. Raises :class:`InvalidState` for a version
        that is not retained: callers check :attr:`base_version` first.
        """
        self._check_retained(version)
        root = self._fork(version, "read").get(ROOT_MAP, type=Map)
        return {name: _read(root, name) for name in sorted(root.keys())}

    def changes_since(self, since_version: int) -> list[Change]:
        """The changes after ``since_version`` up to :attr:`version`, in version order.

        Each is the :class:`Change` that was broadcast when it was applied: the
        fields it wrote with their old and new values, who made it, its update
        and meta. One replay from ``since_version`` (linear in the entries).
        Raises :class:`InvalidState` unless ``base_version <= since_version <=
        version``; below the base a client needs :meth:`values_at` instead.
        """
        self._check_retained(since_version)
        fork = self._fork(since_version, "read")
        root = fork.get(ROOT_MAP, type=Map)
        out: list[Change] = []
        for entry in self._entries:
            if entry.version <= since_version:
                continue
            listed = entry.meta.get("fields")
            names = sorted(listed) if isinstance(listed, dict) and listed else None
            before = {n: _read(root, n) for n in (names or root.keys())}
            fork.apply_update(entry.update)
            if names is None:  # the meta names no fields (a raw Yjs update): diff them
                after = {n: _read(root, n) for n in root.keys()}
                names = sorted(
                    n
                    for n in set(before) | set(after)
                    if not json_equal(before.get(n), after.get(n))
                )
            user = entry.meta.get("userId")
            out.append(
                Change(
                    entry.version,
                    entry.update,
                    entry.meta,
                    {
                        n: FieldChange(before.get(n), _read(root, n), FIELD_PATH_PREFIX + n)
                        for n in names
                    },
                    user if isinstance(user, str) else "",
                )
            )
        return out

    def _check_retained(self, version: int) -> None:
        if not self._base.version <= version <= self.version:
            raise InvalidState(
                f"{self.trip_id}: version {version} is outside the retained history"
                f" ({self._base.version}..{self.version})"
            )

    # -- the write path ----------------------------------------------------------

    def _fork(self, base_version: int, key: str) -> Doc[Any]:
        """A Doc at ``base_version`` with a fresh client id derived from ``key``."""
        taken = set(_state_vector(self._doc.get_state())) | {self._doc.client_id}
        fork = Doc[Any](client_id=_derive_client_id(self.trip_id, key, taken))
        if base_version == self.version:
            fork.apply_update(self._doc.get_update())
            return fork
        if self._base.state:
            fork.apply_update(self._base.state)
        for entry in self._entries:
            if entry.version > base_version:
                break
            fork.apply_update(entry.update)
        return fork

    def _write(
        self, name: str, value: JSON, stamp: Stamp, user_id: str, update_id: str, kind: str
    ) -> Change:
        """A scalar set, made on the live doc with its own client id.

        The value was already decided (last_write_wins, a manual choice), so
        arrival order cannot change the result, and no fork is needed: the
        state vector does not grow with every scalar write, and the cost of a
        write does not grow with the history.
        """
        old = {name: self._value(name)}
        before = self._doc.get_state()
        self._root[name] = value
        update = self._doc.get_update(before)
        self._mirror(update)
        return self._log(update, old, user_id, update_id, kind, {name: stamp}, self._doc.client_id)

    def _record(
        self,
        fork: Doc[Any],
        before: bytes,
        user_id: str,
        update_id: str,
        kind: str,
        stamps: dict[str, Stamp | None],
    ) -> Change:
        update = fork.get_update(before)
        old = {name: self._value(name) for name in stamps}
        self._doc.apply_update(update)
        self._mirror(update)
        live = _state_vector(self._doc.get_state())
        for client, clock in _state_vector(fork.get_state()).items():
            if live.get(client, 0) < clock:
                raise InvalidState(f"{self.trip_id}: fork {client} was not integrated")
        return self._log(update, old, user_id, update_id, kind, stamps, fork.client_id)

    def _mirror(self, update: bytes) -> None:
        """Bring the shadow and the map item index along with a change made here."""
        if self._shadow is not None:
            self._shadow.doc.apply_update(update)
        if self._root_keys is not None:
            self._root_keys.add(self._root_keys.keys_written(decode_update(update)))

    def _log(
        self,
        update: bytes,
        old: dict[str, JSON],
        user_id: str,
        update_id: str,
        kind: str,
        stamps: dict[str, Stamp | None],
        client_id: int | None,
    ) -> Change:
        """Count an applied update as the next version and keep it in the history."""
        self.version += 1
        meta: dict[str, JSON] = {
            "format": META_FORMAT,
            "kind": kind,
            "updateId": update_id,
            "userId": user_id,
            "clientId": client_id,
            "fields": {n: None if s is None else s.to_json() for n, s in stamps.items()},
        }
        self._entries.append(LogEntry(self.version, update, meta))
        self._note(self.version, stamps)
        changes = {n: FieldChange(old[n], self._value(n), FIELD_PATH_PREFIX + n) for n in stamps}
        return Change(self.version, update, meta, changes, user_id)

    def _note(self, version: int, stamps: dict[str, Stamp | None]) -> None:
        for name, stamp in stamps.items():
            self._history.setdefault(name, []).append((version, stamp))

    # -- reading -------------------------------------------------------------

    def _value(self, name: str) -> JSON:
        return _read(self._root, name)

    def _value_at(self, version: int, name: str) -> JSON:
        return _read(self._fork(version, "read").get(ROOT_MAP, type=Map), name)

    def _stamp_at(self, name: str, version: int) -> Stamp | None:
        known = [s for v, s in self._history.get(name, []) if v <= version]
        return known[-1] if known else None

    def _current_stamp(self, name: str) -> Stamp:
        stamp = self._stamp_at(name, self.version)
        if stamp is None:
            raise InvalidState(f"{name}: scalar field without a stamp")
        return stamp

    # -- outcomes --------------------------------------------------------------

    def _confirmed(self, req: UpdateRequest, name: str) -> Confirmed:
        path = FIELD_PATH_PREFIX + name
        return Confirmed(req.update_id, name, path, self._value(name), self.version)

    def _rejected(
        self,
        req: UpdateRequest,
        name: str,
        suggested: Literal["accept_server_value", "merge_required"],
        conflict_id: str | None,
    ) -> Rejected:
        current = self._current_stamp(name)
        if conflict_id is None:
            message = "someone else changed it at the same time, and their change was kept."
        else:
            message = "someone else changed it at the same time; choose which value to keep."
        return Rejected(
            update_id=req.update_id,
            field_name=name,
            field_path=FIELD_PATH_PREFIX + name,
            current_server_value=self._value(name),
            current_server_version=self.version,
            expected_version=req.expected_version,
            conflicting_update=ConflictingUpdate(current.user_id, current.ts_ms),
            suggested_resolution=suggested,
            conflict_id=conflict_id,
            message=message,
        )

    def _refuse(self, req: UpdateRequest, name: str, field: str, exc: InvalidValue) -> ApplyResult:
        valid = is_field_name(name)
        current = self._value(name) if valid else None
        path = FIELD_PATH_PREFIX + name if valid else name
        sent = {"payload.fieldName": req.field_name, "payload.previousValue": req.previous_value}
        received = _json_type(sent.get(field, req.optimistic_value))
        details: dict[str, JSON] = {"field": field, "expected": exc.message, "received": received}
        return ApplyResult(
            Refused(req.update_id, name, path, exc.message, details, current, self.version)
        )

    def _rollback(
        self, req: UpdateRequest, name: str, reason: RollbackReason, message: str, retry: bool
    ) -> ApplyResult:
        valid = is_field_name(name)
        current = self._value(name) if valid else None
        path = FIELD_PATH_PREFIX + name if valid else name
        return ApplyResult(Rolledback(req.update_id, name, path, current, reason, retry, message))

    def _stale(self, req: UpdateRequest, name: str) -> ApplyResult:
        message = (
            "it was based on an out-of-date copy of this field."
            " The current value is shown; please make the change again."
        )
        return self._rollback(req, name, "stale_previous_value", message, False)

    def _too_old(self, req: UpdateRequest, name: str) -> ApplyResult:
        message = (
            "the trip changed too much since your copy was loaded to merge it."
            " The current value is shown; please make the change again."
        )
        return self._rollback(req, name, "history_unavailable", message, False)


# -- values -------------------------------------------------------------------


def _json_type(value: object) -> str:
    """The JSON type name of a value a peer sent (for ``error`` details)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kind_of_value(name: str, value: JSON) -> FieldKind:
    if name in TEXT_FIELDS:
        return FieldKind.TEXT
    return FieldKind.LIST if isinstance(value, list) else FieldKind.SCALAR


def _check_kind(name: str, kind: FieldKind | None, value: JSON) -> None:
    if kind is FieldKind.TEXT and not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string")
    wanted = kind or FieldKind.SCALAR
    if wanted is not FieldKind.TEXT and _kind_of_value(name, value) is not wanted:
        raise InvalidValue(f"{name} holds {wanted} values")


def _kind(root: Map[Any], name: str) -> FieldKind | None:
    if name not in root:
        return None
    shared = root[name]
    if isinstance(shared, Text):
        return FieldKind.TEXT
    return FieldKind.LIST if isinstance(shared, Array) else FieldKind.SCALAR


def _shared(kind: FieldKind, value: JSON) -> Any:
    """The value as stored in the root map: Y.Text, Y.Array or the plain value."""
    if kind is FieldKind.TEXT:
        return Text(str(value))
    return Array(value) if isinstance(value, list) else value


def _read(root: Map[Any], name: str) -> JSON:
    try:
        return normalise_json(_read_raw(root, name))
    except InvalidValue as exc:
        raise InvalidState(f"{name}: stored value is not JSON: {exc}") from exc


def _read_raw(root: Map[Any], name: str) -> object:
    """The value under ``name`` as Python: Y.Text as str, Y.Array as list."""
    if name not in root:
        return None
    shared = root[name]
    if isinstance(shared, Text):
        return str(shared)
    return shared.to_py() if isinstance(shared, Array) else shared


def _edit_text(text: Text, old: str, new: str) -> bool:
    """Apply ``old -> new`` to ``text`` (holding ``old``); pycrdt indexes are UTF-8 bytes."""
    ops = diff_ops(old, new)
    for i1, i2, j1, j2 in ops:
        start = len(old[:i1].encode())
        stop = start + len(old[i1:i2].encode())
        if stop > start:
            del text[start:stop]
        if j2 > j1:
            text.insert(start, new[j1:j2])
    return bool(ops)


def _edit_list(array: Array[Any], old: list[JSON], new: list[JSON]) -> bool:
    ops = diff_ops([canonical_json(v) for v in old], [canonical_json(v) for v in new])
    for i1, i2, j1, j2 in ops:
        if i2 > i1:
            del array[i1:i2]
        if j2 > j1:
            array[i1:i1] = new[j1:j2]
    return bool(ops)


# -- Yjs plumbing ---------------------------------------------------------------


def _derive_client_id(trip_id: str, key: str, taken: set[int]) -> int:
    """A 32-bit non-zero client id from (trip, key), re-salted until not ``taken``."""
    salt = 0
    while True:
        material = f"{trip_id}\x1f{key}\x1f{salt}".encode()
        client_id = int.from_bytes(hashlib.blake2b(material, digest_size=4).digest(), "big")
        if client_id != 0 and client_id not in taken:
            return client_id
        salt += 1


def _state_vector(state: bytes) -> dict[int, int]:
    """Decode a Yjs v1 state vector: varuint count, then (client, clock) varuint pairs."""
    numbers: list[int] = []
    value = shift = 0
    for byte in state:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            numbers.append(value)
            value = shift = 0
    count = numbers[0] if numbers else 0
    pairs = numbers[1 : 1 + 2 * count]
    return dict(zip(pairs[0::2], pairs[1::2], strict=True))


def _entry_stamps(meta: dict[str, JSON]) -> dict[str, Stamp | None]:
    fields = meta.get("fields")
    if not isinstance(fields, dict):
        raise InvalidState("log entry meta without fields")
    return {n: None if s is None else Stamp.from_json(s) for n, s in fields.items()}


def _snapshot_fields(meta: dict[str, JSON]) -> dict[str, tuple[int, Stamp | None]]:
    fields = meta.get("fields")
    if not isinstance(fields, dict):
        raise InvalidState("snapshot meta without fields")
    out: dict[str, tuple[int, Stamp | None]] = {}
    for name, info in fields.items():
        if not isinstance(info, dict):
            raise InvalidState(f"snapshot meta for {name} is malformed")
        version, stamp = info.get("version"), info.get("stamp")
        if not isinstance(version, int):
            raise InvalidState(f"snapshot meta for {name} has no version")
        out[name] = (version, None if stamp is None else Stamp.from_json(stamp))
    return out
