"""The services one server process shares: settings, store, JWT, hub, metrics.

Built by the lifespan in :mod:`api.app` and reached by every endpoint through
``app.state.services``. Authorization facts that need storage (who owns a chat
session, who collaborates on a trip) are gathered here and handed to the pure
decisions in :mod:`sync.channels`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tripsage_sync.api.clock import SYSTEM_CLOCK, Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import JwtAuthority
from tripsage_sync.api.transport.bus import Bus, LocalBus
from tripsage_sync.api.transport.connection import Connection, Dispatch
from tripsage_sync.api.transport.hooks import HookRunner
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.api.transport.metrics import Metrics
from tripsage_sync.storage.store import Store
from tripsage_sync.storage.writer import BatchWriter
from tripsage_sync.sync.backoff import StorageBackoff
from tripsage_sync.sync.channels import Channel, Facts, Principal, authorize_read
from tripsage_sync.sync.errors import CLOSE_GOING_AWAY
from tripsage_sync.sync.session import Ownership

if TYPE_CHECKING:
    from starlette.routing import BaseRoute
__all__ = ["Feature", "Services", "WriteLanding", "shutdown_services"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Feature(Protocol):
    """A product feature (trips, chat) plugged into the shell.

    ``routes`` are added to the app; ``start`` runs in the lifespan after the
    services exist (register hooks, load state, start timers);
    ``stop`` runs after clients were drained and before storage closes.
    """

    def routes(self) -> list[BaseRoute]: ...

    async def start(self, services: Services) -> None: ...

    async def stop(self) -> None: ...


class WriteLanding:
    """Brings storage writer results to the event loop: one wakeup for a whole batch.

    ``asyncio.wrap_future`` wakes the loop once per future (a ``call_soon_threadsafe``,
    a write to its self-pipe) and costs a callback and a lock per future. The landing
    instead listens to the writer (:meth:`storage.writer.BatchWriter.add_listener`):
    :meth:`wait` notes the future's waiter, and once per commit the writer thread
    hands over every future it resolved; the loop then settles their waiters, in the
    order they were resolved. Only the loop thread touches the waiters. One event
    loop per instance (a future awaited from another loop is wrapped the usual way).
    """

    def __init__(self, writer: BatchWriter) -> None:
        self._waiting: dict[Future[Any], asyncio.Future[Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        writer.add_listener(self._landed)

    def wait(self, future: Future[T]) -> asyncio.Future[T]:
        """A waiter for ``future``, one of the writer's (resolved or not)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            return asyncio.wrap_future(future)
        waiter: asyncio.Future[T] = loop.create_future()
        if future.done():  # its batch was handed over before, or is being handed now
            _settle(future, waiter)
        else:  # the writer resolves it later, and hands it to _deliver after that
            self._waiting[future] = waiter
        return waiter

    def _landed(self, futures: list[Future[Any]]) -> None:
        """Called in the writer thread once per commit."""
        if self._loop is None:
            return  # nobody waited through this landing yet
        try:
            self._loop.call_soon_threadsafe(self._deliver, futures)
        except RuntimeError:  # the loop is closed: nobody waits any more
            logger.debug("write landed after its event loop closed")

    def _deliver(self, futures: list[Future[Any]]) -> None:
        waiting = self._waiting
        for future in futures:
            waiter = waiting.pop(future, None)
            if waiter is not None:
                _settle(future, waiter)


