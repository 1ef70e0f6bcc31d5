"""The hub: every live connection, its channels, and the shared limiters.

Theory of operation
-------------------
The hub lives on the event loop thread and is never awaited while it
mutates, so its dictionaries need no locks. Publishing encodes an event once
and hands the same text to every subscriber's bounded outbound queue
(:meth:`api.transport.connection.Connection.enqueue`), which never blocks: a subscriber
that cannot keep up is closed as a slow consumer, the others are not delayed.

Connections the hub does not route (y-websocket peers, :mod:`api.trips.yjs`) are
reached through :attr:`Hub.peer_sources`, so that the graceful drain closes
them too (1001, before uvicorn closes leftover sockets with 1012).

Rate limiters are keyed by IP (connections, authentication attempts) and by
user (messages, subscriptions, shared by all of a user's connections), as in
``websocket-api.md`` "Rate Limiting".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

from tripsage_sync.api.clock import SYSTEM_CLOCK, Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.metrics import LiveConnections, Metrics
from tripsage_sync.api.transport.waits import Flag
from tripsage_sync.sync.errors import RateLimited
from tripsage_sync.sync.ratelimit import Decision, KeyedLimiter
from tripsage_sync.sync.session import Session
from tripsage_sync.sync.wire import ServerEvent, encode, iso_ms

__all__ = [
    "NAMES_SEP",
    "RELAY_ALL",
    "RELAY_CHANNEL",
    "RELAY_CHANNELS",
    "RELAY_USER",
    "Hub",
    "Peer",
    "Subscriber",
    "rate_limited",
]

#: What a relayed event was sent to (api/transport/relay.py delivers it on the others).
RELAY_CHANNEL: Final = "channel"
RELAY_CHANNELS: Final = "channels"
NAMES_SEP: Final = "\x1f"
RELAY_USER: Final = "user"
RELAY_ALL: Final = "all"

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What the hub needs of a JSON connection (:class:`api.transport.connection.Connection`).

    The hub routes to subscribers and never imports the connection module: the
    connection is built on the hub, not the other way round.
    """

    @property
    def id(self) -> str: ...

    @property
    def client_ip(self) -> str: ...

    @property
    def session(self) -> Session: ...

    @property
    def closed(self) -> Flag: ...

    @property
    def queued(self) -> int: ...

    def enqueue(self, text: str, *, droppable: bool = False) -> bool: ...

    def announce_close(
        self, reason: str, code: int, *, grace_s: float, reconnect_after_s: float
    ) -> None: ...

    def displace(self) -> None: ...

    def abort(self) -> None: ...


class Peer(Protocol):
    """A connection the hub drains on shutdown without routing to it (a Yjs peer)."""

    @property
    def closed(self) -> Flag: ...

    def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None: ...


S = TypeVar("S", bound=Subscriber)


def rate_limited(what: str, decision: Decision, now_s: float) -> RateLimited:
    """The spec's RATE_LIMITED error with its ``limits`` block."""
    return RateLimited(
        f"Rate limit exceeded: {what}",
        retry_after=decision.retry_after_s,
        limits={
            "current": decision.current,
            "limit": decision.limit,
            "window": int(decision.window_s),
            "reset": iso_ms(int((now_s + decision.reset_in_s) * 1000)),
        },
        details={"limit": what},
    )


