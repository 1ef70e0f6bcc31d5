"""``tripsage-sync watch``: joins a trip with :class:`client.SyncClient` and prints
its changes and presence until interrupted.

The connection's state goes to stderr as it changes (``[connecting]``,
``[open]``, ``[waiting]`` to reconnect...). A server never reached fails at
once (exit 1, the URL and the reason); one that was reached and is lost is
reconnected to without end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import sys
from typing import Any

from tripsage_sync.client import AuthenticationFailed, RequestRefused, SyncClient

__all__ = ["watch", "watch_async", "watch_line"]

logger = logging.getLogger(__name__)


def watch_line(event: dict[str, Any]) -> str | None:
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


async def watch_async(args: argparse.Namespace) -> int:
    def show(event: dict[str, Any]) -> None:
        line = watch_line(event)
        if line is not None:
            print(line, flush=True)  # noqa: T201

    client = SyncClient(args.url, args.token, max_reconnect_attempts=None, fail_unreached=True)
    client.on("*", show)
    states = asyncio.create_task(_show_states(client), name="watch-states")
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
        states.cancel()
        await client.close()


async def _show_states(client: SyncClient) -> None:
    while True:
        shown = client.state
        print(f"[{shown}]", file=sys.stderr, flush=True)  # noqa: T201
        await client.wait_until(functools.partial(_changed, client, shown))


def _changed(client: SyncClient, shown: str) -> bool:
    return client.state != shown


def watch(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(watch_async(args))
    return 0
