"""Chat and agent streaming (filled in by the chat feature)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from api.services import Services
from api.settings import Settings

__all__ = ["ChatFeature"]


class ChatFeature:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def routes(self) -> list[BaseRoute]:
        return []

    async def start(self, services: Services) -> None:
        self.services = services

    async def stop(self) -> None:
        pass