@dataclass
class Hub(Generic[S]):
    settings: Settings
    clock: Clock = SYSTEM_CLOCK
    connections: dict[str, S] = field(default_factory=dict)
    by_user: dict[str, set[S]] = field(default_factory=dict)
    channels: dict[str, set[S]] = field(default_factory=dict)
    peak_connections: int = 0
    total_connections: int = 0
    accepting: bool = True
    connection_limiter: KeyedLimiter = field(init=False)
    auth_limiter: KeyedLimiter = field(init=False)
    message_limiter: KeyedLimiter = field(init=False)
    subscription_limiter: KeyedLimiter = field(init=False)
    # The live connections of other endpoints (Yjs), each closed by the drain.
    peer_sources: list[Callable[[], Collection[Peer]]] = field(default_factory=list)
    # The connections of each user on other endpoints (Yjs), counted in the per-user cap.
    peer_counts: list[Callable[[], Mapping[str, int]]] = field(default_factory=list)
    # JSON connections still awaiting their auth frame, oldest first: they have a cap of
    # their own (TRIPSAGE_MAX_UNAUTHENTICATED_CONNECTIONS), not TRIPSAGE_MAX_CONNECTIONS.
    unauthenticated: dict[str, S] = field(default_factory=dict)
    _bound: int = 0  # JSON connections bound to a user (authenticated)
    # The app's instruments (api/transport/metrics.py); their live gauges read this hub.
    metrics: Metrics = field(default_factory=Metrics)
    # Cluster mode: ``relay(kind, name, text)`` tells the other nodes of an event sent to
    # a channel, a user or everyone (api/app.py wires it to the bus; None on one node).
    relay: Callable[[str, str, str], None] | None = None
    # Cluster mode (api/transport/limitshare.py): told of every token spent, and asked how
    # many connections a user holds on the other nodes.
    on_spend: Callable[[KeyedLimiter, str], None] | None = None
    remote_connections: Callable[[str], int] | None = None

    def __post_init__(self) -> None:
        self.metrics.live = self.live_connections
        s = self.settings
        self.connection_limiter = KeyedLimiter(s.rate_limit_connections_per_min)
        self.auth_limiter = KeyedLimiter(s.rate_limit_auth_per_min)
        self.message_limiter = KeyedLimiter(s.rate_limit_messages_per_min)
        self.subscription_limiter = KeyedLimiter(s.rate_limit_subscriptions_per_min)

    # -- membership ---------------------------------------------------------------

    def admit(self, conn: S) -> None:
        """Count a connection that was accepted (before authentication)."""
        self.connections[conn.id] = conn
        self.unauthenticated[conn.id] = conn
        self.total_connections += 1
        self.peak_connections = max(self.peak_connections, len(self.connections))
        self.metrics.count(self.metrics.connections_opened, conn.session.endpoint)

    def bind_user(self, conn: S, user_id: str) -> None:
        self.unauthenticated.pop(conn.id, None)
        peers = self.by_user.setdefault(user_id, set())
        if conn not in peers:
            peers.add(conn)
            self._bound += 1

    def authenticated_count(self) -> int:
        """Authenticated connections of every endpoint: what TRIPSAGE_MAX_CONNECTIONS caps."""
        return self._bound + sum(len(source()) for source in self.peer_sources)

    def make_room_for_unauthenticated(self) -> S | None:
        """The socket a new unauthenticated one displaces when their cap is reached.

        The oldest of the address holding the most, so that a flood from a few
        addresses displaces itself while a client that authenticates at once (in
        milliseconds) gets through. It is no longer counted from now on.
        """
        if len(self.unauthenticated) < self.settings.max_unauthenticated_connections:
            return None
        per_ip = Counter(conn.client_ip for conn in self.unauthenticated.values())
        busiest = per_ip.most_common(1)[0][0]
        victim = next(c for c in self.unauthenticated.values() if c.client_ip == busiest)
        del self.unauthenticated[victim.id]
        return victim

    def user_connection_count(self, user_id: str) -> int:
        """The user's connections of every endpoint, of every node in cluster mode."""
        local = len(self.by_user.get(user_id, ()))
        local += sum(counts().get(user_id, 0) for counts in self.peer_counts)
        if self.remote_connections is None:
            return local
        return local + self.remote_connections(user_id)

    def local_user_counts(self) -> dict[str, int]:
        """Each user's connections of every endpoint on this node."""
        counts = {user: len(conns) for user, conns in self.by_user.items()}
        for source in self.peer_counts:
            for user, count in source().items():
                counts[user] = counts.get(user, 0) + count
        return counts

    def live_connections(self) -> LiveConnections:
        """What the metrics' live gauges read at scrape time."""
        live = LiveConnections(peak=self.peak_connections)
        for conn in tuple(self.connections.values()):
            endpoint = conn.session.endpoint
            live.by_endpoint[endpoint] = live.by_endpoint.get(endpoint, 0) + 1
            depth = conn.queued
            live.queued += depth
            live.deepest = max(live.deepest, depth)
        return live

    def remove(self, conn: S) -> bool:
        """Forget a closed connection; ``False`` if it was not (or no longer) counted."""
        self.unauthenticated.pop(conn.id, None)
        if self.connections.pop(conn.id, None) is None:
            return False
        for name in list(conn.session.subscriptions):
            self.unsubscribe(conn, name)
        if conn.session.principal is not None:
            peers = self.by_user.get(conn.session.principal.user_id)
            if peers is not None and conn in peers:
                peers.discard(conn)
                self._bound -= 1
                if not peers:
                    del self.by_user[conn.session.principal.user_id]
        return True

    # -- channels -------------------------------------------------------------------

    def subscribe(self, conn: S, name: str) -> None:
        self.channels.setdefault(name, set()).add(conn)
        conn.session.subscriptions.add(name)

    def unsubscribe(self, conn: S, name: str) -> None:
        conn.session.subscriptions.discard(name)
        members = self.channels.get(name)
        if members is not None:
            members.discard(conn)
            if not members:
                del self.channels[name]

    def subscribers(self, name: str) -> Iterable[S]:
        return tuple(self.channels.get(name, ()))

    def publish(
        self,
        name: str,
        event: ServerEvent | str,
        *,
        exclude: S | None = None,
        relay: bool = True,
    ) -> int:
        """Send ``event`` to every subscriber of channel ``name``; encoded once.

        In cluster mode the other nodes' subscribers get it too (:attr:`relay`),
        unless ``relay`` is false (a trip room relays its events itself, in order
        with its changes: api/trips/replica.py). The count is of this node's.
        """
        if relay and self.relay is not None:
            event = self._relayed(RELAY_CHANNEL, name, event)
        members = self.channels.get(name)
        if not members:
            return 0
        return self.send_many(members, event, exclude=exclude)

    def _relayed(self, kind: str, name: str, event: ServerEvent | str) -> str:
        text = event if isinstance(event, str) else encode(event)
        assert self.relay is not None
        self.relay(kind, name, text)
        return text

    def send_to_channels(self, names: Iterable[str], event: ServerEvent) -> int:
        """Once to each connection subscribed to any of ``names`` (of every node)."""
        names = tuple(names)
        sent: ServerEvent | str = event
        if self.relay is not None:
            sent = self._relayed(RELAY_CHANNELS, NAMES_SEP.join(names), event)
        return self.send_local_channels(names, sent)

    def send_local_channels(self, names: Iterable[str], event: ServerEvent | str) -> int:
        """Once to each of this node's connections subscribed to any of ``names``."""
        conns: dict[str, S] = {}
        for name in names:
            for conn in self.channels.get(name, ()):
                conns[conn.id] = conn
        return self.send_many(conns.values(), event)

    def send_many(
        self,
        conns: Iterable[S],
        event: ServerEvent | str,
        *,
        exclude: S | None = None,
        droppable: bool = False,
    ) -> int:
        """Send ``event`` (or its encoded text, when a caller encoded it already) to each."""
        started = time.perf_counter()
        text = event if isinstance(event, str) else None  # encoded once, for the first one
        sent = 0
        for conn in tuple(conns):
            if conn is exclude:
                continue
            if text is None:
                assert not isinstance(event, str)
                text = encode(event)
            if conn.enqueue(text, droppable=droppable):
                sent += 1
        if sent:
            self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        return sent

    def send_to_user(self, user_id: str, event: ServerEvent) -> int:
        """To every connection of the user (of every node, in cluster mode)."""
        sent: ServerEvent | str = event
        if self.relay is not None:
            sent = self._relayed(RELAY_USER, user_id, event)
        return self.send_many(self.by_user.get(user_id, ()), sent)

    def broadcast_all(self, event: ServerEvent, *, relay: bool = True) -> int:
        """To every open JSON connection (of every node, in cluster mode, unless ``relay``
        is false: a maintenance notice is for the node being drained only)."""
        sent: ServerEvent | str = event
        if relay and self.relay is not None:
            sent = self._relayed(RELAY_ALL, "", event)
        return self.send_local_all(sent)

    def send_local_all(self, event: ServerEvent | str) -> int:
        """To every open JSON connection of this node."""
        return self.send_many((c for c in self.connections.values() if c.session.is_open), event)

    # -- limits -----------------------------------------------------------------------

    def check(self, limiter: KeyedLimiter, key: str, what: str) -> RateLimited | None:
        now_s = self.clock.now_ms() / 1000
        decision = limiter.take(key, now_s)
        if not decision.allowed:
            return rate_limited(what, decision, now_s)
        if self.on_spend is not None:
            self.on_spend(limiter, key)
        return None

    # -- shutdown -----------------------------------------------------------------------

    def peers(self) -> list[Peer]:
        """The live connections of the other endpoints (:attr:`peer_sources`)."""
        return [peer for source in self.peer_sources for peer in source()]

    async def drain(
        self, reason: str, *, code: int, grace_s: float, reconnect_after_s: float
    ) -> None:
        """Tell every client, let queues drain, close them all (graceful shutdown).

        JSON clients get ``connection_close`` first; other peers (Yjs) only the
        close frame after their queued frames.
        """
        self.accepting = False
        conns = list(self.connections.values())
        peers = self.peers()
        logger.info(
            "draining %d connection(s) and %d other peer(s): %s", len(conns), len(peers), reason
        )
        for conn in conns:
            conn.announce_close(reason, code, grace_s=grace_s, reconnect_after_s=reconnect_after_s)
        for peer in peers:
            peer.close(code, reason)
        waits: list[Any] = [conn.closed.wait() for conn in conns]
        waits += [peer.closed.wait() for peer in peers]
        if waits:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=grace_s + 2
            )
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("%d connection(s) did not close in time; aborting", len(pending))
                for conn in list(self.connections.values()):
                    conn.abort()
                for peer in self.peers():
                    peer.abort()
