"""The live Doc of one trip, its version, and the write path every change takes.

Versions
    ``version`` counts applied changes (creation is version 1). Each change is
    one Yjs v1 update plus JSON ``meta`` (who, which update, the fields and
    the stamps it wrote), kept after the base :class:`~sync.document.results.Snapshot`
    as a plain tuple the cycle collector leaves alone (:mod:`sync.document.kept`;
    read back as a :class:`~sync.document.results.LogEntry`); ``history`` holds
    each field's (version, stamp) list for the retained versions
    (:mod:`sync.document.history` reads and compacts them).

Forks
    Every text or list edit, concurrent or not, is made in a *fork*
    (:meth:`DocState.fork`): a fresh Doc holding the state at the update's
    base whose client id is a 32-bit hash of (trip id, update id), re-salted
    while it is 0, the live doc's id or already in the live state vector
    (pycrdt silently drops the edits of a merged doc that reuses a client
    id). The fork's update relative to its own starting state is applied to
    the live doc (:meth:`DocState.record`). Yjs orders concurrent inserts at
    one position by client id, so deriving ids from update ids makes the
    merged text independent of arrival order. The doc at any retained
    version is the snapshot plus the entries up to it, replayed into a fresh
    Doc (``merge_updates`` is super-linear in pycrdt, so it is never used).

Window
    In a running server the log since the base is in storage too, so memory
    keeps only a recent window of it (:meth:`DocState.keep_recent`): once
    there are ``2 * keep`` entries, the oldest are dropped and ``window``, a
    snapshot of the doc at the newest dropped version, stands in for them.
    Making that snapshot costs as much as the doc, so it is made when a fork
    first needs it or once ``WINDOW_LAG * keep`` updates were dropped since
    the last one; until then the dropped updates are kept, without meta.
    Each field's stamp history keeps its last write at or before the base, its
    last write at or before the window (a field the dropped entries did not
    write is left as it was), and every write after. The few reads
    of versions between the base and the window (a fork or a stamp at an old
    base, a replay for ``sync_request``, a compaction) ask ``older`` for the
    stored entries; the hot path (forks at recent versions, the current
    stamps) never does, so neither memory nor the cost of an update grows
    with the trip's history. Without ``older`` (no storage behind), every
    entry is kept.

Scalar writes
    Scalar sets need no fork (:meth:`DocState.write`): the value is decided
    before it is written, so the live doc writes it with its own
    (trip-derived) client id, and neither the state vector nor the cost of a
    write grows with the number of scalar writes. The write's update is the
    one its transaction reports (``Doc.observe``, what y-websocket sends too):
    ``get_update(before)`` would also carry the doc's whole delete set, and
    its cost grows with every value ever overwritten.

Reading
    A read of the live doc through pycrdt costs microseconds (each lookup is a
    transaction), and one update reads its field several times: absent and
    immutable scalar values are kept (:meth:`DocState.value`) until the live
    doc's next transaction (``Doc.observe``), which forgets them all, except
    that a scalar write (:meth:`DocState.write`) knows what it changed.

Every change made here is mirrored into the remote-update shadow and the
root map's item index (:mod:`sync.yupdate`), when those exist.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

from pycrdt import Doc, Map

from tripsage_sync.sync.conflicts import (
    FIELD_PATH_PREFIX,
    JSON,
    PackedStamp,
    Stamp,
    normalise_json,
    pack_stamp,
    unpack_stamp,
)
from tripsage_sync.sync.document.clientids import derive_client_id, state_vector
from tripsage_sync.sync.document.kept import Kept, entry_of, kept
from tripsage_sync.sync.document.results import (
    Change,
    FieldChange,
    LogEntry,
    Snapshot,
    entry_stamps,
)
from tripsage_sync.sync.document.schema import ROOT_MAP, FieldKind, read_field, read_kind_and_field
from tripsage_sync.sync.document.seen import Read, Seen
from tripsage_sync.sync.document.shadow import Shadow
from tripsage_sync.sync.errors import InvalidState
from tripsage_sync.sync.ykeys import RootKeys
from tripsage_sync.sync.yupdate import decode_update

__all__ = [
    "META_FORMAT",
    "DocState",
    "FieldHistory",
    "OlderEntries",
    "derive_client_id",
    "entry_stamps",
    "state_vector",
]

META_FORMAT: Final = 1

FieldHistory = dict[str, list[tuple[int, PackedStamp | None]]]  # versions ascending
_IMMUTABLE: Final = (str, int, float, bool, type(None))
WINDOW_LAG: Final = 4  # dropped updates kept for the window's state, times ``keep``
# The stored log entries with ``after < version <= up_to``, ascending (the shell reads
# them from storage; see "Window" above).
OlderEntries = Callable[[int, int], list[LogEntry]]


class _Lag(NamedTuple):  # the window's state until it is made ("Window" above)
    version: int  # the window's
    before: bytes  # the state it starts from
    updates: list[bytes]  # the updates dropped since


class DocState:
    """The live Doc, the retained history and the write path of one trip."""

    def __init__(self, trip_id: str) -> None:
        self.trip_id = trip_id
        self.version = 0
        self.doc = Doc[Any](client_id=derive_client_id(trip_id, "live", set()))
        self.root = self.doc.get(ROOT_MAP, type=Map)
        self.base = Snapshot(0, b"", {})
        self.window = self.base  # the doc where ``entries`` start ("Window" above)
        self._lag: _Lag | None = None  # until window_state() makes the window's state
        self.entries: list[Kept] = []  # as memory keeps them (sync/document/kept.py)
        self.keep = 0  # entries kept in memory; 0: every one
        self.older: OlderEntries | None = None
        self.history: FieldHistory = {}
        self.shadow: Shadow | None = None
        self.root_keys: RootKeys | None = None  # built on first use, then kept up to date
        self._seen = Seen()
        # pycrdt's own observer wrapper refers to the Doc (Doc -> Rust -> callback -> Doc):
        # the subscription is dropped with the DocState, else the Doc is never freed.
        weakref.finalize(self, self.doc.observe(self._seen.transaction_done).drop)

    @property
    def last_update(self) -> bytes:
        """The update of the live doc's latest transaction."""
        return self._seen.update

    def clocks(self) -> dict[int, int]:
        """The live doc's state vector, decoded once until its next transaction."""
        seen = self._seen
        if seen.clocks is None:
            seen.clocks = state_vector(self.doc.get_state())
        return seen.clocks

    def known_after(self, clocks: dict[int, int], values: dict[str, JSON]) -> None:
        """What a caller's own transaction left: the state vector, and scalars it set.

        The remote fast path (:mod:`sync.document.newkeys`) knows both from the
        bytes it vetted; ``values`` are normalised, as :meth:`value` reads them.
        """
        seen = self._seen
        seen.clocks = clocks
        for name, value in values.items():
            if isinstance(value, _IMMUTABLE):
                seen.reads[name] = (FieldKind.SCALAR, value)

    # -- the write path ----------------------------------------------------------

    def fork(self, base_version: int, key: str) -> Doc[Any]:
        """A Doc at ``base_version`` with a fresh client id derived from ``key``."""
        taken = set(state_vector(self.doc.get_state())) | {self.doc.client_id}
        fork = Doc[Any](client_id=derive_client_id(self.trip_id, key, taken))
        if base_version == self.version:
            fork.apply_update(self.doc.get_update())
            return fork
        if base_version >= self.window.version:
            start: Snapshot = self.window_state()
            updates = [e[1] for e in self.entries if e[0] <= base_version]
        else:  # below the window ("Window" above)
            start = self.base
            updates = [e.update for e in self.stored(self.base.version, base_version)]
        for update in filter(None, (start.state, *updates)):  # b"": the empty doc
            fork.apply_update(update)
        return fork

    def log_after(self, version: int) -> Iterator[LogEntry]:
        """The entries after ``version`` (at or above the base) up to the current one."""
        if version < self.window.version:
            yield from self.stored(version, self.window.version)
        for entry in self.entries:
            if entry[0] > version:
                yield entry_of(entry)

    def stored(self, after: int, up_to: int) -> list[LogEntry]:
        """The entries in ``(after, up_to]`` below the window, read through ``older``."""
        if after >= up_to:
            return []
        if self.older is None:
            raise InvalidState(f"{self.trip_id}: entries below the window without storage")
        entries = self.older(after, up_to)
        if [e.version for e in entries] != list(range(after + 1, up_to + 1)):
            raise InvalidState(f"{self.trip_id}: stored log ({after}..{up_to}] has gaps")
        return entries

    def keep_recent(self, keep: int, older: OlderEntries) -> None:
        """Keep about ``keep`` entries in memory; ``older`` reads the rest ("Window" above)."""
        self.keep, self.older = max(0, keep), older
        self.trim()

    def window_state(self) -> Snapshot:
        """The window with its state, made from the dropped updates if it lags."""
        lag = self._lag
        if lag is not None and lag.version == self.window.version:
            taken = set(self.clocks()) | {self.doc.client_id}
            doc = Doc[Any](client_id=derive_client_id(self.trip_id, "window", taken))
            for update in filter(None, (lag.before, *lag.updates)):  # b"": the empty doc
                doc.apply_update(update)
            self.window = Snapshot(self.window.version, doc.get_update(), self.window.meta)
        self._lag = None
        return self.window

    def trim(self) -> None:
        if not self.keep or len(self.entries) < 2 * self.keep:
            return
        cut = self.entries[-self.keep - 1][0]
        out = [e for e in self.entries if e[0] <= cut]
        lag = self._lag
        if lag is None or lag.version != self.window.version:  # the window's state is made
            lag = _Lag(cut, self.window.state, [])
        lag.updates.extend(e[1] for e in out)
        self._lag, self.window = lag._replace(version=cut), Snapshot(cut, b"", {})
        self.entries = self.entries[len(out) :]
        if len(lag.updates) >= WINDOW_LAG * self.keep:
            self.window_state()
        written: set[str] = set()  # the fields with new writes up to the cut
        for entry in out:
            if entry[3] is None:  # an entry without a field list: every field
                written = set(self.history)
                break
            written.update(entry[3])
        base = self.base.version
        for name in written:
            history = self.history.get(name, [])
            upto_cut = bisect.bisect_right(history, cut, key=_version_of)
            if upto_cut <= 1:
                continue
            upto_base = bisect.bisect_right(history, base, key=_version_of)
            kept = [history[upto_base - 1]] if upto_base else []
            if upto_cut > upto_base:
                kept.append(history[upto_cut - 1])
            history[:upto_cut] = kept

    def write(
        self, name: str, value: JSON, stamp: Stamp, user_id: str, update_id: str, kind: str
    ) -> Change:
        """A scalar set whose value was already decided, made on the live doc."""
        old = {name: self.value(name)}
        seen = self._seen
        reads, seen.update = seen.reads, b""
        self.root[name] = value
        update = seen.update
        if not update:
            raise InvalidState(f"{self.trip_id}: a write to {name} made no update")
        # Only ``name`` changed, to ``value`` (pycrdt gives scalars back exactly as set).
        reads.pop(name, None)
        if isinstance(value, _IMMUTABLE):
            reads[name] = (FieldKind.SCALAR, normalise_json(value))
        seen.reads = reads
        self.mirror(update)
        return self.append(update, old, user_id, update_id, kind, {name: stamp}, self.doc.client_id)

    def record(
        self,
        fork: Doc[Any],
        before: bytes,
        user_id: str,
        update_id: str,
        kind: str,
        stamps: dict[str, Stamp | None],
    ) -> Change:
        """Apply what ``fork`` did since ``before`` to the live doc, as the next version."""
        update = fork.get_update(before)
        old = {name: self.value(name) for name in stamps}
        self.doc.apply_update(update)
        self.mirror(update)
        live = state_vector(self.doc.get_state())
        for client, clock in state_vector(fork.get_state()).items():
            if live.get(client, 0) < clock:
                raise InvalidState(f"{self.trip_id}: fork {client} was not integrated")
        return self.append(update, old, user_id, update_id, kind, stamps, fork.client_id)

    def mirror(self, update: bytes) -> None:
        """Bring the shadow and the map item index along with a change made here."""
        if self.shadow is not None:
            self.shadow.doc.apply_update(update)
        if self.root_keys is not None:
            self.root_keys.add(self.root_keys.keys_written(decode_update(update)))

    def append(
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
        self.entries.append(kept(LogEntry(self.version, update, meta)))
        self.note(self.version, stamps)
        if self.keep and len(self.entries) >= 2 * self.keep:
            self.trim()
        changes = {n: FieldChange(old[n], self.value(n), FIELD_PATH_PREFIX + n) for n in stamps}
        return Change(self.version, update, meta, changes, user_id)

    def note(self, version: int, stamps: dict[str, Stamp | None]) -> None:
        for name, stamp in stamps.items():
            self.history.setdefault(name, []).append((version, pack_stamp(stamp)))

    def keys(self) -> RootKeys:
        """The root map's item index (:class:`sync.yupdate.RootKeys`), built on first use."""
        if self.root_keys is None:
            keys = RootKeys(ROOT_MAP)
            keys.add(keys.keys_written(decode_update(self.doc.get_update())))
            self.root_keys = keys
        return self.root_keys

    # -- reading -------------------------------------------------------------

    def value(self, name: str) -> JSON:
        return self._read(name)[1]

    def kind(self, name: str) -> FieldKind | None:
        """The field's kind; ``None`` if the trip has no such field."""
        return self._read(name)[0]

    def _read(self, name: str) -> Read:
        reads = self._seen.reads
        read = reads.get(name)
        if read is None:
            read = read_kind_and_field(self.root, name)
            if read[0] is not FieldKind.TEXT and isinstance(read[1], _IMMUTABLE):
                reads[name] = read  # shared by callers: immutable values only
        return read

    def value_at(self, version: int, name: str) -> JSON:
        return read_field(self.fork(version, "read").get(ROOT_MAP, type=Map), name)

    def stamp_at(self, name: str, version: int) -> Stamp | None:
        """The stamp of ``name``'s last write at or before ``version`` (history ascends)."""
        history = self.history.get(name)
        if not history:
            return None
        if history[-1][0] <= version:  # the common case: the current stamp
            return unpack_stamp(history[-1][1])
        write = self.last_write(name, version)
        return None if write is None else write[1]

    def last_write(self, name: str, version: int) -> tuple[int, Stamp | None] | None:
        """``name``'s last (version, stamp) at or before ``version``; ``None``: not written."""
        history = self.history.get(name, [])
        i = bisect.bisect_right(history, version, key=_version_of)
        write = history[i - 1] if i else None
        base = self.base.version
        if base < version < self.window.version and (write is None or write[0] <= base):
            # Writes between the base and the window were dropped from memory: read them.
            for entry in reversed(self.stored(base, version)):
                stamps = entry_stamps(entry.meta)
                if name in stamps:
                    return entry.version, stamps[name]
        return None if write is None else (write[0], unpack_stamp(write[1]))

    def current_stamp(self, name: str) -> Stamp:
        stamp = self.stamp_at(name, self.version)
        if stamp is None:
            raise InvalidState(f"{name}: scalar field without a stamp")
        return stamp

    def check_retained(self, version: int) -> None:
        if not self.base.version <= version <= self.version:
            raise InvalidState(
                f"{self.trip_id}: version {version} is outside the retained history"
                f" ({self.base.version}..{self.version})"
            )


def _version_of(entry: tuple[int, PackedStamp | None]) -> int:
    return entry[0]
