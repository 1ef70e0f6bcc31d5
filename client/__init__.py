"""An asyncio client for TripSage Sync: for bots, the CLI (``watch``) and tests.

Theory of operation (``websocket-api.md`` "Client Integration": "Reconnection
Strategy", "Optimistic Updates", "Performance Monitoring"; README "Python
client")
------------------------------------------------------------------------
:class:`SyncClient` is offline-first: :meth:`SyncClient.start` returns at once
and a background task keeps a connection when it can. Everything sent goes
through one ordered queue drained by one writer task per connection, so it
works the same online and offline.

Connecting
    Open ``{url}/ws/{endpoint}/{sessionId}``, send the "Authentication
    Request" ``{token, sessionId, channels}`` and read the response. A refusal
    (or a close with 1000, 1008 or 3000) ends the client; any other loss is
    retried with the spec's WebSocketManager backoff: attempt *n* waits
    ``reconnect_delay_s * 2**(n-1)`` (1 s doubling; capped at
    ``max_reconnect_delay_s``, and never sooner than a ``connection_close``'s
    ``reconnectAfter``), giving up after ``max_reconnect_attempts``
    consecutive failures (``None``: never).

Live tokens (README "Token refresh")
    With ``token_provider`` (an async callable returning a fresh token), the
    server's ``auth_expiring`` warning makes the client fetch a token and send
    ``auth_refresh {token}`` on the open connection; the fresh token is also
    the one every later connection authenticates with. A connection closed
    with 3000 after ``connection_error`` ``TOKEN_EXPIRED``, or a token refused
    as expired at connect, asks the provider once more and reconnects at once
    instead of ending the client. Without a provider both end it, as before.

Resuming (on every connection, before anything queued)
    For each trip the client joined or has pending updates for:
    ``sync_request {tripId, sinceVersion}`` with the last version it applied
    (the replayed changes and ``trip_snapshot`` update :class:`TripView`,
    up to ``sync_complete``), then ``collaboration_session_start`` for
    joined trips; then every pending optimistic update is re-sent with its
    original ``updateId``, ``expectedVersion`` and ``clientTimestamp`` (the
    server is idempotent by ``updateId``: one outcome each); then the other
    queued messages, in order.

Optimistic updates
    :meth:`SyncClient.update_field` records a :class:`PendingUpdate` and
    returns it; its status becomes confirmed, rejected (with the server's
    value) or rolled back when the outcome arrives, exactly once.
    ``expectedVersion`` is the version the caller saw. While an earlier
    update of the same field is pending, a new one is *chained*: it is sent
    after that outcome, with the version known then (two edits made at one
    version would otherwise be merged as concurrent edits of each other).

Persistence (``queue_path``)
    JSON lines, each record appended and fsync'd before the call returns:
    updates, their expected versions and outcomes, and messages queued while
    disconnected. A new client on the same file resumes where the old one
    stopped; the file is compacted on start and on close. Pending updates
    imply their trips: after a restart the client fills its view of each
    with ``sync_request`` from version 0 (the whole retained history, or a
    snapshot).

Server events
    Each frame is parsed once into a typed event (``client/events.py``) and
    routed to the concern it belongs to; listeners (:meth:`SyncClient.on`,
    :meth:`SyncClient.events`) receive the raw event dict. An event of a type
    the client does not know, or without what it needs (a ``tripId``, a
    ``version``), changes nothing but still reaches the listeners: a newer
    server cannot crash the client.

Metrics (``websocket-api.md`` "Client Metrics"): see :class:`ClientMetrics`.
Latency is the round trip of a client ``connection_heartbeat`` to the
server's answering heartbeat, sent every ``heartbeat_interval_s`` (default:
the server's ``limits.heartbeatInterval``), which also keeps the connection
from being closed as idle.
"""

from __future__ import annotations

from tripsage_sync.client.base import (
    HIGH_FREQUENCY_PER_S,
    MAX_RECONNECT_ATTEMPTS,
    OUTCOME_TYPES,
    RECONNECT_DELAY_S,
    AuthenticationFailed,
    RequestRefused,
)
from tripsage_sync.client.metrics import ClientMetrics
from tripsage_sync.client.queue import PendingUpdate, QueueFile, UpdateStatus
from tripsage_sync.client.sync_client import SyncClient
from tripsage_sync.client.views import TripView

__all__ = [
    "HIGH_FREQUENCY_PER_S",
    "MAX_RECONNECT_ATTEMPTS",
    "OUTCOME_TYPES",
    "RECONNECT_DELAY_S",
    "AuthenticationFailed",
    "ClientMetrics",
    "PendingUpdate",
    "QueueFile",
    "RequestRefused",
    "SyncClient",
    "TripView",
    "UpdateStatus",
]
