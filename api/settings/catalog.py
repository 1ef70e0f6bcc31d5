"""What the settings are called and mean: the README's table (:data:`DOCS`,
:func:`markdown_table`) and the warning for ``TRIPSAGE_*`` names that are none."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Final

from tripsage_sync.api.settings.model import Settings
from tripsage_sync.api.settings.sources import CONFIG_VARIABLE, ENV_PREFIX

__all__ = ["DOCS", "OTHER_VARIABLES", "markdown_table", "unknown_variables"]

#: ``TRIPSAGE_*`` variables that are not settings: read by the command line.
OTHER_VARIABLES: Final = frozenset({"TRIPSAGE_DEMO_AGENT", CONFIG_VARIABLE})


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each ``TRIPSAGE_*`` variable that is no setting (a typo is otherwise
    silently ignored), with the setting it most resembles."""
    env = os.environ if env is None else env
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    lines = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            bare = [k.removeprefix(ENV_PREFIX) for k in sorted(known)]
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), bare, n=1, cutoff=0.75)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            lines.append(f"{name} is not a setting and is ignored{hint}")
    return lines


DOCS: Final[dict[str, str]] = {
    "host": "Address to listen on",
    "port": "TCP port",
    "db": "SQLite database file (created if missing); unused when `TRIPSAGE_DATABASE_URL` is set",
    "database_url": "`postgresql://` URL of the shared store of a cluster (docs/cluster.md);"
    " needs `TRIPSAGE_REDIS_URL` too. Unset: one node on the SQLite file `TRIPSAGE_DB`",
    "redis_url": "`redis://` URL of the cluster's bus (fan-out, presence, limits); needs"
    " `TRIPSAGE_DATABASE_URL` too. Unset: a single node",
    "node_id": "This node's name in logs, metrics and `server_health` (unset: host-pid)",
    "jwt_secret": "HS256 secret; unset: a random secret is created once and kept in the database",
    "jwt_issuer": "Required `iss` claim, when set",
    "jwt_audience": "Required `aud` claim, when set",
    "rate_limit_connections_per_min": "New WebSocket connections per minute per IP (0 = off)",
    "rate_limit_auth_per_min": "Authentication attempts per minute per IP (0 = off)",
    "rate_limit_messages_per_min": "Client messages per minute per user (0 = off)",
    "rate_limit_subscriptions_per_min": "Channel subscriptions per minute per user (0 = off)",
    "rate_limit_yjs_frames_per_min": "y-websocket frames per minute per user (over: close 3001)",
    "max_message_size": "Largest client message in bytes (larger: MESSAGE_TOO_LARGE, close 1009)",
    "ws_compression": "Accept permessage-deflate when a client offers it (costs about 46 KB of"
    " memory per connection and CPU per frame; off: frames go uncompressed)",
    "max_connections": "Authenticated connections the server accepts at once (all endpoints)",
    "max_connections_per_user": "Connections one user may hold at once",
    "max_unauthenticated_connections": "JSON sockets still awaiting their auth frame, at once"
    " (not counted in `TRIPSAGE_MAX_CONNECTIONS`); when full, a new one displaces the oldest"
    " of the address holding the most",
    "auth_timeout_s": "Seconds a new connection has to authenticate (then close 3000)",
    "heartbeat_interval_s": "Seconds between server heartbeats; silent for two: closed",
    "header_timeout_s": "Seconds a TCP connection has to send a complete HTTP request head",
    "ping_interval_s": "Seconds a WebSocket may be silent before the server pings it",
    "peer_timeout_s": "Seconds a WebSocket may be silent (no frame of any kind) before it is"
    " closed as dead (1011)",
    "trusted_proxies": "Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is honoured",
    "allowed_origins": "Comma-separated browser origins allowed besides the server's own host",
    "outbound_queue_size": "Events queued per connection before it counts as a slow consumer",
    "send_timeout_s": "Seconds a send may stall before the connection is aborted",
    "typing_timeout_s": "Seconds a typing indicator lasts without a chat_typing_stop",
    "chat_replay_max_messages": "Missed chat messages replayed on reconnect (older: over HTTP)",
    "chat_stream_idle_timeout_s": "Seconds a streamed reply may stall before it is dropped",
    "chat_chunk_reorder_window_s": "Seconds a streamed chunk may wait for a missing earlier one"
    " (then the gap is skipped; 0 = never wait)",
    "chat_chunk_gather_s": "Seconds a streamed chunk may wait for the next ones, so that a"
    " subscriber gets several in one batch frame (the first after a pause goes at once;"
    " 0 = each at once)",
    "yjs_peer_frames_per_s": "Update frames a trip room may send its Yjs peers per second,"
    " counted once per peer: a room of N peers merges the changes committed meanwhile into"
    " one frame at most every N / this many seconds (the first after a pause goes at once;"
    " 0 = one frame per loop iteration)",
    "shutdown_grace_s": "Seconds clients get to drain on shutdown (sent as gracePeriod)",
    "reconnect_after_s": "reconnectAfter sent in connection_close on shutdown",
    "manual_fields": "Trip fields that need manual conflict resolution by default",
    "conflict_auto_resolve_ms": "autoResolveAfter for manual conflicts",
    "field_lock_ttl_s": "Seconds an advisory field lock lasts without a renewal",
    "presence_idle_s": "Seconds without activity before a collaborator shows as not active",
    "room_idle_unload_s": "Seconds a trip room may stay loaded with no connection and no"
    " pending work before it is unloaded from memory (loaded again on next use)",
    "history_retention_days": "Days of update history kept for clients that were offline",
    "compact_every_updates": "Updates between snapshots of a trip",
    "history_window_updates": "Updates of a loaded trip's history kept in memory (up to twice"
    " as many); older ones are read from storage when a client needs them. 0: keep them all",
    "storage_retry_initial_ms": "While storage fails (disk full): first retryAfter of refused"
    " edits, doubled by every failed retry",
    "storage_retry_max_ms": "Largest retryAfter while storage fails",
    "log_level": "Logging level: debug, info, warning, error or critical",
    "log_format": "`text` or `json` log lines",
    "dev_mode": "Demo sign-in: `POST /api/dev/token` mints user tokens, only while"
    " `TRIPSAGE_JWT_SECRET` is unset (`serve --demo-agent` turns it on); refused on an"
    " address that is not loopback unless `TRIPSAGE_DEV_SIGN_IN_ANYWHERE` is set",
    "hooks": "Python hooks of the application, `package.module:attribute` (a `Hooks` class"
    ' or object: README "Hooks and webhook")',
    "webhook_url": "POST every trip change committed by this node here, signed (README"
    ' "Hooks and webhook"); unset: no webhook',
    "webhook_secret": "HMAC-SHA256 key of the webhook's `X-TripSage-Signature` (at least 16"
    " bytes; needed with `TRIPSAGE_WEBHOOK_URL`)",
    "webhook_attempts": "Tries of one webhook delivery (1, 2, 4... s apart, at most 60 s)",
    "webhook_timeout_s": "Seconds one webhook request may take",
    "dev_sign_in_anywhere": "Allow demo sign-in on a non-loopback address (anyone who reaches"
    " the server can sign in as anyone; `serve --dev-sign-in-anywhere`)",
}


def markdown_table() -> str:
    """The README's settings table (``tests/api/test_settings.py`` keeps it current)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, f in Settings.model_fields.items():
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default) or "(empty)"
        elif default is None:
            default = "(unset)"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{default}` | {DOCS[name]} |")
    return "\n".join(rows)
