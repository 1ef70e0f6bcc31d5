"""A part of the trip feature: message handlers composed on :class:`TripFeature`.

Field locks, optimistic updates and conflict resolution each handle a few client
message types on the trip feature's rooms (the router, :mod:`api.router`, hands
them their messages); they own no routes, rooms or timers of their own, so
starting and stopping one does nothing.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from tripsage_sync.api.transport.services import Services
from tripsage_sync.api.trips.feature import TripFeature

__all__ = ["TripPart"]


class TripPart:
    """A feature composed on :class:`TripFeature`, whose rooms it works on."""

    def __init__(self, trips: TripFeature) -> None:
        self.trips = trips
        self.clock = trips.clock

    def routes(self) -> list[BaseRoute]:
        return []

    async def start(self, services: Services) -> None:
        """Nothing to start: the router hands the part its messages."""

    async def stop(self) -> None:
        """Nothing to stop: the trip feature holds the rooms and timers."""
