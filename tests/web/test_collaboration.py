"""The trip planner page in Chromium: the spec's Playwright scenarios and more.

``websocket-api.md`` "Integration Testing with Playwright": an edit in one
page appears in another with the collaborator shown; an offline edit is
queued, shown as pending, and synced after reconnecting. Beyond the spec: a
reload while offline keeps the queued edit, concurrent notes merge, a manual
conflict is resolved from the dialog in both pages, and a viewer cannot edit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.web.conftest import Web, create_trip, trip_fields


def blur(page: Page) -> None:
    page.keyboard.press("Tab")  # the spec's "Trigger blur event"


def test_real_time_trip_updates(web: Web) -> None:
    # The spec's first scenario, as written: two pages of one browser context.
    create_trip(web.server, "user-1", "123")
    context = web.context()
    page = web.open_trip("user-1", "123", name="User 1", context=context)
    page2 = web.open_trip("user-1", "123", context=context)

    page.fill('[data-testid="trip-name-input"]', "Paris Adventure")
    blur(page)

    expect(page2.locator('[data-testid="trip-name-input"]')).to_have_value("Paris Adventure")
    expect(page2.locator('[data-testid="active-collaborators"]')).to_contain_text("User 1")
    expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
    assert trip_fields(web.server, "123", "user-1")["name"] == "Paris Adventure"


def test_two_collaborators_see_each_other_edit(web: Web) -> None:
    create_trip(web.server, "alice", "t-presence", share={"bob": "editor"})
    alice = web.open_trip("alice", "t-presence", name="Alice")
    bob = web.open_trip("bob", "t-presence", name="Bob")

    expect(alice.get_by_test_id("active-collaborators")).to_contain_text("Bob")
    expect(bob.get_by_test_id("active-collaborators")).to_contain_text("Alice")
    expect(bob.get_by_test_id("collaborator-alice")).to_be_visible()

    # Who is editing: focus sends trip_field_editing_start, blur the stop.
    alice.get_by_test_id("trip-destination").focus()
    expect(bob.get_by_test_id("editing-destination")).to_have_text("Alice is editing")
    alice.get_by_test_id("trip-destination").fill("Rome, Italy")
    blur(alice)
    expect(bob.get_by_test_id("trip-destination")).to_have_value("Rome, Italy")
    expect(bob.get_by_test_id("editing-destination")).to_have_text("")

    # A list field: an item added in one page shows in the other.
    alice.get_by_test_id("itinerary-new").fill("Day 2: Colosseum")
    alice.get_by_test_id("itinerary-add").click()
    expect(bob.get_by_test_id("itinerary")).to_contain_text("Day 2: Colosseum")
    expect(bob.get_by_test_id("itinerary")).to_contain_text("Day 1: Louvre")


def test_connection_interruption(web: Web) -> None:
    # The spec's second scenario (page.setOfflineMode is context.set_offline here).
    create_trip(web.server, "alice", "123")
    page = web.open_trip("alice", "123")

    page.context.set_offline(True)
    expect(page.get_by_test_id("sync-status")).to_have_text("Offline")
    page.fill('[data-testid="trip-destination"]', "Rome, Italy")

    expect(page.locator('[data-testid="trip-destination"]')).to_have_value("Rome, Italy")
    expect(page.locator('[data-testid="pending-changes"]')).to_be_visible()

    page.context.set_offline(False)

    expect(page.locator('[data-testid="pending-changes"]')).not_to_be_visible()
    expect(page.locator('[data-testid="sync-status"]')).to_contain_text("Synced")
    assert trip_fields(web.server, "123", "alice")["destination"] == "Rome, Italy"


def test_reload_while_offline_keeps_the_queued_edit(web: Web) -> None:
    create_trip(web.server, "alice", "t-reload", share={"bob": "editor"})
    page = web.open_trip("alice", "t-reload")
    bob = web.open_trip("bob", "t-reload")
    # The service worker controls the page: it can open without the network.
    expect(page.locator("body")).to_have_attribute("data-offline-ready", "true")

    page.context.set_offline(True)
    expect(page.get_by_test_id("sync-status")).to_have_text("Offline")
    page.get_by_test_id("trip-destination").fill("Lisbon, Portugal")
    blur(page)
    expect(page.get_by_test_id("pending-changes")).to_have_text("1 pending change")

    page.reload()

    expect(page.get_by_test_id("trip-editor")).to_be_visible()
    expect(page.get_by_test_id("trip-destination")).to_have_value("Lisbon, Portugal")
    expect(page.get_by_test_id("pending-changes")).to_have_text("1 pending change")
    expect(page.get_by_test_id("sync-status")).to_have_text("Offline")
    expect(bob.get_by_test_id("trip-destination")).to_have_value("Paris, France")

    page.context.set_offline(False)

    expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
    expect(page.get_by_test_id("pending-changes")).to_be_hidden()
    expect(bob.get_by_test_id("trip-destination")).to_have_value("Lisbon, Portugal")
    assert trip_fields(web.server, "t-reload", "alice")["destination"] == "Lisbon, Portugal"


def test_offline_notes_merge_with_concurrent_notes(web: Web) -> None:
    create_trip(web.server, "alice", "t-notes", share={"bob": "editor"})
    alice = web.open_trip("alice", "t-notes")
    bob = web.open_trip("bob", "t-notes")

    alice.context.set_offline(True)
    expect(alice.get_by_test_id("sync-status")).to_have_text("Offline")
    alice.get_by_test_id("trip-notes").fill("Museums\nCafes")
    blur(alice)
    bob.get_by_test_id("trip-notes").fill("Louvre first\nMuseums")
    blur(bob)
    expect(bob.get_by_test_id("sync-status")).to_have_text("Synced")

    alice.context.set_offline(False)

    merged = "Louvre first\nMuseums\nCafes"  # previousValue -> optimisticValue, merged
    expect(alice.get_by_test_id("trip-notes")).to_have_value(merged)
    expect(bob.get_by_test_id("trip-notes")).to_have_value(merged)
    expect(alice.get_by_test_id("sync-status")).to_have_text("Synced")


def test_manual_conflict_is_resolved_from_the_dialog_in_both_pages(web: Web) -> None:
    create_trip(web.server, "alice", "t-budget", share={"bob": "editor"})
    alice = web.open_trip("alice", "t-budget", name="Alice")
    bob = web.open_trip("bob", "t-budget", name="Bob")

    # Bob edits the budget offline; Alice changes it meanwhile.
    bob.context.set_offline(True)
    expect(bob.get_by_test_id("sync-status")).to_have_text("Offline")
    bob.get_by_test_id("trip-budget").fill("1500")
    blur(bob)
    alice.get_by_test_id("trip-budget").fill("2000")
    blur(alice)
    expect(alice.get_by_test_id("sync-status")).to_have_text("Synced")

    bob.context.set_offline(False)  # his queued update is concurrent: manual resolution

    for page in (alice, bob):
        dialog = page.get_by_test_id("conflict-dialog")
        expect(dialog).to_be_visible()
        expect(page.get_by_test_id("conflict-field")).to_have_text("Budget")
        expect(page.get_by_test_id("conflict-countdown")).to_have_text(re.compile(r"^\d+s$"))
        expect(page.get_by_test_id("conflict-options")).to_contain_text("1500")
        expect(page.get_by_test_id("conflict-options")).to_contain_text("2000")
        expect(page.get_by_test_id("sync-status")).to_have_text("Conflict")  # never "Synced"

    options = alice.get_by_test_id("conflict-options").get_by_role("button")
    options.filter(has_text=re.compile(r"^1500")).click()

    for page in (alice, bob):
        expect(page.get_by_test_id("conflict-dialog")).to_be_hidden()
        expect(page.get_by_test_id("trip-budget")).to_have_value("1500")
        expect(page.get_by_test_id("notice")).to_contain_text("Budget resolved by alice")
    for page in (alice, bob):
        expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
    assert trip_fields(web.server, "t-budget", "alice")["budget"] == 1500


def test_a_viewer_cannot_edit(web: Web) -> None:
    create_trip(web.server, "alice", "t-view", share={"carol": "viewer"})
    carol = web.open_trip("carol", "t-view", name="Carol")
    name = carol.get_by_test_id("trip-name-input")

    expect(carol.get_by_test_id("permission-level")).to_have_text("You are viewer")
    expect(name).to_be_disabled()
    expect(carol.get_by_test_id("trip-notes")).to_be_disabled()
    expect(carol.get_by_test_id("itinerary-add")).to_be_disabled()

    # Around the disabled input: the server refuses and the page rolls back.
    name.evaluate("input => { input.disabled = false; }")
    name.fill("Carol's trip")
    blur(carol)
    expect(carol.get_by_test_id("notice")).to_have_text(
        "Your change to Trip name could not be saved: viewers cannot edit this trip."
    )
    expect(name).to_have_value("Europe")
    expect(carol.get_by_test_id("pending-changes")).to_be_hidden()
    expect(carol.get_by_test_id("sync-status")).to_have_text("Not saved")
    assert trip_fields(web.server, "t-view", "alice")["name"] == "Europe"


def test_server_restart_reconnects_with_backoff_and_resends(
    web_factory: Callable[..., Web],
) -> None:
    web = web_factory(reconnect_after_s=0.2)  # connection_close tells clients when to return
    create_trip(web.server, "alice", "t-restart")
    page = web.open_trip("alice", "t-restart")

    web.server.stop()  # connection_close, close 1001: the page retries with backoff
    expect(page.get_by_test_id("sync-status")).to_have_text("Offline")
    page.get_by_test_id("trip-name-input").fill("Europe by train")
    blur(page)
    expect(page.get_by_test_id("pending-changes")).to_have_text("1 pending change")

    web.server.start()  # same port and database

    expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
    expect(page.get_by_test_id("pending-changes")).to_be_hidden()
    assert trip_fields(web.server, "t-restart", "alice")["name"] == "Europe by train"
