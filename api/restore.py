"""A trip's document rebuilt from its stored rows (snapshot, update log, pending conflicts).

Shared by the running server (:mod:`api.trips.rooms` loads a room) and the offline
database tools (:mod:`api.ops.dbtools` compacts): it sits below the feature wings, so
that neither reaches into the other.
"""

from __future__ import annotations

import json

from tripsage_sync.storage.queries import Trip
from tripsage_sync.storage.store import Store
from tripsage_sync.sync.conflicts import AUTO_RESOLVE_AFTER_MS
from tripsage_sync.sync.document import LogEntry, Snapshot, TripDocument

__all__ = ["keep_recent", "restore_document"]


def keep_recent(store: Store, doc: TripDocument, entries: int) -> None:
    """Keep about ``entries`` of ``doc``'s log in memory, the older ones read from ``store``.

    ``entries`` is ``Settings.history_window_updates``; 0 keeps the whole log in memory.
    """
    if entries <= 0:
        return
    trip_id = doc.trip_id

    def older(after: int, up_to: int) -> list[LogEntry]:
        rows = store.updates_since(trip_id, after, up_to)
        return [LogEntry(u.version, u.update, json.loads(u.meta_json)) for u in rows]

    doc.keep_recent(entries, older)


def restore_document(
    store: Store,
    trip: Trip,
    *,
    auto_resolve_after_ms: int = AUTO_RESOLVE_AFTER_MS,
    keep_entries: int = 0,
) -> TripDocument:
    """Rebuild a trip's document from SQLite: snapshot, logged updates, pending conflicts.

    ``keep_entries``: see :func:`keep_recent`.
    """
    history = store.trip_history(trip.trip_id)
    snapshot = None
    if history.snapshot is not None:
        snap = history.snapshot
        snapshot = Snapshot(snap.version, snap.state, json.loads(snap.meta_json))
    log = [LogEntry(u.version, u.update, json.loads(u.meta_json)) for u in history.updates]
    pending = [json.loads(c.state_json) for c in store.pending_conflicts(trip.trip_id)]
    doc = TripDocument.restore(
        trip.trip_id,
        frozenset(json.loads(trip.manual_fields_json)),
        snapshot,
        log,
        pending,
        auto_resolve_after_ms=auto_resolve_after_ms,
    )
    keep_recent(store, doc, keep_entries)
    return doc
