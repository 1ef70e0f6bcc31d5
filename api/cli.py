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
``db check|compact|backup`` are the database tools of :mod:`api.ops.dbtools`.
``watch`` joins a trip with :class:`client.SyncClient` and prints its
changes and presence until interrupted.

Logs never carry tokens: a filter masks ``token=`` query values in uvicorn's
lines, and our own code never logs them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

import uvicorn

from tripsage_sync.api import __version__
from tripsage_sync.api.app import create_app, resolve_secret
from tripsage_sync.api.chat.demo_agent import run_agent
from tripsage_sync.api.ops import dbtools
from tripsage_sync.api.settings import Settings, SettingsError
from tripsage_sync.api.transport.auth import JwtAuthority
from tripsage_sync.api.transport.protocol import protocols
from tripsage_sync.api.transport.services import Services, shutdown_services
from tripsage_sync.client import AuthenticationFailed, RequestRefused, SyncClient
from tripsage_sync.storage.sqlite import Storage

__all__ = ["Server", "TokenMask", "main"]

logger = logging.getLogger(__name__)

_TOKEN: Final = re.compile(r"((?:access_)?token=)[^&\s\"']+", re.IGNORECASE)


class TokenMask(logging.Filter):
    """Mask ``token=...`` in every log record (URLs in uvicorn's lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg = _TOKEN.sub(r"\1***", message)
            record.args = None
        return True


# Attributes every LogRecord has; anything else was passed as ``extra``.
_RECORD_FIELDS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's ``extra`` fields (``conn``, ``user``,
    ``trip``, ``code``...) become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in data:
                plain = value is None or isinstance(value, str | int | float | bool)
                data[key] = value if plain else str(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TokenMask())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers[:] = []
        uv.propagate = True


class Server(uvicorn.Server):
    """uvicorn's server with our drain run before it closes sockets itself.

    With ``demo_agent`` set, the example echo agent runs as a task once the
    server listens, connecting to it over loopback with an agent token minted
    from the server's secret; it is stopped first on shutdown.
    """

    demo_agent: bool = False
    _demo_task: asyncio.Task[None] | None = None

    def _services(self) -> Services | None:
        app = self.config.loaded_app
        services: Services | None = getattr(getattr(app, "state", None), "services", None)
        if services is None:  # not yet started, or wrapped
            inner = getattr(app, "app", None)
            services = getattr(getattr(inner, "state", None), "services", None)
        return services

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        services = self._services()
        if services is not None:  # a maintenance drain ends the process (api/ops/feature.py)
            services.request_exit = self._request_exit
        if self.demo_agent and not self.should_exit:
            self._demo_task = asyncio.create_task(self._run_demo_agent(), name="demo-agent")

    def _request_exit(self) -> None:
        self.should_exit = True

    async def _run_demo_agent(self) -> None:
        services = self._services()
        if services is None:
            logger.error("demo agent: the app did not start")
            return
        host = services.settings.host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
        port = self.servers[0].sockets[0].getsockname()[1]
        url = f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"
        authority = services.authority

        def token() -> str:
            return authority.mint(
                "demo-agent", now_s=time.time(), ttl_s=3600, role="agent", name="Demo agent"
            )

        logger.info("demo agent (api/chat/demo_agent.py) starting")
        await run_agent(url, token, agent_id="demo-agent")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._demo_task is not None:  # 0. the in-process agent, before the drain
            self._demo_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._demo_task
        for server in self.servers:  # 1. stop accepting
            server.close()
        services = self._services()
        if services is not None:
            try:  # 2. connection_close to everyone, drain queues, close 1001
                await shutdown_services(services)
            except Exception:
                logger.exception("drain failed")
        await super().shutdown(sockets)  # 3. lifespan shutdown flushes storage


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            db=args.db,
            log_format=args.log_format,
            dev_mode=True if args.demo_agent else None,  # demo sign-in (api/web/feature.py)
        )
    except SettingsError as exc:
        print(f"tripsage-sync: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # Our subclasses of uvicorn's h11 and websockets-sansio protocols (api/transport/protocol.py):
    # a request-head deadline, handshake refusals answered, liveness by any received
    # frame (uvicorn's own ping/pong keepalive is off), the documented oversize reply.
    http_protocol, ws_protocol = protocols(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=http_protocol,
        ws=ws_protocol,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        lifespan="on",
        log_config=None,
        access_log=True,
        proxy_headers=False,  # X-Forwarded-For is read only from trusted proxies
        server_header=False,
        # Let frames a little over our limit reach us, so we answer MESSAGE_TOO_LARGE.
        ws_max_size=max(2 * settings.max_message_size, settings.max_message_size + 65536),
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )
    server = Server(config)
    server.demo_agent = args.demo_agent
    server.run()
    return 0


def _authority(db: str | None) -> JwtAuthority:
    """The server's JWT authority: ``TRIPSAGE_JWT_SECRET`` or the secret kept in ``db``."""
    settings = Settings.from_env(db=db)
    store = Storage(settings.db)
    try:
        secret = resolve_secret(settings, store)
    finally:
        store.close()
    return JwtAuthority(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def _token(args: argparse.Namespace) -> int:
    token = _authority(args.db).mint(
        args.user,
        now_s=time.time(),
        ttl_s=args.ttl,
        name=args.name,
        role=args.role,
        avatar_url=args.avatar_url,
    )
    print(token)  # noqa: T201
    return 0


def _admin_token(args: argparse.Namespace) -> str:
    if args.token:
        token: str = args.token
        return token
    return _authority(args.db).mint("tripsage-cli", now_s=time.time(), ttl_s=60, role="admin")


def _broadcast(args: argparse.Namespace) -> int:
    if args.type == "notification":
        payload: dict[str, Any] = {
            "title": args.title or "Notification",
            "message": args.message,
            "type": args.level or "info",
        }
        if args.action_url:
            payload["actionUrl"] = args.action_url
    else:
        payload = {"level": args.level or "info", "message": args.message}
    body: dict[str, Any] = {"type": args.type, "payload": payload}
    if args.user:
        body["userId"] = args.user
    if args.channel:
        body["channel"] = args.channel
    request = urllib.request.Request(
        args.server.rstrip("/") + "/api/broadcast",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {_admin_token(args)}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            result = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error", {})
        print(f"tripsage-sync: refused ({exc.code}): {error.get('message')}", file=sys.stderr)  # noqa: T201
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"tripsage-sync: cannot reach {args.server}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"delivered to {result['delivered']} connection(s)")  # noqa: T201
    return 0


_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h``, ``1d`` or ``500ms``."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 90s, 15m, 2h)")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def _post_admin(args: argparse.Namespace, path: str, body: dict[str, Any] | None) -> Any:
    """An admin request to the running server; the JSON answer, or ``None`` (reported)."""
    request = urllib.request.Request(
        args.server.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {_admin_token(args)}",
            "Content-Type": "application/json",
        },
        method="POST" if body is not None else "DELETE",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error", {})
        print(f"tripsage-sync: refused ({exc.code}): {error.get('message')}", file=sys.stderr)  # noqa: T201
    except (urllib.error.URLError, OSError) as exc:
        print(f"tripsage-sync: cannot reach {args.server}: {exc}", file=sys.stderr)  # noqa: T201
    return None


def _maintenance(args: argparse.Namespace) -> int:
    if args.cancel:
        result = _post_admin(args, "/api/maintenance", None)
        if result is None:
            return 1
        print("cancelled" if result["cancelled"] else "no maintenance was scheduled")  # noqa: T201
        return 0
    if args.in_s is None or not args.message:
        print("tripsage-sync: maintenance needs --in and --message", file=sys.stderr)  # noqa: T201
        return 2
    body: dict[str, Any] = {
        "inSeconds": args.in_s,
        "estimatedDuration": args.duration,
        "message": args.message,
    }
    if args.services:
        body["affectedServices"] = [s.strip() for s in args.services.split(",") if s.strip()]
    result = _post_admin(args, "/api/maintenance", body)
    if result is None:
        return 1
    print(  # noqa: T201
        f"maintenance at {result['scheduledTime']} for {result['estimatedDuration']:g} s;"
        f" notice delivered to {result['delivered']} connection(s)"
    )
    return 0


def _db(args: argparse.Namespace) -> int:
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


def _watch_line(event: dict[str, Any]) -> str | None:
    """One printed line for a trip event ``watch`` shows, else ``None``."""
    p = event.get("payload") or {}
    match event.get("type"):
        case "trip_update_broadcast":
            return "\n".join(
                f"v{p['version']} {p['updatedBy']}: {name}"
                f" {json.dumps(c['oldValue'])} -> {json.dumps(c['newValue'])}"
                for name, c in p["changes"].items()
            )
        case "trip_snapshot":
            return f"v{p['version']} snapshot: {json.dumps(p['fields'], sort_keys=True)}"
        case "trip_collaborator_presence":
            users = sorted({c["userId"] for c in p["activeCollaborators"]})
            return "presence: " + ", ".join(users)
        case "trip_conflict_detected":
            return f"conflict on {p['fieldName']}: {p['resolutionStrategy']}"
        case "error":
            return f"error: {p.get('code')} {p.get('message')}"
    return None


async def _watch_async(args: argparse.Namespace) -> int:
    def show(event: dict[str, Any]) -> None:
        line = _watch_line(event)
        if line is not None:
            print(line, flush=True)  # noqa: T201

    client = SyncClient(args.url, args.token, max_reconnect_attempts=None)
    client.on("*", show)
    try:
        await client.connect()
        view = await client.join(args.trip_id)
        level = view.permission_level or "viewer"
        print(f"joined {args.trip_id} at v{view.version} as {level}", flush=True)  # noqa: T201
        print(json.dumps(view.fields, sort_keys=True), flush=True)  # noqa: T201
        await client.wait_until(lambda: client.error is not None)
        raise client.error or ConnectionError("closed")
    except (AuthenticationFailed, RequestRefused, ConnectionError) as exc:
        print(f"tripsage-sync: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        await client.close()


def _watch(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_watch_async(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tripsage-sync", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
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
    serve.set_defaults(func=_serve)

    token = commands.add_parser("token", help="print a JWT the server accepts")
    token.add_argument("--db", default=None, help="database whose secret to use (TRIPSAGE_DB)")
    token.add_argument("--user", required=True, help="user id (sub)")
    token.add_argument("--name", default=None)
    token.add_argument("--avatar-url", default=None)
    token.add_argument("--role", choices=["user", "agent", "admin"], default="user")
    token.add_argument("--ttl", type=float, default=3600, help="seconds (default 3600)")
    token.set_defaults(func=_token)

    cast = commands.add_parser(
        "broadcast", help="send a notification or system message through a running server"
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
    cast.set_defaults(func=_broadcast)
    maint = commands.add_parser(
        "maintenance",
        help="announce maintenance to every client; at that time the server drains and exits",
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
    maint.set_defaults(func=_maintenance)

    db = commands.add_parser("db", help="database tools: check, compact, backup")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_check = db_commands.add_parser(
        "check", help="integrity, schema version and sizes; exit 1 if corrupt"
    )
    db_compact = db_commands.add_parser(
        "compact", help="snapshot every trip now and prune its update log"
    )
    db_backup = db_commands.add_parser(
        "backup", help="consistent online copy (SQLite backup API), then checked"
    )
    db_backup.add_argument("target", help="the backup file to write")
    db_backup.add_argument("--force", action="store_true", help="overwrite the target")
    for sub in (db_check, db_compact, db_backup):
        sub.add_argument("--db", default=None, help="default ./tripsage.db (TRIPSAGE_DB)")
    db.set_defaults(func=_db)

    watch = commands.add_parser("watch", help="print a trip's live changes and presence")
    watch.add_argument("trip_id", help="the trip to join")
    watch.add_argument("--token", required=True, help="a JWT of a collaborator")
    watch.add_argument("--url", default="ws://127.0.0.1:8000", help="the server's ws:// URL")
    watch.set_defaults(func=_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
