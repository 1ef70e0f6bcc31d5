"""Updates from Yjs peers: vet the raw bytes in the shadow, then apply and record them.

An update that only adds new plain keys is vetted from its bytes alone and
applied to the live doc once (:mod:`sync.document.newkeys`); every other
update takes the path below, refusals included.

A peer's update is applied to the shadow first (:mod:`sync.document.shadow`);
it is refused, and nothing applied, unless it keeps the schema: writes only
into ``trip``; a key's kind never changes; text and list fields stay, with
plain text and plain JSON items; scalar values are valid JSON (not lists:
lists are declared Y.Arrays); every key it sets or edits keeps the
field-name rule of the JSON API (:func:`sync.conflicts.is_field_name`), so a
Yjs peer cannot create a field a JSON client could not name (``__proto__``,
``../``, ``trip.x``); deleting such a key (left by an older server) is
allowed. The transaction's update is then applied to the live doc and
recorded as one version with meta ``kind: "yjs"`` and a stamp ``(now, user,
update id)`` for every scalar it changed, so a restore rebuilds it like any
other change. An update that brings nothing new is not a version.

A concurrent write of a manual field is applied and raises, or joins, the
manual conflict (:meth:`sync.document.conflict.ManualConflicts.remote_write`).
Concurrent means the writer had not seen the field's current value: the map
item it wrote was inserted after another item than the one holding the key
now (:func:`sync.yupdate.seen_values` reads that from the bytes).
"""

from __future__ import annotations

from typing import Final

from pycrdt import Map

from tripsage_sync.sync.conflicts import (
    FIELD_NAME_RULE,
    JSON,
    ConflictDetected,
    InvalidValue,
    PendingConflict,
    Stamp,
    is_field_name,
    json_equal,
    validate_value,
)
from tripsage_sync.sync.document.conflict import ManualConflicts
from tripsage_sync.sync.document.newkeys import NewKeys, new_keys
from tripsage_sync.sync.document.results import (
    MalformedRemoteUpdate,
    RemoteResult,
    RemoteUpdateRefused,
)
from tripsage_sync.sync.document.schema import ROOT_MAP, TEXT_FIELDS, FieldKind, read_raw
from tripsage_sync.sync.document.shadow import Shadow, new_shadow
from tripsage_sync.sync.document.state import DocState
from tripsage_sync.sync.errors import InvalidState
from tripsage_sync.sync.ykeys import seen_values
from tripsage_sync.sync.yupdate import MalformedUpdate, Struct, decode_update

__all__ = ["EMPTY_UPDATE", "apply_remote_update"]

EMPTY_UPDATE: Final = b"\x00\x00"


def apply_remote_update(
    state: DocState,
    conflicts: ManualConflicts,
    update: bytes,
    *,
    user_id: str,
    update_id: str,
    now_ms: int,
) -> RemoteResult:
    """Apply a Yjs peer's v1 update (see the module docstring).

    Raises :class:`RemoteUpdateRefused` with nothing applied when the update is
    malformed or leaves the trip schema.
    """
    if update == EMPTY_UPDATE:
        return RemoteResult(None)
    added = new_keys(state, conflicts.manual_fields, update)
    if added is not None:
        return _apply_new_keys(state, conflicts, update, added, user_id, update_id, now_ms)
    shadow = _shadow_of(state)
    had_pending = shadow.pending
    _apply_to_shadow(state, shadow, update)
    shadow.note_pending(update)
    if not shadow.update or shadow.update == EMPTY_UPDATE:  # nothing new
        return RemoteResult(None)
    if had_pending:
        # Structs that waited were integrated now, but pycrdt may have reported them
        # to the observer in the transaction that left them pending (a key set by a
        # peer's second update, received before its first): vet everything this
        # transaction integrated, in one go, on a fresh shadow of the live doc.
        integrated = shadow.update
        shadow = new_shadow(state.doc.get_update())
        _apply_to_shadow(state, shadow, integrated)
    try:
        writes, written = _check(state, conflicts.manual_fields, shadow, update)
    except RemoteUpdateRefused:
        state.shadow = None
        raise
    stamps, raised = _stamps(state, conflicts, writes, user_id, update_id, now_ms)
    old = {name: state.value(name) for name in shadow.edits.keys() | writes.keys()}
    state.doc.apply_update(shadow.update)
    state.keys().add(written)
    changed = {n: v for n, v in old.items() if not json_equal(v, state.value(n))}
    return _appended(state, changed, stamps, raised, shadow.update, user_id, update_id)


