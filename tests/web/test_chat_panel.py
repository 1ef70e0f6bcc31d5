"""The page's demo sign-in, trip creation and chat panel against ``serve --demo-agent``."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from tests.web.conftest import Web, create_trip


def test_dev_sign_in_new_trip_and_a_streamed_reply(web_factory: Callable[..., Web]) -> None:
    web = web_factory(demo_agent=1, secret=None)  # dev mode, no configured secret
    page = web.watch(web.context().new_page())
    page.goto("/")

    page.get_by_test_id("dev-user").fill("dana")
    page.get_by_test_id("dev-name").fill("Dana")
    page.get_by_test_id("dev-token-button").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text("Dana")

    page.get_by_test_id("new-trip-name").fill("Kyoto in spring")
    page.get_by_test_id("new-trip-destination").fill("Kyoto, Japan")
    page.get_by_test_id("new-trip-submit").click()
    expect(page).to_have_url(re.compile(r"/trips/trip-[0-9a-f]+$"))
    expect(page.get_by_test_id("trip-name-input")).to_have_value("Kyoto in spring")
    expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
    expect(page.get_by_test_id("permission-level")).to_have_text("You are owner")

    page.get_by_test_id("chat-input").fill("Flights to Kyoto?")
    page.get_by_test_id("chat-send").click()

    messages = page.get_by_test_id("chat-messages")
    expect(messages.locator("li.user")).to_have_text("Flights to Kyoto?")
    tool = messages.locator("li.tool")
    expect(tool).to_contain_text("search_flights")
    expect(tool).to_have_attribute("data-done", "true")
    reply = messages.locator("li.assistant")
    expect(reply).to_contain_text('You said: "Flights to Kyoto?"')
    expect(reply).to_contain_text("Example Air for $299")
    expect(reply).to_have_attribute("data-complete", "true")
    # Rendered piece by piece from chat_message_chunk events, then completed.
    assert int(reply.get_attribute("data-chunks") or "0") > 1


def test_no_dev_sign_in_without_dev_mode(web: Web) -> None:
    create_trip(web.server, "alice", "t-1")
    page = web.watch(web.context().new_page())
    page.goto("/trips/t-1")

    expect(page.get_by_test_id("token-input")).to_be_visible()
    expect(page.get_by_test_id("dev-sign-in")).to_be_hidden()
    page.get_by_test_id("token-input").fill("not a token")
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("does not look like a JWT")
