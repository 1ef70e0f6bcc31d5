"""The ``tripsage-sync`` command line.

``serve`` runs the server on uvicorn (wsproto WebSockets: the legacy
``websockets`` backend mishandles fragmented messages) with the embedded
SQLite default; ``token`` mints a JWT the server accepts (reading the same
secret: ``TRIPSAGE_JWT_SECRET`` or the one kept in the database).

Logs never carry tokens: a filter masks ``token=`` query values in uvicorn's
lines, and our own code never logs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

import uvicorn

from api.app import create_app, resolve_secret, shutdown_services
from api.auth import JwtAuthority
from api.services import Services
from api.settings import Settings, SettingsError
from storage.sqlite import Storage

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
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
    """uvicorn's server with our drain run before it closes sockets itself."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # 1. stop accepting
            server.close()
        app = self.config.loaded_app
        services: Services | None = getattr(getattr(app, "state", None), "services", None)
        if services is None:  # not yet started, or wrapped
            inner = getattr(app, "app", None)
            services = getattr(getattr(inner, "state", None), "services", None)
        if services is not None:
            try:  # 2. connection_close to everyone, drain queues, close 1001
                await shutdown_services(services)
            except Exception:
                logger.exception("drain failed")
        await super().shutdown(sockets)  # 3. lifespan shutdown flushes storage


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, db=args.db, log_format=args.log_format
        )
    except SettingsError as exc:
        print(f"tripsage-sync: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws="wsproto",
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
    server.run()
    return 0


def _token(args: argparse.Namespace) -> int:
    settings = Settings.from_env(db=args.db)
    store = Storage(settings.db)
    try:
        secret = resolve_secret(settings, store)
    finally:
        store.close()
    authority = JwtAuthority(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    token = authority.mint(
        args.user,
        now_s=time.time(),
        ttl_s=args.ttl,
        name=args.name,
        role=args.role,
        avatar_url=args.avatar_url,
    )
    print(token)  # noqa: T201
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tripsage-sync", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (TRIPSAGE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (TRIPSAGE_PORT)")
    serve.add_argument("--db", default=None, help="default ./tripsage.db (TRIPSAGE_DB)")
    serve.add_argument("--log-format", choices=["text", "json"], default=None)
    serve.set_defaults(func=_serve)

    token = commands.add_parser("token", help="print a JWT the server accepts")
    token.add_argument("--db", default=None, help="database whose secret to use (TRIPSAGE_DB)")
    token.add_argument("--user", required=True, help="user id (sub)")
    token.add_argument("--name", default=None)
    token.add_argument("--avatar-url", default=None)
    token.add_argument("--role", choices=["user", "agent", "admin"], default="user")
    token.add_argument("--ttl", type=float, default=3600, help="seconds (default 3600)")
    token.set_defaults(func=_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