def _settle(future: Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(future.result())


@dataclass
class Services:
    settings: Settings
    store: Store
    authority: JwtAuthority
    hub: Hub[Connection]
    # Every client message of every JSON connection: one match over the message
    # classes (api/router.py), which knows the features that serve them.
    dispatch: Dispatch
    clock: Clock = SYSTEM_CLOCK
    # The bus between the nodes of a cluster (api/transport/bus.py); one node: a LocalBus.
    bus: Bus = field(default_factory=lambda: LocalBus("local"))
    started_at_s: float = field(init=False)  # wall time (s) the services were built
    # Channel namespaces' fact finders, added by features (trip permissions...).
    extra: dict[str, Any] = field(default_factory=dict)
    # What features plug into every JSON connection: callbacks run when a
    # connection is gone (after the hub forgot it).
    on_disconnect: list[Callable[[Connection], None]] = field(default_factory=list)
    implicit_channel_providers: list[Callable[[Connection], list[str]]] = field(
        default_factory=list
    )
    # Called with a connection that just authenticated, in the same event-loop
    # tick as its implicit subscriptions: what a hook sends (a replay, the content
    # of a reply being streamed) is queued before any event published later.
    join_hooks: list[Callable[[Connection], None]] = field(default_factory=list)

    # Called when a drain starts, before any client is told: what is held back for a
    # moment (chat chunks being gathered) goes out ahead of ``connection_close``.
    drain_hooks: list[Callable[[], None]] = field(default_factory=list)
    # The application's hooks and the webhook (api/transport/hooks.py).
    hooks: HookRunner = field(default_factory=HookRunner)
    # Called (by api.cli.Server) to make the process exit after a maintenance drain.
    request_exit: Callable[[], None] | None = None
    # Trip edits back off while storage fails (api/trips/rooms.py reports every commit).
    storage_backoff: StorageBackoff = field(init=False)
    landing: WriteLanding = field(init=False)

    def __post_init__(self) -> None:
        self.landing = WriteLanding(self.store.writer)
        self.started_at_s = self.clock.now_ms() / 1000
        self.storage_backoff = StorageBackoff(
            self.settings.storage_retry_initial_ms, self.settings.storage_retry_max_ms
        )
        self.hub.metrics.storage_retry_after_ms = lambda: self.storage_backoff.delay_ms

    @property
    def metrics(self) -> Metrics:
        """The app's instruments (:mod:`api.transport.metrics`), shared with the hub."""
        return self.hub.metrics

    # -- the former ad-hoc counters, kept for call sites not yet moved to ``metrics``

    @property
    def metrics_auth_failures(self) -> dict[str, int]:
        return self.hub.metrics.auth_failures

    @property
    def metrics_slow_consumers(self) -> int:
        return self.hub.metrics.slow_consumers

    @metrics_slow_consumers.setter
    def metrics_slow_consumers(self, value: int) -> None:
        self.hub.metrics.slow_consumers = value

    @property
    def metrics_messages_in(self) -> int:
        return self.hub.metrics.total_in

    @metrics_messages_in.setter
    def metrics_messages_in(self, value: int) -> None:
        for _ in range(value - self.hub.metrics.total_in):
            self.hub.metrics.received("other", 0)

    async def write(self, future: Future[T]) -> T:
        """Await a storage writer future (resolved after the commit; see :class:`WriteLanding`)."""
        return await self.landing.wait(future)

    def count_outcome(self, type_: str) -> None:
        self.hub.metrics.count(self.hub.metrics.outcomes, type_)

    def count_rate_limited(self, what: str) -> None:
        self.hub.metrics.count(self.hub.metrics.rate_limited, what)

    async def chat_members(self, session_id: str) -> frozenset[str] | None:
        owner = self.store.chat_session_owner(session_id)
        if owner is None:
            return None
        return frozenset({owner, *self.store.chat_session_members(session_id)})

    def session_ownership(self, session_id: str) -> Ownership:
        """Who may open ``/ws/{endpoint}/{session_id}``: the first user owns the session
        (:mod:`sync.session.handshake` decides; agents and admins never claim one)."""
        owner = self.store.chat_session_owner(session_id)
        if owner is None:
            return Ownership(None)
        return Ownership(owner, frozenset(self.store.chat_session_members(session_id)))

    async def claim_session(self, session_id: str, user_id: str) -> Ownership:
        """Claim an unclaimed session for ``user_id``; who owns it once committed."""
        owner = await self.write(
            self.store.claim_chat_session(session_id, user_id, self.clock.now_ms())
        )
        if owner == user_id:
            return Ownership(owner)
        return self.session_ownership(session_id)

    async def authorize_channel(self, principal: Principal, channel: Channel) -> None:
        facts = Facts()
        if channel.namespace == "chat":
            facts = Facts(chat_members=await self.chat_members(channel.key))
        elif channel.namespace == "trip":
            facts = Facts(trip_permission=self.store.permission(channel.key, principal.user_id))
        authorize_read(principal, channel, facts)

    def implicit_channels(self, conn: Connection) -> list[str]:
        """Channels a connection joins on authentication, by endpoint."""
        session_id = conn.session.path_session_id
        user_id = conn.principal.user_id
        names = [f"user:{user_id}"]
        if conn.session.endpoint == "chat":
            names.append(f"chat:{session_id}")
        else:
            # Internal channel: agent-status events of this session.
            names.append(f"agent-status:{session_id}")
        for provider in self.implicit_channel_providers:
            names.extend(provider(conn))
        for hook in self.join_hooks:
            hook(conn)
        return names


async def shutdown_services(
    services: Services,
    reason: str = "Server shutting down",
    *,
    reconnect_after_s: float | None = None,
) -> None:
    """Steps 1-2 of the shutdown; ``reconnect_after_s`` defaults to the setting."""
    hub = services.hub
    for hook in services.drain_hooks:
        hook()
    if hub.accepting or hub.connections or hub.peers():
        await hub.drain(
            reason,
            code=CLOSE_GOING_AWAY,
            grace_s=services.settings.shutdown_grace_s,
            reconnect_after_s=(
                services.settings.reconnect_after_s
                if reconnect_after_s is None
                else reconnect_after_s
            ),
        )
