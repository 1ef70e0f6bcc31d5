"""Take the README's screenshots of the trip planner page (``docs/*.png``).

Starts ``tripsage-sync serve --demo-agent`` on a free loopback port with a
throwaway database, opens the page as two collaborators in Debian's Chromium
(Playwright, headless; never a downloaded browser) and saves:

- ``docs/editor-two-collaborators.png``: the editor with Alice and Bob
  present, Bob editing a field, and a streamed reply of the demo agent;
- ``docs/conflict-dialog.png``: the manual conflict dialog after Bob's
  offline budget edit met Alice's.

Run from the repository root: ``python docs/screenshots.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import httpx
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tripsage_sync.api.transport.auth import JwtAuthority  # noqa: E402

DOCS: Final = ROOT / "docs"
SECRET: Final = "screenshots-" + "s" * 40
CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: Final = {"width": 1280, "height": 860}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPSAGE_")}
    env |= {"TRIPSAGE_JWT_SECRET": SECRET, "TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN": "1000"}
    env["TRIPSAGE_RATE_LIMIT_CONNECTIONS_PER_MIN"] = "1000"
    command = [sys.executable, "-m", "tripsage_sync.api.cli", "serve", "--demo-agent"]
    command += ["--port", str(port), "--db", str(db)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)  # polling a process start
    process.kill()
    raise RuntimeError("the server did not start")


def token(user: str, name: str) -> str:
    return JwtAuthority(SECRET).mint(user, now_s=time.time(), ttl_s=3600, name=name)


def open_trip(browser: Browser, base: str, user: str, name: str, trip_id: str) -> Page:
    page = browser.new_context(base_url=base, viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
    page.goto("/app")
    page.get_by_test_id("token-input").fill(token(user, name))
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("signed-in-as")).to_have_text(name)
    page.goto(f"/trips/{trip_id}")
    expect(page.get_by_test_id("sync-status")).to_have_text("Synced")
    return page


def main() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "shots.db", port)
        try:
            headers = {"Authorization": f"Bearer {token('alice', 'Alice')}"}
            fields = {
                "name": "Lisbon & Porto",
                "destination": "Lisbon, Portugal",
                "startDate": "2025-06-01",
                "endDate": "2025-06-09",
                "budget": 2400,
                "notes": "Pastel de nata tour on day 2.\nBook the Sintra train early.",
                "itinerary": ["Day 1: Alfama walk", "Day 3: Sintra", "Day 5: train to Porto"],
            }
            with httpx.Client(base_url=base, headers=headers) as http:
                http.post("/api/trips", json={"tripId": "lisbon", "fields": fields})
                http.put("/api/trips/lisbon/collaborators/bob", json={"permissionLevel": "editor"})
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=ARGS
                )
                alice = open_trip(browser, base, "alice", "Alice", "lisbon")
                bob = open_trip(browser, base, "bob", "Bob", "lisbon")

                bob.get_by_test_id("trip-destination").click()
                expect(alice.get_by_test_id("editing-destination")).to_have_text("Bob is editing")
                alice.get_by_test_id("chat-input").fill("Find us a flight to Lisbon")
                alice.get_by_test_id("chat-send").click()
                reply = alice.get_by_test_id("chat-messages").locator("li.assistant")
                expect(reply).to_have_attribute("data-complete", "true")
                alice.screenshot(path=str(DOCS / "editor-two-collaborators.png"))

                bob.context.set_offline(True)
                expect(bob.get_by_test_id("sync-status")).to_have_text("Offline")
                bob.get_by_test_id("trip-budget").fill("2800")
                bob.keyboard.press("Tab")
                alice.get_by_test_id("trip-budget").fill("2600")
                alice.keyboard.press("Tab")
                expect(alice.get_by_test_id("sync-status")).to_have_text("Synced")
                bob.context.set_offline(False)
                expect(alice.get_by_test_id("conflict-dialog")).to_be_visible()
                expect(alice.get_by_test_id("conflict-options")).to_contain_text("2800")
                alice.screenshot(path=str(DOCS / "conflict-dialog.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    print("wrote", *(str(p.relative_to(ROOT)) for p in sorted(DOCS.glob("*.png"))))  # noqa: T201


if __name__ == "__main__":
    main()
