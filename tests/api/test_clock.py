"""The one clock: ``create_app(settings, clock=...)`` hands it down (no sockets here).

A fake clock stands still unless a test moves it, so what the app reads from it
(token stamps, uptime, rate-limit windows) is exact.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import jwt

from tripsage_sync.api.app import create_app
from tripsage_sync.api.clock import SYSTEM_CLOCK, Clock
from tripsage_sync.api.settings import Settings
from tripsage_sync.api.transport.hub import Hub
from tripsage_sync.sync.errors import RateLimited

START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, long past: no real clock reads it


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.ms = now_ms
        self.mono_s = 1000.0

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.mono_s

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)
        self.mono_s += seconds


def test_the_system_clock_is_a_clock() -> None:
    clock: Clock = SYSTEM_CLOCK
    assert clock.now_ms() > START_MS
    assert clock.monotonic() <= clock.monotonic()


def test_hub_rate_limit_windows_follow_the_given_clock() -> None:
    clock = FakeClock()
    hub: Hub[Any] = Hub(Settings(rate_limit_auth_per_min=2), clock=clock)
    assert hub.check(hub.auth_limiter, "10.0.0.1", "auth") is None
    assert hub.check(hub.auth_limiter, "10.0.0.1", "auth") is None
    refused = hub.check(hub.auth_limiter, "10.0.0.1", "auth")
    assert isinstance(refused, RateLimited)
    # The window is reckoned from the fake time, not the machine's.
    assert refused.limits is not None
    assert refused.limits["reset"].startswith("2023-11-14T22:1")
    clock.advance(61)
    assert hub.check(hub.auth_limiter, "10.0.0.1", "auth") is None


def test_app_factory_hands_its_clock_to_the_features(tmp_path: Path) -> None:
    """In process: the app's own lifespan, requests through httpx's ASGI transport."""
    clock = FakeClock()
    settings = Settings(db=str(tmp_path / "t.db"), dev_mode=True)
    app = create_app(settings, clock=clock)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                minted = await client.post("/api/dev/token", json={"userId": "ana"})
                assert minted.status_code == 200, minted.text
                token = minted.json()["token"]
                claims = jwt.decode(token, options={"verify_signature": False})
                assert claims["iat"] == START_MS // 1000
                clock.advance(5)
                health = (await client.get("/health")).json()
                assert health["uptime"] == 5.0

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
