"""Extension points: Python hooks the server calls, and their delivery.

Theory of operation
-------------------
An application plugs into the server with a :class:`Hooks` subclass (every
method optional, each a coroutine or a plain function), named by the
``TRIPSAGE_HOOKS`` setting (``package.module:attribute``, a class or an
instance) or passed to ``create_app(settings, hooks=[...])``:

- ``on_authenticate(AuthContext)``: after the JWT verified, before the client
  is told it is in (JSON endpoints and Yjs peers). Raise :class:`HookRefused`
  to refuse it: the client gets the documented ``AUTH_FAILED`` answer with the
  hook's message. It is awaited (at most ``AUTHENTICATE_TIMEOUT_S``); a hook
  that fails or times out refuses too (fail closed), and the log says so.
- ``on_connect(ConnectionContext)`` / ``on_disconnect(ConnectionContext)``: an
  authenticated connection opened or closed.
- ``on_store(TripStored)``: a trip change is durable (its update committed).
- ``on_change(TripChange)``: a trip change committed on this node was
  broadcast. Both fire on the node that committed it only, once per version.

All but ``on_authenticate`` are notifications: :class:`HookRunner` queues them
and one task per hook object delivers them in order, so a slow or failing hook
never delays an edit or a connection. A queue holds at most ``queue_size``
events; beyond it the oldest is dropped and counted in the log. The outgoing
webhook (:mod:`api.transport.webhook`) is one more hook object.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tripsage_sync.sync.errors import AuthError, SyncError

__all__ = [
    "AUTHENTICATE_TIMEOUT_S",
    "AuthContext",
    "ConnectionContext",
    "HookRefused",
    "HookRunner",
    "Hooks",
    "TripChange",
    "TripStored",
    "load_hooks",
]

logger = logging.getLogger(__name__)

#: How long ``on_authenticate`` may take before the connection is refused.
AUTHENTICATE_TIMEOUT_S: Final = 5.0
#: Notifications waiting per hook object before the oldest is dropped.
QUEUE_SIZE: Final = 10_000
#: How long a stopping server lets the queued notifications go out.
DRAIN_S: Final = 2.0


class HookRefused(Exception):
    """Raised by ``on_authenticate``: the connection is refused with this message."""


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who is connecting: the verified JWT's identity, and where."""

    user_id: str
    name: str | None
    role: str
    endpoint: str  # "chat", "agent-status" or "yjs"
    session_id: str  # the URL's session id (a Yjs peer: the trip id)
    client_ip: str


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """An authenticated connection (``on_connect``, ``on_disconnect``)."""

    connection_id: str
    user_id: str
    endpoint: str
    session_id: str
    client_ip: str


@dataclass(frozen=True, slots=True)
class TripStored:
    """A trip change is durable: ``update`` (Yjs v1) is the trip's ``version``."""

    trip_id: str
    version: int
    update: bytes
    updated_by: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class TripChange:
    """A committed trip change, as ``trip_update_broadcast`` tells it: ``changes`` maps
    each field to ``{"oldValue", "newValue"}``; ``origin`` is "json" or "yjs"."""

    trip_id: str
    version: int
    updated_by: str
    changes: dict[str, dict[str, Any]]
    origin: str
    at_ms: int


class Hooks:
    """Override the methods you need (see the module doc); the defaults do nothing."""

    async def on_authenticate(self, context: AuthContext) -> None:
        """Raise :class:`HookRefused` to refuse ``context``'s connection."""

    async def on_connect(self, context: ConnectionContext) -> None:
        """An authenticated connection opened."""

    async def on_disconnect(self, context: ConnectionContext) -> None:
        """An authenticated connection closed."""

    async def on_store(self, stored: TripStored) -> None:
        """A trip change is durable."""

    async def on_change(self, change: TripChange) -> None:
        """A trip change was committed and broadcast."""


