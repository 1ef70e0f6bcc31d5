"""The bus between the nodes of a cluster: topics, fire-and-forget, ordered per sender.

Theory of operation
-------------------
A node publishes bytes on a topic (``trip:{id}``, ``chat:{id}``, ``all``...) and
every *other* node subscribed to that topic gets them, in the order this node
published them. Nothing here is durable: what must survive is already committed
to the shared store before it is published (``docs/cluster.md``), and a node
that may have missed messages (its link to Redis was cut) is told so through
:meth:`Bus.on_resync`, so that it reads what it missed from the store.

- :class:`LocalBus` is the bus of a single node: there is nobody to tell.
- :class:`RedisBus` runs on Redis pub/sub (``redis`` package, asyncio), its
  channels named after the cluster (the id its database holds: pub/sub ignores
  Redis's numbered databases, and two clusters may share one Redis). One
  connection publishes, in order, from a queue a task drains (each message
  names its sender, so a node skips its own); one connection subscribes, and
  its reader task hands each message to the topic's handler on the event
  loop. A lost connection is retried with backoff; once back, every topic is
  subscribed again and the resync callbacks run. Meanwhile :attr:`healthy` is
  false, so that edits are refused (``optimistic_update_rollback``,
  ``canRetry``) instead of being confirmed where other nodes cannot hear them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

__all__ = ["Bus", "BusUnavailable", "Handler", "LocalBus", "RedisBus"]

logger = logging.getLogger(__name__)

#: What a topic's subscriber is called with: the bytes another node published.
Handler = Callable[[bytes], None]

_SEP: Final = b"\n"
_PREFIX: Final = "tripsage:"  # then the cluster's id: clusters may share a Redis
_RETRY_S: Final = (0.05, 0.2, 0.5, 1.0, 2.0)


class BusUnavailable(ConnectionError):
    """The bus cannot reach the other nodes now: a change is not confirmed meanwhile."""


class Bus(Protocol):
    node: str
    #: Messages and bytes published, and heard from other nodes (``/metrics``).
    counts: dict[str, int]

    @property
    def healthy(self) -> bool:
        """Whether messages published now reach the other nodes."""
        ...

    def publish(self, topic: str, payload: bytes) -> None: ...

    def subscribe(
        self, topic: str, handler: Handler, *, ready: Callable[[], None] | None = None
    ) -> None:
        """Hear ``topic``; ``ready`` is called once messages published from then on
        are heard (the subscription is confirmed)."""

    def unsubscribe(self, topic: str) -> None: ...

    def on_resync(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever messages may have been missed (a link came back)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalBus:
    """One node: nothing to publish to, nothing to hear."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.counts = _counts()

    @property
    def healthy(self) -> bool:
        return True

    def publish(self, topic: str, payload: bytes) -> None:
        pass

    def subscribe(
        self, topic: str, handler: Handler, *, ready: Callable[[], None] | None = None
    ) -> None:
        if ready is not None:
            ready()

    def unsubscribe(self, topic: str) -> None:
        pass

    def on_resync(self, callback: Callable[[], None]) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class RedisBus:
    """The cluster's bus on Redis pub/sub; see the module docstring."""

    def __init__(self, url: str, node: str, cluster: str) -> None:
        self.node = node
        self.counts = _counts()
        self._url = url
        self._prefix = f"{_PREFIX}{cluster}:"  # Redis pub/sub is one namespace per server
        self._me = node.encode()
        self._handlers: dict[str, Handler] = {}
        self._ready: dict[str, list[Callable[[], None]]] = {}  # until Redis confirms
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._resync: list[Callable[[], None]] = []
        self._pubsub: Any = None
        self._subscribed = False
        self._publishing = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def healthy(self) -> bool:
        return self._subscribed and self._publishing

    def publish(self, topic: str, payload: bytes) -> None:
        self.counts["published"] += 1
        self.counts["published_bytes"] += len(payload)
        self._outbox.put_nowait((self._prefix + topic, self._me + _SEP + payload))

    def subscribe(
        self, topic: str, handler: Handler, *, ready: Callable[[], None] | None = None
    ) -> None:
        self._handlers[self._prefix + topic] = handler
        if ready is not None:
            self._ready.setdefault(self._prefix + topic, []).append(ready)
        self._command("subscribe", self._prefix + topic)

    def unsubscribe(self, topic: str) -> None:
        self._ready.pop(self._prefix + topic, None)
        if self._handlers.pop(self._prefix + topic, None) is not None:
            self._command("unsubscribe", self._prefix + topic)

    def on_resync(self, callback: Callable[[], None]) -> None:
        self._resync.append(callback)

    def _command(self, verb: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is not None and self._subscribed:
            task = asyncio.get_running_loop().create_task(self._send(pubsub, verb, channel))
            task.add_done_callback(_quiet)

    async def _send(self, pubsub: Any, verb: str, channel: str) -> None:
        try:
            await getattr(pubsub, verb)(channel)
        except (RedisError, OSError) as exc:  # the reader sees the broken link too
            logger.warning("bus: %s %s failed: %s", verb, channel, exc)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name="bus-reader"),
            loop.create_task(self._write(), name="bus-writer"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the two connections -------------------------------------------------------

    async def _write(self) -> None:
        attempt = 0
        batch: list[tuple[str, bytes]] = []  # kept across a lost link: sent once it is back
        while True:
            client = redis.Redis.from_url(self._url)
            try:
                await client.ping()
                self._publishing = True
                attempt = 0
                while True:
                    if not batch:
                        batch.append(await self._outbox.get())
                    while not self._outbox.empty() and len(batch) < 256:
                        batch.append(self._outbox.get_nowait())
                    async with client.pipeline(transaction=False) as pipe:
                        for name, data in batch:
                            pipe.publish(name, data)
                        await pipe.execute()
                    batch = []
            except (RedisError, OSError) as exc:
                self._publishing = False
                logger.warning("bus: publishing failed (%s); connecting again", exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
            attempt += 1

    async def _read(self) -> None:
        attempt = 0
        while True:
            client = redis.Redis.from_url(self._url)
            pubsub = client.pubsub()  # subscribe confirmations call ``ready``
            try:
                await pubsub.subscribe(self._prefix + "~")  # the link is up before any topic
                for channel in tuple(self._handlers):
                    await pubsub.subscribe(channel)
                self._pubsub = pubsub
                was_down = attempt > 0
                self._subscribed = True
                attempt = 0
                if was_down:
                    logger.warning("bus: connected to Redis again; catching up")
                    self._run_resync()
                async for message in pubsub.listen():
                    self._deliver(message)
            except (RedisError, OSError) as exc:
                logger.warning("bus: subscription lost (%s); connecting again", exc)
            finally:
                self._subscribed = False
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                    await client.aclose()
            await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
            attempt += 1

    def _deliver(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message["channel"]
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind == "subscribe":
            self._confirmed(name)
            return
        if kind != "message":
            return
        data: bytes = message["data"]
        sender, _, payload = data.partition(_SEP)
        if sender == self._me:
            return
        handler = self._handlers.get(name)
        if handler is None:
            return
        self.counts["received"] += 1
        self.counts["received_bytes"] += len(payload)
        try:
            handler(payload)
        except Exception:
            logger.exception("bus: the handler of %s failed", name)

    def _confirmed(self, channel: str) -> None:
        _call_each(self._ready.pop(channel, ()), f"the ready callback of {channel}")

    def _run_resync(self) -> None:
        _call_each(self._resync, "a resync callback")


def _counts() -> dict[str, int]:
    return {"published": 0, "published_bytes": 0, "received": 0, "received_bytes": 0}


def _call_each(callbacks: Iterable[Callable[[], None]], what: str) -> None:
    """Call every callback; one that fails is logged and does not stop the others."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logger.exception("bus: %s failed", what)


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
