"""``tripsage-sync db check|compact|backup``: the database tools of :mod:`api.ops.dbtools`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from tripsage_sync.api.ops import dbtools
from tripsage_sync.api.settings import Settings

__all__ = ["db"]

logger = logging.getLogger(__name__)


def db(args: argparse.Namespace) -> int:
    path = Settings.from_env(db=args.db).db
    if args.db_command == "check":
        report = dbtools.check(path)
        for line in report.lines():
            print(line)  # noqa: T201
        return 0 if report.ok else 1
    if args.db_command == "compact":
        if not os.path.isfile(path):
            print(f"tripsage-sync: no database at {path}", file=sys.stderr)  # noqa: T201
            return 1
        done = dbtools.compact(path)
        print(  # noqa: T201
            f"{done.compacted} of {done.trips} trip(s) compacted, {done.pruned} update(s) pruned"
            + (f"; skipped (newer snapshot): {', '.join(done.skipped)}" if done.skipped else "")
        )
        return 0
    if not os.path.isfile(path):
        print(f"tripsage-sync: no database at {path}", file=sys.stderr)  # noqa: T201
        return 1
    if os.path.exists(args.target) and not args.force:
        print(f"tripsage-sync: {args.target} exists (use --force)", file=sys.stderr)  # noqa: T201
        return 1
    if args.force:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(args.target + suffix)
    report = dbtools.backup(path, args.target)
    for line in report.lines():
        print(line)  # noqa: T201
    return 0 if report.ok else 1
