"""Browser fixtures: Debian's Chromium driven by Playwright against the real server.

``browser`` launches ``/usr/bin/chromium`` headless once per session (never a
downloaded browser). Without it the browser tests skip with a reason, except
under ``CI=true``, where a missing browser is a failure: ``.ci/run`` installs
it. ``Web`` opens one browser context per user (its own ``localStorage``, so
its own token and offline queue) signed in through the page's token form.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import ServerProcess

CHROMIUM: Final = Path("/usr/bin/chromium")
LAUNCH_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS: Final = 15_000

TRIP_FIELDS: Final[dict[str, Any]] = {
    "name": "Europe",
    "destination": "Paris, France",
    "startDate": "2025-06-01",
    "endDate": "2025-06-10",
    "budget": 1000,
    "notes": "Museums",
    "itinerary": ["Day 1: Louvre"],
}


def require_chromium() -> None:
    """Skip without Chromium, but fail in CI, which must have installed it."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing (.ci/run installs Debian's chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    require_chromium()
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


def bearer(server: ServerProcess, user: str, name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, name=name)}"}


def create_trip(
    server: ServerProcess,
    owner: str,
    trip_id: str,
    *,
    fields: dict[str, Any] | None = None,
    share: dict[str, str] | None = None,
) -> None:
    """Create a trip over HTTP and share it (``{userId: permissionLevel}``)."""
    body = {"tripId": trip_id, "fields": dict(TRIP_FIELDS if fields is None else fields)}
    with httpx.Client(base_url=server.http, headers=bearer(server, owner)) as http:
        http.post("/api/trips", json=body).raise_for_status()
        for user, level in (share or {}).items():
            url = f"/api/trips/{trip_id}/collaborators/{user}"
            http.put(url, json={"permissionLevel": level}).raise_for_status()


def trip_fields(server: ServerProcess, trip_id: str, user: str) -> dict[str, Any]:
    """The server's current values of a trip, over HTTP."""
    response = httpx.get(f"{server.http}/api/trips/{trip_id}", headers=bearer(server, user))
    response.raise_for_status()
    fields: dict[str, Any] = response.json()["fields"]
    return fields


@dataclass
class Web:
    """Signed-in pages of one server, one browser context per user."""

    server: ServerProcess
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    signed_in: set[int] = field(default_factory=set)  # id() of contexts with a token
    page_errors: list[str] = field(default_factory=list)

    def context(self) -> BrowserContext:
        context = self.browser.new_context(base_url=self.server.http)
        self.contexts.append(context)
        return context

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        return page

    def sign_in(self, page: Page, user: str, name: str | None = None) -> None:
        """Sign in through the token form (the token lands in localStorage)."""
        page.goto("/app")
        page.get_by_test_id("token-input").fill(self.server.token(user, name=name))
        page.get_by_test_id("token-submit").click()
        expect(page.get_by_test_id("signed-in-as")).to_have_text(name or user.title())

    def open_trip(
        self,
        user: str,
        trip_id: str,
        *,
        name: str | None = None,
        context: BrowserContext | None = None,
    ) -> Page:
        """A page of ``/trips/{trip_id}`` signed in as ``user``, joined and synced."""
        context = context or self.context()
        page = self.watch(context.new_page())
        if id(context) not in self.signed_in:
            self.sign_in(page, user, name)
            self.signed_in.add(id(context))
        page.goto(f"/trips/{trip_id}")
        expect(page.get_by_test_id("trip-editor")).to_be_visible()
        expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def web_factory(
    browser: Browser, server_factory: Callable[..., ServerProcess]
) -> Iterator[Callable[..., Web]]:
    made: list[Web] = []

    def make(**settings: Any) -> Web:
        web = Web(server_factory(**settings), browser)
        made.append(web)
        return web

    yield make
    for web in made:
        web.close()
    errors = [e for web in made for e in web.page_errors]
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def web(web_factory: Callable[..., Web]) -> Web:
    return web_factory()
