"""The admin commands: ``token`` mints a JWT the server accepts (the same secret),
``broadcast`` and ``maintenance`` ask a running server over HTTP with an admin token.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Final

from tripsage_sync.api.app import resolve_secret
from tripsage_sync.api.commands.preflight import opened_store
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import JwtAuthority

__all__ = [
    "admin_token",
    "authority",
    "broadcast",
    "maintenance",
    "parse_duration",
    "post_admin",
    "token",
]

logger = logging.getLogger(__name__)


def authority(db: str | None, *, config: str | None = None, create: bool = False) -> JwtAuthority:
    """The server's JWT authority: ``TRIPSAGE_JWT_SECRET`` or the secret kept in ``db``,
    which must exist unless ``create`` (a new one would hold a secret the server lacks)."""
    settings = Settings.from_env(config=config, db=db)
    if settings.jwt_secret:
        secret = settings.jwt_secret
    else:
        store = opened_store(settings.store_location, create=create)
        try:
            secret = resolve_secret(settings, store)
        finally:
            store.close()
    return JwtAuthority(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def token(args: argparse.Namespace) -> int:
    token = authority(args.db, config=args.config, create=args.create).mint(
        args.user,
        now_s=time.time(),
        ttl_s=args.ttl,
        name=args.name,
        role=args.role,
        avatar_url=args.avatar_url,
    )
    print(token)  # noqa: T201
    return 0


def admin_token(args: argparse.Namespace) -> str:
    if args.token:
        token: str = args.token
        return token
    issuer = authority(args.db, config=args.config)
    return issuer.mint("tripsage-cli", now_s=time.time(), ttl_s=60, role="admin")


def broadcast(args: argparse.Namespace) -> int:
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
            "Authorization": f"Bearer {admin_token(args)}",
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


def post_admin(args: argparse.Namespace, path: str, body: dict[str, Any] | None) -> Any:
    """An admin request to the running server; the JSON answer, or ``None`` (reported)."""
    request = urllib.request.Request(
        args.server.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {admin_token(args)}",
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


def maintenance(args: argparse.Namespace) -> int:
    if args.cancel:
        result = post_admin(args, "/api/maintenance", None)
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
    result = post_admin(args, "/api/maintenance", body)
    if result is None:
        return 1
    print(  # noqa: T201
        f"maintenance at {result['scheduledTime']} for {result['estimatedDuration']:g} s;"
        f" notice delivered to {result['delivered']} connection(s)"
    )
    return 0
