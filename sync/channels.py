"""Channel names, principals and the authorization decisions on channels.

``websocket-api.md`` "Channel Subscription". A channel is ``namespace:key``
(or the bare ``global``). Namespaces: ``chat:{sessionId}``,
``agent:{userId}``, ``trip:{tripId}``, ``user:{userId}``, ``global``.
``user_specific`` (the channel the spec's ``WebSocketManager`` subscribes
to) is an alias: :meth:`Channel.resolve` reads it as ``user:{you}``.

Deciding needs facts the core cannot look up (who owns a chat session, who
collaborates on a trip); the I/O shell gathers them into :class:`Facts` and
asks :func:`authorize_read`. Identity is always the verified
:class:`Principal`, never an id the client sent. Unknown namespaces raise
:class:`~sync.errors.ChannelNotFound`; refusals raise
:class:`~sync.errors.PermissionDenied`. A trip or chat session that does not
exist is refused like one the user may not read, so ids do not leak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from tripsage_sync.sync.errors import ChannelNotFound, InvalidMessage, PermissionDenied

__all__ = [
    "CHANNEL_ALIASES",
    "NAMESPACES",
    "Channel",
    "Facts",
    "Principal",
    "Role",
    "authorize_read",
]

Role = Literal["user", "agent", "admin"]
Namespace = Literal["chat", "agent", "trip", "user", "global"]
NAMESPACES: Final[frozenset[str]] = frozenset({"chat", "agent", "trip", "user", "global"})
_KEY: Final = re.compile(r"^[A-Za-z0-9_.@+=-]{1,128}$")
# Names that stand for a channel of the principal's own: alias -> namespace.
CHANNEL_ALIASES: Final[dict[str, Namespace]] = {"user_specific": "user"}


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified identity behind a connection (from the JWT)."""

    user_id: str
    name: str | None = None
    avatar_url: str | None = None
    role: Role = "user"

    @property
    def is_privileged(self) -> bool:
        """Agents and admins serve every user's sessions."""
        return self.role in ("agent", "admin")


@dataclass(frozen=True, slots=True)
class Channel:
    namespace: Namespace
    key: str = ""

    @property
    def name(self) -> str:
        return "global" if self.namespace == "global" else f"{self.namespace}:{self.key}"

    @classmethod
    def parse(cls, name: str) -> Channel:
        if name == "global":
            return cls("global")
        namespace, sep, key = name.partition(":")
        if not sep or namespace not in NAMESPACES or namespace == "global":
            raise ChannelNotFound(
                f"Channel '{name[:64]}' does not exist",
                details={"channel": name[:128], "namespaces": sorted(NAMESPACES)},
            )
        if not _KEY.match(key):
            raise InvalidMessage(
                "Invalid channel name",
                details={"field": "channels", "expected": "namespace:id", "received": name[:128]},
            )
        return cls(namespace, key)  # type: ignore[arg-type]

    @classmethod
    def resolve(cls, name: str, principal: Principal) -> Channel:
        """:meth:`parse`, with the aliases (``user_specific``) read for ``principal``."""
        namespace = CHANNEL_ALIASES.get(name)
        if namespace is not None:
            return cls(namespace, principal.user_id)
        return cls.parse(name)

    @staticmethod
    def resolve_name(name: str, principal: Principal) -> str:
        """The channel name ``name`` stands for (aliases resolved, nothing checked)."""
        namespace = CHANNEL_ALIASES.get(name)
        return f"{namespace}:{principal.user_id}" if namespace is not None else name


@dataclass(frozen=True, slots=True)
class Facts:
    """What the shell knows about the resource behind a channel.

    ``chat_members``: owner and users a chat session is shared with, ``None``
    when the session does not exist. ``trip_permission``: the principal's
    permission on the trip, ``None`` when none (or no such trip).
    """

    chat_members: frozenset[str] | None = None
    trip_permission: str | None = None


def authorize_read(principal: Principal, channel: Channel, facts: Facts) -> None:
    """Raise :class:`PermissionDenied` unless ``principal`` may read ``channel``."""
    match channel.namespace:
        case "global":
            return
        case "user" | "agent":
            if channel.key == principal.user_id or principal.is_privileged:
                return
        case "chat":
            if principal.is_privileged and facts.chat_members is not None:
                return
            if facts.chat_members is not None and principal.user_id in facts.chat_members:
                return
        case "trip":
            if principal.role == "admin" or facts.trip_permission is not None:
                return
    raise PermissionDenied(
        f"Not allowed to read channel '{channel.name}'", details={"channel": channel.name}
    )
