"""The port a connection is built on: what it needs of the process's services.

Generic over the connection type, so that it names no connection class:
:class:`api.transport.services.Services` (which keeps the features' hooks, typed on
:class:`api.transport.connection.Connection`) is a ``Host[Connection]``, built on the
connection module and not the other way round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from tripsage_sync.api.clock import Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.auth import JwtAuthority
from tripsage_sync.api.transport.hooks import HookRunner
from tripsage_sync.api.transport.hub import Hub, Subscriber
from tripsage_sync.sync.channels import Channel, Principal
from tripsage_sync.sync.session import Ownership
from tripsage_sync.sync.wire import ClientMessage

__all__ = ["Host"]

C = TypeVar("C", bound=Subscriber)


class Host(Protocol[C]):
    """What a connection needs of the process's services (:class:`api.transport.services.Services`).

    A port, so that the services (which keep the features' hooks, typed on
    :class:`Connection`) are built on the connection and not the other way round.
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def hub(self) -> Hub[C]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def authority(self) -> JwtAuthority: ...

    @property
    def dispatch(self) -> Callable[[C, ClientMessage], Awaitable[None]]: ...

    @property
    def on_disconnect(self) -> list[Callable[[C], None]]: ...

    @property
    def hooks(self) -> HookRunner: ...

    def count_outcome(self, type_: str) -> None: ...

    def count_rate_limited(self, what: str) -> None: ...

    def session_ownership(self, session_id: str) -> Ownership:
        """Who owns the chat session (``None`` while unclaimed) and who shares it."""
        ...

    async def claim_session(self, session_id: str, user_id: str) -> Ownership:
        """Claim an unclaimed chat session for ``user_id``; who owns it afterwards."""
        ...

    async def authorize_channel(self, principal: Principal, channel: Channel) -> None: ...

    def implicit_channels(self, conn: C) -> list[str]: ...
