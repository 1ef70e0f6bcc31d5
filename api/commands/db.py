"""``tripsage-sync db check|compact|backup|migrate|copy``: the database tools.

``check``, ``compact`` and ``backup`` are :mod:`api.ops.dbtools` on a SQLite
file. ``migrate`` creates or upgrades the schema of a PostgreSQL database (or
a SQLite file). ``copy`` moves every row from one store into another
(``storage/copy.py``): SQLite into PostgreSQL and back, resumable, with a
progress bar on stderr and a check that the copy holds the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sqlite3
import sys
from pathlib import Path

import psycopg

from tripsage_sync.api.commands.preflight import Refused, database_file
from tripsage_sync.api.ops import dbtools
from tripsage_sync.api.settings import Settings
from tripsage_sync.storage import StorageError, open_store
from tripsage_sync.storage.copy import compare, copy_rows

__all__ = ["db"]

logger = logging.getLogger(__name__)


def _damaged(path: str, exc: Exception) -> Refused:
    return Refused(
        f"{Path(path).absolute()} is not a TripSage database or is damaged ({exc}):"
        " `tripsage-sync db check` says more; restore a backup"
    )


def _say(line: str) -> None:
    print(line, file=sys.stderr)  # noqa: T201


def migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env(config=args.config, db=args.db, database_url=args.url)
    try:
        with open_store(settings.store_location) as store:
            version = store.schema_version()
            print(f"{store.where}: schema version {version}")  # noqa: T201
    except (StorageError, OSError, psycopg.Error) as exc:
        _say(f"tripsage-sync: cannot migrate: {exc}")
        return 1
    return 0


class _Bar:
    """One line per table on stderr, redrawn in place on a terminal."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._table: str | None = None

    def __call__(self, table: str, done: int, total: int) -> None:
        if table != self._table and self._table is not None and self._tty:
            sys.stderr.write("\n")
        self._table = table
        width = 30
        filled = width if total == 0 else width * min(done, total) // total
        line = f"{table:<22} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}"
        if self._tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        elif done >= total:
            _say(line)

    def end(self) -> None:
        if self._tty and self._table is not None:
            sys.stderr.write("\n")


def copy(args: argparse.Namespace) -> int:
    if args.source == args.target:
        _say("tripsage-sync: --from and --to are the same database")
        return 2
    if not args.source.startswith(("postgresql://", "postgres://")) and not os.path.isfile(
        args.source
    ):
        _say(f"tripsage-sync: no database at {args.source}")
        return 1
    bar = _Bar()
    try:
        with open_store(args.source) as source, open_store(args.target) as target:
            if source.schema_version() != target.schema_version():
                _say("tripsage-sync: the two databases are at different schema versions")
                return 1
            rows = copy_rows(source, target, bar)
            bar.end()
            problems = compare(source, target)
    except (StorageError, OSError, psycopg.Error) as exc:
        bar.end()
        _say(f"tripsage-sync: copy stopped ({exc}); run the same command again to resume")
        return 1
    for problem in problems:
        _say(f"tripsage-sync: not identical: {problem}")
    if problems:
        return 1
    print(f"copied {source.where} -> {target.where}: {rows:,} rows, identical")  # noqa: T201
    return 0


def db(args: argparse.Namespace) -> int:
    if args.db_command == "migrate":
        return migrate(args)
    if args.db_command == "copy":
        return copy(args)
    path = Settings.from_env(config=args.config, db=args.db).db
    if args.db_command == "check":
        report = dbtools.check(path)
        for line in report.lines():
            print(line)  # noqa: T201
        return 0 if report.ok else 1
    database_file(path, create=False)
    if args.db_command == "compact":
        try:
            done = dbtools.compact(path)
        except sqlite3.DatabaseError as exc:
            raise _damaged(path, exc) from exc
        print(  # noqa: T201
            f"{done.compacted} of {done.trips} trip(s) compacted, {done.pruned} update(s) pruned"
            + (f"; skipped (newer snapshot): {', '.join(done.skipped)}" if done.skipped else "")
        )
        return 0
    target = Path(args.target).absolute()
    if not target.parent.is_dir():
        raise Refused(f"the directory {target.parent} for the backup does not exist: create it")
    if target.is_dir():
        raise Refused(f"the backup {target} is a directory; pass a file name")
    if os.path.exists(args.target) and not args.force:
        print(f"tripsage-sync: {args.target} exists (use --force)", file=sys.stderr)  # noqa: T201
        return 1
    if args.force:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(args.target + suffix)
    try:
        report = dbtools.backup(path, args.target)
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from exc
    for line in report.lines():
        print(line)  # noqa: T201
    return 0 if report.ok else 1
