"""The browser client's heartbeats in Chromium (``api/web/client.js`` WebSocketManager)."""

from __future__ import annotations

from collections.abc import Callable

from tests.web.conftest import Web

# Resolves once server heartbeats spanning 2 s (by their serverTime) have arrived; the
# number that arrived meanwhile. A reply the server answers again would make it thousands.
HEARTBEATS_SCRIPT = """async ([token]) => {
  const { WebSocketManager } = await import('/static/client.js');
  const manager = new WebSocketManager({
    url: `ws://${location.host}/ws/chat/s-beats`, token, sessionId: 's-beats',
  });
  const stamps = [];
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout: ' + stamps.length)), 15000);
    manager.on('connection_heartbeat', (event) => {
      stamps.push(Date.parse(event.payload.serverTime));
      if (stamps[stamps.length - 1] - stamps[0] >= 2000) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  manager.start();
  await done;
  manager.stop();
  return stamps.length;
}"""


def test_the_browser_client_answers_heartbeats_without_a_loop(
    web_factory: Callable[..., Web],
) -> None:
    """The client echoes each server heartbeat's serverTime, which the server does not
    answer: one heartbeat per interval, not an endless exchange."""
    web = web_factory(heartbeat_interval_s=1)
    page = web.watch(web.context().new_page())
    page.goto("/app")
    received = page.evaluate(HEARTBEATS_SCRIPT, [web.server.token("alice")])
    assert 3 <= received <= 4