def load_hooks(spec: str) -> Hooks:
    """The hooks named ``package.module:attribute`` (a :class:`Hooks` class or object)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"TRIPSAGE_HOOKS must be module:attribute, not {spec!r}")
    target = getattr(importlib.import_module(module_name), attribute)
    hooks = target() if isinstance(target, type) else target
    return hooks  # type: ignore[no-any-return]


async def _call(method: Any, event: object) -> None:
    result = method(event)
    if inspect.isawaitable(result):
        await result


@dataclass(eq=False)
class _Sink:
    """One hook object's notifications, delivered in order by one task."""

    hooks: Hooks
    queue: collections.deque[tuple[str, object]] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # the queue has an event
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # ... and has none left
    dropped: int = 0
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            while not self.queue:
                self.ready.clear()
                self.idle.set()
                await self.ready.wait()
            name, event = self.queue.popleft()
            method = getattr(self.hooks, name, None)
            if method is None:
                continue
            try:
                await _call(method, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hook %s of %s failed", name, type(self.hooks).__name__)


class HookRunner:
    """Calls the hooks: ``authenticate`` awaited, the rest queued (module doc)."""

    def __init__(self, hooks: Sequence[Hooks] = (), *, queue_size: int = QUEUE_SIZE) -> None:
        self._sinks = [_Sink(h) for h in hooks]
        self._authenticators = [h for h in hooks if _overrides(h, "on_authenticate")]
        self._queue_size = queue_size

    def add(self, hooks: Hooks) -> None:
        """One more hook object (before :meth:`start`)."""
        self._sinks.append(_Sink(hooks))
        if _overrides(hooks, "on_authenticate"):
            self._authenticators.append(hooks)

    @property
    def active(self) -> bool:
        return bool(self._sinks)

    def start(self) -> None:
        for sink in self._sinks:
            name = f"hooks-{type(sink.hooks).__name__}"
            sink.task = asyncio.create_task(sink.run(), name=name)

    async def stop(self) -> None:
        """Let what is queued go out (at most :data:`DRAIN_S`), then stop the tasks."""
        drains = [
            asyncio.ensure_future(sink.idle.wait())
            for sink in self._sinks
            if sink.task is not None and sink.queue
        ]
        if drains:
            await asyncio.wait(drains, timeout=DRAIN_S)
            for drain in drains:
                drain.cancel()
        for sink in self._sinks:
            if sink.task is not None:
                sink.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sink.task
                sink.task = None

    async def authenticate(self, context: AuthContext) -> SyncError | None:
        """The refusal of the first hook that refuses ``context``, else ``None``."""
        for hooks in self._authenticators:
            try:
                await asyncio.wait_for(
                    _call(hooks.on_authenticate, context), AUTHENTICATE_TIMEOUT_S
                )
            except HookRefused as refused:
                logger.info("user %s refused by an authentication hook", context.user_id)
                return AuthError(str(refused) or "Refused", code="AUTH_FAILED")
            except TimeoutError:
                logger.error(
                    "authentication hook of %s took over %g s: refused",
                    type(hooks).__name__,
                    AUTHENTICATE_TIMEOUT_S,
                )
                return AuthError("Authentication hook timed out", code="AUTH_FAILED")
            except Exception:  # a broken hook refuses (fail closed)
                logger.exception("authentication hook of %s failed", type(hooks).__name__)
                return AuthError("Authentication hook failed", code="AUTH_FAILED")
        return None

    def notify(self, name: str, event: object) -> None:
        """Queue ``hooks.<name>(event)`` for every hook object; never blocks."""
        for sink in self._sinks:
            if len(sink.queue) >= self._queue_size:
                sink.queue.popleft()
                sink.dropped += 1
                if sink.dropped in (1, 10, 100) or sink.dropped % 1000 == 0:
                    logger.warning(
                        "hooks of %s fall behind: %d notification(s) dropped",
                        type(sink.hooks).__name__,
                        sink.dropped,
                    )
            sink.queue.append((name, event))
            sink.idle.clear()
            sink.ready.set()


def _overrides(hooks: Hooks, name: str) -> bool:
    method = getattr(type(hooks), name, None)
    return method is not None and method is not getattr(Hooks, name, None)
