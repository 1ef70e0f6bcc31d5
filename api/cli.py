"""The ``tripsage-sync`` command line.

``serve`` runs the server on uvicorn (websockets-sansio WebSockets: the legacy
``websockets`` backend mishandles fragmented messages; both it and h11 are
subclassed in :mod:`api.transport.protocol`) with the embedded
SQLite default; ``token`` mints a JWT the server accepts (reading the same
secret: ``TRIPSAGE_JWT_SECRET`` or the one kept in the database);
``broadcast`` asks a running server to send a ``notification`` or
``system_message`` (``POST /api/broadcast`` with an admin token).
``serve --demo-agent`` also runs the example echo agent
(``api/chat/demo_agent.py``) in-process, connected over loopback.
``maintenance`` announces maintenance through a running server
(``POST /api/maintenance``), which drains and exits at the scheduled time;
``db check|compact|backup|migrate|copy`` are the database tools (:mod:`api.commands.db`).
``schema`` writes or checks the protocol documents (:mod:`api.commands.schema`).
``watch`` joins a trip with :class:`client.SyncClient` and prints its
changes and presence until interrupted.

Logs never carry tokens: a filter masks ``token=`` query values in uvicorn's
lines, and our own code never logs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from tripsage_sync.api import __version__
from tripsage_sync.api.commands import admin
from tripsage_sync.api.commands import db as db_command
from tripsage_sync.api.commands import schema as schema_command
from tripsage_sync.api.commands import serve as serve_command
from tripsage_sync.api.commands import watch as watch_command
from tripsage_sync.api.commands.admin import (
    broadcast,
    maintenance,
    parse_duration,
)
from tripsage_sync.api.commands.logs import JsonFormatter, TokenMask
from tripsage_sync.api.commands.preflight import Refused
from tripsage_sync.api.commands.serve import Server
from tripsage_sync.api.settings import SettingsError, unknown_variables

__all__ = ["JsonFormatter", "Server", "TokenMask", "build_parser", "main", "parse_duration"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tripsage-sync", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command reads the same settings: the config file too.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=None, help="TOML settings file (TRIPSAGE_CONFIG); see the README"
    )

    serve = commands.add_parser("serve", help="run the server", parents=[common])
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (TRIPSAGE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (TRIPSAGE_PORT)")
    serve.add_argument("--db", default=None, help="default ./tripsage.db (TRIPSAGE_DB)")
    serve.add_argument("--log-format", choices=["text", "json"], default=None)
    serve.add_argument(
        "--demo-agent",
        action="store_true",
        default=os.environ.get("TRIPSAGE_DEMO_AGENT", "").lower() in ("1", "true", "yes"),
        help="also run the demo echo agent in-process (api/chat/demo_agent.py);"
        " TRIPSAGE_DEMO_AGENT=1 does the same",
    )
    serve.add_argument(
        "--dev-sign-in-anywhere",
        action="store_true",
        help="allow demo sign-in on an address that is not loopback (anyone who reaches"
        " the server can sign in as anyone)",
    )
    serve.set_defaults(func=serve_command.serve)

    token = commands.add_parser("token", help="print a JWT the server accepts", parents=[common])
    token.add_argument("--db", default=None, help="database whose secret to use (TRIPSAGE_DB)")
    token.add_argument("--user", required=True, help="user id (sub)")
    token.add_argument("--name", default=None)
    token.add_argument("--avatar-url", default=None)
    token.add_argument("--role", choices=["user", "agent", "admin"], default="user")
    token.add_argument("--ttl", type=_positive, default=3600, help="seconds (default 3600)")
    token.add_argument(
        "--create", action="store_true", help="create the database if it does not exist"
    )
    token.set_defaults(func=admin.token)

    cast = commands.add_parser(
        "broadcast",
        help="send a notification or system message through a running server",
        parents=[common],
    )
    cast.add_argument("message", help="the text")
    cast.add_argument("--type", choices=["notification", "system_message"], default="notification")
    cast.add_argument("--title", default=None, help="notification title")
    cast.add_argument(
        "--level",
        default=None,
        help="notification type (info, success, warning, error) or system_message level"
        " (info, warning, error, critical, maintenance); default info",
    )
    cast.add_argument("--action-url", default=None, help="notification actionUrl")
    target = cast.add_mutually_exclusive_group()
    target.add_argument("--user", default=None, help="one user's connections")
    target.add_argument("--channel", default=None, help="one channel (e.g. chat:s-1, global)")
    cast.add_argument("--server", default="http://127.0.0.1:8000", help="the server's base URL")
    cast.add_argument("--token", default=None, help="admin JWT (default: minted from --db)")
    cast.add_argument("--db", default=None, help="database whose secret to use (TRIPSAGE_DB)")
    cast.set_defaults(func=broadcast)
    maint = commands.add_parser(
        "maintenance",
        help="announce maintenance to every client; at that time the server drains and exits",
        parents=[common],
    )
    maint.add_argument(
        "--in", dest="in_s", type=parse_duration, default=None, help="when: 90, 90s, 15m, 2h"
    )
    maint.add_argument(
        "--duration", type=parse_duration, default=0.0, help="estimatedDuration (seconds or 15m)"
    )
    maint.add_argument("--message", default=None, help="the text clients show")
    maint.add_argument(
        "--services", default=None, help="affectedServices, comma-separated (default: all)"
    )
    maint.add_argument("--cancel", action="store_true", help="cancel the scheduled maintenance")
    maint.add_argument("--server", default="http://127.0.0.1:8000", help="the server's base URL")
    maint.add_argument("--token", default=None, help="admin JWT (default: minted from --db)")
    maint.add_argument("--db", default=None, help="database whose secret to use (TRIPSAGE_DB)")
    maint.set_defaults(func=maintenance)

    db = commands.add_parser("db", help="database tools: check, compact, backup, migrate, copy")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_check = db_commands.add_parser(
        "check",
        help="integrity, schema version and sizes; exit 1 if corrupt",
        parents=[common],
    )
    db_compact = db_commands.add_parser(
        "compact",
        help="snapshot every trip now and prune its update log",
        parents=[common],
    )
    db_backup = db_commands.add_parser(
        "backup",
        help="consistent online copy (SQLite backup API), then checked",
        parents=[common],
    )
    db_backup.add_argument("target", help="the backup file to write")
    db_backup.add_argument("--force", action="store_true", help="overwrite the target")
    db_migrate = db_commands.add_parser(
        "migrate",
        help="create or upgrade the schema (PostgreSQL: TRIPSAGE_DATABASE_URL)",
        parents=[common],
    )
    db_migrate.add_argument(
        "--url", default=None, help="postgresql:// URL (default TRIPSAGE_DATABASE_URL)"
    )
    db_copy = db_commands.add_parser(
        "copy", help="copy every row into another database (SQLite <-> PostgreSQL), resumable"
    )
    db_copy.add_argument("--from", dest="source", required=True, help="SQLite file or URL")
    db_copy.add_argument("--to", dest="target", required=True, help="postgresql:// URL or file")
    for sub in (db_check, db_compact, db_backup, db_migrate):
        sub.add_argument("--db", default=None, help="default ./tripsage.db (TRIPSAGE_DB)")
    db.set_defaults(func=db_command.db)

    docs = commands.add_parser(
        "schema", help="write (or --check) docs/asyncapi.json and docs/openapi.json"
    )
    docs.add_argument("--out", default="docs", help="the folder (default ./docs)")
    docs.add_argument("--check", action="store_true", help="exit 1 if a file is not current")
    docs.set_defaults(func=schema_command.schema)

    watch = commands.add_parser("watch", help="print a trip's live changes and presence")
    watch.add_argument("trip_id", help="the trip to join")
    watch.add_argument("--token", required=True, help="a JWT of a collaborator")
    watch.add_argument("--url", default="ws://127.0.0.1:8000", help="the server's ws:// URL")
    watch.set_defaults(func=watch_command.watch)
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a mistake the operator can fix is one line on stderr, exit 2."""
    args = build_parser().parse_args(argv)
    for line in unknown_variables():
        print(f"tripsage-sync: warning: {line}", file=sys.stderr)  # noqa: T201
    try:
        code: int = args.func(args)
    except (Refused, SettingsError) as exc:
        print(f"tripsage-sync: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
