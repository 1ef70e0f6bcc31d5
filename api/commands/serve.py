"""``tripsage-sync serve``: the server on uvicorn, with the graceful shutdown and
the optional in-process demo agent (``api/chat/demo_agent.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import socket
import sys
import time

import uvicorn

from tripsage_sync.api.app import create_app
from tripsage_sync.api.chat.demo_agent import run_agent
from tripsage_sync.api.commands.logs import configure_logging
from tripsage_sync.api.commands.preflight import Refused, listening_socket, opened_store
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.protocol import protocols
from tripsage_sync.api.transport.services import Services, shutdown_services

__all__ = ["Server", "serve"]

logger = logging.getLogger(__name__)


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
        # What exists once the app has started (modules, the app, its services) lives as long
        # as the process: out of the collector's sight, a full collection no longer walks it
        # (one took 30-60 ms in the middle of a 100-peer run: every broadcast waited).
        gc.collect()
        gc.freeze()
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


def serve(args: argparse.Namespace) -> int:
    """Run the server; a mistake in its settings, database or address is one line
    (``preflight.Refused``, printed by ``api.cli.main``) before anything starts."""
    settings = Settings.from_env(
        config=args.config,
        host=args.host,
        port=args.port,
        db=args.db,
        log_format=args.log_format,
        dev_mode=True if args.demo_agent else None,  # demo sign-in (api/web/feature.py)
        dev_sign_in_anywhere=True if args.dev_sign_in_anywhere else None,
    )
    settings.require_cluster_pair()
    for line in settings.warnings():
        print(f"tripsage-sync: warning: {line}", file=sys.stderr)  # noqa: T201
    if settings.database_url is None:  # PostgreSQL may come up later: the nodes wait for it
        opened_store(settings.db, create=True).close()
    sock = listening_socket(settings.host, settings.port)
    configure_logging(settings.log_level, settings.log_format)
    # Our subclasses of uvicorn's h11 and websockets-sansio protocols (api/transport/protocol.py):
    # a request-head deadline, handshake refusals answered, liveness by any received
    # frame (uvicorn's own ping/pong keepalive is off), the documented oversize reply.
    http_protocol, ws_protocol = protocols(settings)
    try:
        app = create_app(settings)
    except (ImportError, AttributeError, ValueError) as exc:  # TRIPSAGE_HOOKS
        sock.close()
        raise Refused(f"cannot load the hooks {settings.hooks!r}: {exc}") from exc
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol,
        ws=ws_protocol,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_per_message_deflate=settings.ws_compression,
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
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
