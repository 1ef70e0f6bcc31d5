"""Cluster mode: the hub's events that reach every node (channels, users, everyone).

Theory of operation
-------------------
A node that sends an event to a channel, a user or every connection also tells
the other nodes, once, on the bus topic :data:`HUB_TOPIC` (every node hears
every one: docs/cluster.md). A node that hears one delivers the same text to
its own connections of that channel, user or everyone; it never tells again,
so an event crosses the bus once. Trip rooms relay their events themselves, in
order with their changes (api/trips/replica.py).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson

from tripsage_sync.api.transport.bus import Bus
from tripsage_sync.api.transport.hub import (
    NAMES_SEP,
    RELAY_ALL,
    RELAY_CHANNEL,
    RELAY_CHANNELS,
    RELAY_USER,
    Hub,
)

__all__ = ["HUB_TOPIC", "deliver_relayed", "relay_through"]

logger = logging.getLogger(__name__)

#: The bus topic of relayed events.
HUB_TOPIC: Final = "hub"


def relay_through(hub: Hub[Any], bus: Bus) -> None:
    """Tell the other nodes through ``bus`` what ``hub`` sends, and deliver what they tell."""

    def tell(kind: str, name: str, text: str) -> None:
        bus.publish(HUB_TOPIC, orjson.dumps((kind, name, text)))

    def heard(data: bytes) -> None:
        kind, name, text = orjson.loads(data)
        deliver_relayed(hub, kind, name, text)

    hub.relay = tell
    bus.subscribe(HUB_TOPIC, heard)


def deliver_relayed(hub: Hub[Any], kind: str, name: str, text: str) -> int:
    """An event another node sent to a channel, a user or everyone: to ours."""
    if kind == RELAY_CHANNEL:
        return hub.send_many(hub.channels.get(name, ()), text)
    if kind == RELAY_CHANNELS:
        return hub.send_local_channels(name.split(NAMES_SEP), text)
    if kind == RELAY_USER:
        return hub.send_many(hub.by_user.get(name, ()), text)
    if kind == RELAY_ALL:
        return hub.send_local_all(text)
    logger.warning("a relayed event of unknown kind %r; dropped", kind)
    return 0
