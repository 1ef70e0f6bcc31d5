"""Database tools behind ``tripsage-sync db check|compact|backup``.

- :func:`check`: ``PRAGMA integrity_check`` and ``foreign_key_check``, the
  schema version and the file sizes. A file SQLite cannot open as a database
  counts as corrupt too.
- :func:`compact`: for every trip, replay its snapshot and update log into a
  :class:`sync.document.TripDocument`, then write the snapshot at the latest
  version and prune the log up to it, in one transaction (the trip's history
  for offline clients starts over from there).
- :func:`backup`: a consistent copy of the last commit through SQLite's online
  backup API (:meth:`storage.sqlite.Storage.backup`), then checked.

All three are safe while the server runs. They open the file through
:class:`storage.sqlite.Storage` (WAL, ``busy_timeout``, ``BEGIN IMMEDIATE``
writes), so the server and the tool take turns for the write lock. Compaction
reads each trip's history in one read transaction and snapshots only
versions already in the log: changes the server appends meanwhile are newer
and are kept, and a snapshot never replaces a newer one
(:class:`storage.errors.StaleSnapshot`; that trip is skipped). The running
server keeps the history it has in memory, so clients resuming are answered
as before until it restarts; after that, clients offline since before the
compaction get a full snapshot instead of the missed changes. Run it while
the server is stopped to avoid even that.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from tripsage_sync.api.restore import restore_document
from tripsage_sync.storage.errors import StaleSnapshot, StorageError
from tripsage_sync.storage.sqlite import FileSizes, Storage
from tripsage_sync.sync.document import TripDocument

__all__ = ["CheckReport", "CompactReport", "backup", "check", "compact"]

logger = logging.getLogger(__name__)


@dataclass
class CheckReport:
    path: str
    problems: list[str] = field(default_factory=list)
    schema_version: int | None = None
    sizes: FileSizes | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"database: {self.path}"]
        if self.schema_version is not None:
            out.append(f"schema version: {self.schema_version}")
        if self.sizes is not None:
            s = self.sizes
            out.append(
                f"size: {s.db_bytes} bytes (+ {s.wal_bytes} bytes WAL), {s.page_count} pages"
                f" of {s.page_size} bytes, {s.freelist_count} free"
            )
        if self.ok:
            out.append("integrity: ok")
        else:
            out.append(f"integrity: {len(self.problems)} problem(s)")
            out.extend(f"  {problem}" for problem in self.problems[:50])
        return out


@dataclass
class CompactReport:
    trips: int = 0
    compacted: int = 0
    pruned: int = 0
    skipped: list[str] = field(default_factory=list)


def check(path: str | Path) -> CheckReport:
    """Integrity, schema version and sizes of the database at ``path``."""
    report = CheckReport(str(path))
    if not Path(path).is_file():
        report.problems.append("no such file")
        return report
    try:
        with Storage(path) as store:
            report.schema_version = store.schema_version()
            report.sizes = store.sizes()
            report.problems.extend(store.integrity_check())
    except (sqlite3.DatabaseError, StorageError) as exc:
        # "file is not a database", "database disk image is malformed", ...
        report.problems.append(f"cannot read: {exc}")
    return report


def _restore(store: Storage, trip_id: str) -> TripDocument | None:
    trip = store.get_trip(trip_id)
    if trip is None:  # deleted meanwhile
        return None
    return restore_document(store, trip)


def compact(path: str | Path) -> CompactReport:
    """Snapshot every trip at its latest version and prune its update log."""
    report = CompactReport()
    with Storage(path) as store:
        for trip_id in store.trip_ids():
            report.trips += 1
            doc = _restore(store, trip_id)
            if doc is None or doc.version <= doc.base_version:
                continue  # nothing logged since the last snapshot
            snapshot = doc.compact()
            write = store.save_snapshot(
                trip_id,
                snapshot.version,
                snapshot.state,
                json.dumps(snapshot.meta),
                int(time.time() * 1000),
                prune_log_up_to_version=snapshot.version,
            )
            try:
                pruned = write.result()
            except StaleSnapshot:
                logger.info("trip %s: a newer snapshot exists; skipped", trip_id)
                report.skipped.append(trip_id)
                continue
            report.compacted += 1
            report.pruned += pruned
            logger.info(
                "trip %s: snapshot at version %d, %d updates pruned",
                trip_id,
                snapshot.version,
                pruned,
                extra={"trip": trip_id},
            )
    return report


def backup(source: str | Path, target: str | Path) -> CheckReport:
    """Copy ``source`` to ``target`` online and consistently; the copy's check."""
    with Storage(source) as store:
        store.backup(target)
    return check(target)
