"""History: rebuild from persisted state, snapshot, compact, and read retained versions.

The document keeps its base snapshot and the log entries after it
(:class:`~sync.document.state.DocState`); the doc at any retained version is
the snapshot plus the entries up to it, replayed into a fresh Doc. In a
running server memory holds only a recent window of those entries ("Window" in
:mod:`sync.document.state`); a replay or snapshot below it reads the stored
entries once, through the shell's ``older``.
:func:`compact` moves the base forward: updates made at an older version are
then decided against the base snapshot ("Bases" in
:mod:`sync.document.optimistic`). A snapshot's meta keeps, per field, the
version and stamp of its last write, so a restored document decides
last_write_wins exactly as the one that wrote it. :func:`values_at` and
:func:`changes_since` serve ``sync_request`` (``websocket-api.md``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

from pycrdt import Map

from tripsage_sync.sync.conflicts import (
    FIELD_PATH_PREFIX,
    JSON,
    PackedStamp,
    Stamp,
    json_equal,
    pack_stamp,
    unpack_stamp,
)
from tripsage_sync.sync.document.kept import entry_of, kept
from tripsage_sync.sync.document.results import Change, FieldChange, LogEntry, Snapshot
from tripsage_sync.sync.document.schema import ROOT_MAP, read_field
from tripsage_sync.sync.document.state import META_FORMAT, DocState, entry_stamps
from tripsage_sync.sync.errors import InvalidState
from tripsage_sync.sync.ykeys import RootKeys
from tripsage_sync.sync.yupdate import ID, MalformedUpdate, decode_update

__all__ = ["adopt", "changes_since", "compact", "rebase", "restore", "snapshot_at", "values_at"]

#: A rebase (:func:`rebase`) looks at no more deleted items than this per update.
_REBASE_MAX_DELETES: Final = 1024


def restore(state: DocState, snapshot: Snapshot | None, log: Iterable[LogEntry]) -> None:
    """Load persisted state into a fresh ``state``; entries at or below the snapshot are skipped."""
    if snapshot is not None:
        state.doc.apply_update(snapshot.state)
        state.base = state.window = snapshot
        state.version = snapshot.version
        for name, (version, stamp) in _snapshot_fields(snapshot.meta).items():
            state.history[name] = [(version, stamp)]
    for entry in sorted(log, key=lambda e: e.version):
        if entry.version <= state.version:
            continue
        if entry.version != state.version + 1:
            raise InvalidState(f"{state.trip_id}: log gap before version {entry.version}")
        state.doc.apply_update(entry.update)
        state.entries.append(kept(entry))
        state.version = entry.version
        state.note(entry.version, entry_stamps(entry.meta))


def adopt(state: DocState, entry: LogEntry) -> Change:
    """Apply a change another replica decided and stored (cluster mode) as the next version.

    The entry is taken as it was logged: its update, its meta and its version,
    which must be exactly the next one. The document must be the stored one at
    the version before (no change of its own waiting for storage), so that the
    update lands on the state it was decided on.
    """
    if entry.version != state.version + 1:
        raise InvalidState(f"{state.trip_id}: cannot adopt {entry.version} at {state.version}")
    stamps = entry_stamps(entry.meta)
    old = {name: state.value(name) for name in stamps}
    state.doc.apply_update(entry.update)
    state.mirror(entry.update)
    state.version = entry.version
    state.entries.append(kept(entry))
    state.note(entry.version, stamps)
    state.trim()
    changes = {n: FieldChange(old[n], state.value(n), FIELD_PATH_PREFIX + n) for n in stamps}
    updated_by = entry.meta.get("userId")
    return Change(entry.version, entry.update, entry.meta, changes, str(updated_by or ""))


def rebase(
    state: DocState, after: int, theirs: list[LogEntry], manual_fields: frozenset[str]
) -> list[Change] | None:
    """Put another replica's stored changes ``theirs`` (versions ``after + 1`` on) under
    this document's own changes after ``after``, which storage has not taken (cluster
    mode: the other node committed those versions first); ``None`` if they do not
    commute, with nothing changed.

    They commute when every change of both sides only sets and deletes keys of the
    root map, no key is touched on both sides, and none is a manual field: then the
    live doc with ``theirs`` merged in (Yjs merges in any order to one state) is the
    doc at ``theirs`` and then this side's changes, each of which changes what it
    changed before, from the same old values. The history is rewritten so: ``theirs``
    adopted at their versions (:func:`adopt`), this side's entries renumbered after
    them, unchanged. Returns the changes adopted; the caller renumbers its own.
    """
    count = state.version - after
    mine = [entry_of(e) for e in state.entries[-count:]] if 0 < count <= len(state.entries) else []
    if (
        not mine
        or mine[0].version != after + 1
        or state.window.version > after
        or state.base.version > after
        or [e.version for e in theirs] != list(range(after + 1, after + 1 + len(theirs)))
        or not theirs
        or (state.shadow is not None and state.shadow.pending)
    ):
        return None
    keys = state.keys()
    touched: list[set[str]] = []
    for side in (mine, theirs):
        names: set[str] = set()
        earlier: dict[ID, str] = {}  # the keys of the side's items not in the index (theirs)
        for entry in side:
            keys_of = _root_keys_touched(keys, entry, earlier)
            if keys_of is None:
                return None
            names |= keys_of
        touched.append(names)
    if touched[0] & touched[1] or (touched[0] | touched[1]) & manual_fields:
        return None
    del state.entries[-count:]
    for name in touched[0]:  # every field this side wrote is named in its entries' meta
        writes = state.history.get(name, [])
        while writes and writes[-1][0] > after:
            writes.pop()
        if not writes:
            state.history.pop(name, None)
    state.version = after
    adopted = [adopt(state, entry) for entry in theirs]
    for entry in mine:
        state.version += 1
        state.entries.append(kept(LogEntry(state.version, entry.update, entry.meta)))
        state.note(state.version, entry_stamps(entry.meta))
    state.trim()
    return adopted


def _root_keys_touched(keys: RootKeys, entry: LogEntry, earlier: dict[ID, str]) -> set[str] | None:
    """The root map keys an entry sets or deletes (and names in its meta); ``None``
    unless that is all it does (every struct an item of the root map, every deleted
    item one too). ``earlier``: the keys of items of the entries before it that the
    index does not have; this entry's are added."""
    try:
        decoded = decode_update(entry.update)
        written = keys.keys_written(decoded, earlier)
    except MalformedUpdate:
        return None
    if any(not s.is_item or s.length != 1 for s in decoded.structs):
        return None
    if sum(len(items) for items in written.values()) != len(decoded.structs):
        return None  # an item inside a field (text, list): not a key's own write
    names = set(written) | set(entry_stamps(entry.meta))
    earlier.update(((s.client, s.clock), name) for name, items in written.items() for s in items)
    own = earlier
    deleted = 0
    for client, ranges in decoded.delete_set.items():
        for start, length in ranges:
            deleted += length
            if deleted > _REBASE_MAX_DELETES:
                return None
            for clock in range(start, start + length):
                name = keys.key_of((client, clock)) or own.get((client, clock))
                if name is None:
                    return None
                names.add(name)
    return names


