"""The application factory and its lifespan (the composition root).

``create_app(settings)`` builds a Starlette app; nothing is created at import
time. The lifespan opens the store, settles the JWT secret (the configured one,
else one random secret kept in the database), builds the hub and services,
and on the way out runs the ordered shutdown:

1. stop accepting new connections;
2. tell every client (``connection_close``: reason, code 1001, gracePeriod,
   reconnectAfter) and let the outbound queues drain, then close with 1001;
   Yjs peers (no such event in y-websocket) get their queued frames and the
   1001 close, on which y-websocket reconnects;
3. flush storage (the writer commits what it holds) and close the database.

:class:`api.cli.Server` runs step 1-2 *before* uvicorn closes sockets itself
(uvicorn would otherwise close them with 1012 and no event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, WebSocketRoute

from tripsage_sync.api.chat.feature import ChatFeature
from tripsage_sync.api.chat.http import ChatHttp
from tripsage_sync.api.clock import SYSTEM_CLOCK, Clock
from tripsage_sync.api.ops.feature import OpsFeature
from tripsage_sync.api.protocol import protocol_routes
from tripsage_sync.api.router import Router
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import JwtAuthority, new_secret
from tripsage_sync.api.transport.bus import Bus, LocalBus, RedisBus
from tripsage_sync.api.transport.endpoints import agent_status_endpoint, chat_endpoint
from tripsage_sync.api.transport.hooks import HookRunner, Hooks, load_hooks
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.api.transport.limitshare import LimitShare
from tripsage_sync.api.transport.relay import relay_through
from tripsage_sync.api.transport.services import Feature, Services, shutdown_services
from tripsage_sync.api.transport.webhook import Webhook
from tripsage_sync.api.trips.conflicts import ConflictResolution
from tripsage_sync.api.trips.feature import TripFeature
from tripsage_sync.api.trips.http import TripHttp
from tripsage_sync.api.trips.locks import FieldLocks
from tripsage_sync.api.trips.optimistic import OptimisticUpdates
from tripsage_sync.api.trips.resume import ResumeFeature
from tripsage_sync.api.trips.yjs import YjsFeature
from tripsage_sync.api.web.feature import WebFeature
from tripsage_sync.storage import Store, open_store
from tripsage_sync.storage.errors import UNAVAILABLE, is_unavailable

__all__ = ["JWT_SECRET_META_KEY", "create_app", "resolve_secret"]

logger = logging.getLogger(__name__)

JWT_SECRET_META_KEY = "jwt_secret"
#: The cluster's id, made by its first node: its nodes' bus channels are named after it.
CLUSTER_ID_META_KEY = "cluster_id"


def resolve_secret(settings: Settings, store: Store) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    return store.set_meta_if_absent(JWT_SECRET_META_KEY, new_secret()).result()


def features(settings: Settings, clock: Clock) -> tuple[list[Feature], Router]:
    """The product features this server runs, in start order, and the router that
    hands each client message to the one serving it.

    A feature's HTTP API is a feature of its own composed on it (``TripHttp(trips)``),
    so that the feature module never imports its routes.
    """
    ops = OpsFeature(settings, clock)
    trips = TripFeature(settings, clock)
    locks = FieldLocks(trips)
    optimistic = OptimisticUpdates(trips)
    conflicts = ConflictResolution(trips)
    chat = ChatFeature(settings, clock)
    resume = ResumeFeature(trips)
    router = Router(
        trips=trips,
        locks=locks,
        optimistic=optimistic,
        conflicts=conflicts,
        resume=resume,
        chat=chat,
        ops=ops,
    )
    # Ops first: its health and metrics answer while the others start and stop.
    plugged: list[Feature] = [
        ops,
        trips,
        TripHttp(trips),
        locks,
        optimistic,
        conflicts,
        chat,
        ChatHttp(chat),
        resume,
        YjsFeature(trips),
        WebFeature(settings, clock),
    ]
    return plugged, router


async def storage_unavailable(request: Request, exc: Exception) -> Response:
    """An HTTP request whose write storage cannot take now (disk full, I/O error): 503.

    The documented HTTP error body with ``retryAfter`` (seconds) and a ``Retry-After``
    header from the storage backoff, never a 500 with a traceback for the client.
    """
    if not is_unavailable(exc):
        raise exc  # a real bug: Starlette's 500, traceback in the server log
    logger.warning("HTTP %s %s: storage unavailable", request.method, request.url.path)
    backoff = request.app.state.services.storage_backoff
    retry_after_s = max(1, math.ceil((backoff.delay_ms or backoff.initial_ms) / 1000))
    body = {
        "code": "SERVER_ERROR",
        "message": "The server cannot store changes right now; try again later",
        "retryAfter": retry_after_s,
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after_s)})


def app_hooks(settings: Settings, hooks: Sequence[Hooks] = ()) -> tuple[HookRunner, Webhook | None]:
    """The hooks the app calls: ``hooks``, then ``TRIPSAGE_HOOKS`` (imported now: an
    error is the caller's to report), then the webhook when one is set."""
    every = list(hooks)
    if settings.hooks:
        every.append(load_hooks(settings.hooks))
    webhook = None
    if settings.webhook_url and settings.webhook_secret:
        webhook = Webhook(
            settings.webhook_url,
            settings.webhook_secret,
            node=settings.node,
            timeout_s=settings.webhook_timeout_s,
            attempts=settings.webhook_attempts,
        )
        every.append(webhook)
    return HookRunner(every), webhook


def create_app(
    settings: Settings, clock: Clock = SYSTEM_CLOCK, *, hooks: Sequence[Hooks] = ()
) -> Starlette:
    """The app; ``clock`` is the one every part of it reads (tests pass a fake one);
    ``hooks``: the application's extension points (:mod:`api.transport.hooks`)."""
    plugged, router = features(settings, clock)
    runner, webhook = app_hooks(settings, hooks)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings.store_location)
        try:
            secret = resolve_secret(settings, store)
            authority = JwtAuthority(
                secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
            bus: Bus = LocalBus(settings.node)
            if settings.redis_url:
                cluster = store.set_meta_if_absent(CLUSTER_ID_META_KEY, secrets.token_hex(8))
                bus = RedisBus(settings.redis_url, settings.node, cluster.result())
            services = Services(
                settings=settings,
                store=store,
                authority=authority,
                hub=Hub(settings, clock=clock),
                dispatch=router,
                clock=clock,
                bus=bus,
                hooks=runner,
            )
            app.state.services = services
            runner.start()
            loop = asyncio.get_running_loop()
            services.metrics.asyncio_tasks = lambda: len(asyncio.all_tasks(loop))
            services.metrics.bus_counts = lambda: bus.counts
            services.metrics.gc_pauses.start()
            started: list[Feature] = []
            share = None
            if settings.redis_url:
                relay_through(services.hub, bus)
                share = LimitShare(services.hub, bus)
            await bus.start()
            if share is not None:
                await share.start()
            try:
                for feature in plugged:
                    await feature.start(services)
                    started.append(feature)
                logger.info("serving database %s as node %s", store.where, settings.node)
                yield
                await shutdown_services(services)
            finally:
                for feature in reversed(started):
                    await feature.stop()
                if share is not None:
                    await share.stop()
                await bus.stop()
                await runner.stop()
                services.metrics.gc_pauses.stop()
                if webhook is not None:
                    await webhook.close()
        finally:
            store.close()
            logger.info("storage flushed and closed")

    routes: list[BaseRoute] = [
        WebSocketRoute("/ws/chat/{session_id}", chat_endpoint),
        WebSocketRoute("/ws/agent-status/{session_id}", agent_status_endpoint),
    ]
    for feature in plugged:
        routes.extend(feature.routes())
    routes.extend(protocol_routes())
    handlers: dict[Any, Any] = {error: storage_unavailable for error in UNAVAILABLE}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