def _apply_new_keys(
    state: DocState,
    conflicts: ManualConflicts,
    update: bytes,
    added: NewKeys,
    user_id: str,
    update_id: str,
    now_ms: int,
) -> RemoteResult:
    """Apply an update :func:`sync.document.newkeys.new_keys` vetted, to the live doc once."""
    writes = {name: (False, value) for name, value in added.values.items()}
    stamps, raised = _stamps(state, conflicts, writes, user_id, update_id, now_ms)
    keys = state.keys()  # built before the update lands: it adds ``added.written`` below
    state.doc.apply_update(update)
    applied = state.last_update
    if not applied:
        raise InvalidState(f"{state.trip_id}: a vetted remote update made no change")
    state.known_after(added.clocks, added.values)
    keys.add(added.written)
    if state.shadow is not None:
        state.shadow.doc.apply_update(applied)
    # The keys were absent (null): a key set to null changed nothing.
    changed: dict[str, JSON] = {n: None for n, v in added.values.items() if v is not None}
    return _appended(state, changed, stamps, raised, applied, user_id, update_id)


def _stamps(
    state: DocState,
    conflicts: ManualConflicts,
    writes: dict[str, tuple[bool, JSON]],
    user_id: str,
    update_id: str,
    now_ms: int,
) -> tuple[dict[str, Stamp], list[tuple[PendingConflict, ConflictDetected | None]]]:
    """The stamp of each scalar write, and the manual conflicts the writes raised or joined."""
    stamps: dict[str, Stamp] = {}
    raised: list[tuple[PendingConflict, ConflictDetected | None]] = []
    for name, (concurrent, value) in writes.items():
        stamp = Stamp(now_ms, user_id, update_id)
        joined = conflicts.remote_write(state, name, concurrent, value, stamp, now_ms)
        if joined is None:  # a write that saw the current value beats it
            stamp = stamp.after(state.stamp_at(name, state.version))
        else:
            raised.append(joined)
        stamps[name] = stamp
    return stamps, raised


def _appended(
    state: DocState,
    changed: dict[str, JSON],
    stamps: dict[str, Stamp],
    raised: list[tuple[PendingConflict, ConflictDetected | None]],
    update: bytes,
    user_id: str,
    update_id: str,
) -> RemoteResult:
    """``update`` as the next version, ``changed`` the fields it changed (their old values)."""
    recorded: dict[str, Stamp | None] = {n: stamps.get(n) for n in changed}
    change = state.append(update, changed, user_id, update_id, "yjs", recorded, None)
    return RemoteResult(change, tuple(raised))


def _apply_to_shadow(state: DocState, shadow: Shadow, update: bytes) -> None:
    shadow.reset()
    try:
        shadow.doc.apply_update(update)
    except BaseException as exc:  # pycrdt panics are BaseException (PanicException)
        state.shadow = None
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        raise MalformedRemoteUpdate("Malformed Yjs update") from exc


def _shadow_of(state: DocState) -> Shadow:
    if state.shadow is None:
        state.shadow = new_shadow(state.doc.get_update())
    return state.shadow


def _check(
    state: DocState, manual_fields: frozenset[str], shadow: Shadow, update: bytes
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
        kind = state.kind(name)
        if action != "delete" and not is_field_name(name):
            raise RemoteUpdateRefused(f"Field names must be {FIELD_NAME_RULE}")
        if action != "edit" and kind in (FieldKind.TEXT, FieldKind.LIST):
            raise RemoteUpdateRefused(f"{name}: text and list fields cannot be replaced")
        if action == "set" and name in TEXT_FIELDS:
            raise RemoteUpdateRefused(f"{name}: text fields are declared at creation")
        try:
            value = validate_value(read_raw(root, name))
        except InvalidValue as exc:
            raise RemoteUpdateRefused(f"{name}: {exc}") from None
        if action == "set" and isinstance(value, list):
            raise RemoteUpdateRefused(f"{name}: lists are declared Y.Arrays")
        if action != "edit":
            writes[name] = (False, value)
    keys = state.keys()
    try:
        written = keys.keys_written(decode_update(shadow.update))
        manual = [name for name in written if name in manual_fields]
        if manual:  # a write that lost in Yjs is a write too: no event shows it
            deleted = decode_update(state.doc.get_update(state.doc.get_state()))
            seen = seen_values(written, keys, deleted, decode_update(update))
            for name in manual:
                writes[name] = (seen[name].concurrent, validate_value(seen[name].written))
    except MalformedUpdate as exc:
        raise MalformedRemoteUpdate(str(exc)) from None
    except InvalidValue as exc:
        raise RemoteUpdateRefused(str(exc)) from None
    return writes, written