def snapshot_at(state: DocState, version: int) -> Snapshot:
    """The full state at a retained ``version``, with each field's last (version, stamp)."""
    doc_state = state.fork(version, "snapshot").get_update()
    base = state.base.version
    dropped: dict[str, tuple[int, PackedStamp | None]] = {}
    if base < version < state.window.version:  # writes dropped from memory: one read
        for entry in state.stored(base, version):
            stamps = entry_stamps(entry.meta).items()
            dropped.update((n, (entry.version, pack_stamp(s))) for n, s in stamps)
    fields: dict[str, JSON] = {}
    for name, history in state.history.items():
        i = bisect.bisect_right(history, version, key=_version_of)
        write = history[i - 1] if i else None
        if name in dropped and (write is None or write[0] <= base):
            write = dropped[name]
        if write is not None:
            v, stamp = write[0], unpack_stamp(write[1])
            fields[name] = {"version": v, "stamp": None if stamp is None else stamp.to_json()}
    return Snapshot(version, doc_state, {"format": META_FORMAT, "fields": fields})


def compact(state: DocState, keep_since_version: int | None = None) -> Snapshot:
    """Make the snapshot at ``keep_since_version`` the base; older bases become too old."""
    version = state.version if keep_since_version is None else keep_since_version
    if not state.base.version <= version <= state.version:
        raise InvalidState(f"cannot compact at {version}")
    snapshot = snapshot_at(state, version)
    state.base = snapshot
    if version >= state.window.version:
        state.window = snapshot
    state.entries = [e for e in state.entries if e[0] > version]
    last = _snapshot_fields(snapshot.meta)
    for name, history in state.history.items():
        later = history[bisect.bisect_right(history, version, key=_version_of) :]
        history[:] = [last[name], *later] if name in last else later
    return snapshot


def values_at(state: DocState, version: int) -> dict[str, JSON]:
    """Every field as plain JSON at a retained ``version`` (``base_version`` or later).

    Version 0 is the empty trip. Raises :class:`InvalidState` for a version
    that is not retained: callers check the base version first.
    """
    state.check_retained(version)
    root = state.fork(version, "read").get(ROOT_MAP, type=Map)
    return {name: read_field(root, name) for name in sorted(root.keys())}


def changes_since(state: DocState, since_version: int) -> list[Change]:
    """The changes after ``since_version`` up to the current version, in version order.

    Each is the :class:`Change` that was broadcast when it was applied: the
    fields it wrote with their old and new values, who made it, its update
    and meta. One replay from ``since_version`` (linear in the entries).
    Raises :class:`InvalidState` unless ``base_version <= since_version <=
    version``; below the base a client needs :func:`values_at` instead.
    """
    state.check_retained(since_version)
    fork = state.fork(since_version, "read")
    root = fork.get(ROOT_MAP, type=Map)
    out: list[Change] = []
    for entry in state.log_after(since_version):
        listed = entry.meta.get("fields")
        names = sorted(listed) if isinstance(listed, dict) and listed else None
        before = {n: read_field(root, n) for n in (names or root.keys())}
        fork.apply_update(entry.update)
        if names is None:  # the meta names no fields (a raw Yjs update): diff them
            after = {n: read_field(root, n) for n in root.keys()}
            names = sorted(
                n for n in set(before) | set(after) if not json_equal(before.get(n), after.get(n))
            )
        user = entry.meta.get("userId")
        out.append(
            Change(
                entry.version,
                entry.update,
                entry.meta,
                {
                    n: FieldChange(before.get(n), read_field(root, n), FIELD_PATH_PREFIX + n)
                    for n in names
                },
                user if isinstance(user, str) else "",
            )
        )
    return out


def _snapshot_fields(meta: dict[str, JSON]) -> dict[str, tuple[int, PackedStamp | None]]:
    fields = meta.get("fields")
    if not isinstance(fields, dict):
        raise InvalidState("snapshot meta without fields")
    out: dict[str, tuple[int, PackedStamp | None]] = {}
    for name, info in fields.items():
        if not isinstance(info, dict):
            raise InvalidState(f"snapshot meta for {name} is malformed")
        version, stamp = info.get("version"), info.get("stamp")
        if not isinstance(version, int):
            raise InvalidState(f"snapshot meta for {name} has no version")
        out[name] = (version, None if stamp is None else pack_stamp(Stamp.from_json(stamp)))
    return out


def _version_of(write: tuple[int, PackedStamp | None]) -> int:
    return write[0]
